"""The runner and its ledger: what the database says after each kind of outcome.

Real SQLite files and the real subscriber store; the transport is `RecordingTransport`, a real
implementation of the Transport interface that records what it is handed and answers with
scripted results (the SMTP tests cover the same outcomes against real servers).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from campaign_support import (
    SENT,
    DeliveryLog,
    RecordingTransport,
    ledger_rows,
    make_store,
    new_campaign,
    run,
)

from newsletter.campaign.ledger import Ledger
from newsletter.campaign.ratelimit import parse_rate
from newsletter.campaign.retry import RetryPolicy
from newsletter.db import connect
from newsletter.errors import CampaignPaused, TransportAuthError
from newsletter.transports.base import DeliveryResult

DEFER = DeliveryResult("deferred", "451 4.7.1 try again later")


@pytest.fixture
def db(database: str) -> str:
    """Each test runs on both engines: an SQLite file, then a PostgreSQL database."""
    return database


def test_everyone_gets_exactly_one_copy_and_the_campaign_is_done(db: Path) -> None:
    store = make_store(db, 40)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    result = run(db, store, cid, lambda: RecordingTransport(log, delay=0.005), concurrency=4)
    assert result.tally.sent == 40 and result.counts.sent == 40 and result.counts.remaining == 0
    assert set(log.per_recipient().values()) == {1}
    assert len(log.per_recipient()) == 40
    rows = ledger_rows(db, cid)
    assert {r["status"] for r in rows.values()} == {"sent"}
    assert all(r["reply"] == "250 2.0.0 queued" and r["sent_at"] for r in rows.values())
    assert log.opened == 4 and log.closed == 4  # one transport per worker, all closed
    assert len({d.worker for d in log.items}) > 1
    conn = connect(db)
    assert Ledger(conn).get(cid).state == "done"


def test_each_outcome_lands_in_the_ledger_and_the_store(db: Path) -> None:
    store = make_store(db, 6)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    bounce = DeliveryResult("bounced", "550 5.1.1 <reader001@example.net>: no such user")
    script = {
        "reader000@example.net": [DEFER, SENT],  # 451 then accepted within the run
        "reader001@example.net": [bounce],
        "reader002@example.net": [DeliveryResult("failed", "554 5.7.1 message refused")],
        "reader003@example.net": [DEFER, DEFER, DEFER],  # 3 tries in the run, all deferred
    }
    result = run(db, store, cid, lambda: RecordingTransport(log, script))
    rows = {sid: rows for sid, rows in ledger_rows(db, cid).items()}
    by_email = {store.get_by_id(sid).email: row for sid, row in rows.items()}
    assert by_email["reader000@example.net"]["status"] == "sent"
    assert by_email["reader000@example.net"]["attempts"] == 2
    assert by_email["reader001@example.net"]["status"] == "bounced"
    assert store.get("reader001@example.net").status == "bounced"
    assert by_email["reader002@example.net"]["status"] == "failed"
    assert by_email["reader002@example.net"]["reply"] == "554 5.7.1 message refused"
    assert store.get("reader002@example.net").status == "active"  # a 554 is not a bounce
    deferred = by_email["reader003@example.net"]
    assert deferred["status"] == "deferred" and deferred["attempts"] == 3
    assert deferred["reply"] == "451 4.7.1 try again later"
    assert result.counts.deferred == 1 and result.counts.sent == 3
    counts = log.per_recipient()
    assert counts["reader001@example.net"] == 1 and counts["reader002@example.net"] == 1
    assert counts["reader003@example.net"] == 3  # attempts_per_run, then left for the next run
    assert Ledger(connect(db)).get(cid).state == "sending"

    # The next run retries only the deferred one: failed and bounced are never retried.
    log2 = DeliveryLog()
    result2 = run(db, store, cid, lambda: RecordingTransport(log2, script))
    assert log2.per_recipient() == {"reader003@example.net": 1}
    assert result2.counts.deferred == 0 and result2.counts.sent == 4
    assert Ledger(connect(db)).get(cid).state == "done"


def test_backoff_spacing_and_retry_after(db: Path) -> None:
    store = make_store(db, 2)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    script = {
        "reader000@example.net": [DEFER, DEFER, SENT],
        "reader001@example.net": [DeliveryResult("deferred", "429 slow down", retry_after=0.4)],
    }
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    run(db, store, cid, lambda: RecordingTransport(log, script), retry=policy)
    times = {
        r: [d.at for d in log.items if d.recipient == r]
        for r in ("reader000@example.net", "reader001@example.net")
    }
    first, second, third = times["reader000@example.net"]
    assert second - first >= 0.05 - 0.01  # backoff 0.1 with equal jitter: at least half
    assert third - second >= 0.1 - 0.01  # doubled
    a, b = times["reader001@example.net"]
    assert b - a >= 0.4 - 0.01  # the server's retry-after wins over the shorter backoff


def test_retry_policy_delays_grow_with_jitter_and_stop() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, attempts_per_run=3)
    delays = [policy.delay(n) for n in (1, 2, 3, 4, 5) for _ in range(50)]
    assert min(delays[:50]) >= 0.5 and max(delays[:50]) <= 1.0
    assert min(delays[50:100]) >= 1.0 and max(delays[50:100]) <= 2.0
    assert max(delays) <= 8.0 and len(set(delays)) > 100  # jittered, capped
    assert policy.retry_in_run(1) and policy.retry_in_run(2) and not policy.retry_in_run(3)
    assert not policy.retry_in_run(1, retry_after=3600)  # too long: leave for the next run


def test_too_many_failures_in_a_row_pause_instead_of_burning_the_list(db: Path) -> None:
    store = make_store(db, 60)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    refused = DeliveryResult("failed", "554 5.7.1 blocked: your IP is on a blocklist")
    script = {f"reader{i:03d}@example.net": [refused] for i in range(60)}
    with pytest.raises(CampaignPaused) as info:
        run(db, store, cid, lambda: RecordingTransport(log, script), max_failures_in_a_row=10)
    assert "10 failed deliveries in a row" in str(info.value)
    assert "blocklist" in str(info.value)
    counts = Ledger(connect(db)).counts(cid)
    # Stops soon after the 10th: at most the messages already in flight went out.
    assert 10 <= len(log.items) <= 10 + 2 * 4
    assert counts.inflight == 0 and counts.due == 60 - len(log.items)
    campaign = Ledger(connect(db)).get(cid)
    assert campaign.state == "paused" and "in a row" in (campaign.state_reason or "")

    # Resuming after the cause is fixed sends the rest, once each.
    log2 = DeliveryLog()
    run(db, store, cid, lambda: RecordingTransport(log2))
    assert len(log2.items) == counts.due
    assert not set(log2.per_recipient()) & set(log.per_recipient())
    assert Ledger(connect(db)).get(cid).state == "done"


def test_rate_limit_is_global_across_workers(db: Path) -> None:
    store = make_store(db, 60)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    started = time.monotonic()
    timer.start()
    run(
        db,
        store,
        cid,
        lambda: RecordingTransport(log),
        concurrency=4,
        rate=parse_rate("20/s"),
        stop=stop,
    )
    timer.cancel()
    in_window = [d for d in log.items if d.at - started <= 1.5]
    # 20/s over 1.5 s is 30 (a first message at t=0 makes 31); 4 unpaced workers would do all 60.
    assert 20 <= len(in_window) <= 32, len(in_window)  # a loaded machine may lose slots
    assert len({d.worker for d in log.items}) == 4
    gaps = sorted(b.at - a.at for a, b in zip(log.items, log.items[1:], strict=False))
    assert gaps[len(gaps) // 2] >= 0.04  # evenly paced, not bursts


def test_parse_rate() -> None:
    assert parse_rate("20/s").per_second == 20
    assert parse_rate("1200/m").per_second == 20
    assert parse_rate("7200/h").per_second == 2
    assert parse_rate("10 per second").per_second == 10
    for bad in ("", "fast", "0/s", "-3/s", "20/d", "20"):
        with pytest.raises(Exception, match="expected a positive number"):
            parse_rate(bad)


def test_stop_finishes_in_flight_and_releases_the_rest(db: Path) -> None:
    store = make_store(db, 50)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    stop = threading.Event()

    def stop_once_sending() -> None:  # after deliveries began (a fixed timer flakes under load)
        deadline = time.monotonic() + 30
        while not log.items and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        stop.set()

    threading.Thread(target=stop_once_sending, daemon=True).start()
    result = run(db, store, cid, lambda: RecordingTransport(log, delay=0.02), stop=stop)
    assert result.interrupted
    counts = Ledger(connect(db)).counts(cid)
    assert counts.inflight == 0  # nothing left "unknown" after a clean stop
    assert counts.sent == len(log.items) and 0 < counts.sent < 50
    assert counts.due == 50 - counts.sent
    log2 = DeliveryLog()
    run(db, store, cid, lambda: RecordingTransport(log2))
    everyone = log.per_recipient() | log2.per_recipient()
    assert len(everyone) == 50 and not set(log.per_recipient()) & set(log2.per_recipient())


def test_rows_left_in_flight_by_a_crash_are_retried_once(db: Path) -> None:
    store = make_store(db, 10)
    cid = new_campaign(db, store)
    conn = connect(db)
    ledger = Ledger(conn)
    claimed = ledger.next_due(cid, 0, 3)  # a run that died after marking its rows in flight
    ledger.mark_inflight(cid, [it.row_id for it in claimed])
    conn.close()
    assert Ledger(connect(db)).counts(cid).inflight == 3
    log = DeliveryLog()
    run(db, store, cid, lambda: RecordingTransport(log))
    assert len(log.items) == 10 and set(log.per_recipient().values()) == {1}
    rows = ledger_rows(db, cid)
    assert all(rows[it.subscriber_id]["status"] == "sent" for it in claimed)


def test_unsubscribed_since_the_snapshot_are_skipped_and_new_ones_wait(db: Path) -> None:
    store = make_store(db, 5)
    cid = new_campaign(db, store)
    gone = store.get("reader002@example.net")
    store.unsubscribe(gone.id, "one-click")
    store.add("late@example.net", name="Late")
    log = DeliveryLog()
    result = run(db, store, cid, lambda: RecordingTransport(log))
    assert "reader002@example.net" not in log.per_recipient()
    assert "late@example.net" not in log.per_recipient()  # the snapshot is the list at start
    assert result.counts.skipped == 1 and result.counts.sent == 4
    skipped = ledger_rows(db, cid)[gone.id]
    assert skipped["status"] == "skipped" and skipped["reply"] == "unsubscribed"
    ledger = Ledger(connect(db))
    assert ledger.add_new_members(cid, store.iter_member_ids("default")) == 1
    log2 = DeliveryLog()
    run(db, store, cid, lambda: RecordingTransport(log2))
    assert log2.per_recipient() == {"late@example.net": 1}


def test_a_transport_that_cannot_open_stops_before_anything_is_claimed(db: Path) -> None:
    store = make_store(db, 5)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    with pytest.raises(TransportAuthError, match="535"):
        run(
            db,
            store,
            cid,
            lambda: RecordingTransport(
                log, fail_open=TransportAuthError("login refused: 535 5.7.8 bad credentials")
            ),
        )
    counts = Ledger(connect(db)).counts(cid)
    assert counts.due == 5 and counts.sent == 0 and not log.items


def test_an_exception_inside_send_defers_the_batch_instead_of_losing_it(db: Path) -> None:
    store = make_store(db, 4)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    flaky = {"reader001@example.net"}
    run(
        db,
        store,
        cid,
        lambda: RecordingTransport(log, raise_on=flaky),
        retry=RetryPolicy(base_delay=0.01, attempts_per_run=2),
    )
    row = next(r for r in ledger_rows(db, cid).values() if r["status"] != "sent")
    assert row["status"] == "deferred" and "connection reset" in row["reply"]
    assert row["attempts"] == 2


def test_two_senders_cannot_run_the_same_campaign(db: Path) -> None:
    store = make_store(db, 2)
    cid = new_campaign(db, store)
    first = Ledger(connect(db))
    first.begin_run(cid, "x")
    # Another process (simulated by another owner string) sees a live owner and refuses.
    first.conn.execute("UPDATE campaigns SET owner = 'otherhost:1' WHERE id = ?", (cid,))
    with pytest.raises(Exception, match="being sent right now"):
        Ledger(connect(db)).begin_run(cid, "x")
    first.end_run(cid)
    Ledger(connect(db)).begin_run(cid, "x")


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise() -> None:
    import io

    from newsletter.campaign.progress import StreamProgress, Tally

    tty = io.StringIO()
    bar = StreamProgress(tty, tty=True)
    bar.start(200, "'Hi' to list default")
    bar.update(Tally(sent=50, failed=2))
    time.sleep(0.11)
    bar.update(Tally(sent=100, failed=2, deferred=1))
    bar.note("a note")
    bar.finish(Tally(sent=198, failed=2))
    out = tty.getvalue()
    assert "\r[" in out and "#" in out and "ETA" in out
    assert "200/200 198 sent, 2 failed" in out and out.endswith("\n")
    assert "\ra note\n\r[" in out  # the bar is cleared, the note printed, the bar redrawn

    log = io.StringIO()
    lines = StreamProgress(log, tty=False, log_every=0.0)
    lines.start(10, "'Hi' to list default")
    lines.update(Tally(sent=4))
    lines.finish(Tally(sent=9, bounced=1))
    text = log.getvalue()
    assert "\r" not in text and "#" not in text
    assert text.splitlines()[0] == "sending 'Hi' to list default: 10 to go"
    assert "10/10 done: 9 sent, 0 failed, 1 bounced, 0 deferrals" in text.splitlines()[-1]


def test_batching_transports_get_full_batches_and_results_land_per_recipient(db: Path) -> None:
    store = make_store(db, 45)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    bounce = DeliveryResult("bounced", "550 5.1.1 unknown user")
    script = {"reader007@example.net": [bounce], "reader030@example.net": [DEFER, SENT]}
    run(db, store, cid, lambda: RecordingTransport(log, script, max_batch=10), concurrency=2)
    assert max(log.batch_sizes) == 10 and sum(log.batch_sizes) == 46  # 45 + one retry
    rows = {store.get_by_id(sid).email: r for sid, r in ledger_rows(db, cid).items()}
    assert rows["reader007@example.net"]["status"] == "bounced"
    assert rows["reader030@example.net"]["status"] == "sent"
    assert rows["reader030@example.net"]["attempts"] == 2
    assert sum(r["status"] == "sent" for r in rows.values()) == 44


def test_a_servers_retry_after_holds_every_worker(db: Path) -> None:
    store = make_store(db, 24)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    slow_down = DeliveryResult("deferred", "429 too many requests", retry_after=0.4)
    script = {"reader000@example.net": [slow_down]}
    run(db, store, cid, lambda: RecordingTransport(log, script, delay=0.01), concurrency=4)
    told = next(d.at for d in log.items if d.recipient == "reader000@example.net")
    # Only sends already under way when the 429 came can start during the wait.
    during = [d for d in log.items if told < d.at < told + 0.35]
    assert len(during) <= 3, [d.at - told for d in during]
    assert len(log.items) == 25 and Ledger(connect(db)).counts(cid).sent == 24


def test_a_batch_refused_as_a_whole_counts_once_toward_the_pause(db: Path) -> None:
    store = make_store(db, 60)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    outage = DeliveryResult("deferred", "503 service unavailable")
    script = {f"reader{i:03d}@example.net": [outage] * 3 for i in range(60)}
    with pytest.raises(CampaignPaused, match="3 failed deliveries in a row"):
        run(
            db,
            store,
            cid,
            lambda: RecordingTransport(log, script, max_batch=10),
            concurrency=1,
            max_failures_in_a_row=3,
        )
    assert log.batch_sizes == [10, 10, 10]  # three refused batches, not three recipients


def test_a_batch_refused_recipient_by_recipient_counts_each_refusal_toward_the_pause(
    db: Path,
) -> None:
    """Each recipient refused with their own reply is a failure of its own: at API batches of
    1,000 and a limit of 50, counting such a batch once would let 50,000 refusals through."""
    store = make_store(db, 60)
    cid = new_campaign(db, store)
    log = DeliveryLog()
    script = {
        f"reader{i:03d}@example.net": [
            DeliveryResult("failed", f"550 5.7.1 reader{i:03d}@example.net refused by policy")
        ]
        for i in range(60)
    }
    with pytest.raises(CampaignPaused, match="25 failed deliveries in a row"):
        run(
            db,
            store,
            cid,
            lambda: RecordingTransport(log, script, max_batch=10),
            concurrency=1,
            max_failures_in_a_row=25,
        )
    assert log.batch_sizes == [10, 10, 10]  # paused inside the third batch, not after six
    assert Ledger(connect(db)).counts(cid).failed == 30


def test_a_key_revoked_mid_run_stops_at_once_with_nobody_wrongly_marked(db: Path) -> None:
    store = make_store(db, 200)
    cid = new_campaign(db, store)
    log = DeliveryLog()

    class RevokedAfterTen(RecordingTransport):
        calls = 0
        lock = threading.Lock()

        def send(self, messages):  # type: ignore[no-untyped-def]
            with RevokedAfterTen.lock:
                RevokedAfterTen.calls += 1
                revoked = RevokedAfterTen.calls > 10
            if revoked:
                raise TransportAuthError("sendgrid: the API key was refused (HTTP 401)")
            return super().send(messages)

    with pytest.raises(CampaignPaused) as info:
        run(db, store, cid, lambda: RevokedAfterTen(log))
    assert "API key was refused" in str(info.value)
    rows = ledger_rows(db, cid).values()
    sent = [r for r in rows if r["status"] == "sent"]
    # Only what the transport accepted is sent; the run stopped within the messages in flight
    # instead of deferring the whole list one failure at a time.
    assert len(sent) == len(log.items) == 10
    assert sum(1 for r in rows if r["status"] == "deferred") <= 4 * 2
    assert Ledger(connect(db)).get(cid).state == "paused"
