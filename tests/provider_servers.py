"""Local stand-ins for the email APIs, one per provider, on 127.0.0.1 (never the internet).

Each server checks every request against the provider's documented contract (method, path,
auth header, content type, required fields, batch limits) and answers the way the provider
does: 202/200 with its ids, 400/422 for invalid input, 401/403 for a bad key. A broken contract
is recorded in `violations` and answered with a 400 naming it, so a test sees it either way.

Accepted messages are rendered the way the provider would deliver them (SendGrid substitutions
applied per personalization, Mailgun `%recipient.x%` variables per address, ...) into
`Delivered` records: what each recipient would receive. Tests script faults with `fail_next`
(a 429 with Retry-After, a 500, a stall past the client's timeout) and per-recipient refusals
with `refuse` (invalid address, inactive/suppressed recipient).

Amazon SES runs as moto's server (`moto.server`) behind a thin WSGI layer that checks the SigV4
credential scope and the SendEmail shape, and can inject the same faults.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses, parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl

SIGV4_SCOPE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/ses/aws4_request")
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


# ===================================================================== SendGrid


class SendGridServer(ProviderServer):
    """`POST /v3/mail/send` (Bearer key, JSON, <= 1,000 personalizations, 202 + X-Message-Id)."""

    name = "sendgrid"
    RESERVED: ClassVar[set[str]] = {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }

    def violation_reply(self, message: str) -> Reply:
        return Reply(400, {"errors": [{"message": message, "field": None, "help": None}]})

    def handle(self, request: Request, number: int) -> Reply:
        need(request.method == "POST", "Mail Send takes POST")
        need(request.path == "/v3/mail/send", f"unknown path {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return Reply(
                401,
                {
                    "errors": [
                        {
                            "field": None,
                            "message": "The provided "
                            "authorization grant is invalid, expired, or revoked",
                        }
                    ]
                },
            )
        need(len(request.body) <= 30 * 1024 * 1024, "request larger than 30 MB")
        body = _json_body(request)
        pers = body.get("personalizations")
        need(isinstance(pers, list) and 1 <= len(pers) <= 1000, "1 to 1000 personalizations")
        frm = body.get("from")
        need(isinstance(frm, dict) and EMAIL.match(frm.get("email", "")), "from.email required")
        content = body.get("content")
        need(isinstance(content, list) and content, "content must be a non-empty array")
        types = [c.get("type") for c in content]
        need(types[0] == "text/plain" or "text/plain" not in types, "text/plain must come first")
        need(all(isinstance(c.get("value"), str) and c["value"] for c in content), "empty content")
        global_headers = _strings(body.get("headers", {}), "headers")
        self._check_headers(global_headers)
        seen: set[str] = set()
        errors = []
        for n, p in enumerate(pers):
            to = p.get("to")
            need(isinstance(to, list) and to, "to must list the recipients")
            for r in to:
                address = r.get("email", "")
                need(address.lower() not in seen, "an address appears twice in one request")
                seen.add(address.lower())
                if not EMAIL.match(address) or self.refused.get(address.lower()) == "invalid":
                    errors.append(
                        {
                            "message": "Does not contain a valid address.",
                            "field": f"personalizations.{n}.to.0.email",
                            "help": None,
                        }
                    )
            need(p.get("subject") or body.get("subject"), "subject missing")
            headers = _strings(p.get("headers", {}), "personalization headers")
            self._check_headers(headers)
            subs = _strings(p.get("substitutions", {}), "substitutions")
            size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
            need(size <= 10_000, f"substitutions of personalization {n} exceed 10,000 bytes")
            _strings(p.get("custom_args", {}), "custom_args")
        if errors:
            return Reply(400, {"errors": errors})
        message_id = uuid.uuid4().hex[:22]
        if self.render:
            self.deliver([self._render(body, p, message_id, number) for p in pers])
        else:
            self.deliver([None] * len(pers))  # type: ignore[list-item]
        return Reply(202, b"", {"X-Message-Id": message_id})

    scopes: ClassVar[list[str]] = ["mail.send", "user.profile.read"]

    def check(self, request: Request) -> Reply:
        need(request.path == "/v3/scopes", f"unknown GET {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return Reply(401, {"errors": [{"field": None, "message": "authorization required"}]})
        return Reply(200, {"scopes": self.scopes})

    def _check_headers(self, headers: dict[str, str]) -> None:
        for name in headers:
            need(name.lower() not in self.RESERVED, f"reserved header {name!r}")

    def _render(self, body: dict, p: dict, message_id: str, number: int) -> Delivered:
        subs = p.get("substitutions", {})
        pattern = re.compile("|".join(re.escape(k) for k in sorted(subs, key=len, reverse=True)))

        def fill(text: str) -> str:
            return pattern.sub(lambda m: subs[m.group(0)], text) if subs else text

        values = {c["type"]: c["value"] for c in body["content"]}
        to = p["to"][0]
        frm = body["from"]
        reply_to = body.get("reply_to")
        return Delivered(
            provider=self.name,
            to_email=to["email"],
            to_header=_display(to.get("name"), to["email"]),
            from_header=_display(frm.get("name"), frm["email"]),
            subject=fill(p.get("subject") or body["subject"]),
            text=fill(values.get("text/plain", "")),
            html=fill(values.get("text/html", "")),
            headers={**body.get("headers", {}), **p.get("headers", {})},
            provider_id=message_id,
            request=number,
            reply_to=_display(reply_to.get("name"), reply_to["email"]) if reply_to else None,
        )


def _display(name: str | None, address: str) -> str:
    """The header SendGrid writes from a {name, email} object."""
    return formataddr((name, address)) if name else address


# ===================================================================== Mailgun


class MailgunServer(ProviderServer):
    """`POST /v3/<domain>/messages` (basic auth api:KEY, form data, <= 1,000 recipients)."""

    name = "mailgun"

    def __init__(self, key: str, domain: str, **kwargs: Any) -> None:
        super().__init__(key, **kwargs)
        self.domain = domain

    def handle(self, request: Request, number: int) -> Reply:
        need(request.method == "POST", "messages takes POST")
        match = re.fullmatch(r"/v3/([^/]+)/messages", request.path)
        need(match, f"unknown path {request.path}")
        expected = "Basic " + base64.b64encode(f"api:{self.key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply(401, b"Forbidden", {"Content-Type": "text/plain"})
        if match.group(1) != self.domain:  # type: ignore[union-attr]
            return Reply(404, {"message": f"Domain not found: {match.group(1)}"})  # type: ignore[union-attr]
        fields = _form_fields(request)
        one = {k: v[0] for k, v in fields.items()}
        need(one.get("from"), "from is required")
        need(one.get("subject"), "subject is required")
        need(one.get("text") or one.get("html"), "text or html is required")
        to = fields.get("to", [])
        need(1 <= len(to) <= 1000, f"1 to 1000 recipients per request, got {len(to)}")
        variables: dict[str, dict[str, str]] = {}
        if "recipient-variables" in one:
            try:
                variables = json.loads(one["recipient-variables"])
            except ValueError:
                raise Violation("recipient-variables is not JSON") from None
        need(
            len(to) == 1 or variables,
            "a batch without recipient-variables shows every recipient all the others",
        )
        addresses = [parseaddr(t)[1] for t in to]
        for address in addresses:
            if not EMAIL.match(address) or self.refused.get(address.lower()) == "invalid":
                return Reply(
                    400,
                    {"message": "to parameter is not a valid address. please check documentation"},
                )
            need(not variables or address in variables, f"no recipient-variables for {address}")
        message_id = f"<{uuid.uuid4().hex}@{self.domain}>"
        if self.render:
            self.deliver(
                [
                    self._render(one, t, a, variables.get(a, {}), message_id, number)
                    for t, a in zip(to, addresses, strict=True)
                ]
            )
        else:
            self.deliver([None] * len(to))  # type: ignore[list-item]
        return Reply(200, {"id": message_id, "message": "Queued. Thank you."})

    def check(self, request: Request) -> Reply:
        match = re.fullmatch(r"/v3/domains/([^/]+)", request.path)
        need(match, f"unknown GET {request.path}")
        expected = "Basic " + base64.b64encode(f"api:{self.key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply(401, b"Forbidden", {"Content-Type": "text/plain"})
        if match.group(1) != self.domain:  # type: ignore[union-attr]
            return Reply(404, {"message": "Domain not found"})
        return Reply(200, {"domain": {"name": self.domain, "state": "active"}})

    def _render(
        self, one: dict, to: str, address: str, variables: dict, message_id: str, number: int
    ) -> Delivered:
        def fill(text: str) -> str:
            return re.sub(
                r"%recipient\.([^%]+)%",
                lambda m: str(variables.get(m.group(1), m.group(0))),
                text,
            )

        headers = {k[2:]: fill(v) for k, v in one.items() if k.startswith("h:")}
        reply_to = headers.pop("Reply-To", None)
        return Delivered(
            provider=self.name,
            to_email=address,
            to_header=to,
            from_header=one["from"],
            subject=fill(one["subject"]),
            text=fill(one.get("text", "")),
            html=fill(one.get("html", "")),
            headers=headers,
            provider_id=message_id,
            request=number,
            reply_to=reply_to,
        )


def _form_fields(request: Request) -> dict[str, list[str]]:
    content_type = request.headers.get("content-type", "")
    fields: dict[str, list[str]] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        for k, v in parse_qsl(request.body.decode(), keep_blank_values=True):
            fields.setdefault(k, []).append(v)
        return fields
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    need(content_type.startswith("multipart/form-data") and match, "expected form data")
    boundary = b"--" + match.group(1).encode()  # type: ignore[union-attr]
    need(request.body.rstrip(b"\r\n").endswith(boundary + b"--"), "unterminated form data")
    for chunk in request.body.split(boundary)[1:-1]:
        head, _, value = chunk[2:].partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        need(name, "form part without a name")
        fields.setdefault(name.group(1).decode(), []).append(value[:-2].decode("utf-8"))  # type: ignore[union-attr]
    return fields


# ===================================================================== Postmark


class PostmarkServer(ProviderServer):
    """`POST /email/batch` (X-Postmark-Server-Token, JSON array <= 500, per-message results)."""

    name = "postmark"
    STREAMS: ClassVar[set[str]] = {"outbound", "broadcast"}

    def violation_reply(self, message: str) -> Reply:
        return Reply(422, {"ErrorCode": 300, "Message": f"contract violation: {message}"})

    def handle(self, request: Request, number: int) -> Reply:
        need(request.method == "POST", "batch takes POST")
        need(request.path == "/email/batch", f"unknown path {request.path}")
        need(request.headers.get("accept") == "application/json", "Accept: application/json")
        if request.headers.get("x-postmark-server-token") != self.key:
            return Reply(401, {"ErrorCode": 10, "Message": "The Server API token is invalid."})
        need(len(request.body) <= 50 * 1024 * 1024, "batch larger than 50 MB")
        body = _json_body(request)
        need(isinstance(body, list) and body, "a JSON array of messages")
        if len(body) > 500:
            return Reply(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
        results, delivered = [], []
        for message in body:
            need(message.get("From") and message.get("To"), "From and To are required")
            need(message.get("TextBody") or message.get("HtmlBody"), "TextBody or HtmlBody")
            headers = message.get("Headers", [])
            need(all(set(h) == {"Name", "Value"} for h in headers), "Headers: [{Name, Value}]")
            to = getaddresses([message["To"]])
            need(len(to) <= 50, "at most 50 recipients per message")
            address = to[0][1]
            refused = self.refused.get(address.lower())
            if message.get("MessageStream", "outbound") not in self.STREAMS:
                results.append(
                    {
                        "ErrorCode": 1235,
                        "Message": "The message stream for the provided 'ID' was not found.",
                    }
                )
            elif refused == "inactive":
                results.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to recipient(s)"
                        f" that have been marked as inactive. Found inactive addresses: "
                        f"{address}.",
                    }
                )
            elif refused == "invalid" or not EMAIL.match(address):
                results.append({"ErrorCode": 300, "Message": "Invalid 'To' address."})
            else:
                mid = str(uuid.uuid4())
                results.append(
                    {
                        "To": message["To"],
                        "SubmittedAt": "2026-11-25T00:00:00Z",
                        "MessageID": mid,
                        "ErrorCode": 0,
                        "Message": "OK",
                    }
                )
                delivered.append(
                    self._render(message, address, mid, number) if self.render else None
                )
        self.deliver(delivered)  # type: ignore[arg-type]
        return Reply(200, results)

    def check(self, request: Request) -> Reply:
        need(request.path == "/server", f"unknown GET {request.path}")
        need(request.headers.get("accept") == "application/json", "Accept: application/json")
        if request.headers.get("x-postmark-server-token") != self.key:
            return Reply(401, {"ErrorCode": 10, "Message": "The Server API token is invalid."})
        return Reply(200, {"ID": 1, "Name": "Newsletter", "DeliveryType": "Live"})

    def _render(self, message: dict, address: str, mid: str, number: int) -> Delivered:
        return Delivered(
            provider=self.name,
            to_email=address,
            to_header=message["To"],
            from_header=message["From"],
            subject=message.get("Subject", ""),
            text=message.get("TextBody", ""),
            html=message.get("HtmlBody", ""),
            headers={h["Name"]: h["Value"] for h in message.get("Headers", [])},
            provider_id=mid,
            request=number,
            reply_to=message.get("ReplyTo"),
        )


# ===================================================================== Resend


class ResendServer(ProviderServer):
    """`POST /emails/batch` (Bearer key, JSON array <= 100, Idempotency-Key, permissive mode)."""

    name = "resend"
    TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(key, **kwargs)
        self.idempotent: dict[str, tuple[str, Reply]] = {}  # key -> (payload hash, reply)
        self.replayed = 0

    def violation_reply(self, message: str) -> Reply:
        return Reply(422, {"statusCode": 422, "name": "validation_error", "message": message})

    def _rate_headers(self) -> dict[str, str]:
        return {"ratelimit-limit": "2", "ratelimit-remaining": "1", "ratelimit-reset": "1"}

    def handle(self, request: Request, number: int) -> Reply:
        need(request.method == "POST", "batch takes POST")
        need(request.path == "/emails/batch", f"unknown path {request.path}")
        auth = request.headers.get("authorization")
        if not auth:
            return Reply(
                401,
                {
                    "statusCode": 401,
                    "name": "missing_api_key",
                    "message": "Missing API key in the authorization header",
                },
            )
        if auth != f"Bearer {self.key}":
            return Reply(
                403, {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"}
            )
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(request.body).hexdigest()
        if key is not None:
            need(1 <= len(key) <= 256, "Idempotency-Key must be 1-256 characters")
            with self.lock:
                known = self.idempotent.get(key)
            if known is not None:
                if known[0] != digest:
                    return Reply(
                        409,
                        {
                            "statusCode": 409,
                            "name": "invalid_idempotent_request",
                            "message": "Same idempotency key used with a different "
                            "request payload.",
                        },
                    )
                with self.lock:
                    self.replayed += 1
                return known[1]
        mode = request.headers.get("x-batch-validation", "strict")
        need(mode in ("strict", "permissive"), "x-batch-validation: strict | permissive")
        body = _json_body(request)
        need(isinstance(body, list) and body, "a JSON array of emails")
        if len(body) > 100:
            return Reply(
                422,
                {
                    "statusCode": 422,
                    "name": "validation_error",
                    "message": "Too many emails: at most 100 per batch",
                },
            )
        data, errors, delivered = [], [], []
        for index, email in enumerate(body):
            need(
                email.get("from") and email.get("to") and email.get("subject"),
                "from, to and subject are required",
            )
            need(email.get("html") or email.get("text"), "html or text is required")
            to = email["to"] if isinstance(email["to"], list) else [email["to"]]
            need(len(to) <= 50, "at most 50 recipients per email")
            _strings(email.get("headers", {}), "headers")
            for tag in email.get("tags", []):
                need(
                    self.TAG.match(tag.get("name", "")) and self.TAG.match(tag.get("value", "")),
                    f"invalid tag {tag}",
                )
            address = parseaddr(to[0])[1]
            if not EMAIL.match(address) or self.refused.get(address.lower()) == "invalid":
                if mode == "strict":
                    return Reply(
                        422,
                        {
                            "statusCode": 422,
                            "name": "validation_error",
                            "message": f"Invalid `to` field: {to[0]}",
                        },
                    )
                errors.append({"index": index, "message": f"Invalid `to` field: {to[0]}"})
                continue
            eid = str(uuid.uuid4())
            data.append({"id": eid})
            delivered.append(self._render(email, address, eid, number) if self.render else None)
        self.deliver(delivered)  # type: ignore[arg-type]
        reply = Reply(
            200,
            {"data": data, **({"errors": errors} if mode == "permissive" else {})},
            self._rate_headers(),
        )
        if key is not None:
            with self.lock:
                self.idempotent[key] = (digest, reply)
        return reply

    def check(self, request: Request) -> Reply:
        need(request.path == "/domains", f"unknown GET {request.path}")
        auth = request.headers.get("authorization")
        if not auth:
            return Reply(401, {"statusCode": 401, "name": "missing_api_key", "message": "Missing"})
        if auth != f"Bearer {self.key}":
            return Reply(
                403, {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"}
            )
        return Reply(
            401,
            {
                "statusCode": 401,
                "name": "restricted_api_key",
                "message": "This API key is restricted to only send emails",
            },
        )

    def _render(self, email: dict, address: str, eid: str, number: int) -> Delivered:
        to = email["to"] if isinstance(email["to"], list) else [email["to"]]
        return Delivered(
            provider=self.name,
            to_email=address,
            to_header=to[0],
            from_header=email["from"],
            subject=email["subject"],
            text=email.get("text", ""),
            html=email.get("html", ""),
            headers=dict(email.get("headers", {})),
            provider_id=eid,
            request=number,
            reply_to=email.get("reply_to"),
        )


# ===================================================================== Amazon SES (moto)


class SesServer:
    """moto's server for SES v2, wrapped to check SendEmail requests and inject faults."""

    name = "ses"

    def __init__(self, access_key: str, region: str, *, configuration_sets: tuple[str, ...] = ()):
        self.access_key = access_key
        self.region = region
        self.configuration_sets = set(configuration_sets)
        self.violations: list[str] = []
        self.requests = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def fail_next(self, status: int, code: str, *, times: int = 1, message: str = "") -> None:
        for _ in range(times):
            self._faults.append(
                Fault(status, {"message": message or code}, {"x-amzn-ErrorType": code})
            )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SesServer:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", 0, self._wrap(app), threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> SesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sent(self) -> list[Delivered]:
        """Every raw message moto accepted, parsed the way a mailbox would see it."""
        from moto.ses.models import ses_backends

        backend = ses_backends["123456789012"][self.region]
        out = []
        for n, message in enumerate(backend.sent_messages):
            raw = message.raw_data.encode("utf-8")
            out.append(_parsed_delivery(raw, message.destinations[0], message.id, n))
        return out

    def _wrap(self, app: Callable) -> Callable:
        def middleware(environ: dict, start_response: Callable) -> Any:
            path = environ.get("PATH_INFO", "")
            auth = environ.get("HTTP_AUTHORIZATION", "")
            scope = SIGV4_SCOPE.match(auth)
            if path.startswith("/v2/") and scope and scope.group(1) != self.access_key:
                data = json.dumps(
                    {"message": "The security token included in the request is invalid."}
                ).encode()
                start_response(
                    "403 Forbidden",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(data))),
                        ("x-amzn-ErrorType", "UnrecognizedClientException"),
                    ],
                )
                return [data]
            if path.startswith("/v2/email/outbound-emails"):
                fault, problem = self._check(environ)
                if problem is not None:
                    with self._lock:
                        self.violations.append(problem)
                    fault = Fault(400, {"message": problem}, {"x-amzn-ErrorType": "BadRequest"})
                if fault is not None:
                    time.sleep(fault.stall)
                    data = json.dumps(fault.body).encode()
                    start_response(
                        f"{fault.status} Error",
                        [
                            ("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))),
                            *fault.headers.items(),
                        ],
                    )
                    return [data]
            return app(environ, start_response)

        return middleware

    def _check(self, environ: dict) -> tuple[Fault | None, str | None]:
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        with self._lock:
            self.requests += 1
            fault = self._faults.popleft() if self._faults else None
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = re.match(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/ses/aws4_request", auth
        )
        if environ["REQUEST_METHOD"] != "POST":
            return None, "SendEmail takes POST"
        if scope is None:
            return None, f"not SigV4-signed for ses: {auth[:60]!r}"
        if scope.group(1) != self.access_key:
            return Fault(
                403,
                {"message": "The security token included in the request is invalid."},
                {"x-amzn-ErrorType": "UnrecognizedClientException"},
            ), None
        if scope.group(2) != self.region:
            return None, f"signed for region {scope.group(2)}, server is {self.region}"
        request = json.loads(body)
        raw = request.get("Content", {}).get("Raw", {}).get("Data")
        if raw is None:
            return None, "expected raw content"
        name = request.get("ConfigurationSetName")
        if name is not None and name not in self.configuration_sets:
            return Fault(
                404,
                {"message": f"Configuration set <{name}> does not exist."},
                {"x-amzn-ErrorType": "NotFoundException"},
            ), None
        return fault, None


def _parsed_delivery(raw: bytes, to_email: str, provider_id: str, number: int) -> Delivered:
    import email
    import email.policy

    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    skip = {"from", "to", "subject", "reply-to"}
    return Delivered(
        provider="ses",
        to_email=parseaddr(to_email)[1],
        to_header=str(message["To"]),
        from_header=str(message["From"]),
        subject=str(message["Subject"]),
        text=text.get_content() if text is not None else "",  # type: ignore[union-attr]
        html=html.get_content() if html is not None else "",  # type: ignore[union-attr]
        headers={k: str(v) for k, v in message.items() if k.lower() not in skip},
        provider_id=provider_id,
        request=number,
        reply_to=str(message["Reply-To"]) if message["Reply-To"] else None,
        data=raw,
    )


@contextmanager
def running(server: Any) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ===================================================================== as a process (benchmarks)


def serve_forever(provider: str, key: str, domain: str = "news.example.org") -> None:
    """Run one provider's server in this process; print `PORT <n>`; serve until killed.

    `domain` is Mailgun's sending domain, or for SES the verified identity.
    Without per-recipient rendering (`render=False`): the contract is still checked in full,
    but deliveries are only counted, so the server costs about what parsing the request does.
    `GET /__stats` answers {"delivered": n, "requests": n, "violations": [...]}.
    """
    if provider == "ses":
        import boto3

        ses = SesServer("AKIABENCHMARK0000001", "eu-west-1").start()
        boto3.client(
            "sesv2",
            region_name="eu-west-1",
            endpoint_url=ses.url,
            aws_access_key_id="AKIABENCHMARK0000001",
            aws_secret_access_key=key,
        ).create_email_identity(EmailIdentity=domain)
        print(f"PORT {ses.url.rsplit(':', 1)[1]}", flush=True)
        threading.Event().wait()
    servers: dict[str, Callable[[], ProviderServer]] = {
        "sendgrid": lambda: SendGridServer(key, render=False),
        "mailgun": lambda: MailgunServer(key, domain, render=False),
        "postmark": lambda: PostmarkServer(key, render=False),
        "resend": lambda: ResendServer(key, render=False),
    }
    server = servers[provider]()
    original = server.check

    def check(request: Request) -> Reply:
        if request.path == "/__stats":
            return Reply(
                200,
                {
                    "delivered": server.delivered_count,
                    "requests": len(server.requests),
                    "violations": server.violations,
                },
            )
        return original(request)

    server.check = check  # type: ignore[method-assign]
    server.start()
    print(f"PORT {server.url.rsplit(':', 1)[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve_forever(*sys.argv[1:4])
