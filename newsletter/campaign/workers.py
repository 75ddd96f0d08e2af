"""Several processes draining one campaign on PostgreSQL: claims under a lease.

The runner (newsletter.campaign.runner) reads work from a ledger; on PostgreSQL every process
of the crew (the coordinating `send` and each `send --worker`) gives it a `ClaimingLedger`,
which hands out rows only by *claiming* them: one UPDATE over a `SELECT ... FOR UPDATE SKIP
LOCKED` of the next due rows (and deferred ones whose retry time came) marks them `inflight`
with the worker's id, so no two workers ever get the same row. Before each claim it checks the
campaign (paused, done, coordinator gone: the crew's `check`) and hands back the rows of dead
workers (newsletter.campaign.lease.reclaim_stale). A worker with nothing to claim waits while
others still hold rows (one of them may die) and ends when nothing is left.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from newsletter import db
from newsletter.campaign.lease import COORDINATOR, Crew, reclaim_stale
from newsletter.campaign.ledger import CampaignRow, Ledger, Outcome, WorkItem, _work_item
from newsletter.errors import CampaignError

# While other workers hold rows, a worker with nothing to claim looks again this often.
IDLE_POLL = 0.5
JOIN_WAIT = 60.0  # seconds a worker waits for its coordinating send to start
JOIN_POLL = 0.2


class ClaimingLedger(Ledger):
    """A Ledger on PostgreSQL whose work comes from claims made for `crew.worker_id` (see the
    module docstring). Shares the connection of the Ledger it is made from."""

    def __init__(self, ledger: Ledger, crew: Crew) -> None:
        super().__init__(ledger.conn)
        self.crew = crew
        self.claimed: set[int] = set()  # rows this worker holds (inflight, not yet recorded)
        self.lost: list[Outcome] = []  # results for rows another worker had reclaimed

    def next_due(self, campaign_id: int, after_id: int, limit: int) -> list[WorkItem]:
        """Nothing is read ahead: rows are claimed only when there is room (ready_deferred)."""
        return []

    def ready_deferred(self, campaign_id: int, now: float, limit: int) -> list[WorkItem]:
        """Claim up to `limit` rows: due ones in snapshot order, and deferred ones whose retry
        time (in this run) has come; [] when the crew has to stop."""
        if limit <= 0 or self.crew.check(self.conn) is not None:
            return []
        reclaim_stale(self.conn, campaign_id)
        rows = self.conn.execute(
            "UPDATE campaign_recipients AS r SET status = 'inflight', worker = ?2"
            " FROM (SELECT id, status FROM campaign_recipients WHERE campaign_id = ?1"
            " AND (status = 'due' OR (status = 'deferred' AND next_try <= ?3))"
            " ORDER BY id LIMIT ?4 FOR UPDATE SKIP LOCKED) AS p"
            " WHERE r.id = p.id"
            " RETURNING r.id, r.subscriber_id, p.status, r.attempts, r.run_attempts",
            (campaign_id, self.crew.worker_id, now, limit),
        ).fetchall()
        items = sorted((_work_item(r) for r in rows), key=lambda it: it.row_id)
        self.claimed.update(it.row_id for it in items)
        return items

    def heartbeat(self, campaign_id: int) -> None:
        """The campaign's own heartbeat is its coordinator's (what `status` and a second
        `send` read); a worker's lives in its crew row, renewed by the crew's thread."""
        if self.crew.role == COORDINATOR:
            super().heartbeat(campaign_id)
        else:
            self._last_beat = time.monotonic()

    def mark_inflight(self, campaign_id: int, row_ids: Sequence[int]) -> None:
        """Claimed rows are inflight already; only the heartbeat is due."""
        self._beat(campaign_id)

    def release(self, items: Sequence[WorkItem]) -> None:
        """Give back rows this worker still holds: one whose lease ran out must not put back
        to `due` a row another worker reclaimed (and may be sending)."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE campaign_recipients SET status = ?, worker = NULL"
                " WHERE id = ? AND status = 'inflight' AND worker = ?",
                ((_released(it), it.row_id, self.crew.worker_id) for it in items),
            )
        self.claimed.difference_update(it.row_id for it in items)

    def record(self, campaign_id: int, outcomes: Sequence[Outcome]) -> None:
        """Results only for the rows this worker still holds: after its lease ran out, another
        worker reclaimed the rest, and its result (the same Message-ID) stands. The results
        not written are kept in `lost` (this worker's summary must not count them)."""
        written = self._write_results(campaign_id, outcomes, self.crew.worker_id)
        if len(written) < len(outcomes):
            self.lost.extend(o for o in outcomes if o.row_id not in written)
        self.claimed.difference_update(o.row_id for o in outcomes)

    def next_retry_at(self, campaign_id: int) -> float | None:
        """When to look for work again: a deferred row's retry time, or soon while other
        workers hold rows or rows are due again (handed back); None: nothing left for us."""
        if self.crew.check(self.conn) is not None:
            return None
        retry = super().next_retry_at(campaign_id)
        row = self.conn.execute(
            "SELECT 1 FROM campaign_recipients WHERE campaign_id = ?"
            " AND (status = 'due' OR status = 'inflight') LIMIT 1",
            (campaign_id,),
        ).fetchone()
        soon = time.time() + IDLE_POLL if row is not None else None
        return min(t for t in (retry, soon) if t is not None) if retry or soon else None

    def hand_back(self, campaign_id: int) -> int:
        """After the run: rows still claimed never reached a transport (the runner records
        every message it sent before it returns): due again for the others."""
        if not self.claimed:
            return 0
        ids = sorted(self.claimed)
        moved = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            moved += self.conn.execute(
                "UPDATE campaign_recipients SET status = 'due', worker = NULL"
                f" WHERE campaign_id = ? AND status = 'inflight' AND worker = ?"
                f" AND id IN ({','.join('?' * len(chunk))})",
                (campaign_id, self.crew.worker_id, *chunk),
            ).rowcount
        self.claimed.clear()
        return moved

    def close(self) -> None:
        """The connection belongs to the Ledger this one was made from."""


