"""The crew of processes draining one campaign on PostgreSQL, and their leases.

Each process sending a campaign on PostgreSQL (the coordinating `send` and every
`send --worker`) is a *worker* with an id `host:pid:random` and one row in `campaign_workers`:
its role, its lease (seconds) and a heartbeat it renews every third of the lease, measured by
the database server's clock so that machines with skewed clocks agree. Recipient rows a worker
claims carry its id (`campaign_recipients.worker`); a worker whose heartbeat is older than its
lease is dead, and its `inflight` rows are handed back (`due`) to be claimed by the others and
resent with the same Message-ID (it derives from the campaign key and the subscriber).
A worker that was only stopped past its lease (SIGSTOP, a suspended VM) must then send none of
them: it measures its own lease by the monotonic clock (`Crew.holds_lease`, checked before each
send) and its heartbeat renews only a row nobody marked stopped.

Workers stop, saying why, when the campaign is paused (the reputation guard, failures in a
row, an account problem: `campaigns.state`), done, or its coordinating `send` ended (Ctrl-C:
`campaigns.owner` cleared) or died (its own lease expired). SQLite has one writer and one
machine: no crew there (`send --worker` is refused).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from newsletter import db
from newsletter.errors import CampaignError

DEFAULT_LEASE = 30.0  # seconds without a heartbeat after which a worker counts as dead
MIN_LEASE = 1.0
COORDINATOR, WORKER = "coordinator", "worker"
LEASE_EXPIRED = "lease expired"  # campaign_workers.stop_reason of a worker others took over
COMPONENT = "campaign_workers"
# The database server's clock in epoch seconds: one clock for every machine of the crew.
DB_NOW = "CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)"

POSTGRESQL_MIGRATIONS = [
    """
    ALTER TABLE campaign_recipients ADD COLUMN worker TEXT;
    ALTER TABLE campaigns ADD COLUMN next_slot DOUBLE PRECISION;
    ALTER TABLE campaigns ADD COLUMN next_request DOUBLE PRECISION;
    ALTER TABLE campaigns ADD COLUMN pace DOUBLE PRECISION;
    CREATE TABLE campaign_workers (
        campaign_id BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        worker TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('coordinator', 'worker')),
        lease DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL,
        started_at TEXT NOT NULL DEFAULT
            (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
        stopped_at TEXT,
        stop_reason TEXT,
        PRIMARY KEY (campaign_id, worker)
    );
    CREATE INDEX campaign_recipients_claimed ON campaign_recipients (campaign_id, worker)
        WHERE status = 'inflight';
    """,
]

# Workers whose lease ran out (heartbeat older than their lease) and who did not say goodbye.
_STALE = (
    "SELECT worker FROM campaign_workers WHERE campaign_id = ?1 AND stopped_at IS NULL"
    f" AND heartbeat + lease < {DB_NOW}"
)


def migrate(conn: db.Connection) -> None:
    """The crew's tables (PostgreSQL only; the campaign tables must exist: open a Ledger
    first). CampaignError on SQLite."""
    if not db.is_postgresql(conn):
        raise CampaignError(
            "several workers need a shared PostgreSQL database (database: postgresql://...); "
            "this one is an SQLite file, sent by one `newsletter send` at a time"
        )
    db.migrate(conn, COMPONENT, [], POSTGRESQL_MIGRATIONS)


def new_worker_id() -> str:
    """`host:pid:random`: unique per process and run, readable in `status`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def reclaim_stale(conn: db.Connection, campaign_id: int) -> int:
    """Hand the inflight rows of every worker whose lease ran out back to `due` (resent by
    whoever claims them, with the same Message-ID); mark those workers stopped. How many rows
    moved. Safe to run from several workers at once (each row moves once)."""
    # One statement: the worker rows are marked stopped (row-locked) and their recipient rows
    # handed back together, so a heartbeat racing with it either renews first (the worker is
    # not stale any more) or finds its row stopped and its worker gives up (Crew._beat).
    moved = conn.execute(
        "WITH gone AS (UPDATE campaign_workers SET stopped_at = ?2, stop_reason = ?3"
        f" WHERE campaign_id = ?1 AND worker IN ({_STALE}) RETURNING worker)"
        " UPDATE campaign_recipients SET status = 'due', worker = NULL,"
        " reply = 'unknown: in flight when worker ' || worker || ' stopped answering'"
        " WHERE campaign_id = ?1 AND status = 'inflight' AND worker IN (SELECT worker FROM gone)",
        (campaign_id, _now_text(), LEASE_EXPIRED),
    ).rowcount
    return max(moved, 0)


