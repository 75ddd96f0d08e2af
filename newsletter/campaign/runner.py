"""The send loop: read due rows, hand them to workers, record what the transports said.

One thread (the caller's) owns the ledger: it reads due rows ahead in chunks and looks up their
subscribers (skipping those who left), commits rows `inflight` just before queueing them for a
worker, and writes results in grouped statements as they come back. Worker threads wait for the
global rate limit, build each message (so its Date is the moment it is sent), and call their
transport. The rows in flight are bounded, so memory stays flat however long the list is, and
a crash leaves at most that many recipients "unknown".
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from newsletter.campaign.connections import ConnectionStats, connect_later
from newsletter.campaign.ledger import Counts, Ledger, Outcome, WorkItem
from newsletter.campaign.progress import Progress, Tally
from newsletter.campaign.ratelimit import RateLimiter
from newsletter.campaign.retry import RetryPolicy
from newsletter.errors import (
    CampaignPaused,
    NewsletterError,
    TransportAuthError,
    TransportConfigError,
    TransportError,
)
from newsletter.transports.base import (
    DeliveryResult,
    OutgoingMessage,
    Transport,
    account_problem,
)

# A recipient ready to go: the message is built by the worker, right before sending (so its
# Date is the time it is sent, even under a slow rate limit).
Job = tuple[WorkItem, Callable[[], OutgoingMessage]]


class MessageSource(Protocol):
    def prepare(self, items: Sequence[WorkItem]) -> tuple[list[Job], list[Outcome]]:
        """Jobs for the items to send, outcomes (skipped...) for those not to send."""

    def bounced(self, subscriber_id: int, reply: str) -> None:
        """The server said this address does not exist: stop mailing it."""


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_failures_in_a_row: int = 50
    # Messages in flight (queued for or held by a worker, not yet recorded) per worker, for
    # one-message-at-a-time transports (batching ones get two batches): after a crash these are
    # "unknown" and resent, though only those a worker was sending (at most `concurrency`)
    # plus results of the last group commit can be duplicates. Enough that workers never wait
    # for the ledger thread, which refills at half of it.
    window_per_worker: int = 16
    group_commit_delay: float = 0.005  # seconds
    prefetch: int = 256  # due rows read and looked up ahead (still "due" in the ledger)
    # Called after each recorded batch with (sent, bounced) of this run: a reason to pause the
    # campaign, or None (the reputation guard, newsletter.bounces.guard).
    guard: Callable[[int, int], str | None] | None = None


@dataclass
class RunResult:
    tally: Tally
    counts: Counts  # the whole campaign after this run
    elapsed: float
    interrupted: bool = False
    connections: ConnectionStats | None = None  # refusals while connecting, for the summary
    stopped_because: str | None = None  # a crew's worker stopped by the campaign (workers.py)


_STOP = object()


class Runner:
    def __init__(
        self,
        ledger: Ledger,
        campaign_id: int,
        source: MessageSource,
        transports: Sequence[Transport],
        limiter: RateLimiter,
        options: RunOptions,
        progress: Progress,
        stop: threading.Event,
        waiting: Sequence[Transport] = (),
        connections: ConnectionStats | None = None,
    ) -> None:
        """`transports` are open, one per worker; `waiting` ones were refused for now and get
        workers that connect with backoff (see `connections.connect_later`) before sending."""
        self.ledger = ledger
        self.campaign_id = campaign_id
        self.source = source
        self.transports = transports
        self.waiting = list(waiting)
        self.connections = connections or ConnectionStats(
            wanted=len(transports), opened_at_start=len(transports)
        )
        self.finished = threading.Event()  # the run is over: waiting workers stop trying
        self.limiter = limiter
        _share_pace(limiter, stop, [*transports, *self.waiting])
        self.options = options
        self.progress = progress
        self.stop = stop
        self.max_batch = max(1, min(t.max_batch for t in transports))
        self.max_batch = _paced_batch(self.max_batch, transports, options.concurrency)
        self.window = options.concurrency * self._per_worker(options)
        self.prefetch = options.prefetch
        if limiter.rate is not None:
            # Under a rate limit: batches of about a quarter second's worth (a big batch would
            # wait for all its slots, then go out as a burst), and no more read ahead or queued
            # than about two seconds' worth, so who is still subscribed is checked shortly
            # before each send.
            per_second = limiter.rate.per_second
            self.max_batch = max(1, min(self.max_batch, int(per_second / 4)))
            self.window = min(
                options.concurrency * self._per_worker(options),
                max(options.concurrency, int(per_second * 2)),
            )
            self.prefetch = max(1, min(self.prefetch, int(per_second * 2)))
        # SimpleQueue (C, no task tracking): one put and one get per message each way.
        self.work: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[tuple[list[WorkItem], list[DeliveryResult] | None]] = (
            queue.SimpleQueue()
        )
        self.inflight: dict[int, WorkItem] = {}  # queued for or held by a worker
        self.prefetched: deque[Job] = deque()  # still "due" in the ledger
        self.due_cursor = 0
        self.due_exhausted = False
        self.tally = Tally()
        self.streak = 0
        self._streak_lock = threading.Lock()
        self.paused_reason: str | None = None
        self._pause_lock = threading.Lock()
        self._last_beat = time.monotonic()

    def _per_worker(self, options: RunOptions) -> int:
        """Rows in flight per worker: `window_per_worker` single messages, or two batches of a
        batching transport (a 1,000-recipient API batch needs no more to stay busy)."""
        if self.max_batch == 1:
            return options.window_per_worker
        return 2 * self.max_batch

    # -- the ledger thread -----------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._worker, args=(t,), name=f"send-{i}", daemon=True)
            for i, t in enumerate(self.transports)
        ]
        threads += [
            threading.Thread(target=self._waiting_worker, args=(t,), name=f"wait-{i}", daemon=True)
            for i, t in enumerate(self.waiting)
        ]
        for t in threads:
            t.start()
        try:
            self._loop()
        except BaseException:
            self.stop.set()  # a second Ctrl-C or a database error: wake workers, stop at once
            raise
        finally:
            self.finished.set()
            self._release_queued()
            for _ in threads:
                self.work.put(_STOP)
            for t in threads:
                t.join()
            # Whatever the workers finished after the loop ended is still recorded.
            self._drain(block=False)
        self.progress.finish(self.tally)
        if self.paused_reason:
            self.ledger.set_state(self.campaign_id, "paused", self.paused_reason)
            raise CampaignPaused(self.paused_reason)
        counts = self.ledger.counts(self.campaign_id)
        if counts.remaining == 0:
            self.ledger.set_state(self.campaign_id, "done")
        return RunResult(
            self.tally,
            counts,
            time.monotonic() - started,
            interrupted=self.stop.is_set(),
            connections=self.connections,
        )

    def _loop(self) -> None:
        while True:
            self._drain(block=False)
            if self.stop.is_set():
                self._release_queued()
                if not self.inflight:
                    return
                self._drain(block=True, timeout=0.2)
                continue
            # Refill only below the low-water mark, then up to the window: fewer, larger
            # ledger writes while the workers still have work queued.
            if len(self.inflight) <= self.window // 2 and self._fill():
                continue
            if not self.inflight and not self.prefetched:
                retry_at = self.ledger.next_retry_at(self.campaign_id)
                if retry_at is None:
                    return
                self._beat()
                self.stop.wait(min(max(retry_at - time.time(), 0.0), 1.0))
                continue
            self._drain(block=True, timeout=0.5)

    def _fill(self) -> bool:
        """Hand more messages to the workers; False when nothing is ready right now.

        Due rows are read and their messages built ahead, in chunks (cheap queries, one
        `get_many`), but marked `inflight` only when they are queued for a worker, so after a
        crash "unknown" means: possibly handed to a transport.
        """
        room = self.window - len(self.inflight)
        now = time.time()
        ready: list[Job] = []
        retries = self.ledger.ready_deferred(self.campaign_id, now, room)
        if retries:
            ready += self._prepare(retries)
        while len(ready) < room:
            if len(self.prefetched) == 0:
                if not self._prefetch():
                    break
                continue
            ready.append(self.prefetched.popleft())
        if not ready:
            return bool(retries)  # all of them were skipped or failed to build: look again
        self.ledger.mark_inflight(self.campaign_id, [item.row_id for item, _ in ready])
        for item, _ in ready:
            self.inflight[item.row_id] = item
        for start in range(0, len(ready), self.max_batch):
            self.work.put(ready[start : start + self.max_batch])
        return True

    def _prefetch(self) -> bool:
        if self.due_exhausted:
            return False
        items = self.ledger.next_due(self.campaign_id, self.due_cursor, self.prefetch)
        if len(items) < self.prefetch:
            self.due_exhausted = True
        if not items:
            return False
        self.due_cursor = items[-1].row_id
        self.prefetched.extend(self._prepare(items))
        return True

    def _prepare(self, items: list[WorkItem]) -> list[Job]:
        """Jobs for the items; those no longer subscribed are recorded as skipped at once."""
        jobs, outcomes = self.source.prepare(items)
        if outcomes:
            self.ledger.record(self.campaign_id, outcomes)
            for outcome in outcomes:
                self._count(outcome.status)
        return jobs

    def _drain(self, *, block: bool, timeout: float = 0.0) -> None:
        """Record every result available now (waiting up to `timeout` for the first)."""
        outcomes: list[Outcome] = []
        bounces: list[tuple[int, str]] = []
        released: list[WorkItem] = []
        try:
            first = self.results.get(timeout=timeout) if block else self.results.get_nowait()
        except queue.Empty:
            return
        if block and not self.stop.is_set() and self.work.qsize() >= self.options.concurrency:
            # Group commit: every worker has another batch queued, so let a few more results
            # arrive; one write and one wake-up of this thread then cover several messages.
            # The price: after a crash, results of the last few milliseconds are resent.
            time.sleep(self.options.group_commit_delay)
        batch: tuple[list[WorkItem], list[DeliveryResult] | None] | None = first
        now = time.time()
        inflight, tally, add = self.inflight, self.tally, outcomes.append
        while batch is not None:
            items, results = batch
            if results is None:  # stopped before it reached the transport
                released.extend(self.inflight.pop(it.row_id) for it in items)
            else:
                for item, result in zip(items, results, strict=True):
                    del inflight[item.row_id]
                    if result.status == "sent" and not result.throttled and not result.account:
                        # The usual case, inline (this thread handles every message).
                        tally.sent += 1
                        add(Outcome(item.row_id, "sent", result.reply, result.provider_id))
                        continue
                    add(self._outcome(item, result, now))
                    if result.status == "bounced":
                        bounces.append((item.subscriber_id, result.reply))
            try:
                batch = self.results.get_nowait()
            except queue.Empty:
                batch = None
        if released:
            self.ledger.release(released)
        self.ledger.record(self.campaign_id, outcomes)
        self._last_beat = time.monotonic()
        for subscriber_id, reply in bounces:
            try:
                self.source.bounced(subscriber_id, reply)
            except NewsletterError as exc:  # the ledger has the bounce; the send goes on
                self.progress.note(f"could not mark subscriber {subscriber_id} bounced: {exc}")
        if self.options.guard is not None and outcomes:
            reason = self.options.guard(self.tally.sent, self.tally.bounced)
            if reason:
                self._pause(reason)
        self.progress.update(self.tally)

    def _outcome(self, item: WorkItem, result: DeliveryResult, now: float) -> Outcome:
        if result.account:  # not this reader's fault: due again when the run resumes
            return Outcome(item.row_id, "due", result.reply, counts_attempt=False)
        self._count("put_back" if result.throttled else result.status)
        if result.throttled:
            # Put back, not an attempt: tried again once the shared pace lets it through,
            # unless the provider has refused everything for longer than we wait in a run.
            since = self.limiter.throttled_since_success
            stuck = since and time.monotonic() - since > self.options.retry.max_wait
            if stuck:
                self.limiter.gave_up_after = self.options.retry.max_wait
            wait = max(result.retry_after or 0.0, 0.5)
            next_try = None if stuck or wait > self.options.retry.max_wait else now + wait
            return Outcome(item.row_id, "deferred", result.reply, None, next_try, False)
        if result.status == "sent":
            return Outcome(item.row_id, "sent", result.reply, result.provider_id)
        if result.status != "deferred":
            return Outcome(item.row_id, result.status, result.reply, result.provider_id)
        run_attempt = item.run_attempts + 1
        retry = self.options.retry
        next_try = None
        if retry.retry_in_run(run_attempt, result.retry_after):
            next_try = now + retry.delay(run_attempt, result.retry_after)
        return Outcome(item.row_id, "deferred", result.reply, result.provider_id, next_try)

    def _count(self, status: str) -> None:
        setattr(self.tally, status, getattr(self.tally, status) + 1)

    def _release_queued(self) -> None:
        """Take back batches no worker has started: they were never offered to a transport."""
        released: list[WorkItem] = []
        while True:
            try:
                batch = self.work.get_nowait()
            except queue.Empty:
                break
            if batch is _STOP:
                self.work.put(_STOP)
                break
            released.extend(self.inflight.pop(it.row_id) for it, _ in batch)  # type: ignore[attr-defined]
        if released:
            self.ledger.release(released)

    def _beat(self) -> None:
        if time.monotonic() - self._last_beat > 30:
            self.ledger.heartbeat(self.campaign_id)
            self._last_beat = time.monotonic()

    # -- worker threads --------------------------------------------------------------------
    def _waiting_worker(self, transport: Transport) -> None:
        if connect_later(transport, self.connections, self.options.retry, self.finished):
            self._worker(transport)

    def _worker(self, transport: Transport) -> None:
        while True:
            batch = self.work.get()
            if batch is _STOP:
                return
            jobs: list[Job] = batch  # type: ignore[assignment]
            items = [item for item, _ in jobs]
            if self.stop.is_set() or not self.limiter.acquire(len(jobs), self.stop):
                self.results.put((items, None))
                continue
            self.results.put((items, self._deliver(transport, jobs)))

    def _deliver(self, transport: Transport, jobs: list[Job]) -> list[DeliveryResult]:
        """Build the batch's messages and send them: one result per job, in order."""
        results: list[DeliveryResult | None] = [None] * len(jobs)
        built: list[tuple[int, OutgoingMessage]] = []
        for index, (_, make) in enumerate(jobs):
            try:
                built.append((index, make()))
            except (NewsletterError, ValueError) as exc:  # this recipient's data, not the server
                results[index] = DeliveryResult("failed", f"message not built: {exc}")
        if built:
            try:
                sent = _send(transport, [message for _, message in built])
            except (TransportAuthError, TransportConfigError) as exc:
                # A key revoked or a login refused mid-run: every further send would fail the
                # same way, so stop now instead of deferring the whole list.
                sent = [account_problem(str(exc)) for _ in built]
            sent = _same_refusal_for_all(sent)
            self._pace(sent, transport.request_per_message)
            account = next((r for r in sent if r.account), None)
            if account is not None:
                self._pause(
                    f"{account.reply}; the campaign is paused and its readers are still due: "
                    "fix it and send again to resume"
                )
            self._watch_failures(sent)
            for (index, _), result in zip(built, sent, strict=True):
                results[index] = result
        return results  # type: ignore[return-value]

    def _pace(self, results: list[DeliveryResult], request_per_message: bool) -> None:
        """Tell the shared limiter what the provider said: a throttle slows every worker down,
        a Retry-After holds them all, a message accepted ends a throttled spell. Throttled
        requests are counted as requests: each message of a `request_per_message` batch (SES)
        was its own, a batching API's whole batch was one."""
        if all(r.status == "sent" for r in results):  # the usual case: nothing to slow down
            if self.limiter.throttled_since_success:  # read unlocked: only a spell ends here
                self.limiter.succeeded()
            return
        max_wait = self.options.retry.max_wait
        throttles = [r for r in results if r.throttled]
        if throttles:
            waits = [r.retry_after for r in throttles if r.retry_after is not None]
            self.limiter.throttled(
                min(max(waits), max_wait) if waits else None,
                requests=len(throttles) if request_per_message else 1,
            )
        waits = [
            r.retry_after
            for r in results
            if r.status == "deferred" and r.retry_after and not r.throttled
        ]
        if waits:
            self.limiter.hold(min(max(waits), max_wait))
        if any(r.status == "sent" for r in results):
            self.limiter.succeeded()

    def _watch_failures(self, results: list[DeliveryResult]) -> None:
        """Count failures in a row as they happen (here, not in the ledger thread, so that a
        dead server stops every worker within one message each). A batch refused as a whole
        (one reply for all: an API outage, a 429) counts once, not once per recipient."""
        if self.streak == 0 and all(r.status == "sent" for r in results):
            return  # the usual case, without the lock (read unlocked: it orders like the lock)
        results = [r for r in results if not (r.throttled or r.account)]  # not failures
        if len(results) > 1 and len({(r.status, r.reply) for r in results}) == 1:
            results = results[:1]
        with self._streak_lock:
            for result in results:
                if result.status == "sent":
                    self.streak = 0
                    continue
                self.streak += 1
                if self.streak >= self.options.max_failures_in_a_row:
                    self._pause(
                        f"campaign paused after {self.streak} failed deliveries in a row "
                        f"(last reply: {result.reply or 'none'}); fix the cause and send "
                        "again to resume"
                    )

    def _pause(self, reason: str) -> None:
        """Stop every worker after its current message; the first reason given is kept."""
        with self._pause_lock:
            if not self.paused_reason:
                self.paused_reason = reason
        self.stop.set()


