"""Running the public app: the listening socket, uvicorn's settings, slow-client limits, and an
access log without tokens."""

from __future__ import annotations

import copy
import errno
import logging
import re
import socket
import sys
from typing import TYPE_CHECKING, Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from newsletter.config import Config

HEADER_TIMEOUT = 10.0  # seconds from connecting (or the previous response) to complete headers
KEEP_ALIVE_TIMEOUT = 5.0  # idle seconds between requests on a kept-alive connection
MAX_HEADER_BYTES = 16 * 1024  # h11's limit on the request line plus headers
# Whatever the case of the route (a mistyped /Unsubscribe/ is still a real token)...
_TOKEN_PATH = re.compile(r"(/(?:unsubscribe|confirm)/)[^/?\s\"]+", re.IGNORECASE)
# ...and anything shaped like one of our tokens (newsletter.tokens), on any path or query.
_TOKEN_SHAPED = re.compile(
    r"(?<=[/=])[0-9A-Za-z]{1,13}(?:\.[0-9A-Za-z]{1,13})?\.[A-Za-z0-9_-]{22}(?=[/?&#\s\"]|\Z)"
)


def redact(text: str) -> str:
    """`/unsubscribe/<token>` and `/confirm/<token>` (any case), and any token-shaped path
    segment or query value, with the token replaced by `[redacted]` (tokens are capabilities:
    whoever reads the log could unsubscribe the reader)."""
    return _TOKEN_SHAPED.sub("[redacted]", _TOKEN_PATH.sub(r"\1[redacted]", text))


class RedactTokens(logging.Filter):
    """A logging filter for uvicorn's access and error logs: no token reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


class SlowClientProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline: a client that has not sent complete
    request headers `header_timeout` seconds after connecting (or after the previous response)
    is disconnected, so slow-header clients cannot hold connections open (uvicorn's own
    keep-alive timer restarts on every byte). A connection whose request body was not read
    whole when the response ended is closed."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        # Answered before the whole request body arrived (a stalled form, a route that reads
        # no body): close, or a client trickling bytes would keep the connection forever.
        unread = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if unread and not self.transport.is_closing():
            self.transport.close()
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm_header_deadline(self) -> None:
        handle = getattr(self, "_header_deadline", None)
        if handle is not None:
            handle.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(
    app: ASGIApp,
    *,
    log_level: str = "info",
    header_timeout: float = HEADER_TIMEOUT,
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
    lifespan: str = "auto",
    forwarded_allow_ips: str | None = None,
) -> uvicorn.Config:
    """uvicorn's settings for `serve`: h11 with a header deadline and header size limit,
    a short keep-alive, no Server header, and logs with tokens redacted.

    `forwarded_allow_ips`: comma-separated addresses or networks (or `*`) of reverse proxies
    whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed: the client address they give is
    the one rate limits and the consent history use. None: uvicorn's default, the
    FORWARDED_ALLOW_IPS variable or else 127.0.0.1. From any other peer the headers are ignored."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    protocol = type("Protocol", (SlowClientProtocol,), {"header_timeout": header_timeout})
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["filters"] = {"redact": {"()": RedactTokens}}
    for handler in log_config["handlers"].values():
        handler["filters"] = ["redact"]
    return uvicorn.Config(
        app,
        http=protocol,
        log_level=log_level,
        log_config=log_config,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_keep_alive=int(max(1, keep_alive_timeout)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        lifespan=lifespan,  # type: ignore[arg-type]
    )


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Run the public app under uvicorn until interrupted (`forwarded_allow_ips`: see
    `server_config`)."""
    import uvicorn

    from newsletter.web.public.app import create_app

    app = create_app(config)
    sock = listen(host, port)
    server = uvicorn.Server(server_config(app, forwarded_allow_ips=forwarded_allow_ips))
    log_our_lines()
    shown = f"[{host}]" if ":" in host else host
    print(
        f"Serving {config.name} on http://{shown}:{sock.getsockname()[1]} "
        f"(public URL {config.base_url}); press Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a normal stop
        pass
    finally:
        sock.close()


def log_our_lines() -> None:
    """Show our own INFO lines (webhooks applied or refused, background sends) on stderr the
    way uvicorn shows its own, tokens redacted. uvicorn configures only its loggers: without
    this ours reached no handler and only warnings showed, unformatted."""
    from uvicorn.logging import DefaultFormatter

    logger = logging.getLogger("newsletter")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    handler.addFilter(RedactTokens())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root logger has no handler of its own under `serve`


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear NewsletterError (port in use, unknown host)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except (socket.gaierror, OSError) as exc:
        if not isinstance(exc, socket.gaierror) and exc.errno != errno.EADDRNOTAVAIL:
            raise NewsletterError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                + ("; is another server running there? choose another --port" if port else "")
            ) from None
        # The host itself is wrong (unknown, or not an address of this machine), not the port.
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; --host must be an address "
            "of this machine such as 127.0.0.1 or 0.0.0.0"
        ) from None
    sock.set_inheritable(True)
    return sock
