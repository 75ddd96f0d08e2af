"""Several processes draining one campaign on one PostgreSQL database: a coordinating
`newsletter send` and `newsletter send --worker` processes, into a real aiosmtpd relay.

What the recipients get is read at the relay (the delivered messages, parsed); what the ledger
says, from the database; what a person sees, from `newsletter status`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database
from smtp_servers import RecordingHandler, SmtpServer, fault

from newsletter import db
from newsletter.campaign.ledger import Ledger
from newsletter.campaign.workers import join_campaign
from newsletter.cli import main
from newsletter.config import load_config

LEASE = "2"  # seconds: a killed worker's rows are taken over quickly


class TimedHandler(RecordingHandler):
    """Records when each message was accepted (the relay's clock), for the rate checks."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            with self.lock:
                self.times.append(time.monotonic())
        return reply


class Crew:
    """A project on PostgreSQL with `count` readers, and its send processes."""

    def __init__(self, project: Path, database: str, count: int) -> None:
        self.project = use_database(project, database)
        self.config = load_config(project / "newsletter.yaml")
        self.issue = next((project / "issues").glob("*.yaml"))
        self.people = [f"reader{i:05d}@example.net" for i in range(count)]
        csv = project / "readers.csv"
        csv.write_text(
            "email,name\n" + "".join(f"{a},Reader {a[6:11]}\n" for a in self.people),
            encoding="utf-8",
        )
        assert self.cli("subscribers", "import", str(csv)).exit_code == 0
        self.processes: list[subprocess.Popen[str]] = []

    def cli(self, *args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, ["--config", str(self.project / "newsletter.yaml"), *args])

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        config = str(self.project / "newsletter.yaml")
        send = ["send", str(self.issue), "--lease", LEASE, *args]
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", config, *send],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.project,
        )
        self.processes.append(proc)
        return proc

    def coordinator(self, server: SmtpServer, *args: str) -> subprocess.Popen[str]:
        return self.start("--yes", "--transport", server.url(), "--concurrency", "2", *args)

    def worker(self) -> subprocess.Popen[str]:
        return self.start("--worker", "--concurrency", "2")

    def query(self, sql: str, *params: object) -> list[tuple]:
        conn = db.connect(self.config.database)
        try:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        except db.Error:  # the campaign tables are not there yet
            return []
        finally:
            conn.close()

    def sent_by(self, pid: int) -> int:
        rows = self.query(
            "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'sent' AND worker LIKE ?",
            f"%:{pid}:%",
        )
        return int(rows[0][0]) if rows else 0

    def statuses(self) -> dict[str, int]:
        rows = self.query("SELECT status, COUNT(*) FROM campaign_recipients GROUP BY status")
        return {str(s): int(n) for s, n in rows}

    def finish(self, timeout: float = 120) -> list[tuple[int, str, str]]:
        out = []
        for proc in self.processes:
            stdout, stderr = proc.communicate(timeout=timeout)
            assert "Traceback" not in stdout + stderr, stderr
            out.append((proc.returncode, stdout, stderr))
        # Every process sent through the coordinator's relay: nothing went to the outbox the
        # configuration defaults to (the ledger would call those readers sent).
        assert not (self.project / "outbox").exists(), sorted((self.project / "outbox").iterdir())
        return out

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def crew(project: Path, postgres_url: str):  # type: ignore[no-untyped-def]
    def make(count: int) -> Crew:
        made = Crew(project, postgres_url, count)
        crews.append(made)
        return made

    crews: list[Crew] = []
    yield make
    for c in crews:
        c.stop_all()