def _paced_batch(max_batch: int, transports: Sequence[Transport], concurrency: int) -> int:
    """A batch sent as one paced request per message is recorded only when its last request
    returns: keep it to about a second at the provider's published rate shared by every
    worker, so a crash can only repeat what was in flight (README: after a crash)."""
    rates = [t.published_rate for t in transports if t.request_per_message and t.published_rate]
    if not rates:
        return max_batch
    return max(1, min(max_batch, int(min(rates) / concurrency)))


def _share_pace(limiter: RateLimiter, stop: threading.Event, transports: list[Transport]) -> None:
    """Every request of every transport waits for the one adaptive pace, which starts from the
    limit a provider published when it opened (SES GetAccount)."""
    limiter.stop = stop
    for transport in {id(t): t for t in transports}.values():
        transport.gate = limiter
        if transport.published_rate:
            limiter.provider_limit(transport.published_rate)


SAME_REFUSAL = 3  # a batch at least this big failed with one reply for all: not the readers


def _same_refusal_for_all(results: list[DeliveryResult]) -> list[DeliveryResult]:
    """The same refusal for every message of a batch is about the sender or the account (a
    reply about an address names that address), whatever the provider's code: pause."""
    if len(results) < SAME_REFUSAL or results[0].status != "failed":
        return results
    reply = results[0].reply
    if any(r.status != "failed" or r.reply != reply for r in results):
        return results
    return [account_problem(f"every message of a batch was refused alike: {reply}")] * len(results)


def _send(transport: Transport, messages: list[OutgoingMessage]) -> list[DeliveryResult]:
    """Per-message results, whatever happens: a crash here must not lose track of a row."""
    try:
        results = transport.send(messages)
        if len(results) != len(messages):
            raise TransportError(
                f"{transport.describe()} returned {len(results)} results for "
                f"{len(messages)} messages"
            )
        return results
    except (TransportAuthError, TransportConfigError):
        raise
    except NewsletterError as exc:
        reply = str(exc)
    except Exception as exc:  # a bug or an unexpected library error: keep the row retryable
        reply = f"internal error: {type(exc).__name__}: {exc}"
    return [DeliveryResult("deferred", reply) for _ in messages]
