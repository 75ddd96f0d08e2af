"""RFC 5965 Abuse Reporting Format (ARF) feedback reports -> complaints.

An ARF report is `multipart/report; report-type=feedback-report`: a human text, a
`message/feedback-report` part (Feedback-Type, Original-Mail-From, Original-Rcpt-To,
Arrival-Date, ...), then the original message or its headers, often with the recipient's
address redacted (so the VERP token in Original-Mail-From / Return-Path and the Message-ID
matter more than the To). Feedback-Type `abuse` (the reader pressed "Report spam") and `fraud`
are complaints; `not-spam`, `virus`, `other` and RFC 6591 `auth-failure` are reports about
something else and are ignored with the type as reason.
"""

from __future__ import annotations

from email.message import Message

from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.report import (
    MailboxAddresses,
    event_id,
    header_addresses,
    message_id,
    one_line,
    original_headers,
    report_date,
    verp_token,
)

COMPLAINT_TYPES = frozenset({"abuse", "fraud"})


def is_arf(msg: Message) -> bool:
    return (
        msg.is_multipart()
        and msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "feedback-report"
    )


def feedback_fields(msg: Message) -> Message | None:
    """The fields of the message/feedback-report part (parsed as one header block)."""
    for part in msg.get_payload():
        if part.get_content_type() == "message/feedback-report":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                return inner[0]
            if isinstance(inner, str):
                from email.parser import HeaderParser

                return HeaderParser().parsestr(inner.lstrip("\r\n"))
    return None


def arf_events(
    msg: Message, raw: bytes, addresses: MailboxAddresses
) -> tuple[list[FeedbackEvent], str]:
    """The complaint events of an ARF report (one per Original-Rcpt-To, or one for the report),
    and why there are none when the list is empty."""
    fields = feedback_fields(msg)
    if fields is None:
        return [], "an ARF report without its message/feedback-report part"
    feedback_type = one_line(fields.get("feedback-type")).lower()
    if feedback_type not in COMPLAINT_TYPES:
        return [], f"an ARF report of Feedback-Type {feedback_type or 'none'}, not a complaint"
    original = original_headers(msg)
    token = verp_token(fields, ("original-mail-from",), addresses.bounce_address) or verp_token(
        original, ("return-path",), addresses.bounce_address
    )
    recipients: list[str | None] = list(  # one event per reader
        dict.fromkeys(header_addresses(fields, ("original-rcpt-to",)))
    )
    if not recipients and original is not None:
        # Microsoft JMRP keeps the recipient in this header of the original while redacting its
        # To; a redacted To (Yahoo: "redacted") is never read as an address.
        recipients = list(header_addresses(original, ("x-hmxmroriginalrecipient",))[:1])
    if not recipients:
        recipients = [None]
    when = report_date(fields.get("arrival-date"), fields.get("received-date"), msg.get("date"))
    reason = f"Feedback-Type: {feedback_type}"
    if agent := one_line(fields.get("user-agent")):
        reason += f" ({agent})"
    events = [
        FeedbackEvent(
            kind="complaint",
            source="arf",
            event_id=event_id(msg, raw, recipient),
            recipient=recipient,
            verp_token=token,
            message_id=message_id(original),
            status=feedback_type,
            reason=reason,
            occurred_at=when,
        )
        for recipient in recipients
    ]
    return events, ""
