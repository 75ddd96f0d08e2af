"""Bounces that are not RFC 3464 DSNs (qmail's QSBMF, Exim's X-Failed-Recipients, old Exchange,
Yahoo, GroupWise, ...), recognised by Mailman's flufl.bounce rather than keywords of our own.

flufl.bounce tells which recipients failed temporarily and which permanently, nothing more: the
status is `permanent` or `temporary` and the VERP token, read from the bounce's envelope
recipient, does the mapping when the address in the text is not the one we sent to.
"""

from __future__ import annotations

import logging
from email.message import Message

from flufl.bounce import all_failures

from newsletter.bounces.events import FeedbackEvent
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

# flufl.bounce logs every detector that trips on a message it cannot read (no From:, random
# bytes) as an ERROR with a traceback, then carries on with the other detectors: for us that is
# only "not a bounce this detector knows", and the user sees our one-line outcome instead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


def nonstandard_events(
    msg: Message, raw: bytes, addresses: MailboxAddresses
) -> list[FeedbackEvent]:
    """Hard bounces for the permanent failures flufl.bounce finds, soft for the temporary ones;
    [] when it recognises no bounce."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping on a malformed body: not a bounce it can read
        return []
    if not temporary and not permanent:
        return []
    token = verp_token(msg, ENVELOPE_RECIPIENT_HEADERS, addresses.bounce_address)
    original = original_headers(msg)
    when = report_date(msg.get("date"))
    subject = one_line(msg.get("subject"))
    events = []
    for kind, found, status in (
        ("hard_bounce", permanent, "permanent"),
        ("soft_bounce", temporary - permanent, "temporary"),
    ):
        for raw_address in sorted(found):
            recipient = normalise_address(raw_address.decode("ascii", "replace"))
            events.append(
                FeedbackEvent(
                    kind=kind,  # type: ignore[arg-type]
                    source="dsn",
                    event_id=event_id(msg, raw, recipient),
                    recipient=recipient,
                    verp_token=token,
                    message_id=message_id(original),
                    status=status,
                    reason=f"non-standard bounce: {subject}" if subject else "non-standard bounce",
                    occurred_at=when,
                )
            )
    return events
