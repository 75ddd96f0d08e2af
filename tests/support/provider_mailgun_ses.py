"""Stand-ins for Mailgun (form data, recipient-variables) and Amazon SES (moto's server)."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qsl

from provider_base import (
    EMAIL,
    Delivered,
    Fault,
    ProviderServer,
    Reply,
    Request,
    Violation,
    need,
)

SIGV4_SCOPE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/ses/aws4_request")


# ===================================================================== Mailgun


class MailgunServer(ProviderServer):
    """`POST /v3/<domain>/messages` (basic auth api:KEY, form data, <= 1,000 recipients)."""

    name = "mailgun"

    def __init__(self, key: str, domain: str, **kwargs: Any) -> None:
        super().__init__(key, **kwargs)
        self.domain = domain

    def throttle_reply(self) -> Reply:
        """Mailgun's documented 429 "Too many requests" (no Retry-After)."""
        return Reply(429, {"message": "Too many requests"})

    def handle(self, request: Request, number: int) -> Reply:
        need(request.method == "POST", "messages takes POST")
        match = re.fullmatch(r"/v3/([^/]+)/messages", request.path)
        need(match, f"unknown path {request.path}")
        expected = "Basic " + base64.b64encode(f"api:{self.key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply(401, b"Forbidden", {"Content-Type": "text/plain"})
        if match.group(1) != self.domain:  # type: ignore[union-attr]
            return Reply(404, {"message": f"Domain not found: {match.group(1)}"})  # type: ignore[union-attr]
        if self.sender_unverified:
            return Reply(
                403,
                {
                    "message": f"Domain {self.domain} is not allowed to send: it is not "
                    "verified. Please verify the domain's DNS records in Domain Settings."
                },
            )
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
            odd = [k for k in variables.get(address, {}) if not re.fullmatch(r"\w+", k, re.ASCII)]
            need(not odd, f"recipient variable names {odd} are not letters, digits and '_'")
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
            # Mailgun documents only identifier names (`%recipient.yourkey%`); any other form
            # (`%recipient.h:List-Unsubscribe%`) may reach the reader as written.
            return re.sub(
                r"%recipient\.([A-Za-z0-9_]+)%",
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
            custom={k[2:]: fill(v) for k, v in one.items() if k.startswith("v:")},
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


# ===================================================================== Amazon SES (moto)


class SesServer:
    """moto's server for SES v2, wrapped to check SendEmail requests and inject faults."""

    name = "ses"

    def __init__(
        self,
        access_key: str,
        region: str,
        *,
        configuration_sets: tuple[str, ...] = (),
        max_send_rate: float | None = None,
    ):
        """`max_send_rate`: the account's sends per second, as GetAccount reports it; a send
        over it gets SES's 429 `Throttling` "Maximum sending rate exceeded." (no Retry-After)."""
        self.max_send_rate = max_send_rate
        self.throttled = 0
        self._window: deque[float] = deque()
        self.access_key = access_key
        self.region = region
        self.configuration_sets = set(configuration_sets)
        self.violations: list[str] = []
        self.requests = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._tags: dict[str, dict[str, str]] = {}  # recipient -> EmailTags of its request
        self.from_addresses: set[str] = set()  # every FromEmailAddress (the identity checked)

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
            delivered = _parsed_delivery(raw, message.destinations[0], message.id, n)
            delivered.custom = dict(self._tags.get(delivered.to_email.lower(), {}))
            out.append(delivered)
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
            if path == "/v2/email/account" and self.max_send_rate is not None:
                return _json_reply(start_response, "200 OK", self._account(), {})
            if path.startswith("/v2/email/outbound-emails"):
                fault, problem = self._check(environ)
                if fault is None and problem is None and self._over_rate():
                    fault = Fault(
                        429,
                        {"message": "Maximum sending rate exceeded."},
                        {"x-amzn-ErrorType": "Throttling"},
                    )
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

    def _account(self) -> dict[str, Any]:
        """GetAccount as SES answers it: the quota the transport starts its pace from."""
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": {
                "Max24HourSend": 50000.0,
                "MaxSendRate": float(self.max_send_rate or 0),
                "SentLast24Hours": 0.0,
            },
            "SendingEnabled": True,
        }

    def _over_rate(self) -> bool:
        """A sliding one-second window of accepted sends, as SES counts its sending rate."""
        if self.max_send_rate is None:
            return False
        with self._lock:
            now = time.monotonic()
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= self.max_send_rate:
                self.throttled += 1
                return True
            self._window.append(now)
            return False

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
        with self._lock:
            self.from_addresses.add(str(request.get("FromEmailAddress")))
        tags = request.get("EmailTags", [])
        if not all(isinstance(t, dict) and {"Name", "Value"} <= set(t) for t in tags):
            return None, f"EmailTags must be Name/Value pairs: {tags!r}"
        for address in request.get("Destination", {}).get("ToAddresses", []):
            with self._lock:
                self._tags[parseaddr(address)[1].lower()] = {t["Name"]: t["Value"] for t in tags}
        if name is not None and name not in self.configuration_sets:
            return Fault(
                404,
                {"message": f"Configuration set <{name}> does not exist."},
                {"x-amzn-ErrorType": "NotFoundException"},
            ), None
        return fault, None


def _json_reply(
    start_response: Callable, status: str, body: Any, headers: dict[str, str]
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *headers.items(),
        ],
    )
    return [data]


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
