"""One policy for every bounce, complaint and provider event (issue #10, section 4).

    hard_bounce  -> the subscriber is `bounced`
    soft_bounce  -> recorded; `soft_limit` soft-bounced messages within `soft_days` -> bounced
    blocked      -> recorded only (history, campaign figures, the reputation guard): refused
                    for the sender, the message or a system, not the reader (5.7.x policy...)
    complaint    -> the subscriber is `complained` (unsubscribed because they reported spam: no
                    import or sign-up reactivates it without a fresh confirmed opt-in)
    unsubscribe  -> unsubscribed
    delivered    -> recorded against the ledger row

Every event lands in table `feedback_events` (UNIQUE (source, event_id): applying it again
changes nothing) and in the subscriber's history (`subscriber_events`: source, raw status,
reason, campaign). Events are applied in batches, one transaction each.

A bounce's kind is first settled by its status when that holds an RFC 3463 enhanced code
(`events.classified`, the rule in newsletter.enhancedstatus), whatever the source said: a
provider's "Permanent" 5.7.1 is a block, not a bad address.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from newsletter.bounces import records
from newsletter.bounces.events import EVENT_KINDS, FeedbackEvent, classified
from newsletter.bounces.lookup import Match, Resolver
from newsletter.campaign.ledger import Ledger
from newsletter.config import Config
from newsletter.enhancedstatus import find_status
from newsletter.subscribers.model import ACTIVE, BOUNCED, COMPLAINED, PENDING, UNSUBSCRIBED
from newsletter.subscribers.store import SubscriberStore

BATCH = 500  # events per transaction
_ADDRESS = re.compile(r"[^\s<>@\"'(),;:\[\]]+@[^\s<>@\"'(),;\[\]]+")
_LIVE = frozenset({ACTIVE, PENDING})


@dataclass(frozen=True)
class EventOutcome:
    """What one event did (or, in a dry run, would do).

    email: the matched subscriber's address, None when nobody matched.
    campaign_id: the campaign the message belonged to, None when not known.
    action: a short phrase for people ("bounced", "soft bounce 2 of 3 in 30 days",
        "unsubscribed (complained)", "delivery recorded", "already recorded",
        "no matching recipient", "ignored: ...").
    category: the action's kind for `ApplyReport.counts` (bounced, soft bounce, blocked,
        unsubscribed, complained, delivered, recorded, already recorded, no match, ignored).
    """

    event: FeedbackEvent
    email: str | None
    campaign_id: int | None
    action: str
    category: str
    subscriber_id: int | None = None

    def format(self) -> str:
        """One line for people: `who: what (source status: why)`, e.g.
        `ann@example.net: bounced (dsn 5.1.1: 550 5.1.1 user unknown)`."""
        who = self.email or self.event.recipient or "unknown recipient"
        return f"{who}: {self.action} ({_why(self.event)})"


@dataclass
class ApplyReport:
    """What `apply_events` did: one `EventOutcome` per event, in the order given."""

    outcomes: list[EventOutcome] = field(default_factory=list)
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """Outcomes per category, in first-seen order (for a summary line)."""
        return dict(Counter(o.category for o in self.outcomes))

    def summary(self) -> str:
        """`12 events: 3 bounced, 1 complained, ...` (`would change` in a dry run)."""
        counts = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        total = len(self.outcomes)
        head = f"{total} event{'s' if total != 1 else ''}"
        tail = " (dry run: nothing was changed)" if self.dry_run else ""
        return f"{head}: {counts or 'none'}{tail}"


def apply_events(
    config: Config, events: Iterable[FeedbackEvent], *, dry_run: bool = False
) -> ApplyReport:
    """Apply `events` to the subscriber database named by `config` (see the module docstring).

    Events are consumed lazily, BATCH per transaction. With `dry_run` nothing is written; the
    outcomes say what would change (later events of the same run see the earlier ones' effect).
    Raises SubscriberError when the database cannot be opened.
    """
    store = SubscriberStore.for_config(config)
    try:
        return apply_to_store(store, config, events, dry_run=dry_run)
    finally:
        store.close()


def apply_to_store(
    store: SubscriberStore,
    config: Config,
    events: Iterable[FeedbackEvent],
    *,
    dry_run: bool = False,
    secret: bytes | None = None,
) -> ApplyReport:
    """`apply_events` on a store the caller holds open (and closes); `secret`: the token
    secret when the caller has it already (else read as `tokens.secret_key` does)."""
    from newsletter.tokens import secret_key

    records.migrate(store.conn)
    applier = _Applier(store, config, secret or secret_key(config, store.conn), dry_run)
    report = ApplyReport(dry_run=dry_run)
    for batch in _batches(events, BATCH):
        report.outcomes.extend(applier.apply(batch))
    return report


class SendBounces:
    """Permanent refusals while sending (an SMTP 5xx, a provider's rejection) as hard bounces
    of source `smtp`, through the same policy; made once per run, so each bounce costs only
    its own reads and writes (the ledger thread calls `record` between batches)."""

    def __init__(
        self, store: SubscriberStore, config: Config, secret: bytes, campaign_id: int
    ) -> None:
        records.migrate(store.conn)
        self.campaign_id = campaign_id
        self._applier = _Applier(store, config, secret, dry_run=False)
        self._ledger = self._applier.ledger

    def record(self, subscriber_id: int, message_id: str, reply: str) -> EventOutcome:
        """Apply one refusal; keyed by the Message-ID (a refused row is never retried, so
        one event per message)."""
        event = FeedbackEvent(
            "hard_bounce",
            "smtp",
            message_id,
            subscriber_id=subscriber_id,
            ledger_key=self._ledger.row_of(self.campaign_id, subscriber_id),
            message_id=message_id,
            status=find_status(reply) or (reply.split(" ", 1)[0] if reply[:1].isdigit() else ""),
            reason=reply,
        )
        return self._applier.apply([event])[0]


def _batches(events: Iterable[FeedbackEvent], size: int) -> Iterator[list[FeedbackEvent]]:
    it = iter(events)
    while batch := list(islice(it, size)):
        yield batch


class _Applier:
    def __init__(self, store: SubscriberStore, config: Config, secret: bytes, dry_run: bool):
        self.store = store
        self.settings = config.bounces
        self.dry_run = dry_run
        self.resolver = Resolver(store.conn, secret, index=not dry_run)
        self.ledger: Ledger = self.resolver.ledger  # the store's connection; never closed here
        # What this run did so far, for a dry run's later events (nothing is written).
        self.seen: set[tuple[str, str]] = set()
        self.status: dict[int, str] = {}
        self.soft: dict[int, set[str]] = {}

    def apply(self, batch: list[FeedbackEvent]) -> list[EventOutcome]:
        # Also the plain ids: rows recorded before ids naming an address were hashed.
        keys = [(e.source, self.stored_id(e.event_id)) for e in batch]
        keys += [(e.source, e.event_id) for e in batch if "@" in e.event_id]
        if self.dry_run:
            return self._apply(batch, records.recorded(self.store.conn, keys))
        with self.store.transaction():
            return self._apply(batch, records.recorded(self.store.conn, keys))

    def stored_id(self, event_id: str) -> str:
        """The event id as `feedback_events` keeps it: one that names an address (a provider's
        `<message>:<recipient>`, a DSN's recipient) as a salted hash, like the tombstones of
        erased addresses, so no event keeps the plaintext address of a person since erased."""
        if "@" not in event_id:
            return event_id
        return "sha256:" + self.store.email_hash(event_id.lower())

    def _apply(self, batch: list[FeedbackEvent], done: set[tuple[str, str]]) -> list[EventOutcome]:
        out = []
        for event in map(classified, batch):
            key = (event.source, self.stored_id(event.event_id))
            if (event.source, event.event_id) in done:
                key = (event.source, event.event_id)
            if event.kind not in EVENT_KINDS:
                out.append(
                    _outcome(event, None, f"ignored: unknown kind {event.kind!r}", "ignored")
                )
                continue
            if key in done or key in self.seen:
                out.append(_outcome(event, None, "already recorded", "already recorded"))
                continue
            self.seen.add(key)
            out.append(self._one(event))
        return out

    def _one(self, event: FeedbackEvent) -> EventOutcome:
        match = self.resolver.resolve(event, self.store)
        when = _iso(event.occurred_at)
        if match.subscriber_id is None:
            outcome = _outcome(event, match, "no matching recipient", "no match")
        else:
            status = self.status.get(match.subscriber_id) or match.status or ""
            action, category, new_status = self._policy(event, match, status, when)
            outcome = _outcome(event, match, action, category)
            if new_status:
                self.status[match.subscriber_id] = new_status
            if not self.dry_run:
                self._write_history(event, match, new_status, when)
                if event.kind == "hard_bounce" and match.row_id is not None:
                    self.ledger.bounce_after_send(match.row_id, _why(event))
        if not self.dry_run:
            # Nobody matched: keep what happened, not whose address it was (it may be a person
            # erased since, whose address must not come back through a late bounce).
            reason, status = event.reason, event.status
            if match.subscriber_id is None:
                reason = _ADDRESS.sub("<address>", reason)
                status = _ADDRESS.sub("<address>", status)
            records.insert_event(
                self.store.conn,
                (
                    event.source,
                    self.stored_id(event.event_id),
                    event.kind,
                    match.subscriber_id,
                    match.campaign_id,
                    match.row_id,
                    status[:200],
                    reason[:1000],
                    when,
                    _iso(None),
                    outcome.action,
                ),
            )
        return outcome

    def _policy(
        self, event: FeedbackEvent, match: Match, status: str, when: str
    ) -> tuple[str, str, str | None]:
        """(action, category, the status the subscriber gets or None) for one event."""
        kind = event.kind
        if kind == "hard_bounce":
            if status in _LIVE:
                return "bounced", "bounced", BOUNCED
            return f"hard bounce recorded (already {status})", "recorded", None
        if kind == "soft_bounce":
            return self._soft(event, match, status, when)
        if kind == "blocked":
            return "blocked (not about the reader: subscriber unchanged)", "blocked", None
        if kind == "complaint":
            if status != COMPLAINED:
                return "unsubscribed (complained)", "complained", COMPLAINED
            return "complaint recorded (already complained)", "recorded", None
        if kind == "unsubscribe":
            if status in _LIVE:
                return "unsubscribed", "unsubscribed", UNSUBSCRIBED
            return f"unsubscribe recorded (already {status})", "recorded", None
        return "delivery recorded", "delivered", None

    def _soft(
        self, event: FeedbackEvent, match: Match, status: str, when: str
    ) -> tuple[str, str, str | None]:
        limit, days = self.settings.soft_limit, self.settings.soft_days
        sid = match.subscriber_id
        assert sid is not None
        since = _iso(_parse(when) - dt.timedelta(days=days))
        messages = self.soft.get(sid)
        if messages is None:
            messages = records.soft_rows_since(self.store.conn, sid, since)
        # The DISTINCT key records.soft_rows_since uses; an unmatched message counts alone.
        messages.add(f"r{match.row_id}" if match.row_id is not None else f"x{event.event_id}")
        if self.dry_run:
            self.soft[sid] = messages
        count = len(messages)
        if status not in _LIVE:
            return f"soft bounce recorded (already {status})", "recorded", None
        if count >= limit:
            return f"bounced ({count} soft bounces in {days} days)", "bounced", BOUNCED
        return f"soft bounce {count} of {limit} in {days} days", "soft bounce", None

    def _write_history(
        self, event: FeedbackEvent, match: Match, new_status: str | None, when: str
    ) -> None:
        sid = match.subscriber_id
        assert sid is not None
        detail = _detail(event, match)
        if new_status == BOUNCED:
            self.store.mark_bounced(sid, detail)
        elif new_status == COMPLAINED:
            self.store.mark_complained(sid, detail)
        elif new_status == UNSUBSCRIBED:
            self.store.unsubscribe(sid, detail)
        else:
            self.store.write_event(sid, event.kind.replace("_", " "), detail, _iso(None))


def _detail(event: FeedbackEvent, match: Match) -> str:
    """One history line's detail, as `subscribers show` prints it:
    `source dsn, status 5.1.1, campaign 2026-03-issue/weekly: user unknown`."""
    parts = [f"source {event.source}"]
    if event.status:
        parts.append(f"status {' '.join(event.status.split())[:100]}")
    if match.campaign:
        parts.append(f"campaign {match.campaign}")
    text = ", ".join(parts)
    if event.reason:
        text += f": {' '.join(event.reason.split())[:300]}"
    return text


def _why(event: FeedbackEvent) -> str:
    """`source status: reason`, e.g. `dsn 5.1.1: 550 5.1.1 user unknown`."""
    why = " ".join(p for p in (event.source, event.status) if p)
    if event.reason:
        why += f": {' '.join(event.reason.split())[:200]}"
    return why


def _outcome(event: FeedbackEvent, match: Match | None, action: str, category: str) -> EventOutcome:
    if match is None:
        return EventOutcome(event, None, None, action, category)
    return EventOutcome(
        event, match.email, match.campaign_id, action, category, match.subscriber_id
    )


def _iso(moment: dt.datetime | None) -> str:
    moment = moment or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