def wait_until(check, timeout: float = 90.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def message_ids(server: SmtpServer) -> dict[str, list[str]]:
    """Each recipient's Message-IDs in the order the relay accepted them (parsed messages)."""
    ids: dict[str, list[str]] = defaultdict(list)
    for delivered in list(server.messages):
        message = delivered.parsed()
        ids[str(message["To"].addresses[0].addr_spec).lower()].append(str(message["Message-ID"]))
    return ids


def test_a_worker_killed_mid_run_leaves_only_its_in_flight_readers_twice(crew) -> None:
    team = crew(5000)
    with SmtpServer() as server:
        coordinator = team.coordinator(server)
        workers = [team.worker() for _ in range(3)]
        victim = workers[1]
        wait_until(lambda: team.sent_by(victim.pid) >= 100, what="the victim to send")
        wait_until(lambda: len(server.messages) >= 1500, what="1500 messages at the relay")
        victim.kill()  # SIGKILL: no goodbye, no hand-back
        victim.wait(timeout=10)
        held = {
            str(r[0]).lower()
            for r in team.query(
                "SELECT s.email FROM campaign_recipients r JOIN subscribers s"
                " ON s.id = r.subscriber_id WHERE r.status = 'inflight' AND r.worker LIKE ?",
                f"%:{victim.pid}:%",
            )
        }
        assert held, "the killed worker held no rows: kill it earlier"
        results = team.finish()
        ids = message_ids(server)
    assert coordinator.returncode == 0, results[0]
    assert [w.returncode for w in workers] == [0, -signal.SIGKILL, 0]
    assert sorted(ids) == team.people  # everyone was reached
    twice = {rcpt for rcpt, found in ids.items() if len(found) > 1}
    assert twice <= held, twice - held  # only what the dead worker was holding
    assert all(len(ids[rcpt]) == 2 and len(set(ids[rcpt])) == 1 for rcpt in twice)
    assert team.statuses() == {"sent": 5000}
    # `status` shows each worker's share, the dead one's too; the shares add up.
    status = team.cli("status", str(team.issue)).output
    lines = [line for line in status.splitlines() if line.startswith("    ")]
    assert len(lines) == 4 and "workers (4):" in status
    assert sum(int(line.split("sent ")[1].split(",")[0]) for line in lines) == 5000
    dead = next(line for line in lines if f":{victim.pid}:" in line)
    assert "stopped (lease expired)" in dead
    assert all(int(line.split("sent ")[1].split(",")[0]) > 0 for line in lines)
    assert sum("(coordinator)" in line for line in lines) == 1


def test_the_rate_limit_holds_across_three_workers(crew) -> None:
    team = crew(600)
    handler = TimedHandler()
    with SmtpServer(handler=handler) as server:
        team.coordinator(server, "--rate", "100/s")
        for _ in range(3):
            team.worker()
        results = team.finish()
    assert all(code == 0 for code, _, _ in results), results
    times = sorted(handler.times)
    assert len(times) == 600
    # Every worker took part, yet in no second did the relay get more than the limit (give or
    # take the relay's own jitter on a busy machine), and on average less.
    shares = [
        line
        for line in team.cli("status", str(team.issue)).output.splitlines()
        if ": sent " in line
    ]
    assert len(shares) == 4 and all(" sent 0," not in s for s in shares)
    busiest = max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))
    assert busiest <= 100 * 1.1, busiest
    assert (len(times) - 1) / (times[-1] - times[0]) <= 100 * 1.02


def test_ctrl_c_on_the_coordinator_stops_every_worker(crew) -> None:
    team = crew(2000)
    with SmtpServer() as server:
        coordinator = team.coordinator(server, "--rate", "200/s")
        workers = [team.worker() for _ in range(3)]
        wait_until(lambda: all(team.sent_by(w.pid) > 0 for w in workers), what="every worker")
        coordinator.send_signal(signal.SIGINT)
        results = team.finish(timeout=60)
        reached = len(server.messages)
    assert results[0][0] == 130 and "To resume, run:" in results[0][1]
    for code, out, _ in results[1:]:
        assert code == 0 and "This worker stopped: the coordinating send stopped" in out
    counts = team.statuses()
    assert counts.get("inflight", 0) == 0  # everyone handed back what they had not sent
    assert counts["sent"] == reached < 2000 and counts["sent"] + counts["due"] == 2000


