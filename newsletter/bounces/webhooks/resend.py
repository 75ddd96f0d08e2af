"""Resend webhooks, signed the Svix way.

Verification (Svix "Verifying payloads manually"): HMAC-SHA256 over `svix-id.svix-timestamp.body`
with the base64 secret after `whsec_` (`RESEND_WEBHOOK_SECRET`), base64 in the `svix-signature`
header as space-separated `v1,<signature>` entries (one per active secret: any may match). A
`svix-timestamp` more than 5 minutes away is refused.

Payload: `{"type", "created_at", "data": {"email_id", "to": [...], "tags", "bounce": {"type":
Permanent|Transient|Undetermined, "subType", "message"}}}`; types `email.bounced`,
`email.complained`, `email.delivered`, `email.delivery_delayed`. Our ledger key comes back in
`tags` (`newsletter_key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from newsletter.bounces.events import EventKind, FeedbackEvent
from newsletter.bounces.webhooks.base import (
    Batch,
    WebhookRefused,
    WebhookRequest,
    address,
    as_dict,
    check_age,
    from_iso,
    ledger_key,
    load_json,
    text,
)
from newsletter.errors import ConfigError

SECRET_VARIABLE = "RESEND_WEBHOOK_SECRET"
_KINDS: dict[str, EventKind] = {
    "email.complained": "complaint",
    "email.delivered": "delivered",
    "email.delivery_delayed": "soft_bounce",
}


class Resend:
    name = "resend"
    proof = "signature"  # what a 401 says is missing or wrong

    def __init__(self, secret: str) -> None:
        try:
            self._key = base64.b64decode(secret.strip().removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{SECRET_VARIABLE} is not whsec_ followed by base64") from None

    def verify(self, request: WebhookRequest, now: float) -> str | None:
        headers = request.headers
        msg_id, timestamp = headers.get("svix-id", ""), headers.get("svix-timestamp", "")
        signatures = headers.get("svix-signature", "")
        if not msg_id or not timestamp or not signatures:
            raise WebhookRefused("svix-id, svix-timestamp or svix-signature missing")
        signed = f"{msg_id}.{timestamp}.".encode() + request.body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        given = [s.partition(",")[2].encode() for s in signatures.split() if s.startswith("v1,")]
        if not any(hmac.compare_digest(expected, g) for g in given):
            raise WebhookRefused("svix signature does not match")
        check_age(timestamp, now)
        return None

    def events(self, request: WebhookRequest) -> Batch:
        payload = as_dict(load_json(request.body), "the event")
        event_type = text(payload.get("type"), 60)
        data = as_dict(payload.get("data") or {}, "data")
        kind: EventKind | None
        if event_type == "email.bounced":
            bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
            permanent = text(bounce.get("type"), 20) == "Permanent"
            kind = "hard_bounce" if permanent else "soft_bounce"
        else:
            kind = _KINDS.get(event_type)
        batch = Batch()
        recipients = data.get("to") if isinstance(data.get("to"), list) else [data.get("to")]
        if kind is None or not data.get("email_id"):
            batch.ignored[event_type or "?"] += 1
            return batch
        for recipient in recipients:
            batch.events.append(_event(kind, event_type, payload, data, address(recipient)))
        return batch


def _event(
    kind: EventKind,
    event_type: str,
    payload: Mapping[str, Any],
    data: Mapping[str, Any],
    recipient: str | None,
) -> FeedbackEvent:
    bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
    return FeedbackEvent(
        kind=kind,
        source="resend",
        # One event of a type per email and recipient (a retried delivery keeps both).
        event_id=f"{event_type}:{text(data['email_id'], 200)}:{recipient}",
        recipient=recipient,
        ledger_key=ledger_key(_tag(data.get("tags"), "newsletter_key")),
        status=text(bounce.get("subType") or bounce.get("type") or event_type, 100),
        reason=text(bounce.get("message")),
        occurred_at=from_iso(payload.get("created_at") or data.get("created_at")),
    )


def _tag(tags: object, name: str) -> object:
    """A tag's value: Resend echoes tags as an object, or as the [{name, value}] list sent."""
    if isinstance(tags, dict):
        return tags.get(name)
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == name:
                return tag.get("value")
    return None


def from_environ(environ: Mapping[str, str]) -> Resend | None:
    secret = environ.get(SECRET_VARIABLE, "")
    return Resend(secret) if secret else None
