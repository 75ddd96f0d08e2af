"""One rate limit shared by every worker: N messages per second, minute or hour.

It also carries a server's request to wait (`hold`): a 429 with Retry-After pauses every
worker, not only the one that got it.

Messages are paced evenly (a virtual schedule, as in GCRA): each acquisition reserves the next
free slot on a global timeline, so 4 workers at 20/s together send 20 a second, not 80, and
no burst at start-up exceeds the limit. The lock is held only to reserve a slot, never while
sleeping.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.errors import CampaignError

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/|per\s+)\s*([a-z]+?)s?\s*$", re.I)


@dataclass(frozen=True)
class Rate:
    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per_seconds, f"{self.per_seconds}s")
        return f"{self.count:g}/{unit}"


def parse_rate(text: str) -> Rate:
    """'20/s', '1200/m', '50000/h', '10 per second' -> Rate; a clear error otherwise."""
    match = _RATE.match(text or "")
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if not match or unit is None or float(match.group(1)) <= 0:
        raise CampaignError(
            f"invalid rate {text!r}: expected a positive number per s, m or h, "
            "such as 20/s, 1200/m or 50000/h"
        )
    return Rate(float(match.group(1)), unit)


class RateLimiter:
    """Thread-safe pacing to `rate`; `None` means unlimited."""

    def __init__(
        self,
        rate: Rate | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._interval = 1.0 / rate.per_second if rate else 0.0
        self._next = 0.0
        self._hold = 0.0  # nobody sends before this (a server asked everyone to wait)
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def reserve(self, n: int = 1) -> float:
        """Reserve `n` slots; return how long the caller must wait before using them."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next, self._hold)
            if self.rate is None:
                return start - now
            self._next = start + n * self._interval
            # The last of the n slots is the one a batch has to wait for.
            return start + (n - 1) * self._interval - now

    def hold(self, seconds: float) -> None:
        """A server said "retry after N seconds" (429, Retry-After): every worker waits, not
        just the one that was told, instead of each running into the same refusal."""
        with self._lock:
            self._hold = max(self._hold, self._clock() + seconds)

    def acquire(self, n: int = 1, stop: threading.Event | None = None) -> bool:
        """Wait for `n` slots; False if `stop` was set while waiting."""
        delay = self.reserve(n)
        if delay <= 0:
            return True
        if stop is not None:
            return not stop.wait(delay)
        self._sleep(delay)
        return True
