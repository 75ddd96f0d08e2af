"""Test doubles of the *interfaces* the campaign runner talks to (not mocks of the system).

`RecordingTransport` is a real Transport: it records every message it is handed (bytes
included) and answers with scripted DeliveryResults per recipient, so the ledger's reaction to
each outcome can be checked exactly. The SMTP tests use real aiosmtpd servers instead.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.campaign.connections import close_transports, open_connections
from newsletter.campaign.ledger import Ledger, Outcome, WorkItem
from newsletter.campaign.progress import Progress
from newsletter.campaign.ratelimit import Rate, RateLimiter
from newsletter.campaign.retry import RetryPolicy
from newsletter.campaign.runner import Runner, RunOptions, RunResult
from newsletter.db import connect
from newsletter.subscribers.store import SubscriberStore
from newsletter.transports.base import DeliveryResult, MessageParts, OutgoingMessage, Transport

SENT = DeliveryResult("sent", "250 2.0.0 queued")


@dataclass(frozen=True)
class Delivery:
    at: float
    recipient: str
    message_id: str
    data: bytes
    worker: int  # id() of the transport instance that sent it


class DeliveryLog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Delivery] = []
        self.opened = 0
        self.closed = 0
        self.batch_sizes: list[int] = []

    def add(self, delivery: Delivery) -> None:
        with self.lock:
            self.items.append(delivery)

    def per_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for d in self.items:
            counts[d.recipient] += 1
        return dict(counts)


class RecordingTransport(Transport):
    name = "recording"

    def __init__(
        self,
        log: DeliveryLog,
        script: dict[str, list[DeliveryResult]] | None = None,
        *,
        delay: float = 0.0,
        fail_open: Exception | None = None,
        raise_on: set[str] | None = None,
        max_batch: int = 1,
    ) -> None:
        self.log = log
        self.script = script if script is not None else {}
        self.delay = delay
        self.fail_open = fail_open
        self.raise_on = raise_on or set()
        self.max_batch = max_batch

    def open(self) -> None:
        if self.fail_open is not None:
            raise self.fail_open
        with self.log.lock:
            self.log.opened += 1

    def close(self) -> None:
        with self.log.lock:
            self.log.closed += 1

    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        with self.log.lock:
            self.log.batch_sizes.append(len(messages))
        results = []
        for message in messages:
            if message.recipient in self.raise_on:
                raise ConnectionResetError("connection reset by peer")
            if self.delay:
                time.sleep(self.delay)
            self.log.add(
                Delivery(
                    time.monotonic(), message.recipient, message.message_id, message.data, id(self)
                )
            )
            with self.log.lock:
                queue = self.script.get(message.recipient)
                result = queue.pop(0) if queue else SENT
            results.append(result)
        return results


class PlainMessages:
    """A MessageSource that builds a small real message per active subscriber."""

    def __init__(self, store: SubscriberStore) -> None:
        self.store = store

    def prepare(self, items: Sequence[WorkItem]) -> tuple[list, list[Outcome]]:
        subs = self.store.get_many([it.subscriber_id for it in items])
        jobs, outcomes = [], []
        for item in items:
            sub = subs.get(item.subscriber_id)
            if sub is None or sub.status != "active":
                why = sub.status if sub else "erased"
                outcomes.append(Outcome(item.row_id, "skipped", why, counts_attempt=False))
                continue
            jobs.append((item, lambda item=item, sub=sub: self._message(item, sub)))
        return jobs, outcomes

    def _message(self, item: WorkItem, sub) -> OutgoingMessage:  # type: ignore[no-untyped-def]
        mid = f"{sub.id}.test@example.org"
        data = f"To: {sub.email}\r\nMessage-ID: <{mid}>\r\nSubject: hi\r\n\r\nHi {sub.name}\r\n"
        return OutgoingMessage(
            key=item.row_id,
            envelope_from="news@example.org",
            recipient=sub.email,
            message_id=mid,
            build_data=lambda: data.encode(),
            build_parts=lambda: MessageParts("", "", None, "", "", "", {}),
        )

    def bounced(self, subscriber_id: int, reply: str) -> None:
        self.store.mark_bounced(subscriber_id, reply)


def make_store(path: Path, count: int, list_name: str = "default") -> SubscriberStore:
    store = SubscriberStore.open(path)
    for i in range(count):
        store.add(f"reader{i:03d}@example.net", name=f"Reader {i}", lists=[list_name])
    return store


def new_campaign(path: Path, store: SubscriberStore, list_name: str = "default") -> int:
    ledger = Ledger(connect(path))
    campaign, _ = ledger.create("issue-1", list_name, "Hi", store.iter_member_ids(list_name))
    assert campaign is not None
    ledger.conn.close()
    return campaign.id


def run(
    path: Path,
    store: SubscriberStore,
    campaign_id: int,
    factory: Callable[[], Transport],
    *,
    concurrency: int = 2,
    rate: Rate | None = None,
    retry: RetryPolicy | None = None,
    max_failures_in_a_row: int = 50,
    stop: threading.Event | None = None,
    source: object = None,
) -> RunResult:
    """One run of the campaign, as `Campaign.run` does it, with a chosen message source."""
    ledger = Ledger(connect(path))
    connections = open_connections(factory, concurrency)
    transports = connections.opened + connections.waiting
    try:
        ledger.begin_run(campaign_id, "recording")
        try:
            runner = Runner(
                ledger,
                campaign_id,
                source or PlainMessages(store),  # type: ignore[arg-type]
                connections.opened,
                RateLimiter(rate),
                RunOptions(
                    concurrency=concurrency,
                    retry=retry or RetryPolicy(base_delay=0.05, max_delay=0.2),
                    max_failures_in_a_row=max_failures_in_a_row,
                ),
                Progress(),
                stop or threading.Event(),
                waiting=connections.waiting,
                connections=connections.stats,
            )
            return runner.run()
        finally:
            ledger.end_run(campaign_id)
    finally:
        close_transports(transports)
        ledger.conn.close()


def ledger_rows(path: Path, campaign_id: int) -> dict[int, dict]:
    conn = connect(path)
    try:
        return {r["subscriber_id"]: dict(r) for r in Ledger(conn).rows(campaign_id)}
    finally:
        conn.close()
