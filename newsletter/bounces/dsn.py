"""RFC 3464 delivery status notifications -> hard and soft bounces.

A DSN is `multipart/report; report-type=delivery-status`: a human text, a
`message/delivery-status` part (per-message fields, then one block per recipient with
Final-Recipient, Original-Recipient, Action, Status, Diagnostic-Code), and the original message
or its headers. The kind is decided by the standard fields only (no keywords): Action `failed`
with an enhanced Status is classified by `newsletter.enhancedstatus` (the one rule for every
source: 5.1.x address and 5.2.1 disabled are hard, 5.2.2 mailbox full and 4.x.x soft, 5.7.x
policy and the other subjects about the sender, message or system are `blocked`, which does not
mark the reader), `failed` with only a reply code or none is hard; `delayed` is soft;
`delivered` is a delivery; `relayed` and `expanded` say nothing about the recipient.
"""

from __future__ import annotations

import re
from email.message import Message

from newsletter.bounces.events import EventKind, FeedbackEvent
from newsletter.bounces.report import (
    ENVELOPE_RECIPIENT_HEADERS,
    MailboxAddresses,
    event_id,
    message_id,
    normalise_address,
    one_line,
    original_headers,
    report_date,
    verp_token,
)
from newsletter.enhancedstatus import ENHANCED_STATUS, classify_status

_STATUS = ENHANCED_STATUS
_REPLY_CODE = re.compile(r"\b([245])\d\d\b")


def is_dsn(msg: Message) -> bool:
    return (
        msg.is_multipart()
        and msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


def bounce_kind(action: str, status: str) -> EventKind | None:
    """The event kind of one recipient block: Action (RFC 3464 2.3.3) and Status (RFC 3463
    `class.subject.detail`, or a bare SMTP reply code when the server gave no Status)."""
    action = action.strip().lower()
    if action == "delivered":
        return "delivered"
    if action == "delayed":
        return "soft_bounce"
    if action != "failed":
        return None  # relayed, expanded: nothing about this recipient yet
    classified = classify_status(status)
    if classified is not None:
        return classified
    if status.strip()[:1] == "4":  # a bare 4xx reply code
        return "soft_bounce"
    return "hard_bounce"  # a 5xx reply code, or `failed` without a Status: permanent by definition


def status_of(block: Message) -> str:
    """`Status`, else the enhanced code or reply code in Diagnostic-Code, else ''."""
    status = one_line(block.get("status"))
    if (match := _STATUS.search(status)) is not None:
        return match.group(0)
    diagnostic = one_line(block.get("diagnostic-code"))
    if (match := _STATUS.search(diagnostic)) is not None:
        return match.group(0)
    if (match := _REPLY_CODE.search(diagnostic)) is not None:
        return match.group(0)
    return status


def delivery_status_blocks(msg: Message) -> tuple[Message | None, list[Message]]:
    """(per-message fields, per-recipient blocks) of the message/delivery-status part."""
    for part in msg.get_payload():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            blocks = part.get_payload()
            if isinstance(blocks, list) and blocks:
                return blocks[0], blocks[1:]
            return None, []
    return None, []


def dsn_events(
    msg: Message, raw: bytes, addresses: MailboxAddresses
) -> tuple[list[FeedbackEvent], str]:
    """The events of a DSN, and why there are none when the list is empty.

    Mapping data: the VERP token from the bounce's envelope recipient (Delivered-To,
    X-Original-To, To) or the quoted original's Return-Path, the original's Message-ID, and the
    recipient (Original-Recipient, else Final-Recipient)."""
    per_message, blocks = delivery_status_blocks(msg)
    original = original_headers(msg)
    token = verp_token(msg, ENVELOPE_RECIPIENT_HEADERS, addresses.bounce_address) or verp_token(
        original, ("return-path",), addresses.bounce_address
    )
    original_id = message_id(original)
    arrival = per_message.get("arrival-date") if per_message is not None else None
    events: list[FeedbackEvent] = []
    skipped: list[str] = []
    for block in blocks:
        action = one_line(block.get("action")).lower()
        status = status_of(block)
        kind = bounce_kind(action, status)
        recipient = normalise_address(block.get("original-recipient")) or normalise_address(
            block.get("final-recipient")
        )
        if kind is None:
            skipped.append(f"Action: {action or 'none'}")
            continue
        events.append(
            FeedbackEvent(
                kind=kind,
                source="dsn",
                event_id=event_id(msg, raw, recipient),
                recipient=recipient,
                verp_token=token,
                message_id=original_id,
                status=status,
                reason=one_line(block.get("diagnostic-code")) or f"Action: {action}",
                occurred_at=report_date(block.get("last-attempt-date"), arrival, msg.get("date")),
            )
        )
    why = "" if events else f"a DSN with no bounce ({', '.join(skipped) or 'no recipient'})"
    return events, why
