"""`FeedbackEvent`: the one shape every source of after-the-send news is normalised to.

Sources and their `source` names: `dsn` (RFC 3464 delivery status notification, or a
non-standard bounce recognised by flufl.bounce), `arf` (RFC 5965 feedback report), `mailto`
(a message to the `unsubscribe_mailto:` mailbox, RFC 2369), `smtp` (a reply during sending), and
one per provider webhook: `sendgrid`, `mailgun`, `postmark`, `ses`, `resend`.

Which message (and so which campaign and subscriber) an event is about is found, in order, from
`subscriber_id` (known outright, from a verified unsubscribe token in a `mailto` unsubscribe),
`verp_token` (the signed token in our envelope sender), `ledger_key` (the ledger row id we gave the
provider as custom data), `message_id` (our deterministic Message-ID, kept in the ledger), and last
`recipient` (the address the report names).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from newsletter.enhancedstatus import classify_status

EventKind = Literal[
    "hard_bounce", "soft_bounce", "blocked", "complaint", "unsubscribe", "delivered"
]
EVENT_KINDS: tuple[EventKind, ...] = (
    "hard_bounce",
    "soft_bounce",
    "blocked",
    "complaint",
    "unsubscribe",
    "delivered",
)


def classified(event: FeedbackEvent) -> FeedbackEvent:
    """A bounce whose status holds an RFC 3463 enhanced code, with the kind that code gives
    (`newsletter.enhancedstatus.classify_status`, the one rule for every source); any other
    event unchanged. A provider's permanent/transient flag is only the fallback: SES calls a
    5.7.1 policy block `Permanent`, but the reader's address is fine."""
    if event.kind not in ("hard_bounce", "soft_bounce", "blocked"):
        return event
    kind = classify_status(event.status)
    return event if kind is None or kind == event.kind else replace(event, kind=kind)


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One thing a mail server, a reader or a provider told us about one message we sent.

    kind: hard_bounce (permanent: 5.x.x, Action failed, a provider's permanent class),
        soft_bounce (4.x.x, Action delayed, mailbox full), blocked (refused for a reason
        about the sender, the message or a system, not the reader: 5.7.x policy, 5.3.x-5.6.x;
        see newsletter.enhancedstatus), complaint (ARF abuse, a provider's
        spam report), unsubscribe (a provider-side or mailto unsubscribe), delivered.
    source: where it came from (see the module docstring).
    event_id: unique within `source`; applying an event whose (source, event_id) was already
        applied changes nothing (the same DSN imported twice, a webhook replayed).
    recipient: the address the report names (Final-Recipient / Original-Recipient, the
        provider's `email`), lower-cased domain; None when the report names none.
    subscriber_id: set only when the source proves it (a verified unsubscribe token).
    verp_token, ledger_key, message_id: what ties the event to our ledger row (see above);
        message_id without angle brackets.
    status: the raw status as reported (`5.1.1`, `550`, a provider's code or type).
    reason: the human-readable reason (Diagnostic-Code, the provider's description).
    occurred_at: when the source says it happened (aware, UTC), None when it does not say.
    """

    kind: EventKind
    source: str
    event_id: str
    recipient: str | None = None
    subscriber_id: int | None = None
    verp_token: str | None = None
    ledger_key: int | None = None
    message_id: str | None = None
    status: str = ""
    reason: str = ""
    occurred_at: datetime | None = None
