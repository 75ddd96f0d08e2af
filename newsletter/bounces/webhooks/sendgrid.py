"""SendGrid's signed Event Webhook.

Verification (SendGrid "Getting started with the Event Webhook security features"): the header
`X-Twilio-Email-Event-Webhook-Signature` is a base64 DER ECDSA signature (P-256, SHA-256) over
the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body; the verification
key is the base64 DER SubjectPublicKeyInfo SendGrid shows, in `SENDGRID_WEBHOOK_PUBLIC_KEY`.

Payload: a JSON array of events, each with `event`, `email`, `timestamp`, `sg_event_id` and our
`custom_args` flattened in (`newsletter_key`, `newsletter_message_id`). `bounce` with `type`
bounce is permanent, `blocked` and `deferred` are temporary; `dropped` for an address SendGrid
already suppresses says why (bounced, spam report, unsubscribed).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from newsletter.bounces.events import EventKind, FeedbackEvent
from newsletter.bounces.webhooks.base import (
    Batch,
    WebhookPayloadError,
    WebhookRefused,
    WebhookRequest,
    address,
    check_age,
    from_unix,
    ledger_key,
    load_json,
    message_id,
    text,
)
from newsletter.errors import ConfigError

SECRET_VARIABLE = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
_KINDS: dict[str, EventKind] = {
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
    "delivered": "delivered",
    "deferred": "soft_bounce",
}
# `dropped` reasons of an address SendGrid suppresses because of what it learnt earlier.
_DROPPED: dict[str, EventKind] = {
    "bounced address": "hard_bounce",
    "invalid": "hard_bounce",
    "spam reporting address": "complaint",
    "unsubscribed address": "unsubscribe",
}


class SendGrid:
    name = "sendgrid"
    proof = "signature"  # what a 401 says is missing or wrong

    def __init__(self, public_key: str) -> None:
        try:
            key = load_der_public_key(base64.b64decode(public_key.strip(), validate=True))
        except (ValueError, binascii.Error) as exc:
            raise ConfigError(f"{SECRET_VARIABLE} is not a base64 DER public key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ConfigError(f"{SECRET_VARIABLE} is not an ECDSA P-256 public key")
        self._key = key

    def verify(self, request: WebhookRequest, now: float) -> str | None:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            raise WebhookRefused("signature or timestamp header missing")
        try:
            der = base64.b64decode(signature, validate=True)
            self._key.verify(der, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise WebhookRefused("ECDSA signature does not verify") from None
        check_age(timestamp, now)
        return None

    def events(self, request: WebhookRequest) -> Batch:
        items = load_json(request.body)
        if not isinstance(items, list):
            raise WebhookPayloadError("body is not a JSON array of events")
        batch = Batch()
        for item in items:
            if not isinstance(item, dict):
                raise WebhookPayloadError("an event is not a JSON object")
            kind = _kind(item)
            if kind is None or not item.get("sg_event_id"):
                batch.ignored[text(item.get("event"), 40) or "?"] += 1
                continue
            batch.events.append(_event(kind, item))
        return batch


def _kind(item: Mapping[str, Any]) -> EventKind | None:
    event = text(item.get("event"), 40)
    if event == "bounce":
        # SendGrid's `type`: bounce (the server said the address is gone) or blocked (refused
        # for now: reputation, content, a full mailbox).
        return "soft_bounce" if text(item.get("type"), 20) == "blocked" else "hard_bounce"
    if event == "dropped":
        return _DROPPED.get(text(item.get("reason"), 80).lower())
    return _KINDS.get(event)


def _event(kind: EventKind, item: Mapping[str, Any]) -> FeedbackEvent:
    return FeedbackEvent(
        kind=kind,
        source="sendgrid",
        event_id=text(item["sg_event_id"], 200),
        recipient=address(item.get("email")),
        ledger_key=ledger_key(item.get("newsletter_key")),
        message_id=message_id(item.get("newsletter_message_id")),
        status=text(item.get("status") or item.get("type") or item.get("event"), 100),
        reason=text(item.get("reason") or item.get("response")),
        occurred_at=from_unix(item.get("timestamp")),
    )


def from_environ(environ: Mapping[str, str]) -> SendGrid | None:
    key = environ.get(SECRET_VARIABLE, "")
    return SendGrid(key) if key else None
