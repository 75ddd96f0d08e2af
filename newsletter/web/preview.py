"""`newsletter preview`: serve an issue as its recipients will see it, rebuilt on every save.

The mkdocs-serve model: build once, watch the issue file, the theme folders and newsletter.yaml,
rebuild after a burst of saves, and tell every open page over Server-Sent Events; the page then
swaps in the new version without losing its scroll position. A failed build is shown in the page
(file, line, source excerpt) and the server keeps running until the file is fixed.

Usable from Python: `with PreviewServer(path) as server: ... server.url ...` runs it in a
background thread (tests, screenshots); `serve_forever()` runs it in the foreground until Ctrl-C.
It answers only requests whose Host is 127.0.0.1, localhost, [::1] or the host it listens on,
with its port (421 otherwise: DNS rebinding, see livepreview/hosts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType

import uvicorn

from newsletter.errors import NewsletterError
from newsletter.web.livepreview.app import PreviewState, create_app
from newsletter.web.livepreview.builder import Builder, Snapshot
from newsletter.web.livepreview.hosts import AllowedHosts, host_names
from newsletter.web.livepreview.watcher import Hub, Rebuilder

DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once shut down (a KeyboardInterrupt, or death by SIGTERM);
        # the preview has shut down cleanly by then, so it just returns.
        self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Event streams never finish by themselves: end them first, or shutdown waits for them.
        self.hub.close()
        await super().shutdown(sockets)


class PreviewServer:
    """The preview of one issue, listening on `host:port` (a free port when port is 0)."""

    def __init__(
        self,
        issue_path: str | Path,
        *,
        config_path: str | Path | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        start_dir: Path | None = None,
    ) -> None:
        path = Path(issue_path)
        if not path.is_file():
            raise NewsletterError(f"{issue_path}: issue file not found")
        self.issue_path = path
        self.hub = Hub()
        self.state = PreviewState(Builder(path, config_path, start_dir), self.hub)
        self.rebuilder = Rebuilder(self.state.rebuild, self.state.watch_set)
        self.socket = _listen(host, port)
        self.host = host
        self.port = self.socket.getsockname()[1]
        # Only requests addressed to this server by name: see livepreview/hosts.py.
        asgi = AllowedHosts(create_app(self.state, self.rebuilder), host_names(host), self.port)
        config = uvicorn.Config(
            asgi,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        self._server = _Uvicorn(config, self.hub)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.socket.getsockname()[0]).is_loopback

    @property
    def snapshot(self) -> Snapshot:
        return self.state.snapshot

    @property
    def builds(self) -> int:
        """Rebuilds triggered by file changes so far (the first build not counted)."""
        return self.rebuilder.builds

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C (or SIGTERM); return quietly, no traceback."""
        try:
            with contextlib.suppress(KeyboardInterrupt):
                self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self) -> PreviewServer:
        """Serve from a background thread; return once the server accepts connections."""
        self._thread = threading.Thread(target=self._run, name="newsletter-preview", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (self._server.started and self.rebuilder.ready.is_set()):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise NewsletterError(f"the preview server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
        self.socket.close()

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self.socket]))

    def __enter__(self) -> PreviewServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except socket.gaierror as exc:
        raise NewsletterError(f"cannot listen on {host}: {exc.strerror}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = " (try another --port, or leave it out for a free one)" if port else ""
        raise NewsletterError(f"cannot listen on {host}:{port}: {reason}{hint}") from None
