"""The preview answers only its own Host: a defence against DNS rebinding.

The preview listens on 127.0.0.1, but a web page the user visits can point its own domain at
127.0.0.1 (DNS rebinding) and then read the preview from the browser as same-origin: subscriber
names and addresses (`/api/recipients`) and personalised emails. Such a request still carries the
attacker's domain in its Host header, so every request whose Host is not one of ours gets a 421
(RFC 9110 15.5.20, Misdirected Request) with no data, before any route runs: pages, the JSON
API, the event stream and static files alike.

Starlette's TrustedHostMiddleware cannot be used: it ignores the port and cuts `[::1]:8000` at
the first colon.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def host_names(listen_host: str) -> frozenset[str]:
    """The lower-case host names the preview answers to when listening on `listen_host`."""
    own = listen_host
    if ":" in own and not own.startswith("["):  # an IPv6 address: bracketed in a Host header
        own = f"[{own}]"
    return frozenset(name.lower() for name in (*LOOPBACK_NAMES, own))


def split_host(value: str) -> tuple[str, int | None] | None:
    """(lower-case name, port or None) of a Host header value; None when it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value.partition("]")
        if not bracket:
            return None
        name += "]"
    else:
        name, _, rest = value.partition(":")
        rest = ":" + rest if _ else ""
    if not rest:
        return (name, None) if name else None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        return None
    return name, int(rest[1:])


class AllowedHosts:
    """ASGI middleware: pass requests whose Host is one of `names` (with `port`, or without a
    port when `port` is 80); answer 421 to everything else, including a missing Host."""

    def __init__(self, app: ASGIApp, names: Iterable[str], port: int) -> None:
        self.app = app
        self.names = frozenset(n.lower() for n in names)
        self.port = port

    def allowed(self, host: str | None) -> bool:
        parsed = split_host(host) if host else None
        if parsed is None:
            return False
        name, port = parsed
        return name in self.names and (port or 80) == self.port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None
        )
        if self.allowed(host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = (
            b"421 Misdirected Request: this preview answers only http://127.0.0.1:%d/ "
            b"(or localhost, [::1], or the --host it was started with).\n" % self.port
        )
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