def wait_for_stragglers(conn: db.Connection, campaign_id: int) -> None:
    """Before a coordinator starts a run (which makes every inflight row due again): let
    live workers of an earlier run finish the messages they hold (they stop when they see the
    coordinator gone), at most for their lease, so none of their readers is sent twice."""
    while True:
        row = conn.execute(
            f"SELECT MAX(w.heartbeat + w.lease - {DB_NOW}) FROM campaign_workers w"
            " WHERE w.campaign_id = ?1 AND w.stopped_at IS NULL"
            f" AND w.heartbeat + w.lease >= {DB_NOW} AND EXISTS (SELECT 1"
            " FROM campaign_recipients r WHERE r.campaign_id = ?1 AND r.status = 'inflight'"
            " AND r.worker = w.worker)",
            (campaign_id,),
        ).fetchone()
        if row is None or row[0] is None:
            return
        time.sleep(min(float(row[0]), 0.2) + 0.01)


def _now_text() -> str:
    from newsletter.campaign.ledger import _now_ms

    return _now_ms()


@dataclass(frozen=True)
class WorkerShare:
    """One worker's part of a campaign, as `status` shows it."""

    worker: str
    role: str
    sent: int
    alive: bool
    stop_reason: str | None

    def format(self) -> str:
        state = "alive" if self.alive else f"stopped ({self.stop_reason or LEASE_EXPIRED})"
        role = " (coordinator)" if self.role == COORDINATOR else ""
        return f"    {self.worker}{role}: sent {self.sent}, {state}"


def shares(conn: db.Connection, campaign_id: int) -> list[WorkerShare]:
    """Every worker that ever drained the campaign, with the messages each sent (rows `sent`
    carrying its id), alive or not; [] on SQLite or before any crew."""
    if not db.is_postgresql(conn):
        return []
    migrate(conn)
    rows = conn.execute(
        "SELECT w.worker, w.role, w.stop_reason,"
        f" (w.stopped_at IS NULL AND w.heartbeat + w.lease >= {DB_NOW}) AS alive,"
        " (SELECT COUNT(*) FROM campaign_recipients r WHERE r.campaign_id = w.campaign_id"
        " AND r.worker = w.worker AND r.status = 'sent') AS sent"
        " FROM campaign_workers w WHERE w.campaign_id = ? ORDER BY w.started_at, w.worker",
        (campaign_id,),
    ).fetchall()
    return [
        WorkerShare(r["worker"], r["role"], int(r["sent"]), bool(r["alive"]), r["stop_reason"])
        for r in rows
    ]


