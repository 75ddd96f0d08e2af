"""Stand-ins for the JSON email APIs: SendGrid v3 Mail Send, Postmark batch, Resend batch."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from email.utils import formataddr, getaddresses, parseaddr
from typing import Any, ClassVar

from provider_base import (
    EMAIL,
    Delivered,
    ProviderServer,
    Reply,
    Request,
    _json_body,
    _strings,
    need,
)

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

    def throttle_reply(self) -> Reply:
        """SendGrid's documented 429: X-RateLimit-* headers, the reset as a Unix time."""
        return Reply(
            429,
            {"errors": [{"field": None, "message": "too many requests"}]},
            {
                "X-RateLimit-Limit": str(int(self.per_second or 0)),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 1),
            },
        )

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
        if self.sender_unverified:
            return Reply(
                403,
                {
                    "errors": [
                        {
                            "field": "from",
                            "message": "The from address does not match a verified Sender "
                            "Identity. Mail cannot be sent until this error is resolved.",
                            "help": "https://sendgrid.com/docs/for-developers/sending-email/"
                            "sender-identity/",
                        }
                    ]
                },
            )
        body = _json_body(request)
        pers = body.get("personalizations")
        need(isinstance(pers, list) and 1 <= len(pers) <= 1000, "1 to 1000 personalizations")
        self._check_message(body)
        seen: set[str] = set()
        errors = []
        for n, p in enumerate(pers):
            errors += self._check_personalization(n, p, body, seen)
        if errors:
            return Reply(400, {"errors": errors})
        message_id = uuid.uuid4().hex[:22]
        if self.render:
            self.deliver([self._render(body, p, message_id, number) for p in pers])
        else:
            self.deliver([None] * len(pers))  # type: ignore[list-item]
        return Reply(202, b"", {"X-Message-Id": message_id})

    def _check_message(self, body: dict) -> None:
        frm = body.get("from")
        need(isinstance(frm, dict) and EMAIL.match(frm.get("email", "")), "from.email required")
        content = body.get("content")
        need(isinstance(content, list) and content, "content must be a non-empty array")
        types = [c.get("type") for c in content]
        need(types[0] == "text/plain" or "text/plain" not in types, "text/plain must come first")
        need(all(isinstance(c.get("value"), str) and c["value"] for c in content), "empty content")
        self._check_headers(_strings(body.get("headers", {}), "headers"))

    def _check_personalization(self, n: int, p: dict, body: dict, seen: set[str]) -> list[dict]:
        """Contract checks of personalization n; the per-address errors SendGrid reports."""
        errors = []
        to = p.get("to")
        need(isinstance(to, list) and to, "to must list the recipients")
        for r in to:
            address = r.get("email", "")
            need(address.lower() not in seen, "an address appears twice in one request")
            seen.add(address.lower())
            if not EMAIL.match(address) or self.refused.get(address.lower()) == "invalid":
                field = f"personalizations.{n}.to.0.email"
                errors.append({"message": "Does not contain a valid address.", "field": field})
        need(p.get("subject") or body.get("subject"), "subject missing")
        self._check_headers(_strings(p.get("headers", {}), "personalization headers"))
        subs = _strings(p.get("substitutions", {}), "substitutions")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
        need(size <= 10_000, f"substitutions of personalization {n} exceed 10,000 bytes")
        _strings(p.get("custom_args", {}), "custom_args")
        return errors

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
            custom={**body.get("custom_args", {}), **p.get("custom_args", {})},
        )


def _display(name: str | None, address: str) -> str:
    """The header SendGrid writes from a {name, email} object."""
    return formataddr((name, address)) if name else address


# ===================================================================== Postmark


