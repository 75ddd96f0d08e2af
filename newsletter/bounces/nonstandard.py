"""Bounces that are not RFC 3464 DSNs (qmail's QSBMF, Exim's X-Failed-Recipients, old Exchange,
Yahoo, GroupWise, ...), recognised by Mailman's flufl.bounce rather than keywords of our own.

flufl.bounce tells which recipients failed temporarily and which permanently, nothing more. When
the bounce's own text carries one RFC 3463 enhanced status code (Exim's and qmail's quote the
remote server's reply, `550 5.7.1 ...`), that code is the status and decides the kind by the rule
every source shares (`newsletter.enhancedstatus`: a 5.7.x block does not mark the reader);
otherwise the status is `permanent` or `temporary`. The VERP token, read from the bounce's envelope
recipient, does the mapping when the address in the text is not the one we sent to.
"""

from __future__ import annotations

import logging
from email.message import Message

from flufl.bounce import all_failures

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
    code = _one_status(msg)
    events = []
    flagged: tuple[tuple[EventKind, set[bytes], str], ...] = (
        ("hard_bounce", permanent, "permanent"),
        ("soft_bounce", temporary - permanent, "temporary"),
    )
    for flag_kind, found, flag in flagged:
        kind = classify_status(code) if code else None
        status = code or flag
        for raw_address in sorted(found):
            recipient = normalise_address(raw_address.decode("ascii", "replace"))
            events.append(
                FeedbackEvent(
                    kind=kind or flag_kind,
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


def _one_status(msg: Message) -> str | None:
    """The enhanced status code the bounce's own text parts carry, when they carry exactly one
    (several codes cannot be told apart per recipient); an attached original is not read."""
    parts = msg.get_payload() if msg.is_multipart() else [msg]
    codes: set[str] = set()
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, Message) or part.get_content_type() != "text/plain":
            continue
        try:
            body = part.get_payload(decode=True) or b""
        except Exception:  # a malformed transfer encoding: nothing to read there
            continue
        codes.update(m.group(0) for m in ENHANCED_STATUS.finditer(body.decode("utf-8", "replace")))
    return codes.pop() if len(codes) == 1 else None
