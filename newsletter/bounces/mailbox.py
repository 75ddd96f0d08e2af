"""`bounces import` and `bounces fetch`: read a bounce mailbox, apply what it says, report.

Every message is read and parsed first (a bad path or an unreadable file stops everything before
anything is applied); the events then go to the one policy (`policy.apply_events`) in one call.
IMAP messages are flagged or moved only after their events were applied, and never with
`dry_run`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import db, tokens
from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.imap import ImapMailbox, parse_imap_url
from newsletter.bounces.policy import apply_events
from newsletter.bounces.reading import Reading, read_message
from newsletter.bounces.report import MailboxAddresses
from newsletter.bounces.sources import open_sources
from newsletter.errors import MailboxError

if TYPE_CHECKING:
    from newsletter.config import Config

# Policy outcome categories that did nothing to anybody: the message is not done with.
_NOT_ACTED_ON = frozenset({"no match", "ignored"})


@dataclass
class MailboxReport:
    """What one import or fetch read and did.

    lines: one per event (`LABEL: ` and the policy's `EventOutcome.format()`: who, what it
    did, source, status and why) or per ignored message (`LABEL: ignored: WHY`);
    messages: messages read; events: events found; ignored: messages without an event (of which
    auto_replies were auto-replies); actions: events per outcome category of the policy
    (bounced, soft bounce, complained, already recorded, no match, ...); dry_run: nothing was
    changed; handled: the labels of the messages done with (an event applied or already
    recorded, or an auto-reply), the only ones `fetch` flags, moves or deletes; left: (fetch
    only) messages left unread in place for a person.
    """

    lines: list[str] = field(default_factory=list)
    messages: int = 0
    events: int = 0
    ignored: int = 0
    auto_replies: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False
    handled: set[str] = field(default_factory=set)
    left: int | None = None

    def summary(self) -> str:
        done = ", ".join(f"{count} {action}" for action, count in sorted(self.actions.items()))
        text = (
            f"{self.messages} messages: {self.events} events, {self.ignored} ignored "
            f"({self.auto_replies} auto-replies)"
        )
        if done:
            text += f"; {done}"
        if self.left:
            text += f"; {self.left} left unread in place for a person"
        return text + (" (dry run: nothing changed)" if self.dry_run else "")


def mailbox_addresses(config: Config) -> MailboxAddresses:
    """Our bounce (VERP) and unsubscribe addresses from newsletter.yaml, and the token secret
    when unsubscribe mail can be read."""
    # `unsubscribe_mailto:` (the RFC 2369 mailto in List-Unsubscribe) is the unsubscribe
    # mailbox; without it no mail is read as an unsubscribe.
    unsubscribe = config.unsubscribe_mailto
    secret = None
    if unsubscribe:
        conn = db.connect(config.database)
        try:
            secret = tokens.secret_key(config, conn)
        finally:
            conn.close()
    return MailboxAddresses(config.bounces.address, unsubscribe, secret)


def import_mail(config: Config, paths: list[Path], *, dry_run: bool = False) -> MailboxReport:
    """Read `.eml` files, mbox files and Maildir folders (any mix) and apply their events.

    Raises MailboxError (nothing applied) for a missing path, an unreadable file or a folder
    that is not a Maildir."""
    sources = open_sources(paths)
    addresses = mailbox_addresses(config)
    readings = [
        (label, read_message(raw, addresses))
        for source in sources
        for label, raw in source.messages()
    ]
    return apply_readings(config, readings, dry_run=dry_run)


def fetch_mail(
    config: Config,
    url: str,
    *,
    dry_run: bool = False,
    move_to: str | None = None,
    delete: bool = False,
    environ: Mapping[str, str] | None = None,
) -> MailboxReport:
    """Read the messages of an IMAP folder not yet processed, apply their events, then flag
    them processed (`\\Seen` + keyword), or move them to `move_to`, or delete them (`delete`).

    With `dry_run` the folder is opened read-only and nothing changes on the server. Raises
    MailboxError for a bad URL, a missing password, an untrusted certificate, a refused login,
    a missing folder."""
    if move_to and delete:
        raise MailboxError("choose --move-to or --delete, not both")
    settings = parse_imap_url(url)
    box = ImapMailbox(settings, environ)
    addresses = mailbox_addresses(config)
    box.open(readonly=dry_run)
    try:
        if move_to:
            box.check_folder(move_to)
        labels = {
            f"{settings.where} UID {uid.decode()}": (uid, raw)
            for uid, raw in box.messages(box.unprocessed())
        }
        readings = [(label, read_message(raw, addresses)) for label, (_, raw) in labels.items()]
        report = apply_readings(config, readings, dry_run=dry_run)
        # Only what we acted on leaves the folder's unread mail: a human reply, an unsubscribe
        # mail without a valid token, a bounce for nobody we know stay there for a person.
        done = [uid for label, (uid, _) in labels.items() if label in report.handled]
        report.left = len(labels) - len(done)
        if not dry_run and done:
            box.mark_processed(done, move_to=move_to, delete=delete)
    finally:
        box.close()
    return report


def apply_readings(
    config: Config, readings: Iterable[tuple[str, Reading]], *, dry_run: bool
) -> MailboxReport:
    """Apply every event of `readings` in one policy call and write the report's lines."""
    readings = list(readings)
    events: list[FeedbackEvent] = [e for _, reading in readings for e in reading.events]
    applied = apply_events(config, events, dry_run=dry_run)
    outcomes = iter(applied.outcomes)
    report = MailboxReport(dry_run=dry_run, messages=len(readings), events=len(events))
    for label, reading in readings:
        if not reading.events:
            report.ignored += 1
            report.auto_replies += reading.auto_reply
            report.lines.append(f"{label}: ignored: {reading.ignored}")
            if reading.auto_reply:
                report.handled.add(label)
            continue
        for _ in reading.events:
            outcome = next(outcomes)
            report.actions[outcome.category] += 1
            report.lines.append(f"{label}: {outcome.format()}")
            if outcome.category not in _NOT_ACTED_ON:
                report.handled.add(label)
    return report
