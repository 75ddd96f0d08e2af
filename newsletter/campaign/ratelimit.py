"""One rate limit shared by every worker: N messages per second, minute or hour, and as many
requests to the provider (a batch of 100 is one request), adapted to the provider's own limit.

It also carries a server's request to wait (`hold`): a 429 with Retry-After pauses every
worker, not only the one that got it.

The request pace (the transports call `wait_for_request` before each request: it is their
`RequestGate`) starts from what the provider says its limit is (`provider_limit`: SES
GetAccount's MaxSendRate, a `ratelimit-limit` header), never above `--rate`. A throttle reply
(`throttled`) cuts the pace (multiplicative decrease, once per burst: every request in flight
when the provider started refusing comes back throttled together; to 70%, or to 85% when the
refused pace was the published limit itself), and each clean second in which the pace held
requests back probes up by a tenth, never above the provider's published limit, nor above a
pace already refused when there is none (as TCP's congestion control does). Without a
published limit the first throttle measures the pace that was refused.

Messages are paced evenly (a virtual schedule, as in GCRA): each acquisition reserves the next
free slot on a global timeline, so 4 workers at 20/s together send 20 a second, not 80, and
no burst at start-up exceeds the limit. The lock is held only to reserve a slot, never while
sleeping.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.errors import CampaignError
from newsletter.transports.base import RequestGate

DECREASE = 0.7  # the pace after a throttle, as a share of the pace that was refused
# ... when that pace was the provider's own published limit: arrivals bunched by the network
# or a busy machine, not a wrong guess, so a milder cut
DECREASE_AT_LIMIT = 0.85
PROBE_EVERY = 1.0  # seconds without a throttle before the pace goes up again
PROBE_STEP = 0.1  # how much it goes up each time, as a share of the pace
MIN_PACE = 0.2  # requests per second: the pace never drops below (one every five seconds)

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


class RateLimiter(RequestGate):
    """Thread-safe pacing to `rate` (messages, and requests); `None` means unlimited, until the
    provider says or shows otherwise."""

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
        self.stop: threading.Event | None = None  # set by the runner: waits end when it is set
        # Requests: `pace` is the current adaptive limit (None: none yet), `ceiling` the
        # provider's published one; both in requests per second.
        self.pace: float | None = None
        self.ceiling: float | None = None
        self.throttles = 0  # throttle replies seen in this run
        # Seconds of throttling with nothing accepted after which the run stopped retrying the
        # throttled readers (the runner sets it); None: it never had to.
        self.gave_up_after: float | None = None
        self.throttled_since_success = 0.0  # clock time of the first throttle since a send
        self._request_next = 0.0
        self._last_change = 0.0
        self._last_cut = float("-inf")
        self._pressed = False  # a request waited for the pace since it last changed
        self._refused: float | None = None  # the lowest pace a throttle answered
        # Request times of the last second (the measured pace), oldest first: the times are
        # reserved in order, so the stale ones are always at the left (O(1) per request; a
        # list rebuilt per request cost O(requests per second) each at thousands a second).
        self._recent: deque[float] = deque()

    # -- requests (the transports' gate) ---------------------------------------------------
    def request_rate(self) -> float | None:
        """Requests per second allowed now: the adaptive pace, never above `--rate`."""
        limits = [r for r in (self.pace, self.rate.per_second if self.rate else None) if r]
        return min(limits) if limits else None

    def wait_for_request(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._request_next, self._hold)
            rate = self.request_rate()
            if rate is not None:
                # The pace held this request back: there is demand to probe upwards for.
                self._pressed = self._pressed or self._request_next > max(now, self._hold)
                self._request_next = start + 1.0 / rate
            recent = self._recent
            recent.append(start)
            while recent[0] <= start - 1.0:
                recent.popleft()
            self._probe(now)
        self._wait(start - now)

    def provider_limit(self, per_second: float) -> None:
        with self._lock:
            self.ceiling = per_second
            if self.pace is None or self.pace > per_second:
                self.pace = per_second

    def throttled(self, retry_after: float | None = None, requests: int = 1) -> None:
        """A throttle reply to `requests` requests (a batch sent as one request per message
        brings several at once): slow every worker down (once per burst), wait a moment."""
        with self._lock:
            now = self._clock()
            self.throttles += requests
            if not self.throttled_since_success:
                self.throttled_since_success = now
            rate = self.request_rate()
            if now - self._last_cut >= PROBE_EVERY:
                measured = float(sum(1 for t in self._recent if t > now - 1.0))
                # Without a pace of our own yet, what was refused is what we sent (under a
                # --rate that may be far below the --rate itself).
                refused = rate if self.pace is not None and rate else max(measured, MIN_PACE)
                at_limit = self.ceiling is not None and refused >= 0.95 * self.ceiling
                self.pace = max(MIN_PACE, refused * (DECREASE_AT_LIMIT if at_limit else DECREASE))
                self._refused = min(self._refused or refused, refused)
                self._pressed = False
                self._last_change = self._last_cut = now
            wait = retry_after if retry_after is not None else 1.0 / (self.pace or 1.0)
            self._hold = max(self._hold, now + wait)

    def succeeded(self) -> None:
        with self._lock:
            self.throttled_since_success = 0.0

    def _probe(self, now: float) -> None:
        """Each clean second in which the pace held requests back, a little faster, up to the
        published limit (under the lock). A pace nobody presses against stays where it is, so
        the pace reported at the end is one the provider accepted."""
        if self.pace is None or now - self._last_change < PROBE_EVERY or not self._pressed:
            return
        # Never above the published limit, nor, without one, above a pace already refused.
        top = self.ceiling if self.ceiling is not None else self._refused or float("inf")
        if self.pace < top:
            self.pace = min(top, self.pace * (1 + PROBE_STEP))
        self._last_change = now
        self._pressed = False

    def _wait(self, delay: float) -> None:
        if delay <= 0:
            return
        if self.stop is not None:
            self.stop.wait(delay)
        else:
            self._sleep(delay)

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
