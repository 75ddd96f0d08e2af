"""Amazon SES events through an SNS topic (HTTPS subscription to /webhooks/ses).

Verification: the SNS message signature (see `sns`), a `TopicArn` among `SES_SNS_TOPIC_ARN`
(comma-separated; required, because anyone can sign SNS messages from a topic of their own and
subscribe our URL to it) and a `Timestamp` at most an hour old (SNS keeps the publication time
across its retries). A `SubscriptionConfirmation` is confirmed by fetching its `SubscribeURL`
(same host rule) only after all of that passed.

Payload: a `Notification` whose `Message` is the SES event JSON, from identity notifications
(`notificationType`) or configuration-set event publishing (`eventType`): Bounce (`bounceType`
Permanent is hard, Transient and Undetermined soft; one event per `bouncedRecipients` entry with
its `status`/`diagnosticCode`), Complaint (`complainedRecipients`), Delivery
(`delivery.recipients`). Our ledger key comes back in `mail.tags.newsletter_key`, our
Message-ID in `mail.headers` / `mail.commonHeaders.messageId`.
"""

from __future__ import annotations

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
    message_id,
    text,
)
from newsletter.bounces.webhooks.sns import SnsHosts, SnsVerifier

SECRET_VARIABLE = "SES_SNS_TOPIC_ARN"
SNS_MAX_AGE = 3600  # seconds


class Ses:
    name = "ses"
    proof = "signature"  # what a 401 says is missing or wrong

    def __init__(self, topics: frozenset[str], hosts: SnsHosts) -> None:
        self.topics = topics
        self.hosts = hosts
        self.verifier = SnsVerifier(hosts)

    def verify(self, request: WebhookRequest, now: float) -> str | None:
        try:
            message = as_dict(load_json(request.body), "the SNS message")
        except Exception:
            raise WebhookRefused("body is not an SNS message") from None
        if text(message.get("TopicArn"), 300) not in self.topics:
            raise WebhookRefused(f"TopicArn {text(message.get('TopicArn'), 300)!r} not ours")
        self.verifier.verify(message)
        when = from_iso(message.get("Timestamp"))
        check_age(when.timestamp() if when else "", now, SNS_MAX_AGE)
        return None

    def events(self, request: WebhookRequest) -> Batch:
        message = as_dict(load_json(request.body), "the SNS message")
        kind = text(message.get("Type"), 40)
        batch = Batch()
        if kind == "SubscriptionConfirmation":
            self.hosts.get(text(message.get("SubscribeURL"), 2000))
            batch.done = f"SNS subscription to {text(message.get('TopicArn'), 300)} confirmed"
            return batch
        if kind != "Notification":
            batch.ignored[kind] += 1
            return batch
        event = as_dict(load_json(text(message.get("Message"), 10**7).encode()), "Message")
        event_type = text(event.get("eventType") or event.get("notificationType"), 40)
        mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
        for recipient, kind_, status, reason, feedback in _recipients(event_type, event):
            batch.events.append(
                FeedbackEvent(
                    kind=kind_,
                    source="ses",
                    event_id=f"{event_type}:{feedback or message.get('MessageId')}:{recipient}",
                    recipient=recipient,
                    ledger_key=ledger_key(_tags(mail).get("newsletter_key")),
                    message_id=_message_id(mail),
                    status=status,
                    reason=reason,
                    occurred_at=from_iso(message.get("Timestamp")),
                )
            )
        if not batch.events:
            batch.ignored[event_type or "?"] += 1
        return batch


Row = tuple[str | None, EventKind, str, str, str]


def _recipients(event_type: str, event: Mapping[str, Any]) -> list[Row]:
    """(recipient, kind, status, reason, feedback id) per recipient the event names."""
    part = event.get(event_type[:1].lower() + event_type[1:])
    if not isinstance(part, dict):
        return []
    feedback = text(part.get("feedbackId"), 200)
    if event_type == "Bounce":
        bounce_type = text(part.get("bounceType"), 40)
        kind: EventKind = "hard_bounce" if bounce_type == "Permanent" else "soft_bounce"
        return [
            (
                address(r.get("emailAddress")),
                kind,
                text(r.get("status") or f"{bounce_type}/{part.get('bounceSubType', '')}", 100),
                text(r.get("diagnosticCode") or part.get("bounceSubType")),
                feedback,
            )
            for r in _list(part.get("bouncedRecipients"))
        ]
    if event_type == "Complaint":
        why = text(part.get("complaintFeedbackType") or "complaint", 100)
        return [
            (address(r.get("emailAddress")), "complaint", why, "", feedback)
            for r in _list(part.get("complainedRecipients"))
        ]
    if event_type == "Delivery":
        reply = text(part.get("smtpResponse"))
        when = text(part.get("timestamp"), 40)
        return [
            (address(r), "delivered", reply[:3], reply, when)
            for r in part.get("recipients", [])
            if isinstance(r, str)
        ]
    return []


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _tags(mail: Mapping[str, Any]) -> dict[str, Any]:
    tags = mail.get("tags")
    return tags if isinstance(tags, dict) else {}


def _message_id(mail: Mapping[str, Any]) -> str | None:
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and common.get("messageId"):
        return message_id(common["messageId"])
    for header in _list(mail.get("headers")):
        if text(header.get("name"), 40).lower() == "message-id":
            return message_id(header.get("value"))
    return None


def from_environ(environ: Mapping[str, str]) -> Ses | None:
    topics = frozenset(t.strip() for t in environ.get(SECRET_VARIABLE, "").split(",") if t.strip())
    return Ses(topics, SnsHosts.from_environ(environ)) if topics else None
