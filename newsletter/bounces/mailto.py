"""Unsubscribe by mail: a message to the `unsubscribe_mailto:` address (RFC 2369
List-Unsubscribe `<mailto:ADDRESS?subject=unsubscribe%20TOKEN>`) whose subject carries the
subscriber's unsubscribe token (tokens.py). The token proves who; the sender's address does not
(anyone may forward the mail), and a token that fails verification unsubscribes nobody.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.message import Message
from urllib.parse import unquote

from newsletter import tokens
from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.report import (
    ENVELOPE_RECIPIENT_HEADERS,
    MailboxAddresses,
    event_id,
    header_addresses,
    one_line,
    report_date,
)
from newsletter.errors import TokenError

_SUBJECT = re.compile(r"\bunsubscribe\s+(\S+)", re.IGNORECASE)


def is_unsubscribe_mail(msg: Message, addresses: MailboxAddresses) -> bool:
    """True when `msg` was sent to our unsubscribe address (envelope or header recipient)."""
    if not addresses.unsubscribe_address:
        return False
    wanted = addresses.unsubscribe_address.lower()
    return any(a.lower() == wanted for a in header_addresses(msg, ENVELOPE_RECIPIENT_HEADERS))


def decoded_subject(msg: Message) -> str:
    """The Subject with RFC 2047 encoded words decoded (mail clients encode long subjects)."""
    value = msg.get("subject")
    if value is None:
        return ""
    try:
        return one_line(str(make_header(decode_header(str(value)))))
    except (LookupError, UnicodeError, ValueError):
        return one_line(str(value))


def unsubscribe_events(
    msg: Message, raw: bytes, addresses: MailboxAddresses
) -> tuple[list[FeedbackEvent], str]:
    """One `unsubscribe` event (source `mailto`, `subscriber_id` from the verified token), or
    no event and why (no token in the subject, or an invalid one)."""
    subject = decoded_subject(msg)
    # Some clients put the mailto's `subject=` into the mail still percent-encoded (RFC 6068
    # says decode it): `unsubscribe%20TOKEN`. Tokens have no '%', so decoding is safe.
    match = _SUBJECT.search(subject) or _SUBJECT.search(unquote(subject))
    if match is None:
        return [], f"mail to the unsubscribe address without a token in its subject ({subject!r})"
    if addresses.secret is None:
        return [], "mail to the unsubscribe address, but no secret to verify its token"
    try:
        subscriber_id = tokens.verify_token(addresses.secret, tokens.UNSUBSCRIBE, match.group(1))
    except TokenError as exc:
        return [], f"mail to the unsubscribe address with an invalid token: {exc}"
    senders = header_addresses(msg, ("from",))
    return [
        FeedbackEvent(
            kind="unsubscribe",
            source="mailto",
            event_id=event_id(msg, raw, str(subscriber_id)),
            recipient=senders[0] if senders else None,
            subscriber_id=subscriber_id,
            reason=f"unsubscribe by mail from {senders[0] if senders else 'an unknown sender'}",
            occurred_at=report_date(msg.get("date")),
        )
    ], ""