def test_a_pause_stops_every_worker_and_nobody_is_left_in_flight(crew) -> None:
    team = crew(2000)
    with SmtpServer() as server:
        team.coordinator(server, "--rate", "200/s")
        workers = [team.worker() for _ in range(3)]
        wait_until(lambda: all(team.sent_by(w.pid) > 0 for w in workers), what="every worker")
        # The account hits its daily limit: whoever meets it first pauses the campaign.
        server.handler.faults.append(fault("554-daily-limit", "*"))
        results = team.finish(timeout=60)
    assert all(code == 1 for code, _, _ in results), results
    assert all("paused" in out + err for _, out, err in results)
    assert any("daily sending limit" in out + err for _, out, err in results)
    [(state,)] = team.query("SELECT state FROM campaigns")
    assert state == "paused"
    counts = team.statuses()
    assert counts.get("inflight", 0) == 0 and counts["due"] > 0


def test_a_worker_on_sqlite_is_a_clear_error(project: Path) -> None:
    issue = next((project / "issues").glob("*.yaml"))
    runner = CliRunner()
    config = ["--config", str(project / "newsletter.yaml")]
    assert runner.invoke(main, [*config, "subscribers", "add", "a@example.net"]).exit_code == 0
    result = runner.invoke(main, [*config, "send", str(issue), "--worker"])
    assert result.exit_code == 1
    assert "several workers need a shared PostgreSQL database" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("option", [["--rate", "5/s"], ["--dry-run"], ["--transport", "console:"]])
def test_a_worker_takes_its_settings_from_the_coordinator(project: Path, option) -> None:
    issue = next((project / "issues").glob("*.yaml"))
    result = CliRunner().invoke(
        main,
        ["--config", str(project / "newsletter.yaml"), "send", str(issue), "--worker", *option],
    )
    assert result.exit_code == 2 and f"leave out {option[0]}" in result.output


def test_a_worker_for_a_finished_campaign_says_there_is_nothing_to_help_with(crew) -> None:
    team = crew(3)
    with SmtpServer() as server:
        assert (
            team.cli("send", str(team.issue), "--yes", "--transport", server.url()).exit_code == 0
        )
        result = team.cli("send", str(team.issue), "--worker")
    assert result.exit_code == 1 and "is done: nothing to help with" in result.output
    assert len(server.messages) == 3


class CoordinatorStartsMidPoll(Ledger):
    """A worker's ledger on which the coordinating `send` (its own connection) takes the
    campaign over at a chosen moment of the worker's polling: a real coordinator's begin_run
    can commit between any two of the worker's statements, and the test pins each moment."""

    def __init__(self, conn: db.Connection, coordinator: Ledger, moment: str) -> None:
        super().__init__(conn)
        self.coordinator, self.moment = coordinator, moment

    def start(self, now: str) -> None:
        if self.moment == now:
            self.moment = "started"
            found = self.coordinator.find("issue", "news")
            assert found is not None
            self.coordinator.begin_run(
                found.id,
                "SMTP relay",
                transport_url="smtp://127.0.0.1:2525?timeout=5&tls=none",
                rate="200/s",
                concurrency=2,
            )

    def find(self, issue_slug, list_name, segment=None):  # type: ignore[no-untyped-def]
        found = super().find(issue_slug, list_name, segment)
        self.start("after the worker read the campaign")
        return found

    def is_being_sent(self, campaign_id: int) -> bool:
        running = super().is_being_sent(campaign_id)
        self.start("while the worker waits")
        return running


@pytest.mark.parametrize(
    "moment",
    ["before the worker looks", "after the worker read the campaign", "while the worker waits"],
)
def test_a_worker_sends_with_the_run_its_coordinator_started(postgres_url: str, moment) -> None:
    """Whenever the coordinator's run starts, the worker gets that run's transport URL, rate
    and concurrency: a copy of the campaign read before begin_run has no URL, and a worker
    with it sent through its own configured transport (the outbox by default) while the
    ledger recorded its readers as sent."""
    coordinator = Ledger(db.connect(postgres_url))
    coordinator.create("issue", "news", "Subject", [1, 2, 3])
    worker = CoordinatorStartsMidPoll(db.connect(postgres_url), coordinator, moment)
    try:
        worker.start("before the worker looks")
        joined = join_campaign(worker, "issue", "news", None, wait=5)
        assert worker.moment == "started"
        assert joined.transport_url == "smtp://127.0.0.1:2525?timeout=5&tls=none"
        assert (joined.rate, joined.concurrency) == ("200/s", 2)
    finally:
        worker.conn.close()
        coordinator.conn.close()


