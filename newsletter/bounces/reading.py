"""One message of a bounce mailbox (bytes) -> its FeedbackEvents, or why it is ignored.

The order: an RFC 3464 DSN, an RFC 5965 ARF report, a mail to the unsubscribe address, a
non-standard bounce flufl.bounce recognises, an auto-reply (RFC 3834 and vacation headers);
anything else is ignored as "not a bounce, complaint or unsubscribe". Non-standard bounces come
before auto-replies because mail servers mark their bounces `Auto-Submitted: auto-replied` too
(Exim, Postfix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes

from newsletter.bounces.arf import arf_events, is_arf
from newsletter.bounces.autoreply import autoreply_reason
from newsletter.bounces.dsn import dsn_events, is_dsn
from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.mailto import is_unsubscribe_mail, unsubscribe_events
from newsletter.bounces.nonstandard import nonstandard_events
from newsletter.bounces.report import MailboxAddresses, one_line


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message says: `events` (empty when ignored), `ignored` (why, when ignored) and
    `auto_reply` (True for auto-replies and out-of-office messages, counted apart)."""

    events: list[FeedbackEvent] = field(default_factory=list)
    ignored: str = ""
    auto_reply: bool = False


def read_message(raw: bytes, addresses: MailboxAddresses) -> Reading:
    """Parse one message (RFC 5322 bytes, as a mailbox stores it) into its events.

    Never raises on malformed mail: what cannot be read is ignored with the reason."""
    try:
        msg = message_from_bytes(raw)
    except Exception as exc:  # the parser is lenient; a failure here is a broken file
        return Reading(ignored=f"unreadable message: {exc}")
    if is_dsn(msg):
        events, why = dsn_events(msg, raw, addresses)
        return Reading(events=events, ignored=why)
    if is_arf(msg):
        events, why = arf_events(msg, raw, addresses)
        return Reading(events=events, ignored=why)
    if is_unsubscribe_mail(msg, addresses):
        events, why = unsubscribe_events(msg, raw, addresses)
        return Reading(events=events, ignored=why)
    if events := nonstandard_events(msg, raw, addresses):
        return Reading(events=events)
    if (reason := autoreply_reason(msg)) is not None:
        return Reading(ignored=f"auto-reply ({reason})", auto_reply=True)
    subject = one_line(msg.get("subject"), 80)
    return Reading(ignored=f"not a bounce, complaint or unsubscribe (Subject: {subject!r})")
