"""Each provider's documented event classes -> our kinds, through the provider modules' public
contract (`events(WebhookRequest) -> Batch`, called only after `verify`): the cases the serve
tests do not post (SendGrid dropped, Postmark's TypeCodes, Mailgun severities, SES bounce types
and identity notifications, Resend bounce types), each with what ties it to our ledger row."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.bounces.webhooks.base import WebhookRequest
from newsletter.bounces.webhooks.mailgun import Mailgun
from newsletter.bounces.webhooks.postmark import Postmark
from newsletter.bounces.webhooks.resend import Resend
from newsletter.bounces.webhooks.sendgrid import SendGrid
from newsletter.bounces.webhooks.ses import Ses
from newsletter.bounces.webhooks.sns import SnsHosts


def sendgrid_events(items: list[dict[str, Any]]) -> Any:
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    provider = SendGrid(base64.b64encode(der).decode())
    return provider.events(WebhookRequest({}, json.dumps(items).encode()))


def sg(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "event": event,
        "email": "Reader@Example.COM",
        "sg_event_id": "e1",
        "timestamp": 1764460000,
        "newsletter_key": "42",
        "newsletter_message_id": "abc@example.org",
        **fields,
    }


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        (sg("bounce", type="bounce", status="5.1.1"), "hard_bounce"),
        (sg("bounce", type="blocked", status="4.7.1"), "soft_bounce"),
        (sg("deferred", response="452 4.2.2 full"), "soft_bounce"),
        (sg("dropped", reason="Bounced Address"), "hard_bounce"),
        (sg("dropped", reason="Spam Reporting Address"), "complaint"),
        (sg("dropped", reason="Unsubscribed Address"), "unsubscribe"),
        (sg("dropped", reason="Exceeded Maximum Message Size"), None),
        (sg("spamreport"), "complaint"),
        (sg("unsubscribe"), "unsubscribe"),
        (sg("group_unsubscribe", asm_group_id=3), "unsubscribe"),
        (sg("delivered"), "delivered"),
        (sg("processed"), None),
        (sg("click", url="https://example.org"), None),
    ],
)
def test_sendgrid_classes(item, kind):
    batch = sendgrid_events([item])
    if kind is None:
        assert batch.events == [] and sum(batch.ignored.values()) == 1
        return
    [event] = batch.events
    assert (event.kind, event.source, event.event_id) == (kind, "sendgrid", "e1")
    assert (event.ledger_key, event.message_id) == (42, "abc@example.org")
    assert event.recipient == "Reader@example.com"  # the domain lower-cased, not the local part


def mg(event: str, **fields: Any) -> bytes:
    data = {
        "event": event,
        "id": "mg1",
        "timestamp": 1764460000.1,
        "recipient": "r@example.com",
        "message": {"headers": {"message-id": "abc@example.org"}},
        "user-variables": {"newsletter_key": "7"},
        **fields,
    }
    return json.dumps({"signature": {}, "event-data": data}).encode()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (mg("failed", severity="permanent", **{"delivery-status": {"code": 550}}), "hard_bounce"),
        (mg("failed", severity="temporary", **{"delivery-status": {"code": 421}}), "soft_bounce"),
        (mg("complained"), "complaint"),
        (mg("unsubscribed"), "unsubscribe"),
        (mg("delivered"), "delivered"),
        (mg("opened"), None),
        (mg("accepted"), None),
    ],
)
def test_mailgun_classes(body, kind):
    batch = Mailgun("key").events(WebhookRequest({}, body))
    assert [e.kind for e in batch.events] == ([kind] if kind else [])
    for event in batch.events:
        assert (event.ledger_key, event.message_id, event.event_id) == (7, "abc@example.org", "mg1")


def pm(record_type: str, **fields: Any) -> bytes:
    return json.dumps(
        {
            "RecordType": record_type,
            "ID": 99,
            "Email": "r@example.com",
            "MessageID": "m-1",
            "Metadata": {"newsletter_key": "5"},
            **fields,
        }
    ).encode()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (pm("Bounce", Type="HardBounce", TypeCode=1), "hard_bounce"),
        (pm("Bounce", Type="BadEmailAddress", TypeCode=100000), "hard_bounce"),
        (pm("Bounce", Type="Transient", TypeCode=2), "soft_bounce"),
        (pm("Bounce", Type="DnsError", TypeCode=256), "soft_bounce"),
        (pm("Bounce", Type="SoftBounce", TypeCode=4096), "soft_bounce"),
        (pm("Bounce", Type="Blocked", TypeCode=100006), "soft_bounce"),
        (pm("Bounce", Type="Unsubscribe", TypeCode=16), "unsubscribe"),
        (pm("Bounce", Type="AutoResponder", TypeCode=64), None),
        (pm("Bounce", Type="ChallengeVerification", TypeCode=16384), None),
        (pm("SpamComplaint", Type="SpamComplaint", TypeCode=100001), "complaint"),
        (
            pm("SubscriptionChange", SuppressSending=True, SuppressionReason="ManualSuppression"),
            "unsubscribe",
        ),
        (pm("SpamComplaint", Type="SpamNotification", TypeCode=512), "complaint"),
        (pm("SpamComplaint"), "complaint"),
        (pm("Bounce", Type="SpamNotification", TypeCode=512), "complaint"),
        # On broadcast streams the suppression may be the only record; a repeat changes nothing.
        (
            pm("SubscriptionChange", SuppressSending=True, SuppressionReason="HardBounce"),
            "hard_bounce",
        ),
        (
            pm("SubscriptionChange", SuppressSending=True, SuppressionReason="SpamComplaint"),
            "complaint",
        ),
        (pm("SubscriptionChange", SuppressSending=False, SuppressionReason="SpamComplaint"), None),
        (pm("SubscriptionChange", SuppressSending=False, SuppressionReason=None), None),
        (pm("Delivery", Recipient="r@example.com"), "delivered"),
        (pm("Open"), None),
    ],
)
def test_postmark_classes(body, kind):
    batch = Postmark("u", "p").events(WebhookRequest({}, body))
    assert [e.kind for e in batch.events] == ([kind] if kind else [])
    for event in batch.events:
        assert (event.ledger_key, event.recipient) == (5, "r@example.com")


def sns(ses_event: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "sns-1",
            "TopicArn": "t",
            "Timestamp": "2026-11-30T00:00:00.000Z",
            "Message": json.dumps(ses_event),
        }
    ).encode()


MAIL = {
    "messageId": "ses-id",
    "tags": {"newsletter_key": ["11"]},
    "commonHeaders": {"messageId": "<abc@example.org>"},
}
MAIL_HEADERS_ONLY = {
    "messageId": "ses-id",
    "headers": [{"name": "Message-ID", "value": "<abc@example.org>"}],
}


def bounce(bounce_type: str, key: str = "eventType", mail: Any = MAIL) -> dict[str, Any]:
    return {
        key: "Bounce",
        "mail": mail,
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "feedbackId": "fb",
            "bouncedRecipients": [
                {"emailAddress": "a@example.com", "status": "5.1.1"},
                {"emailAddress": "b@example.com"},
            ],
        },
    }


@pytest.mark.parametrize(
    ("ses_event", "kinds", "key"),
    [
        (bounce("Permanent"), ["hard_bounce", "hard_bounce"], 11),
        (bounce("Transient"), ["soft_bounce", "soft_bounce"], 11),
        (bounce("Undetermined"), ["soft_bounce", "soft_bounce"], 11),
        # Identity notifications (no configuration set): no tags, the Message-ID ties it.
        (bounce("Permanent", "notificationType", MAIL_HEADERS_ONLY), ["hard_bounce"] * 2, None),
        (
            {
                "notificationType": "Complaint",
                "mail": MAIL,
                "complaint": {
                    "feedbackId": "fc",
                    "complainedRecipients": [{"emailAddress": "a@example.com"}],
                },
            },
            ["complaint"],
            11,
        ),
        (
            {
                "eventType": "Delivery",
                "mail": MAIL,
                "delivery": {
                    "timestamp": "2026-11-30T00:00:01Z",
                    "recipients": ["a@example.com"],
                    "smtpResponse": "250 ok",
                },
            },
            ["delivered"],
            11,
        ),
        ({"eventType": "Open", "mail": MAIL, "open": {}}, [], None),
        ({"eventType": "DeliveryDelay", "mail": MAIL, "deliveryDelay": {}}, [], None),
    ],
)
def test_ses_classes(ses_event, kinds, key):
    provider = Ses(frozenset({"t"}), SnsHosts())
    batch = provider.events(WebhookRequest({}, sns(ses_event)))
    assert [e.kind for e in batch.events] == kinds
    assert len({e.event_id for e in batch.events}) == len(kinds)  # one id per recipient
    for event in batch.events:
        assert (event.ledger_key, event.message_id) == (key, "abc@example.org")


@pytest.mark.parametrize(
    ("event_type", "bounce_type", "kind"),
    [
        ("email.bounced", "Permanent", "hard_bounce"),
        ("email.bounced", "Transient", "soft_bounce"),
        ("email.bounced", "Undetermined", "soft_bounce"),
        ("email.complained", None, "complaint"),
        ("email.delivered", None, "delivered"),
        ("email.delivery_delayed", None, "soft_bounce"),
        ("email.sent", None, None),
        ("email.clicked", None, None),
    ],
)
@pytest.mark.parametrize(
    "tags", [{"newsletter_key": "3"}, [{"name": "newsletter_key", "value": "3"}]]
)
def test_resend_classes(event_type, bounce_type, kind, tags):
    data: dict[str, Any] = {"email_id": "re-1", "to": ["r@example.com"], "tags": tags}
    if bounce_type:
        data["bounce"] = {"type": bounce_type, "subType": "General", "message": "why"}
    body = json.dumps({"type": event_type, "created_at": "2026-11-30T00:00:00Z", "data": data})
    batch = Resend("whsec_" + "QUJD" * 8).events(WebhookRequest({}, body.encode()))
    assert [e.kind for e in batch.events] == ([kind] if kind else [])
    for event in batch.events:
        assert (event.ledger_key, event.recipient) == (3, "r@example.com")
