"""When to try a deferred recipient again: exponential backoff with full jitter.

Jitter spreads the retries of many recipients deferred at once (a 421 on every connection)
so they do not hit the server again in lock-step. A server's own hint (`retry_after`, from a
429 or an API's rate-limit header) wins when it asks for longer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    attempts_per_run: int = 3  # tries of one recipient within one run, the first included
    base_delay: float = 2.0  # seconds before the first retry (before jitter)
    max_delay: float = 120.0
    # A 'retry_after' longer than this leaves the row deferred for the next run instead of
    # keeping the run alive just to wait.
    max_wait: float = 300.0
    # Every connection refused for now (4xx) at the start of a run: keep trying this long, in
    # seconds, before giving up with nothing claimed. A connection refused while others work
    # keeps trying as long as the run lasts, at most `max_connect_delay` apart.
    connect_patience: float = 60.0
    max_connect_delay: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, run_attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `run_attempt`-th failed try (1-based) of this run."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, run_attempt - 1)))
        # "Equal jitter": at least half the backoff, so retries never collapse to zero delay.
        backoff = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is not None and retry_after > backoff:
            return retry_after + self.rng.uniform(0, min(1.0, retry_after / 10))
        return backoff

    def connect_delay(self, attempt: int) -> float:
        """Seconds before the `attempt`-th retry (1-based) of a connection refused for now."""
        return min(self.max_connect_delay, self.delay(attempt))

    def retry_in_run(self, run_attempt: int, retry_after: float | None = None) -> bool:
        """Whether a recipient that failed its `run_attempt`-th try gets another in this run."""
        if run_attempt >= self.attempts_per_run:
            return False
        return retry_after is None or retry_after <= self.max_wait
