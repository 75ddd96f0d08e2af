"""The send ledger: one campaign per (issue, list) and one row per recipient, in SQLite.

A row moves due -> inflight -> sent | deferred | failed | bounced (or skipped, when the
subscriber left the list before their turn). `inflight` is committed *before* the message is
handed to a transport, so after a crash those rows are known to be "unknown": they are retried
with the same Message-ID, and nobody else can get a second copy. Results are written in batched
transactions; every write is a short transaction so the web endpoints keep working meanwhile.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Literal, get_args

from newsletter.errors import CampaignError
from newsletter.transports.base import Status

MIGRATIONS = [
    """
    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        issue_slug TEXT NOT NULL,
        list_name TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'sending'
            CHECK (state IN ('sending', 'paused', 'done')),
        state_reason TEXT,
        transport TEXT,
        runs INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        heartbeat REAL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        UNIQUE (issue_slug, list_name)
    );
    CREATE TABLE campaign_recipients (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'due' CHECK (status IN
            ('due', 'inflight', 'sent', 'deferred', 'failed', 'bounced', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        run_attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL,
        reply TEXT,
        provider_id TEXT,
        sent_at TEXT,
        updated_at TEXT,
        UNIQUE (campaign_id, subscriber_id)
    );
    CREATE INDEX campaign_recipients_work
        ON campaign_recipients (campaign_id, status, id);
    """,
    # Status left the index key: a status change (twice per recipient, on the hot path) no
    # longer moves index entries; the partial indexes hold only the rows still to be sent.
    """
    DROP INDEX campaign_recipients_work;
    CREATE INDEX campaign_recipients_open ON campaign_recipients (campaign_id, id)
        WHERE status IN ('due', 'inflight', 'deferred');
    CREATE INDEX campaign_recipients_retry ON campaign_recipients (campaign_id, next_try)
        WHERE status = 'deferred';
    """,
    # How the campaign is sent, so that a bare `send` resumes the same way: the transport URL
    # without secrets, the rate ("20/s") and the number of connections of the latest run.
    """
    ALTER TABLE campaigns ADD COLUMN transport_url TEXT;
    ALTER TABLE campaigns ADD COLUMN rate TEXT;
    ALTER TABLE campaigns ADD COLUMN concurrency INTEGER;
    """,
]


def _segments(conn: sqlite3.Connection) -> None:
    """A campaign is one (issue, list, segment): `segment` is the canonical expression (NULL:
    the whole list, as every campaign before this migration), `segment_name` its name in
    newsletter.yaml. SQLite cannot drop the old UNIQUE (issue_slug, list_name): the table is
    rebuilt without it (rows and recipients kept), then keyed by the three."""
    from newsletter.db import rebuild_table

    rebuild_table(
        conn, "campaigns", lambda sql: re.sub(r",\s*UNIQUE \(issue_slug, list_name\)", "", sql)
    )
    conn.execute("ALTER TABLE campaigns ADD COLUMN segment TEXT")
    conn.execute("ALTER TABLE campaigns ADD COLUMN segment_name TEXT")
    conn.execute(
        "CREATE UNIQUE INDEX campaigns_by_key ON campaigns"
        " (issue_slug, list_name, COALESCE(segment, ''))"
    )


MIGRATIONS.append(_segments)

# A recipient row's status: what a transport says of a message (`Status`: sent, deferred,
# failed, bounced) plus the ledger's own: not yet tried, handed to a transport, not tried at all.
RowStatus = Literal["due", Status, "skipped", "inflight"]
STATUSES: tuple[RowStatus, ...] = get_args(RowStatus)
CHUNK = 2000
IN_LIST_CHUNK = 500  # ids per `IN (...)`: under SQLite's older 999-variable limit
_ROWS_PER_STATEMENT = 400  # 6 parameters a row: well under SQLite's 32,766
# Repeated verbatim in queries so SQLite uses the partial index campaign_recipients_open.
_OPEN = "status IN ('due', 'inflight', 'deferred')"
_WORK_COLUMNS = "SELECT id, subscriber_id, status, attempts, run_attempts FROM campaign_recipients"
# ?2 has a row (not skipped) in another campaign of campaign ?1's issue and list.
_SIBLING_ROW = (
    "SELECT 1 FROM campaigns c JOIN campaigns o ON o.issue_slug = c.issue_slug"
    " AND o.list_name = c.list_name AND o.id != c.id"
    " JOIN campaign_recipients r ON r.campaign_id = o.id"
    " WHERE c.id = ?1 AND r.subscriber_id = ?2 AND r.status != 'skipped'"
)
# A live sender refreshes its heartbeat at least this often; a stale one is taken over.
HEARTBEAT_TIMEOUT = 120.0


def campaign_key(issue_slug: str, list_name: str, segment: str | None = None) -> str:
    """What a campaign's Message-IDs are derived from (`MessageTemplate(campaign_key=...)`),
    and derived again from when a bounce names only its Message-ID (newsletter.bounces.lookup):
    the one place that says it. `segment`: a segment campaign's canonical expression."""
    key = f"{issue_slug}/{list_name}"
    return key if segment is None else f"{key}/{segment}"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class CampaignRow:
    id: int
    issue_slug: str
    list_name: str
    subject: str
    state: str
    state_reason: str | None
    transport: str | None  # the description shown to people
    runs: int
    created_at: str
    updated_at: str
    transport_url: str | None = None  # without secrets; None: not recorded (or a test double)
    rate: str | None = None  # e.g. "20/s"; None: unlimited
    concurrency: int | None = None
    segment: str | None = None  # canonical segment expression; None: the whole list
    segment_name: str | None = None  # its name under `segments:` in newsletter.yaml

    @property
    def audience(self) -> str:
        """'list weekly' or 'list weekly, segment oslo-pros (fields.city == "Oslo")'."""
        if self.segment is None:
            return f"list {self.list_name}"
        label = f"{self.segment_name} ({self.segment})" if self.segment_name else self.segment
        return f"list {self.list_name}, segment {label}"


@dataclass(frozen=True)
class Counts:
    due: int = 0
    inflight: int = 0  # "unknown" when no sender is running: in flight when it stopped
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, s) for s in STATUSES)

    @property
    def remaining(self) -> int:
        return self.due + self.inflight + self.deferred