class Crew:
    """This process's membership of a campaign's crew: its row, its heartbeat thread (on a
    connection of its own), and why it has to stop (`reason`, set with the `stop` event).

    `role` COORDINATOR: the `send` that owns the campaign (begin_run); WORKER: a
    `send --worker`, which also stops when the coordinator is gone or the campaign paused."""

    def __init__(
        self,
        database: db.Database,
        campaign_id: int,
        role: str,
        stop: threading.Event,
        *,
        lease: float = DEFAULT_LEASE,
        worker_id: str | None = None,
    ) -> None:
        self.database = database
        self.campaign_id = campaign_id
        self.role = role
        self.stop = stop
        self.lease = max(lease, MIN_LEASE)
        self.worker_id = worker_id or new_worker_id()
        self.reason: str | None = None
        self._done = threading.Event()
        self._lost = False
        # When the last heartbeat that renewed the lease was sent, by the monotonic clock
        # (it keeps counting while the process is stopped: SIGSTOP, a suspended VM): the
        # lease lasts at least `lease` seconds after it by the database's clock.
        self._renewed = time.monotonic()
        self._conn = db.connect(database)
        migrate(self._conn)
        self._conn.execute(
            "INSERT INTO campaign_workers (campaign_id, worker, role, lease, heartbeat)"
            f" VALUES (?, ?, ?, ?, {DB_NOW})",
            (campaign_id, self.worker_id, role, self.lease),
        )
        self._thread = threading.Thread(target=self._beat, name="crew-heartbeat", daemon=True)
        self._thread.start()

    def check(self, conn: db.Connection) -> str | None:
        """Why this worker must stop now (None: go on), read on `conn`; sets `stop`."""
        if self.reason is None and self.holds_lease():
            reason = self._why_stop(conn)
            if reason is not None:
                self.reason = reason
                self.stop.set()
        return self.reason

    def holds_lease(self) -> bool:
        """True while this worker's claimed rows are surely still its own: its last renewed
        heartbeat is younger than the lease by the monotonic clock (no query: called before
        each hand-off to a transport). Once False, for good: `reason` says why, `stop` is set."""
        if self._lost:
            return False
        idle = time.monotonic() - self._renewed
        if idle < self.lease:
            return True
        self.lose(f"no heartbeat for {idle:.1f} s, over the {self.lease:g} s lease")
        return False

    def lose(self, detail: str) -> None:
        """The lease is gone: the others may have taken this worker's rows over, so it sends
        none of them (the results it still gets are written only for rows it holds)."""
        if not self._lost:
            self._lost = True
            self.reason = f"its lease expired ({detail}); the others send its readers"
            self.stop.set()

    def _why_stop(self, conn: db.Connection) -> str | None:
        row = conn.execute(
            "SELECT c.state, c.state_reason, c.owner,"
            " (SELECT COUNT(*) FROM campaign_workers w WHERE w.campaign_id = c.id"
            " AND w.role = 'coordinator' AND w.stopped_at IS NULL"
            f" AND w.heartbeat + w.lease >= {DB_NOW}) AS coordinators,"
            " (SELECT COUNT(*) FROM campaign_workers w WHERE w.campaign_id = c.id"
            " AND w.worker = ?2 AND w.stopped_at IS NULL) AS enlisted"
            " FROM campaigns c WHERE c.id = ?1",
            (self.campaign_id, self.worker_id),
        ).fetchone()
        if row is None:
            return "the campaign was deleted"
        if not row["enlisted"]:
            self.lose("another worker found it stale and took its readers over")
            return self.reason
        if row["state"] == "paused":
            return f"the campaign was paused ({row['state_reason'] or 'no reason given'})"
        if self.role == COORDINATOR:
            return None
        if row["state"] == "done":
            return "the campaign is done"
        if not row["owner"]:
            return "the coordinating send stopped (its campaign run ended)"
        if not row["coordinators"]:
            return "the coordinating send stopped answering (its lease expired)"
        return None

    def _beat(self) -> None:
        while not self._done.wait(self.lease / 3):
            sent = time.monotonic()
            if not self.holds_lease():
                return
            try:
                renewed = self._conn.execute(
                    f"UPDATE campaign_workers SET heartbeat = {DB_NOW}"
                    " WHERE campaign_id = ? AND worker = ? AND stopped_at IS NULL",
                    (self.campaign_id, self.worker_id),
                ).rowcount
                if renewed == 0:  # reclaim_stale marked it stopped: its rows are the others'
                    self.lose("another worker found it stale and took its readers over")
                    return
                self._renewed = sent
                self.check(self._conn)
            except db.Error:
                continue  # the server is away for a moment: the next beat tries again

    def leave(self, reason: str) -> None:
        """Say goodbye: the heartbeat stops and the row says why (its sent rows stay its)."""
        self._done.set()
        self._thread.join()
        try:
            # A row reclaim_stale marked stopped keeps its "lease expired".
            self._conn.execute(
                "UPDATE campaign_workers SET stopped_at = ?, stop_reason = ?"
                " WHERE campaign_id = ? AND worker = ? AND stopped_at IS NULL",
                (
                    _now_text(),
                    LEASE_EXPIRED if self._lost else reason,
                    self.campaign_id,
                    self.worker_id,
                ),
            )
        finally:
            self._conn.close()
