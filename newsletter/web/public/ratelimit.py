"""A per-client sliding-window rate limiter with O(1) amortised work and bounded memory."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `limit` hits per `window` seconds per key (a sliding window, in memory).

    Keys are kept in least-recently-hit order: each check drops the keys whose last hit left
    the window from the front (each key is dropped once, so the work is O(1) amortised), and at
    most `max_keys` keys are kept (the least recently seen are forgotten first). Each key holds
    at most `limit` timestamps."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hits)

    def check(self, key: str) -> float:
        """0 if allowed (and counted), else the seconds to wait before the next try."""
        now = self.clock()
        horizon = now - self.window
        with self._lock:
            hits = self._hits
            while hits:
                oldest_key, oldest = next(iter(hits.items()))
                if oldest and oldest[-1] > horizon:
                    break
                del hits[oldest_key]
            mine = hits.get(key)
            if mine is None:
                if len(hits) >= self.max_keys:
                    hits.popitem(last=False)
                mine = hits[key] = deque(maxlen=max(self.limit, 1))
            else:
                hits.move_to_end(key)
            while mine and mine[0] <= horizon:
                mine.popleft()
            if len(mine) >= self.limit:
                return max(1.0, mine[0] + self.window - now)
            mine.append(now)
            return 0.0
