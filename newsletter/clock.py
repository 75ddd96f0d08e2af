"""The wall clock scheduled sends are measured by, read in this one place.

`now()` is the current time, timezone-aware in UTC. For tests and rehearsals only, the
environment variable `NEWSLETTER_NOW` (ISO 8601 with an offset, e.g. `2026-12-02T07:00:00+01:00`
or `...Z`) sets where the clock *starts* (when a command starts: the CLI calls `restart`, else
when first asked); it then runs on in real time, so a `serve` started "at" a given moment still
sees its schedules come due. Leases
(see newsletter.scheduling) are measured by the same clock, so processes started with clocks
far apart see each other's leases as expired: give racing processes the same NEWSLETTER_NOW.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time

from newsletter.errors import ConfigError

NOW_VARIABLE = "NEWSLETTER_NOW"

_lock = threading.Lock()
_start: tuple[str, dt.datetime, float] | None = None  # (variable's value, its time, monotonic)


def now() -> dt.datetime:
    """The current time in UTC (aware); ConfigError for an unreadable NEWSLETTER_NOW."""
    global _start
    value = os.environ.get(NOW_VARIABLE, "").strip()
    if not value:
        return dt.datetime.now(dt.UTC)
    with _lock:
        if _start is None or _start[0] != value:
            _start = (value, _parse(value), time.monotonic())
        _, started, at = _start
    return started + dt.timedelta(seconds=time.monotonic() - at)


def restart() -> None:
    """Start the NEWSLETTER_NOW clock anew at the next `now()` (each command run in one
    process, as tests do, starts at the time it was given)."""
    global _start
    with _lock:
        _start = None


def _parse(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(
            f"environment variable {NOW_VARIABLE}: expected an ISO 8601 time with an offset "
            f"such as 2026-12-02T07:00:00+01:00, got {value!r}"
        )
    return moment.astimezone(dt.UTC)