class PostmarkServer(ProviderServer):
    """`POST /email/batch` (X-Postmark-Server-Token, JSON array <= 500, per-message results)."""

    name = "postmark"
    STREAMS: ClassVar[set[str]] = {"outbound", "broadcast"}
    # (ErrorCode, Message) every message of a batch gets inside the 200, as Postmark answers
    # for a problem of the server or account (None: per-message checks only)
    message_error: tuple[int, str] | None = None

    def violation_reply(self, message: str) -> Reply:
        return Reply(422, {"ErrorCode": 300, "Message": f"contract violation: {message}"})

    def throttle_reply(self) -> Reply:
        """Postmark's documented HTTP 429 (no Retry-After)."""
        return Reply(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."})

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
            result = self._result(message)
            if result["ErrorCode"] == 0 and self.render:
                address = getaddresses([message["To"]])[0][1]
                delivered.append(self._render(message, address, result["MessageID"], number))
            elif result["ErrorCode"] == 0:
                delivered.append(None)
            results.append(result)
        self.deliver(delivered)  # type: ignore[arg-type]
        return Reply(200, results)

    def check(self, request: Request) -> Reply:
        need(request.path == "/server", f"unknown GET {request.path}")
        need(request.headers.get("accept") == "application/json", "Accept: application/json")
        if request.headers.get("x-postmark-server-token") != self.key:
            return Reply(401, {"ErrorCode": 10, "Message": "The Server API token is invalid."})
        return Reply(200, {"ID": 1, "Name": "Newsletter", "DeliveryType": "Live"})

    def _result(self, message: Any) -> dict[str, Any]:
        """Check one message of the batch and give Postmark's per-message answer."""
        need(isinstance(message, dict), "each message is an object")
        need(message.get("From") and message.get("To"), "From and To are required")
        need(message.get("TextBody") or message.get("HtmlBody"), "TextBody or HtmlBody")
        headers = message.get("Headers", [])
        need(all(set(h) == {"Name", "Value"} for h in headers), "Headers: [{Name, Value}]")
        to = getaddresses([message["To"]])
        need(len(to) <= 50, "at most 50 recipients per message")
        address = to[0][1]
        refused = self.refused.get(address.lower())
        if message.get("MessageStream", "outbound") not in self.STREAMS:
            return {"ErrorCode": 1235, "Message": "The message stream was not found."}
        if self.message_error is not None:
            return {"ErrorCode": self.message_error[0], "Message": self.message_error[1]}
        if self.sender_unverified:
            sender = getaddresses([message["From"]])[0][1]
            return {
                "ErrorCode": 400,
                "Message": f"The 'From' address you supplied ({sender}) is not a Sender "
                "Signature on your account. Please add and confirm this address in order to "
                "be able to use it in the 'From' field of your messages.",
            }
        if refused == "inactive":
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as "
                f"inactive. Found inactive addresses: {address}.",
            }
        if refused == "invalid" or not EMAIL.match(address):
            return {"ErrorCode": 300, "Message": "Invalid 'To' address."}
        return {
            "To": message["To"],
            "SubmittedAt": "2026-11-25T00:00:00Z",
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }

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
            custom=dict(message.get("Metadata") or {}),
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
        """On every reply, as Resend documents: its limit per second (2 by default)."""
        limit = int(self.per_second) if self.per_second is not None else 2
        remaining = self.remaining() if self.per_second is not None else 1
        return {
            "ratelimit-limit": str(limit),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": "1",
        }

    def throttle_reply(self) -> Reply:
        """Resend's documented 429: `rate_limit_exceeded`, retry-after and ratelimit-*."""
        reply = _resend_error(
            429,
            "rate_limit_exceeded",
            f"Too many requests. You can only make {int(self.per_second or 2)} requests per "
            "second. See rate limit response headers for more information.",
        )
        reply.headers.update({**self._rate_headers(), "ratelimit-remaining": "0"})
        reply.headers["retry-after"] = "1"
        return reply

    def handle(self, request: Request, number: int) -> Reply:
        need(request.method == "POST", "batch takes POST")
        need(request.path == "/emails/batch", f"unknown path {request.path}")
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(request.body).hexdigest()
        if key is not None:
            need(1 <= len(key) <= 256, "Idempotency-Key must be 1-256 characters")
            with self.lock:
                known = self.idempotent.get(key)
            if known is not None:
                return self._replay(known, digest)
        if self.sender_unverified:
            return _resend_error(
                403,
                "validation_error",
                "The example.org domain is not verified. Please, add and verify your domain "
                "on https://resend.com/domains",
            )
        mode = request.headers.get("x-batch-validation", "strict")
        need(mode in ("strict", "permissive"), "x-batch-validation: strict | permissive")
        body = _json_body(request)
        need(isinstance(body, list) and body, "a JSON array of emails")
        if len(body) > 100:
            return _resend_error(422, "validation_error", "Too many emails: at most 100 per batch")
        data, errors, delivered = [], [], []
        for index, email in enumerate(body):
            address = self._check_email(email)
            if not EMAIL.match(address) or self.refused.get(address.lower()) == "invalid":
                message = f"Invalid `to` field: {address}"
                if mode == "strict":
                    return _resend_error(422, "validation_error", message)
                errors.append({"index": index, "message": message})
                continue
            eid = str(uuid.uuid4())
            data.append({"id": eid})
            delivered.append(self._render(email, address, eid, number) if self.render else None)
        self.deliver(delivered)  # type: ignore[arg-type]
        extra = {"errors": errors} if mode == "permissive" else {}
        reply = Reply(200, {"data": data, **extra}, self._rate_headers())
        if key is not None:
            with self.lock:
                self.idempotent[key] = (digest, reply)
        return reply

    def _refuse_key(self, request: Request) -> Reply | None:
        auth = request.headers.get("authorization")
        if not auth:
            return _resend_error(401, "missing_api_key", "Missing API key in the header")
        if auth != f"Bearer {self.key}":
            return _resend_error(403, "invalid_api_key", "API key is invalid")
        return None

    def _replay(self, known: tuple[str, Reply], digest: str) -> Reply:
        """A known key: the first answer again, or 409 when the payload differs."""
        if known[0] != digest:
            return _resend_error(
                409,
                "invalid_idempotent_request",
                "Same idempotency key used with a different request payload.",
            )
        with self.lock:
            self.replayed += 1
        return known[1]

    def _check_email(self, email: Any) -> str:
        """Check one email of the batch; return its recipient's address."""
        need(isinstance(email, dict), "each email is an object")
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
        return parseaddr(to[0])[1]

    def check(self, request: Request) -> Reply:
        need(request.path == "/domains", f"unknown GET {request.path}")
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
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
            custom={t["name"]: t["value"] for t in email.get("tags", [])},
        )


def _resend_error(status: int, name: str, message: str) -> Reply:
    return Reply(status, {"statusCode": status, "name": name, "message": message})
