"""What every local provider stand-in shares: the threaded HTTP server, request recording,
scripted faults, contract checks (`need`) and the `Delivered` record of what a recipient gets.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


@dataclass
class Delivered:
    """One recipient's message as the provider would hand it to their mailbox."""

    provider: str
    to_email: str
    to_header: str
    from_header: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    provider_id: str
    request: int  # index of the HTTP request that carried it
    reply_to: str | None = None
    data: bytes | None = None  # raw bytes, when the provider takes raw MIME (SES)
    # The custom data the provider echoes in its webhook events for this message (SendGrid
    # custom_args, Mailgun v: variables, Postmark Metadata, SES EmailTags, Resend tags).
    custom: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0  # seconds to wait before answering (a timeout for the client)
    process: bool = False  # accept (deliver) the request first, then stall / answer


class Violation(Exception):
    pass


def need(condition: object, message: str) -> None:
    if not condition:
        raise Violation(message)


class ProviderServer:
    """The HTTP server and the scripting shared by every provider."""

    name = "provider"

    def __init__(self, key: str, *, render: bool = True) -> None:
        self.key = key
        self.render = render  # benchmarks skip building per-recipient copies
        self.lock = threading.Lock()
        self.requests: list[Request] = []  # sending requests (POST)
        self.checks: list[Request] = []  # key checks (GET) made when a transport opens
        self.delivered: list[Delivered] = []
        self.delivered_count = 0
        self.violations: list[str] = []
        self.refused: dict[str, str] = {}  # address -> "invalid" | "inactive"
        self._faults: deque[Fault] = deque()
        self._check_faults: deque[Fault] = deque()  # for the key checks (GET)
        self.per_second: float | None = None  # sending requests allowed per second (`limit`)
        # True: the From is no verified sender (domain, identity, signature) on this account,
        # and every send gets the provider's documented refusal for that.
        self.sender_unverified = False
        self.throttled = 0  # sending requests refused with the provider's 429
        self._window: deque[float] = deque()  # times of the requests accepted in the last 1 s
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ scripting

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        stall: float = 0.0,
        process: bool = False,
    ) -> None:
        for _ in range(times):
            self._faults.append(Fault(status, body, dict(headers or {}), stall, process))

    def fail_next_checks(self, status: int, *, times: int = 1, body: Any = None) -> None:
        """Answer the next `times` key checks (the transports' preflight GET) with `status`."""
        for _ in range(times):
            self._check_faults.append(Fault(status, body, {}, 0.0, False))

    def limit(self, per_second: float) -> None:
        """Allow `per_second` sending requests in any one second (a sliding window, as the
        providers count); the others get the provider's documented 429 (`throttle_reply`)."""
        self.per_second = per_second

    def _over_limit(self) -> bool:
        """Whether this request is over the limit; an accepted one is counted (under the lock)."""
        if self.per_second is None:
            return False
        now = time.monotonic()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.per_second:
            self.throttled += 1
            return True
        self._window.append(now)
        return False

    def remaining(self) -> int:
        """Requests left in the current window (for the rate-limit headers)."""
        with self.lock:
            if self.per_second is None:
                return 1
            return max(0, int(self.per_second) - len(self._window))

    def throttle_reply(self) -> Reply:
        raise NotImplementedError

    def refuse(self, address: str, kind: str = "invalid") -> None:
        self.refused[address.lower()] = kind

    def for_address(self, address: str) -> list[Delivered]:
        return [d for d in self.delivered if d.to_email.lower() == address.lower()]

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ProviderServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ dispatch

    def dispatch(self, request: Request) -> Reply:
        if request.method == "GET":
            with self.lock:
                self.checks.append(request)
                check_fault = self._check_faults.popleft() if self._check_faults else None
            if check_fault is not None:
                return Reply(check_fault.status, check_fault.body, check_fault.headers)
            try:
                return self.check(request)
            except Violation as exc:
                with self.lock:
                    self.violations.append(f"{request.method} {request.path}: {exc}")
                return self.violation_reply(str(exc))
        with self.lock:
            self.requests.append(request)
            number = len(self.requests) - 1
            fault = self._faults.popleft() if self._faults else None
            over = fault is None and self._over_limit()
        if over:
            return self.throttle_reply()
        if fault is not None and not fault.process:
            time.sleep(fault.stall)
            return Reply(fault.status, fault.body, fault.headers)
        try:
            reply = self.handle(request, number)
        except Violation as exc:
            with self.lock:
                self.violations.append(f"{request.method} {request.path}: {exc}")
            reply = self.violation_reply(str(exc))
        if fault is not None:
            time.sleep(fault.stall)
            return Reply(fault.status, fault.body, fault.headers)
        return reply

    def deliver(self, items: list[Delivered]) -> None:
        with self.lock:
            self.delivered_count += len(items)
            if self.render:
                self.delivered.extend(items)

    def handle(self, request: Request, number: int) -> Reply:
        raise NotImplementedError

    def check(self, request: Request) -> Reply:
        """The provider's cheap authenticated GET a transport makes when it opens."""
        raise Violation(f"no GET endpoint {request.path}")

    def violation_reply(self, message: str) -> Reply:
        return Reply(400, {"message": f"contract violation: {message}"})


def _handler_for(provider: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            reply = provider.dispatch(request)
            payload = reply.body
            if payload is None:
                data = b""
            elif isinstance(payload, bytes):
                data = payload
            elif isinstance(payload, str):
                data = payload.encode()
            else:
                data = json.dumps(payload).encode()
            try:
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_POST = _serve
        do_GET = _serve
        do_PUT = _serve

    return Handler


def _json_body(request: Request) -> Any:
    need(
        request.headers.get("content-type", "").split(";")[0].strip() == "application/json",
        f"Content-Type must be application/json, got {request.headers.get('content-type')!r}",
    )
    try:
        return json.loads(request.body)
    except ValueError as exc:
        raise Violation(f"body is not JSON: {exc}") from None


def _strings(mapping: Any, what: str) -> dict[str, str]:
    need(isinstance(mapping, dict), f"{what} must be an object")
    for k, v in mapping.items():
        need(isinstance(k, str) and isinstance(v, str), f"{what} values must be strings")
    return mapping