def test_a_worker_refuses_a_run_that_recorded_no_transport(crew) -> None:
    """A coordinator given a transport object in Python records no URL: a worker started
    before it (so nothing of the campaign was known when it read its settings) must not fall
    back to its own configured transport (the outbox), which the ledger would count as sent."""
    from newsletter.issue import load_issue
    from newsletter.subscribers import DEFAULT_LIST

    team = crew(3)
    worker = team.start("--worker")
    # The worker has read its settings and is waiting for a coordinator once it made the
    # crew's table (no campaign exists yet).
    wait_until(lambda: team.query("SELECT COUNT(*) FROM campaign_workers"), what="the worker")
    conn = db.connect(team.config.database)
    try:
        coordinator = Ledger(conn)
        ids = [int(r[0]) for r in team.query("SELECT id FROM subscribers")]
        campaign, _ = coordinator.create(load_issue(team.issue).slug, DEFAULT_LIST, "S", ids)
        assert campaign is not None
        coordinator.begin_run(campaign.id, "a transport given in Python", transport_url=None)
        [(code, out, err)] = team.finish(timeout=60)
    finally:
        conn.close()
    assert worker.returncode == code == 1, out + err
    assert "did not record its transport URL" in out + err
    assert team.statuses() == {"due": 3}


def test_a_worker_stopped_past_its_lease_sends_none_of_the_readers_taken_over(crew) -> None:
    """SIGSTOP (a hung machine, a suspended VM) past the lease, then SIGCONT: the coordinator
    took the worker's claimed readers over meanwhile, so the worker, waking up, must send none
    of them (only what it was literally sending at the stop may arrive twice), say its lease
    expired, and count as its share only what the ledger recorded for it."""
    team = crew(2000)
    with SmtpServer() as server:
        coordinator = team.coordinator(server, "--rate", "200/s")
        worker = team.worker()
        wait_until(lambda: team.sent_by(worker.pid) >= 50, what="the worker to send")
        held = int(
            team.query(
                "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'inflight'"
                " AND worker LIKE ?",
                f"%:{worker.pid}:%",
            )[0][0]
        )
        worker.send_signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: team.query(
                    "SELECT 1 FROM campaign_workers WHERE worker LIKE ? AND stopped_at IS NOT NULL",
                    f"%:{worker.pid}:%",
                ),
                timeout=30,
                what="the coordinator to take the worker's readers over",
            )
            time.sleep(0.5)  # the coordinator sends some of them
        finally:
            worker.send_signal(signal.SIGCONT)
        assert team.statuses().get("due", 0) > 0, "the campaign ended before the worker woke up"
        results = team.finish()
        ids = message_ids(server)
    assert coordinator.returncode == 0, results[0]
    code, out, err = results[1]
    assert code == 0, out + err
    assert sorted(ids) == team.people
    twice = [rcpt for rcpt, found in ids.items() if len(found) > 1]
    # It held a claim of `held` (about 30) readers; only those it was sending at the stop (two
    # connections) or whose results it had not yet written (the last group commit) repeat.
    assert held >= 10 and len(twice) <= 4, (held, twice)
    assert all(len(set(ids[rcpt])) == 1 for rcpt in twice)
    assert "This worker stopped: its lease expired" in out
    assert team.statuses() == {"sent": 2000}
    status = team.cli("status", str(team.issue)).output
    lines = [line for line in status.splitlines() if line.startswith("    ")]
    assert sum(int(line.split("sent ")[1].split(",")[0]) for line in lines) == 2000
    mine = next(line for line in lines if f":{worker.pid}:" in line)
    assert "stopped (lease expired)" in mine
    # The worker's own summary agrees with its share in `status`.
    assert out.splitlines()[0].split(" sent")[0] == mine.split("sent ")[1].split(",")[0]