def _released(item: WorkItem) -> str:
    """The status a claimed row goes back to: what it was before the claim."""
    return item.status if item.status != "inflight" else "due"


def require_crew(conn: db.Connection) -> None:
    """CampaignError unless `conn` is PostgreSQL (workers share one database)."""
    from newsletter.campaign import lease

    lease.migrate(conn)


def join_campaign(
    ledger: Ledger,
    issue_slug: str,
    list_name: str,
    segment: str | None,
    *,
    wait: float = JOIN_WAIT,
) -> CampaignRow:
    """The campaign of (issue, list, segment) once its coordinating `send` is running (it
    created the campaign and took it over), as that run stored it (its transport URL, rate and
    concurrency: what the worker sends with), waiting up to `wait` seconds for that, so that
    workers may be started together with the coordinator. CampaignError after that, or at
    once when the campaign is finished or paused (only the coordinator resumes those)."""
    deadline = time.monotonic() + wait
    while True:
        found = ledger.find(issue_slug, list_name, segment)
        if found is not None and found.state == "paused":
            raise CampaignError(
                f"the campaign of '{issue_slug}' to {found.audience} is paused "
                f"({found.state_reason or 'no reason given'}); resume it with `newsletter send` "
                "(the coordinator), then start the workers"
            )
        if found is not None and ledger.is_being_sent(found.id):
            # Read the row again: `found` may predate the coordinator's begin_run, which
            # stores the run's transport URL, rate and concurrency together with its owner.
            # A stale copy (no URL) would send through this worker's own configured transport
            # (the outbox by default) while the ledger records those readers as sent.
            return ledger.get(found.id)
        if found is not None and found.state == "done":
            raise CampaignError(
                f"the campaign of '{issue_slug}' to {found.audience} is done: nothing to help with"
            )
        if time.monotonic() >= deadline:
            raise CampaignError(
                f"no `newsletter send {issue_slug}` is running to join (waited {wait:.0f} s): "
                "start the coordinating send first, on any machine using this database, then "
                "the workers with --worker"
            )
        time.sleep(JOIN_POLL)
