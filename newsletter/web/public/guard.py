"""The rules every public request goes through, each in one place.

- `endpoint(show, act)`: the one dispatch by method. GET and HEAD only ever reach `show`, which
  is handed a read-only database (SQLite `query_only`); only POST reaches `act`, and only if
  its body did not stall (else 400, nothing done). A body not read whole (stalled, or too big
  to read) closes the connection after the answer: a trickling client cannot keep it open.
  OPTIONS gets the Allow header; every other method a 405. Mail scanners and link previewers
  (HEAD, GET, OPTIONS on every link) can therefore never change anything.
- `read_form`: bounded in size and in time (a slow body cannot hold a worker); `read_body` the
  same for a raw body (provider webhooks, whose signature covers the exact bytes).
- `FormTokens`: the sign-up form's anti-CSRF token, bound to the client address and time, so
  another site cannot make its visitors' browsers post our form.
- `not_modified`: conditional GET per RFC 9110 13.1.3/13.1.4.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_FORM_BYTES = 64 * 1024
MAX_WEBHOOK_BYTES = 4 * 1024 * 1024  # a provider's batch of events (SendGrid's can be large)
BODY_TIMEOUT = 10.0  # seconds to receive a whole form body

Show = Callable[[Request], Awaitable[Response]]
Act = Callable[[Request], Awaitable[Response]]
Refuse = Callable[[Request, str], Response]
BadBody = Callable[[Request], Response]


class Endpoint:
    """An ASGI app (so Starlette's Route passes it every method) around a request handler."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = request_response(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class CloseUnreadBody:
    """ASGI middleware: a response to a request whose body was not read to its end (a GET or
    HEAD with a body, a 404, a POST too big or too slow to read) says `Connection: close`.
    uvicorn closes such a connection anyway; a client not told so sends its next request on it
    and gets a reset (RFC 9112 section 9.6: a server that closes should say so)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _declares_body(scope):
            await self.app(scope, receive, send)
            return
        read_to_end = False

        async def receiving() -> Message:
            nonlocal read_to_end
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                read_to_end = True
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and not read_to_end:
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receiving, sending)


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return True
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


def endpoint(
    show: Show,
    act: Act | None,
    refuse: Refuse,
    bad_body: BadBody,
    *,
    body_timeout: float = BODY_TIMEOUT,
    raw_body_limit: int | None = None,
) -> Endpoint:
    """One endpoint for every method of a route, dispatching by method. A POST whose body is
    not complete within `body_timeout` seconds gets `bad_body` (400; `act` never sees it); one
    too big to read reaches `act` with no fields (`CloseUnreadBody` then closes the connection).
    With `raw_body_limit` (bytes) the POST body is read raw, not as a form (`read_body`)."""
    allow = "GET, HEAD, POST, OPTIONS" if act is not None else "GET, HEAD, OPTIONS"

    async def dispatch(request: Request) -> Response:
        method = request.method
        if method in ("GET", "HEAD"):
            return await show(request)
        if method == "POST" and act is not None:
            if raw_body_limit is None:
                await read_form(request, timeout=body_timeout)  # kept for act's read_form
            else:
                await read_body(request, limit=raw_body_limit, timeout=body_timeout)
            if request.state.body_stalled:
                return bad_body(request)
            return await act(request)
        if method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow, "Cache-Control": "no-store"})
        return refuse(request, allow)

    return Endpoint(dispatch)


async def read_form(request: Request, *, timeout: float = BODY_TIMEOUT) -> dict[str, str]:
    """The posted form fields; {} for a body that is absent, too big, malformed or not complete
    within `timeout` seconds. Read once per request (later calls get the same fields);
    `request.state.body_unread` tells whether the body was too big or too slow,
    `request.state.body_stalled` whether it was too slow."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    fields: dict[str, str] = {}
    request.state.body_unread = request.state.body_stalled = False
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        # These forms are tiny: never buffer a large or unbounded body.
        request.state.body_unread = bool(length or _chunked(request))
    else:
        try:
            form = await asyncio.wait_for(request.form(max_files=0, max_fields=20), timeout)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        except TimeoutError:
            request.state.body_unread = request.state.body_stalled = True
        except Exception:  # a malformed body must not turn a valid POST into a 500
            pass
    request.state.form = fields
    return fields


async def read_body(
    request: Request, *, limit: int = MAX_WEBHOOK_BYTES, timeout: float = BODY_TIMEOUT
) -> bytes | None:
    """The raw body, or None when it is larger than `limit` bytes (by Content-Length or as it
    streams) or not complete within `timeout` seconds; never more than `limit` bytes buffered.
    Read once per request; sets `request.state.body` and the same flags as `read_form`."""
    if hasattr(request.state, "body"):
        return request.state.body  # type: ignore[no-any-return]
    request.state.body_unread = request.state.body_stalled = False
    body: bytes | None = None
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        request.state.body_unread = True
    else:
        try:
            body = await asyncio.wait_for(_read_limited(request, limit), timeout)
        except TimeoutError:
            request.state.body_stalled = True
        request.state.body_unread = body is None
    request.state.body = body
    return body


async def _read_limited(request: Request, limit: int) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _chunked(request: Request) -> bool:
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def cross_site(request: Request) -> bool:
    """True if a browser says the request comes from another site's page (Fetch Metadata)."""
    return request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")


class FormTokens:
    """`<issued>.<mac>` tokens: HMAC-SHA256(secret, "signup-form|client|issued"), valid for
    `max_age` seconds and only for the client address they were given to."""

    def __init__(self, secret: bytes, max_age: int = 4 * 3600) -> None:
        self._key = hashlib.sha256(b"signup-form|" + secret).digest()
        self.max_age = max_age

    def issue(self, client: str, now: float | None = None) -> str:
        issued = format(int(time.time() if now is None else now), "x")
        return f"{issued}.{self._mac(client, issued)}"

    def valid(self, client: str, token: str, now: float | None = None) -> bool:
        issued, _, mac = token.partition(".")
        if not (0 < len(issued) <= 12 and len(mac) == 22) or not issued.isalnum():
            return False
        if not hmac.compare_digest(mac, self._mac(client, issued)):
            return False
        try:
            age = (time.time() if now is None else now) - int(issued, 16)
        except ValueError:
            return False
        return -60 <= age <= self.max_age

    def _mac(self, client: str, issued: str) -> str:
        digest = hmac.new(self._key, f"{client}|{issued}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def not_modified(request: Request, etag: str, modified: float) -> bool:
    """RFC 9110: If-None-Match wins; If-Modified-Since counts only when it is a valid date not
    in the future (an invalid or future date is ignored, never an error)."""
    tags = request.headers.get("if-none-match")
    if tags is not None:
        return tags.strip() == "*" or etag in {
            t.strip().removeprefix("W/") for t in tags.split(",")
        }
    since = request.headers.get("if-modified-since")
    if not since:
        return False
    try:
        when = parsedate_to_datetime(since)
        stamp = when.timestamp() if when.tzinfo else when.replace(tzinfo=dt.UTC).timestamp()
    except (TypeError, ValueError, OverflowError, IndexError, OSError):
        return False
    if stamp > time.time():
        return False
    return stamp >= modified
