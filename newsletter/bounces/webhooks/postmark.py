"""Postmark webhooks (one record per request, per-type URLs or one URL for all).

Verification: Postmark signs nothing; the documented way is HTTP basic-auth credentials in the
webhook URL (`https://user:password@host/webhooks/postmark`), compared in constant time with
`POSTMARK_WEBHOOK_USER` / `POSTMARK_WEBHOOK_PASSWORD`. (Serve it over HTTPS only.)

Payload by `RecordType`: `Bounce` (`Type`/`TypeCode`: HardBounce 1 and BadEmailAddress 100000
are permanent; Transient 2, DnsError 256, SoftBounce 4096 and Blocked 100006 temporary;
Unsubscribe 16 an unsubscribe; SpamNotification 512 and SpamComplaint 100001 complaints; the
rest, auto-replies and the like, ignored), `SpamComplaint` (a complaint whatever its TypeCode),
`SubscriptionChange` (with `SuppressSending` true, by `SuppressionReason`: SpamComplaint a
complaint, HardBounce a hard bounce, ManualSuppression an unsubscribe; on broadcast streams this
may be the only record of a complaint, and when it repeats a record already received the policy
changes nothing twice), `Delivery`. Our ledger key comes back in `Metadata.newsletter_key`.
"""

from __future__ import annotations

import base64
import binascii
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
    from_iso,
    ledger_key,
    load_json,
    text,
)

USER_VARIABLE = "POSTMARK_WEBHOOK_USER"
SECRET_VARIABLE = "POSTMARK_WEBHOOK_PASSWORD"
_BOUNCE_CODES: dict[int, EventKind] = {
    1: "hard_bounce",  # HardBounce
    100000: "hard_bounce",  # BadEmailAddress
    2: "soft_bounce",  # Transient
    256: "soft_bounce",  # DnsError
    4096: "soft_bounce",  # SoftBounce
    100006: "soft_bounce",  # Blocked
    16: "unsubscribe",  # Unsubscribe
    512: "complaint",  # SpamNotification
    100001: "complaint",  # SpamComplaint
}
_SUPPRESSION_REASONS: dict[str, EventKind] = {
    "SpamComplaint": "complaint",
    "HardBounce": "hard_bounce",
    "ManualSuppression": "unsubscribe",
}


class Postmark:
    name = "postmark"
    proof = "credentials"  # what a 401 says is missing or wrong

    def __init__(self, user: str, password: str) -> None:
        self._expected = f"{user}:{password}".encode()

    def verify(self, request: WebhookRequest, now: float) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value:
            raise WebhookRefused("basic-auth credentials missing")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRefused("basic-auth credentials are not base64") from None
        if not hmac.compare_digest(given, self._expected):
            raise WebhookRefused("basic-auth credentials do not match")
        return None

    def events(self, request: WebhookRequest) -> Batch:
        record = as_dict(load_json(request.body), "the record")
        record_type = text(record.get("RecordType"), 40)
        kind = _kind(record_type, record)
        batch = Batch()
        if kind is None:
            batch.ignored[record_type or "?"] += 1
        else:
            batch.events.append(_event(kind, record_type, record))
        return batch


def _kind(record_type: str, record: Mapping[str, Any]) -> EventKind | None:
    if record_type == "SpamComplaint":
        return "complaint"
    if record_type == "Bounce":
        code = record.get("TypeCode")
        return _BOUNCE_CODES.get(code) if isinstance(code, int) else None
    if record_type == "SubscriptionChange":
        if record.get("SuppressSending") is not True:
            return None
        return _SUPPRESSION_REASONS.get(text(record.get("SuppressionReason"), 40))
    return "delivered" if record_type == "Delivery" else None


def _event(kind: EventKind, record_type: str, record: Mapping[str, Any]) -> FeedbackEvent:
    metadata = record.get("Metadata") if isinstance(record.get("Metadata"), dict) else {}
    recipient = address(record.get("Email") or record.get("Recipient"))
    when = record.get("BouncedAt") or record.get("DeliveredAt") or record.get("ChangedAt")
    # Bounce and SpamComplaint records have their own ID; Delivery and SubscriptionChange are
    # one per (message, recipient, time).
    own = record.get("ID")
    key = own if own is not None else f"{record.get('MessageID')}:{recipient}:{when}"
    return FeedbackEvent(
        kind=kind,
        source="postmark",
        event_id=f"{record_type}:{text(key, 300)}",
        recipient=recipient,
        ledger_key=ledger_key(metadata.get("newsletter_key")),
        status=text(record.get("Type") or record.get("SuppressionReason") or record_type, 100),
        reason=text(record.get("Description") or record.get("Details")),
        occurred_at=from_iso(when),
    )


def from_environ(environ: Mapping[str, str]) -> Postmark | None:
    user, password = environ.get(USER_VARIABLE, ""), environ.get(SECRET_VARIABLE, "")
    return Postmark(user, password) if user and password else None
