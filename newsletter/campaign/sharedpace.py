"""The campaign's one rate limit shared by every process of its crew, through PostgreSQL.

`RateLimiter` (newsletter.campaign.ratelimit) paces one process's workers on a virtual
schedule. Across processes the schedule lives in the campaign's row: `campaigns.next_slot` is
the next free send slot in epoch seconds of the database server's clock. A process reserves a
small block of slots (about a quarter second's worth) in one `UPDATE ... RETURNING`, hands them
to its threads one by one, and each sleeps until its slot. So three workers at 20/s together
send 20 a second, whatever their clocks say.

A server's "wait" (Retry-After, a throttle) moves `next_slot` forward for everyone, and the
adaptive request pace (a throttle's cut) is written to `campaigns.pace`, adopted by every
worker at its next reservation; while there is such a pace, each request reserves its slot in
`campaigns.next_request` the same way.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from newsletter import db
from newsletter.campaign.lease import DB_NOW
from newsletter.campaign.ratelimit import Rate, RateLimiter

# Slots reserved at once: a few (a block is this process's alone, so a big one would hold
# the others back while a slow process works through it), at most a tenth of a second's worth.
BLOCK_SLOTS = 4
BLOCK_SECONDS = 0.1
UNLIMITED_BLOCK = 64  # without a rate, slots are reserved only to see a shared hold


class SharedRateLimiter(RateLimiter):
    """A RateLimiter whose schedule is the campaign row's (see the module docstring). Opens a
    connection of its own (the worker threads reserve; the ledger thread owns the ledger's)."""

    def __init__(self, rate: Rate | None, database: db.Database, campaign_id: int) -> None:
        super().__init__(rate)
        self.campaign_id = campaign_id
        self._conn = db.connect(database)
        self._db_lock = threading.Lock()
        self._slots: list[float] = []  # reserved slots not yet handed out (monotonic times)
        self._seen_pace: float | None = None
        # This process's crew lease (Crew.holds_lease), checked once a slot comes: a process
        # stopped past its lease (SIGSTOP, a suspended VM) sends none of the rows the others
        # took over meanwhile. None: no crew (yet).
        self.holds_lease: Callable[[], bool] | None = None

    def acquire(self, n: int = 1, stop: threading.Event | None = None) -> bool:
        """Wait for `n` slots; False if `stop` was set meanwhile or the lease is gone."""
        ok = super().acquire(n, stop)
        return ok and (self.holds_lease is None or self.holds_lease())

    def reserve(self, n: int = 1) -> float:
        """Reserve `n` slots; how long the caller waits before using them."""
        with self._db_lock:
            # Slots this process was too slow to use are dropped, never sent late: late ones
            # would crowd the other workers' slots (a burst over the limit). The rate is lower.
            missed = self._clock() - self._interval
            self._slots = [slot for slot in self._slots if slot >= missed]
            if len(self._slots) < n:
                self._slots = self._reserve_block(max(n, self._block()))
            slots, self._slots = self._slots[:n], self._slots[n:]
        with self._lock:
            now = self._clock()
            return max(slots[-1], self._hold) - now

    def _block(self) -> int:
        if self.rate is None:
            return UNLIMITED_BLOCK
        return max(1, min(BLOCK_SLOTS, math.floor(self.rate.per_second * BLOCK_SECONDS)))

    def _reserve_block(self, n: int) -> list[float]:
        interval = self._interval
        row = self._conn.execute(
            f"UPDATE campaigns SET next_slot = GREATEST(COALESCE(next_slot, 0), {DB_NOW}) + ?1"
            f" WHERE id = ?2 RETURNING next_slot - ?1, {DB_NOW}, pace",
            (n * interval, self.campaign_id),
        ).fetchone()
        start, db_now, pace = float(row[0]), float(row[1]), row[2]
        self._adopt(pace)
        local = self._clock() + (start - db_now)
        return [local + i * interval for i in range(n)]

    def _adopt(self, pace: float | None) -> None:
        """Another worker's throttle cut the shared pace since we last looked: follow it."""
        if pace is None or pace == self._seen_pace:
            return
        self._seen_pace = float(pace)
        with self._lock:
            if self.pace is None or self.pace > pace:
                self.pace = float(pace)

    def hold(self, seconds: float) -> None:
        super().hold(seconds)
        self._push_hold(seconds)

    def throttled(self, retry_after: float | None = None, requests: int = 1) -> None:
        super().throttled(retry_after, requests)
        with self._lock:
            pace, wait = self.pace, max(self._hold - self._clock(), 0.0)
        with self._db_lock:
            self._conn.execute(
                "UPDATE campaigns SET pace = ? WHERE id = ?", (pace, self.campaign_id)
            )
            self._seen_pace = pace
        self._push_hold(wait)

    def _push_hold(self, seconds: float) -> None:
        with self._db_lock:
            self._conn.execute(
                f"UPDATE campaigns SET next_slot = GREATEST(COALESCE(next_slot, 0), {DB_NOW} + ?)"
                " WHERE id = ?",
                (seconds, self.campaign_id),
            )

    def wait_for_request(self) -> None:
        """Without an adaptive pace, requests follow the message slots; with one, each request
        reserves the next request slot of the whole crew."""
        if self.pace is None:
            super().wait_for_request()
            return
        rate = self.request_rate() or self.pace
        with self._db_lock:
            row = self._conn.execute(
                "UPDATE campaigns SET next_request ="
                f" GREATEST(COALESCE(next_request, 0), {DB_NOW}) + ?1"
                f" WHERE id = ?2 RETURNING next_request - ?1, {DB_NOW}",
                (1.0 / rate, self.campaign_id),
            ).fetchone()
        delay = float(row[0]) - float(row[1])
        with self._lock:
            now = self._clock()
            self._pressed = self._pressed or delay > 0
            self._recent = [t for t in self._recent if t > now - 1.0] + [now + max(delay, 0.0)]
            self._probe(now)
            delay = max(delay, self._hold - now)
        self._wait(delay)

    def close(self) -> None:
        self._conn.close()
