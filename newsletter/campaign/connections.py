"""Opening the transports of a run, where a refusal for now (4xx) is not a refusal for good.

A relay that allows fewer connections than `--concurrency` greets the extra ones with
`421 4.7.0 Too many concurrent connections`. Those connections are *waiting*: the run starts
with the ones accepted, and each waiting connection's worker retries with backoff while the
run lasts (`ConnectionStats` counts what happened, for the summary). Only when every connection
is refused for now does the run wait before starting, for at most
`RetryPolicy.connect_patience` seconds, then stops with nothing claimed. A permanent refusal
(5xx, a certificate that fails verification, bad credentials, a bad URL) stops the run at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from newsletter.campaign.retry import RetryPolicy
from newsletter.errors import CampaignError, TransportTemporaryError
from newsletter.transports.base import Transport


@dataclass
class ConnectionStats:
    """What opening the connections took: filled by the openers and the waiting workers."""

    wanted: int = 0  # --concurrency
    opened_at_start: int = 0
    opened_later: int = 0  # waiting connections that got through on a retry
    refusals: int = 0  # refused-for-now attempts (4xx), first tries included
    last_refusal: str = ""
    gave_up: int = 0  # waiting connections that met a permanent refusal and stopped trying
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def refused(self, reply: str) -> None:
        with self.lock:
            self.refusals += 1
            self.last_refusal = reply

    def summary(self) -> str | None:
        """A line for the send summary when the server refused connections, else None."""
        if not self.refusals:
            return None
        waiting = self.wanted - self.opened_at_start
        if waiting <= 0:  # refused at first, then every connection opened together
            return (
                f"The server refused {self.refusals} attempt{'s' if self.refusals != 1 else ''}"
                f" to connect for now ({self.last_refusal}); a retry got through."
            )
        never = waiting - self.opened_later
        text = (
            f"The server refused {waiting} of {self.wanted} connections for now "
            f"({self.last_refusal}); "
        )
        if never <= 0:
            return text + "they connected on a retry."
        allowed = self.opened_at_start + self.opened_later
        return text + (
            f"{never} never got through after {self.refusals} attempts: it seems to allow "
            f"{allowed} at a time, so try --concurrency {max(1, allowed)}."
        )


@dataclass
class Connections:
    opened: list[Transport]  # one per worker that can send now (the same one when thread-safe)
    waiting: list[Transport]  # refused for now: their workers connect with backoff
    stats: ConnectionStats


def open_connections(
    factory: Callable[[], Transport],
    concurrency: int,
    retry: RetryPolicy | None = None,
    stop: threading.Event | None = None,
) -> Connections:
    """Open `concurrency` transports in parallel (one, shared, when thread-safe).

    Raises the first permanent error (closing what was opened); CampaignError when every
    connection stayed refused for now for `retry.connect_patience` seconds.
    """
    retry = retry or RetryPolicy()
    stop = stop or threading.Event()
    stats = ConnectionStats(wanted=concurrency)
    first = factory()
    instances = [first]
    if not first.thread_safe:
        instances += [factory() for _ in range(concurrency - 1)]
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        outcomes = _open_all(instances)
        permanent = [e for e in outcomes if e is not None and not _temporary(e)]
        opened = [t for t, e in zip(instances, outcomes, strict=True) if e is None]
        if permanent:
            close_transports(opened)
            raise permanent[0]
        for e in outcomes:
            if e is not None:
                stats.refused(str(e))
        if opened:
            break
        waited = time.monotonic() - started
        if waited >= retry.connect_patience or stop.is_set():
            raise CampaignError(
                f"every connection to {first.describe()} was refused for now "
                f"({stats.last_refusal}); retried for {waited:.0f}s. Nothing was sent and "
                "nobody was claimed: send again later"
                + ("" if first.thread_safe else ", or with a lower --concurrency")
            )
        stop.wait(min(retry.delay(attempt), max(0.0, retry.connect_patience - waited)))
    if first.thread_safe:
        stats.opened_at_start = concurrency
        return Connections([first] * concurrency, [], stats)
    stats.opened_at_start = len(opened)
    waiting = [t for t, e in zip(instances, outcomes, strict=True) if e is not None]
    return Connections(opened, waiting, stats)


def connect_later(
    transport: Transport,
    stats: ConnectionStats,
    retry: RetryPolicy,
    done: threading.Event,
) -> bool:
    """A waiting connection's worker: retry opening with backoff until it opens (True) or the
    run is over or the refusal becomes permanent (False)."""
    attempt = 0
    while not done.is_set():
        attempt += 1
        if done.wait(retry.connect_delay(attempt)):
            return False
        try:
            transport.open()
        except Exception as exc:  # every failure is counted; a permanent one ends the wait
            if _temporary(exc):
                stats.refused(str(exc))
                continue
            with stats.lock:
                stats.gave_up += 1
            return False
        with stats.lock:
            stats.opened_later += 1
        return True
    return False


def _temporary(exc: BaseException) -> bool:
    return isinstance(exc, TransportTemporaryError)


def _open_all(instances: Sequence[Transport]) -> list[BaseException | None]:
    """Open each (in parallel: a remote login costs round trips); None where it worked."""

    def _open(t: Transport) -> BaseException | None:
        try:
            t.open()
            return None
        except BaseException as exc:  # returned to the caller, who decides
            return exc

    if len(instances) == 1:
        return [_open(instances[0])]
    with ThreadPoolExecutor(max_workers=min(len(instances), 16)) as pool:
        return list(pool.map(_open, instances))


def close_transports(transports: Sequence[Transport]) -> None:
    for t in {id(t): t for t in transports}.values():
        # Closing is best effort: the results are already recorded.
        with contextlib.suppress(Exception):
            t.close()
