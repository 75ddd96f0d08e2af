"""Mailgun webhooks (JSON, one event per request).

Verification (Mailgun "Securing webhooks"): `signature.signature` is the hex HMAC-SHA256 of
`signature.timestamp` + `signature.token` with the webhook signing key
(`MAILGUN_WEBHOOK_SIGNING_KEY`). A timestamp more than 5 minutes away is refused, and so is a
token seen before: `verify` returns the token and `receive` remembers it in the database (every
`serve` process sees it).

Payload: `event-data` with `event` (`failed` with `severity` permanent|temporary, `complained`,
`unsubscribed`, `delivered`), `id`, `timestamp`, `recipient`, `delivery-status`, the message's
headers (`message-id`) and our `user-variables` (`newsletter_key`, sent as `v:newsletter_key`).
"""

from __future__ import annotations

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
    from_unix,
    ledger_key,
    load_json,
    message_id,
    text,
)

SECRET_VARIABLE = "MAILGUN_WEBHOOK_SIGNING_KEY"
_KINDS: dict[str, EventKind] = {
    "complained": "complaint",
    "unsubscribed": "unsubscribe",
    "delivered": "delivered",
}


class Mailgun:
    name = "mailgun"
    proof = "signature"  # what a 401 says is missing or wrong

    def __init__(self, signing_key: str) -> None:
        self._key = signing_key.encode()

    def verify(self, request: WebhookRequest, now: float) -> str | None:
        try:
            signed = as_dict(load_json(request.body).get("signature"), "signature")
        except Exception:  # not JSON, not an object, no signature: not from Mailgun
            raise WebhookRefused("signature object missing") from None
        timestamp, token = text(signed.get("timestamp"), 20), text(signed.get("token"), 200)
        given = text(signed.get("signature"), 200)
        if not timestamp or not token or not given:
            raise WebhookRefused("signature timestamp, token or signature missing")
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given.lower()):
            raise WebhookRefused("HMAC-SHA256 signature does not match")
        check_age(timestamp, now)
        return token

    def events(self, request: WebhookRequest) -> Batch:
        data = as_dict(load_json(request.body).get("event-data"), "event-data")
        event = text(data.get("event"), 40)
        kind: EventKind | None
        if event == "failed":
            # Mailgun's severity: permanent (it gave up, and suppresses the address) or
            # temporary (it retries).
            permanent = text(data.get("severity"), 20) == "permanent"
            kind = "hard_bounce" if permanent else "soft_bounce"
        else:
            kind = _KINDS.get(event)
        batch = Batch()
        if kind is None or not data.get("id"):
            batch.ignored[event or "?"] += 1
            return batch
        batch.events.append(_event(kind, data))
        return batch


def _event(kind: EventKind, data: Mapping[str, Any]) -> FeedbackEvent:
    status = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    variables = data.get("user-variables")
    variables = variables if isinstance(variables, dict) else {}
    code = status.get("enhanced-code") or status.get("code") or data.get("severity") or ""
    return FeedbackEvent(
        kind=kind,
        source="mailgun",
        event_id=text(data["id"], 200),
        recipient=address(data.get("recipient")),
        ledger_key=ledger_key(variables.get("newsletter_key")),
        message_id=message_id(headers.get("message-id")),
        status=text(code, 100),
        reason=text(status.get("description") or status.get("message") or data.get("reason")),
        occurred_at=from_unix(data.get("timestamp")),
    )


def from_environ(environ: Mapping[str, str]) -> Mailgun | None:
    key = environ.get(SECRET_VARIABLE, "")
    return Mailgun(key) if key else None
