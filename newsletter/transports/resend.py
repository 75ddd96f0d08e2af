"""Resend: `POST /emails/batch`, up to 100 complete emails per request.

Every request carries an `Idempotency-Key` derived from the Message-IDs of its emails (which are
deterministic per campaign and subscriber) and its content, so when a batch is retried after a
timeout, a 5xx or a crash, Resend answers with the first attempt's ids instead of sending it
again (keys live 24 h). An unanswered batch is asked again at once with the same key (twice,
then deferred): that is when the key is certain to match, before the runner regroups the
recipients. Batches go in permissive validation mode (`x-batch-validation: permissive`): an
invalid email is reported by index in `errors` and fails alone, the others are sent.

Limits: Resend allows 2 requests per second by default (a batch of 100 is one request) and says
so on every reply (`ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`); a 429 carries
`retry-after`. The run starts at the documented default, follows the headers (a raised limit
raises the pace), and a 429 is a throttle: put back, not an attempt.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from newsletter.errors import TransportAuthError, TransportConfigError
from newsletter.transports._http import (
    DEFAULT_TIMEOUT,
    ApiReply,
    HttpApiTransport,
    custom_headers,
    no_target,
    parse_url,
    recipient_display,
    reply_to_of,
    require_secret,
    results_for,
    split_address,
)
from newsletter.transports._merge import json_strings
from newsletter.transports.base import DeliveryResult, OutgoingMessage

if TYPE_CHECKING:
    from newsletter.config import Config

API = "https://api.resend.com"
RETRY_PAUSES = (0.5, 1.0)  # same-key retries of an unanswered batch, before deferring it
MAX_EMAILS = 100
KEY_ERRORS = {"missing_api_key", "invalid_api_key", "restricted_api_key", "suspended_api_key"}


def idempotency_key(messages: Sequence[OutgoingMessage], payload: bytes) -> str:
    """Same recipients of the same campaign with the same content -> same key (up to 256
    characters). The content is part of it because Resend refuses a known key with another
    payload (409): an issue edited between two runs is then sent, not failed."""
    digest = hashlib.sha256("\n".join(m.message_id for m in messages).encode())
    digest.update(b"\0" + payload)
    return f"newsletter-batch/{digest.hexdigest()}"


class ResendTransport(HttpApiTransport):
    name = "resend"
    provider = "Resend"
    secret_variable = "RESEND_API_KEY"
    max_batch = MAX_EMAILS
    path = "/emails/batch"
    published_rate = 2.0  # Resend's documented default; its ratelimit-limit header overrides

    def __init__(self, api_key: str, *, endpoint: str = API, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(endpoint, {"Authorization": f"Bearer {api_key}"}, api_key, timeout=timeout)

    @classmethod
    def from_url(
        cls, url: str, config: Config | None, environ: Mapping[str, str]
    ) -> ResendTransport:
        parsed = parse_url(url, "resend")
        no_target(parsed, url)
        key = require_secret(environ, cls.secret_variable, cls.provider)
        return cls(key, endpoint=parsed.endpoint or API)

    def preflight(self) -> None:
        """GET /domains: a wrong key is refused; a sending-only key answers
        `restricted_api_key`, which proves the key itself is valid."""
        reply = self.check("/domains")
        body = reply.json()
        name = body.get("name") if isinstance(body, dict) else None
        if name in KEY_ERRORS - {"restricted_api_key"} or (
            reply.status in (401, 403) and name != "restricted_api_key"
        ):
            raise TransportAuthError(
                f"Resend refused the API key from {self.secret_variable} "
                f"({self.reply_text(reply)}); check the key"
            )

    def _email(self, message: OutgoingMessage) -> dict[str, Any]:
        """Everything but the bodies, which are added already escaped (`json_strings`)."""
        parts = message.parts
        body: dict[str, Any] = {
            "from": recipient_display(*split_address(parts.from_header)),
            "to": [recipient_display(parts.to_name, parts.to_email)],
            "subject": parts.subject,
            "headers": custom_headers(message),
            "tags": [{"name": "newsletter_key", "value": str(message.key)}],
        }
        reply_to = reply_to_of(message)
        if reply_to:
            body["reply_to"] = recipient_display(*split_address(reply_to))
        return body

    def payload(
        self, shared: None, members: Sequence[tuple[int, OutgoingMessage]]
    ) -> dict[str, Any]:
        batch = [message for _, message in members]
        escaped = json_strings([(m.parts.text, m.parts.html) for m in batch])
        emails = [
            json.dumps(self._email(m), ensure_ascii=False)[:-1] + f',"text":{text},"html":{html}}}'
            for m, (text, html) in zip(batch, escaped, strict=True)
        ]
        payload = ("[" + ",".join(emails) + "]").encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key(batch, payload),
            "x-batch-validation": "permissive",
        }
        return {"content": payload, "headers": headers}

    def deliver(self, payload: dict[str, Any]) -> ApiReply | str:
        for pause in (*RETRY_PAUSES, None):
            reply = self.post(self.path, **payload)
            # No answer or a 5xx: the batch may have gone through. Asking again at once with
            # the same key is safe (Resend replays the first answer) and resolves it while the
            # batch is still whole; the runner's later retries may regroup the recipients.
            if pause is None or not (isinstance(reply, str) or reply.status >= 500):
                break
            time.sleep(pause)
        return reply

    def refuse(self, reply: ApiReply) -> None:
        error_name, detail = _error(reply)
        if reply.status == 401 or error_name in KEY_ERRORS:
            raise TransportAuthError(
                f"Resend refused the API key from {self.secret_variable} "
                f"({self.reply_text(reply, detail)}); check the key and its sending access"
            )
        if reply.status == 403:  # e.g. an unverified sending domain: no message can go out
            raise TransportConfigError(f"Resend refused to send: {self.reply_text(reply, detail)}")

    def results(
        self, reply: ApiReply, members: Sequence[tuple[int, OutgoingMessage]]
    ) -> list[DeliveryResult]:
        body = reply.json()
        error_name, detail = _error(reply)
        if reply.status == 409 and error_name == "concurrent_idempotent_requests":
            return results_for(len(members), "deferred", self.reply_text(reply, detail), 1.0)
        if not reply.ok:
            return results_for(len(members), "failed", self.reply_text(reply, detail))
        return self._map(reply, body, len(members))

    def _map(self, reply: ApiReply, body: Any, n: int) -> list[DeliveryResult]:
        data = body.get("data") if isinstance(body, dict) else None
        errors = (body.get("errors") or []) if isinstance(body, dict) else []
        failed = {
            e["index"]: str(e.get("message", ""))
            for e in errors
            if isinstance(e, dict) and isinstance(e.get("index"), int)
        }
        if not isinstance(data, list):
            return results_for(n, "deferred", self.reply_text(reply, "malformed reply"))
        ids: list[Any]
        if len(data) == n:
            ids = data
        elif len(data) == n - len(failed):
            it = iter(data)
            ids = [None if i in failed else next(it) for i in range(n)]
        else:
            return results_for(n, "deferred", self.reply_text(reply, "malformed reply"))
        out = []
        for i in range(n):
            if i in failed:
                out.append(DeliveryResult("failed", self.reply_text(reply, failed[i])))
            else:
                item = ids[i] if isinstance(ids[i], dict) else {}
                out.append(DeliveryResult("sent", self.reply_text(reply, "OK"), item.get("id")))
        return out


def _error(reply: ApiReply) -> tuple[Any, Any]:
    """Resend's error `name` and `message` of a reply (None when it has none)."""
    body = reply.json()
    if not isinstance(body, dict):
        return None, None
    return body.get("name"), body.get("message") if "message" in body else None