@dataclass(frozen=True)
class RecipientRow:
    """One recipient of a campaign as `status --recipients` shows it."""

    subscriber_id: int
    status: RowStatus
    attempts: int  # tries over all runs
    reply: str  # the last server/provider reply, or why the row was skipped
    time: str  # ISO 8601 UTC: when it was sent, else the last change ('' if never tried)


@dataclass(frozen=True)
class WorkItem:
    row_id: int
    subscriber_id: int
    status: RowStatus  # the status before it was claimed: due, deferred or inflight
    attempts: int  # tries so far, all runs
    run_attempts: int  # tries so far in this run


@dataclass(frozen=True)
class Outcome:
    """One recipient's result, ready for the ledger."""

    row_id: int
    status: RowStatus  # sent, deferred, failed, bounced, skipped
    reply: str
    provider_id: str | None = None
    next_try: float | None = None  # deferred: when to retry in this run; None: next run
    counts_attempt: bool = True  # False for skipped rows (nothing was tried)


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Ledger:
    """All reads and writes of the campaign tables go through here (one thread at a time)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        from newsletter.db import migrate

        self.conn = conn
        self._last_beat = 0.0
        try:
            migrate(conn, "campaigns", MIGRATIONS)
        except BaseException:
            conn.close()
            raise

    # -- campaigns -------------------------------------------------------------------------
    def find(
        self, issue_slug: str, list_name: str, segment: str | None = None
    ) -> CampaignRow | None:
        """The campaign of (issue, list, segment); `segment` None: the whole-list campaign."""
        row = self.conn.execute(
            "SELECT * FROM campaigns WHERE issue_slug = ? AND list_name = ? AND segment IS ?",
            (issue_slug, list_name, segment),
        ).fetchone()
        return _campaign(row) if row else None

    def for_list(self, issue_slug: str, list_name: str) -> list[CampaignRow]:
        """Every campaign of the issue to the list (whole list first, then by segment)."""
        rows = self.conn.execute(
            "SELECT * FROM campaigns WHERE issue_slug = ? AND list_name = ?"
            " ORDER BY segment IS NOT NULL, segment",
            (issue_slug, list_name),
        ).fetchall()
        return [_campaign(r) for r in rows]

    def for_issue(self, issue_slug: str) -> list[CampaignRow]:
        rows = self.conn.execute(
            "SELECT * FROM campaigns WHERE issue_slug = ?"
            " ORDER BY list_name, segment IS NOT NULL, segment",
            (issue_slug,),
        ).fetchall()
        return [_campaign(r) for r in rows]

    def get(self, campaign_id: int) -> CampaignRow:
        row = self.conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        if row is None:
            raise CampaignError(f"campaign {campaign_id} does not exist")
        return _campaign(row)

    def create(
        self,
        issue_slug: str,
        list_name: str,
        subject: str,
        member_ids: Iterable[int],
        *,
        segment: str | None = None,
        segment_name: str | None = None,
    ) -> tuple[CampaignRow | None, int]:
        """Create the campaign and snapshot its recipients atomically; return (campaign, count).

        The ids are streamed into the table in chunks: the list is never held in memory. With no
        recipients nothing is created. `segment` (canonical text) is stored: a resume keeps it.
        """
        try:
            with self.transaction():
                cur = self.conn.execute(
                    "INSERT INTO campaigns (issue_slug, list_name, subject, segment, segment_name)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (issue_slug, list_name, subject, segment, segment_name),
                )
                campaign_id = int(cur.lastrowid or 0)
                added = self._insert_members(campaign_id, member_ids)
                if added == 0:
                    raise _Empty()
        except _Empty:
            return None, 0
        return self.get(campaign_id), added

    def add_new_members(self, campaign_id: int, member_ids: Iterable[int]) -> int:
        """Include subscribers who joined since the snapshot (`--include-new`)."""
        with self.transaction():
            return self._insert_members(campaign_id, member_ids)

    def _insert_members(self, campaign_id: int, member_ids: Iterable[int]) -> int:
        before = self.conn.total_changes
        if self._has_siblings(campaign_id):
            # Another campaign of this issue and list (another segment, or the whole list)
            # already has these people: they get the issue once, from the first campaign.
            for chunk in _chunks(member_ids, CHUNK):
                self.conn.executemany(
                    "INSERT OR IGNORE INTO campaign_recipients (campaign_id, subscriber_id)"
                    f" SELECT ?1, ?2 WHERE NOT EXISTS ({_SIBLING_ROW})",
                    ((campaign_id, sid) for sid in chunk),
                )
            return self.conn.total_changes - before
        for chunk in _chunks(member_ids, CHUNK):
            self.conn.executemany(
                "INSERT OR IGNORE INTO campaign_recipients (campaign_id, subscriber_id)"
                " VALUES (?, ?)",
                ((campaign_id, sid) for sid in chunk),
            )
        return self.conn.total_changes - before

    def _has_siblings(self, campaign_id: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM campaigns c JOIN campaigns o ON o.issue_slug = c.issue_slug"
            " AND o.list_name = c.list_name AND o.id != c.id WHERE c.id = ? LIMIT 1",
            (campaign_id,),
        ).fetchone()
        return row is not None

    def count_unreached(self, issue_slug: str, list_name: str, member_ids: Iterable[int]) -> int:
        """How many of `member_ids` no campaign of the issue to the list has (a new segment's
        or whole-list campaign mails only these)."""
        new = 0
        for chunk in _chunks(member_ids, IN_LIST_CHUNK):
            marks = ",".join("?" * len(chunk))
            known = self.conn.execute(
                "SELECT COUNT(DISTINCT r.subscriber_id) FROM campaign_recipients r"
                " JOIN campaigns c ON c.id = r.campaign_id WHERE c.issue_slug = ?"
                f" AND c.list_name = ? AND r.status != 'skipped' AND r.subscriber_id IN ({marks})",
                (issue_slug, list_name, *chunk),
            ).fetchone()[0]
            new += len(chunk) - int(known)
        return new

    def set_state(self, campaign_id: int, state: str, reason: str | None = None) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE campaigns SET state = ?, state_reason = ?,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                (state, reason, campaign_id),
            )

    def begin_run(
        self,
        campaign_id: int,
        transport: str,
        *,
        transport_url: str | None = None,
        rate: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        """Take ownership of the campaign for this process, remember how it is sent (transport
        URL without secrets, rate, concurrency: what a bare resume uses), and make leftovers
        retryable.

        Refuses when another live process is sending it: two senders would double-send.
        """
        me = f"{socket.gethostname()}:{os.getpid()}"
        with self.transaction():
            row = self.conn.execute(
                "SELECT owner, heartbeat FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
            owner, beat = row["owner"], row["heartbeat"]
            if owner and owner != me and _alive(owner, beat):
                raise CampaignError(
                    f"this campaign is being sent right now by process {owner.split(':')[-1]}; "
                    "wait for it to finish or stop it (Ctrl-C) before sending again"
                )
            self.conn.execute(
                "UPDATE campaigns SET owner = ?, heartbeat = ?, state = 'sending',"
                " state_reason = NULL, transport = ?, runs = runs + 1,"
                " transport_url = COALESCE(?, transport_url), rate = ?, concurrency = ?,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                (me, time.time(), transport, transport_url, rate, concurrency, campaign_id),
            )
            # Deferred rows get a fresh set of in-run retries; rows left in flight by a crash
            # become due again (their Message-ID is deterministic, so a resend is recognisable).
            self.conn.execute(
                "UPDATE campaign_recipients SET run_attempts = 0, next_try = COALESCE(next_try, 0)"
                " WHERE campaign_id = ? AND status = 'deferred'",
                (campaign_id,),
            )
            self.conn.execute(
                "UPDATE campaign_recipients SET status = 'due',"
                " reply = 'unknown: in flight when an earlier run stopped'"
                f" WHERE campaign_id = ? AND {_OPEN} AND status = 'inflight'",
                (campaign_id,),
            )

    def end_run(self, campaign_id: int) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE campaigns SET owner = NULL, heartbeat = NULL WHERE id = ?", (campaign_id,)
            )

    def is_being_sent(self, campaign_id: int) -> bool:
        row = self.conn.execute(
            "SELECT owner, heartbeat FROM campaigns WHERE id = ?", (campaign_id,)
        ).fetchone()
        return bool(row and row["owner"] and _alive(row["owner"], row["heartbeat"]))

    def heartbeat(self, campaign_id: int) -> None:
        self._last_beat = time.monotonic()
        self.conn.execute(
            "UPDATE campaigns SET heartbeat = ? WHERE id = ?", (time.time(), campaign_id)
        )

    def _beat(self, campaign_id: int) -> None:
        """Refresh the heartbeat now and then (inside the caller's transaction)."""
        if time.monotonic() - self._last_beat > 5.0:
            self.heartbeat(campaign_id)

    # -- recipients ------------------------------------------------------------------------
    def counts(self, campaign_id: int) -> Counts:
        rows = self.conn.execute(
            "SELECT status, COUNT(*) AS n FROM campaign_recipients WHERE campaign_id = ?"
            " GROUP BY status",
            (campaign_id,),
        ).fetchall()
        return Counts(**{r["status"]: int(r["n"]) for r in rows})

    def last_change(self, campaign_id: int) -> str:
        """ISO 8601 UTC of the campaign's latest change: its own state or any recipient row's."""
        row = self.conn.execute(
            "SELECT MAX(c.updated_at, COALESCE((SELECT MAX(updated_at) FROM campaign_recipients"
            " WHERE campaign_id = c.id), '')) FROM campaigns c WHERE c.id = ?",
            (campaign_id,),
        ).fetchone()
        return str(row[0] or "")

    def ready_deferred(self, campaign_id: int, now: float, limit: int) -> list[WorkItem]:
        """Deferred rows whose next try (in this run) has come."""
        rows = self.conn.execute(
            _WORK_COLUMNS + " WHERE campaign_id = ? AND status = 'deferred'"
            " AND next_try IS NOT NULL AND next_try <= ? ORDER BY next_try, id LIMIT ?",
            (campaign_id, now, limit),
        ).fetchall()
        return [_work_item(r) for r in rows]

    def next_due(self, campaign_id: int, after_id: int, limit: int) -> list[WorkItem]:
        """Due rows in snapshot order after `after_id` (read only: nothing is claimed)."""
        rows = self.conn.execute(
            _WORK_COLUMNS + f" WHERE campaign_id = ? AND {_OPEN} AND status = 'due' AND id > ?"
            " ORDER BY id LIMIT ?",
            (campaign_id, after_id, limit),
        ).fetchall()
        return [_work_item(r) for r in rows]

    def mark_inflight(self, campaign_id: int, row_ids: Sequence[int]) -> None:
        """Committed before the rows are handed to a transport: after a crash these are the
        recipients whose fate is unknown. Usually one statement (its own transaction)."""
        big = len(row_ids) > _ROWS_PER_STATEMENT
        with self.transaction() if big else _no_transaction():
            self._mark(row_ids)
        self._beat(campaign_id)

    def _mark(self, row_ids: Sequence[int]) -> None:
        for start in range(0, len(row_ids), _ROWS_PER_STATEMENT):
            chunk = row_ids[start : start + _ROWS_PER_STATEMENT]
            self.conn.execute(
                "UPDATE campaign_recipients SET status = 'inflight'"
                f" WHERE id IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            )

    def next_retry_at(self, campaign_id: int) -> float | None:
        """When the earliest deferred row due for a retry in this run becomes ready, if any."""
        row = self.conn.execute(
            "SELECT MIN(next_try) FROM campaign_recipients"
            " WHERE campaign_id = ? AND status = 'deferred' AND next_try IS NOT NULL",
            (campaign_id,),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def failed_rows(self, campaign_id: int) -> list[tuple[int, int]]:
        """(row id, subscriber id) of each recipient that failed permanently (not bounced,
        not skipped): what `send --retry-failed` offers to put back."""
        rows = self.conn.execute(
            "SELECT id, subscriber_id FROM campaign_recipients"
            " WHERE campaign_id = ? AND status = 'failed' ORDER BY id",
            (campaign_id,),
        ).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    def requeue_failed(self, campaign_id: int, row_ids: Sequence[int]) -> int:
        """Put failed rows back to due (their attempts so far are kept); how many moved."""
        moved = 0
        with self.transaction():
            for chunk in _chunks(row_ids, _ROWS_PER_STATEMENT):
                moved += self.conn.execute(
                    "UPDATE campaign_recipients SET status = 'due', next_try = NULL,"
                    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                    f" WHERE campaign_id = ? AND status = 'failed'"
                    f" AND id IN ({','.join('?' * len(chunk))})",
                    (campaign_id, *chunk),
                ).rowcount
        return moved

    def release(self, items: Sequence[WorkItem]) -> None:
        """Give back claimed rows that never reached a transport (a clean stop)."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE campaign_recipients SET status = ? WHERE id = ? AND status = 'inflight'",
                ((it.status if it.status != "inflight" else "due", it.row_id) for it in items),
            )

    def record(self, campaign_id: int, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of results atomically: one UPDATE ... FROM (VALUES ...) statement per
        few hundred rows (the send loop's hot path: few statements, few commits)."""
        if not outcomes:
            return
        stamp = _now_iso()
        with self.transaction() if len(outcomes) > _ROWS_PER_STATEMENT else _no_transaction():
            for start in range(0, len(outcomes), _ROWS_PER_STATEMENT):
                chunk = outcomes[start : start + _ROWS_PER_STATEMENT]
                values = ",".join(["(?,?,?,?,?,?)"] * len(chunk))
                params: list[object] = [stamp, stamp]
                for o in chunk:
                    params += (
                        o.row_id,
                        o.status,
                        o.reply[:1000],
                        o.provider_id,
                        o.next_try,
                        int(o.counts_attempt),
                    )
                self.conn.execute(
                    "UPDATE campaign_recipients AS r SET status = v.column2, reply = v.column3,"
                    " provider_id = v.column4, next_try = v.column5, updated_at = ?1,"
                    " sent_at = CASE WHEN v.column2 = 'sent' THEN ?2 ELSE r.sent_at END,"
                    " attempts = r.attempts + v.column6,"
                    " run_attempts = r.run_attempts + v.column6"
                    f" FROM (VALUES {values}) AS v WHERE r.id = v.column1",
                    params,
                )
        self._beat(campaign_id)

    def bounce_after_send(self, row_id: int, reason: str) -> bool:
        """A hard bounce that came back after the relay took the message (a DSN, a provider
        webhook): the `sent` row becomes `bounced` with `reason`, so `status` counts it and
        `status --recipients bounced` names the reader. Rows in any other state are left (a
        5xx while sending marked its row itself). True when the row changed."""
        cur = self.conn.execute(
            "UPDATE campaign_recipients SET status = 'bounced', reply = ?, updated_at = ?"
            " WHERE id = ? AND status = 'sent'",
            (reason[:1000], _now_iso(), row_id),
        )
        return cur.rowcount > 0

    def iter_pending_subscribers(self, campaign_id: int) -> Iterator[int]:
        """Subscriber ids still to be sent (for a dry run of a resumed campaign), streamed."""
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT id, subscriber_id FROM campaign_recipients WHERE campaign_id = ?"
                f" AND {_OPEN} AND id > ? ORDER BY id LIMIT ?",
                (campaign_id, last, CHUNK),
            ).fetchall()
            if not rows:
                return
            last = rows[-1]["id"]
            for r in rows:
                yield int(r["subscriber_id"])

    def rows(self, campaign_id: int) -> list[sqlite3.Row]:
        """Every recipient row (for tests and small reports)."""
        return self.conn.execute(
            "SELECT * FROM campaign_recipients WHERE campaign_id = ? ORDER BY id", (campaign_id,)
        ).fetchall()

    def iter_recipients(
        self, campaign_id: int, status: str | None = None
    ) -> Iterator[RecipientRow]:
        """Each recipient row of the campaign in snapshot order, optionally of one status,
        streamed in chunks (for `status --recipients`)."""
        last = 0
        where = "" if status is None else " AND status = ?"
        while True:
            rows = self.conn.execute(
                "SELECT id, subscriber_id, status, attempts, reply, sent_at, updated_at"
                f" FROM campaign_recipients WHERE campaign_id = ? AND id > ?{where}"
                " ORDER BY id LIMIT ?",
                (campaign_id, last, *(() if status is None else (status,)), CHUNK),
            ).fetchall()
            if not rows:
                return
            last = rows[-1]["id"]
            for r in rows:
                yield RecipientRow(
                    subscriber_id=int(r["subscriber_id"]),
                    status=r["status"],
                    attempts=int(r["attempts"]),
                    reply=r["reply"] or "",
                    time=r["sent_at"] or r["updated_at"] or "",
                )

    def count_new(self, campaign_id: int, member_ids: Iterable[int]) -> int:
        """How many of `member_ids` (streamed, checked chunk by chunk) are not in the
        campaign's snapshot: the subscribers who joined the list since."""
        siblings = self._has_siblings(campaign_id)
        new = 0
        for chunk in _chunks(member_ids, IN_LIST_CHUNK):
            marks = ",".join("?" * len(chunk))
            if siblings:  # people another campaign of the issue and list has are not new
                chunk = [
                    sid
                    for sid in chunk
                    if not self.conn.execute(
                        f"SELECT 1 WHERE EXISTS ({_SIBLING_ROW})", (campaign_id, sid)
                    ).fetchone()
                ]
                marks = ",".join("?" * len(chunk))
            if not chunk:
                continue
            known = self.conn.execute(
                "SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = ?"
                f" AND subscriber_id IN ({marks})",
                (campaign_id, *chunk),
            ).fetchone()[0]
            new += len(chunk) - int(known)
        return new

    # -- after the send (newsletter.bounces) -------------------------------------------------
    def recipient_row(self, row_id: int) -> tuple[int, int] | None:
        """(campaign id, subscriber id) of a recipient row, None if there is no such row."""
        row = self.conn.execute(
            "SELECT campaign_id, subscriber_id FROM campaign_recipients WHERE id = ?", (row_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def row_of(self, campaign_id: int, subscriber_id: int) -> int | None:
        """The recipient row id of a subscriber in a campaign, if they are in it."""
        row = self.conn.execute(
            "SELECT id FROM campaign_recipients WHERE campaign_id = ? AND subscriber_id = ?",
            (campaign_id, subscriber_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def iter_row_keys(self, campaign_id: int, after: int = 0) -> Iterator[tuple[int, int]]:
        """(row id, subscriber id) of the campaign's rows above `after`, ascending, streamed."""
        while True:
            rows = self.conn.execute(
                "SELECT id, subscriber_id FROM campaign_recipients WHERE campaign_id = ?"
                " AND id > ? ORDER BY id LIMIT ?",
                (campaign_id, after, CHUNK),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield from ((int(r[0]), int(r[1])) for r in rows)

    def all_campaigns(self) -> list[CampaignRow]:
        rows = self.conn.execute("SELECT * FROM campaigns ORDER BY id").fetchall()
        return [_campaign(r) for r in rows]

    # -- helpers ---------------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    def close(self) -> None:
        """Close the ledger's database connection (the ledger owns it from construction)."""
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _no_transaction() -> Iterator[None]:
    yield


class _Empty(Exception):
    """Raised inside `create` to roll back a campaign without recipients."""


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _work_item(row: sqlite3.Row) -> WorkItem:
    return WorkItem(
        row["id"], row["subscriber_id"], row["status"], row["attempts"], row["run_attempts"]
    )


def _alive(owner: str, heartbeat: float | None) -> bool:
    if heartbeat is None or time.time() - heartbeat > HEARTBEAT_TIMEOUT:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine with a fresh heartbeat: assume it is working
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _campaign(row: sqlite3.Row) -> CampaignRow:
    return CampaignRow(
        id=row["id"],
        issue_slug=row["issue_slug"],
        list_name=row["list_name"],
        subject=row["subject"],
        state=row["state"],
        state_reason=row["state_reason"],
        transport=row["transport"],
        runs=row["runs"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        transport_url=row["transport_url"],
        rate=row["rate"],
        concurrency=row["concurrency"],
        segment=row["segment"],
        segment_name=row["segment_name"],
    )
