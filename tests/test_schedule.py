"""Scheduled sends through the CLI: `send --at`, `schedule`, `schedule cancel`, `send-due`, with
the clock set by NEWSLETTER_NOW (the one documented test clock, newsletter.clock), and real
`send-due` processes racing for one schedule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database

from newsletter import db
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore
from tests.support.smtp_servers import SmtpServer, fault

BEFORE = "2026-12-02T05:00:00Z"  # an hour before 07:00 in Berlin (06:00 UTC)
PEOPLE = [f"reader{i:02d}@example.net" for i in range(12)]

Invoke = Callable[..., tuple[int, str]]


@pytest.fixture
def cli(project: Path, runner: CliRunner, database: str) -> Invoke:
    config = load_config(use_database(project, database) / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for address in PEOPLE:
            store.add(address, name=address.split("@")[0].title())

    def invoke(*args: str, now: str = BEFORE) -> tuple[int, str]:
        cwd = os.getcwd()
        os.chdir(project)
        try:
            result = runner.invoke(main, list(args), env={"NEWSLETTER_NOW": now})
        finally:
            os.chdir(cwd)
        assert "Traceback" not in result.output, result.output
        return result.exit_code, result.output

    return invoke


def issue_of(project: Path) -> str:
    return str(next((project / "issues").glob("*.yaml")).relative_to(project))


def schedules(project: Path) -> list[tuple[str, str, int, str | None]]:
    database = load_config(project / "newsletter.yaml").database
    if not db.exists(database):
        return []
    conn = db.connect(database)
    try:
        rows = conn.execute(
            "SELECT due_at, state, attempts, last_error FROM send_schedules ORDER BY id"
        ).fetchall()
    except db.Error:  # no table: nothing was ever scheduled
        return []
    finally:
        conn.close()
    return [(r[0], r[1], int(r[2]), r[3]) for r in rows]


def outbox(project: Path) -> list[Path]:
    return sorted((project / "outbox").glob("*.eml")) if (project / "outbox").exists() else []


@pytest.mark.parametrize(
    ("at", "zone", "utc", "note"),
    [
        ("2026-12-02 07:00", "Europe/Berlin", "2026-12-02 06:00 UTC", None),
        ("2026-07-01 07:00", "Europe/Berlin", "2026-07-01 05:00 UTC", None),
        # autumn fold: 02:30 happens twice; the first (CEST) is taken and the note says so
        ("2026-10-25 02:30", "Europe/Berlin", "2026-10-25 00:30 UTC", "happens twice"),
        ("2026-10-25 02:30+01:00", "Europe/Berlin", "2026-10-25 01:30 UTC", None),
        ("2026-11-01 01:30", "America/New_York", "2026-11-01 05:30 UTC", "happens twice"),
        ("2026-11-01 01:30-05:00", "America/New_York", "2026-11-01 06:30 UTC", None),
        ("2026-03-08 03:00", "America/New_York", "2026-03-08 07:00 UTC", None),
        ("2026-12-02T07:00Z", "UTC", "2026-12-02 07:00 UTC", None),
    ],
)
def test_a_send_time_is_read_in_its_zone_across_daylight_saving(
    cli: Invoke, project: Path, at: str, zone: str, utc: str, note: str | None
) -> None:
    code, out = cli("send", issue_of(project), "--at", at, "--tz", zone, now="2026-01-01T00:00Z")
    assert code == 0, out
    assert f"{utc}." in out and "Scheduled" in out
    assert (note in out) if note else ("twice" not in out)
    code, listing = cli("schedule", now="2026-01-01T00:00Z")
    assert code == 0 and utc in listing and f"({zone})" in listing and "scheduled" in listing
    assert outbox(project) == []  # scheduling sends nothing


@pytest.mark.parametrize(
    ("at", "zone", "expected"),
    [
        ("2026-03-29 02:30", "Europe/Berlin", "from 02:00 CET straight to 03:00 CEST"),
        ("2026-03-08 02:30", "America/New_York", "from 02:00 EST straight to 03:00 EDT"),
        ("2026-12-02 07:00+05:00", "Europe/Berlin", "is at +01:00 then, not +05:00"),
        ("tomorrow at seven", "Europe/Berlin", "cannot read the time 'tomorrow at seven'"),
        ("2026-13-02 07:00", "Europe/Berlin", "expected YYYY-MM-DD HH:MM"),
        ("2026-12-02 07:00", "Europe/Berln", "unknown time zone 'Europe/Berln' (did you mean"),
        ("2026-12-02 07:00", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("2026-12-01 07:00", "Europe/Berlin", "is in the past"),
    ],
)
def test_a_bad_or_impossible_time_is_a_clear_error_and_records_nothing(
    cli: Invoke, project: Path, at: str, zone: str, expected: str
) -> None:
    code, out = cli("send", issue_of(project), "--at", at, "--tz", zone)
    assert code == 1 and expected in out, out
    assert schedules(project) == []


def test_a_time_a_few_seconds_past_is_still_taken(cli: Invoke, project: Path) -> None:
    code, out = cli("send", issue_of(project), "--at", "2026-12-02T04:59:30Z", now=BEFORE)
    assert code == 0, out
    code, out = cli("send-due", now=BEFORE)
    assert code == 0, out
    assert "late" not in out and len(outbox(project)) == len(PEOPLE)


def test_the_default_zone_is_timezone_in_newsletter_yaml(cli: Invoke, project: Path) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text() + "timezone: America/New_York\n")
    code, out = cli("send", issue_of(project), "--at", "2026-12-02 07:00")
    assert code == 0 and "2026-12-02 12:00 UTC" in out and "(America/New_York)" in out
    config.write_text(config.read_text().replace("America/New_York", "America/New_Yrok"))
    code, out = cli("schedule")
    line = config.read_text().splitlines().index("timezone: America/New_Yrok") + 1
    assert code == 1 and f"newsletter.yaml:{line}:" in out
    assert "did you mean America/New_York" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--tz", "Europe/Berlin"), "--tz goes with --at"),
        (("--at", "2026-12-02 07:00", "--dry-run"), "leave out --test and --dry-run"),
        (("--at", "2026-12-02 07:00", "--list", "nobody"), "has no active subscribers"),
        (("--at", "2026-12-02 07:00", "--transport", "smtp://"), "transport"),
    ],
)
def test_scheduling_runs_the_checks_a_send_runs(
    cli: Invoke, project: Path, args: tuple[str, ...], expected: str
) -> None:
    code, out = cli("send", issue_of(project), *args)
    assert code != 0 and expected in out, out
    assert schedules(project) == []


def test_an_issue_failing_check_is_not_scheduled(cli: Invoke, project: Path) -> None:
    bad = project / "issues" / "broken.yaml"
    bad.write_text("title: 'TODO: a draft'\ndate: 2026-12-02\nstories: []\n")
    code, out = cli("send", "issues/broken.yaml", "--at", "2026-12-02 07:00")
    assert code == 1 and "fails `newsletter check`" in out
    assert schedules(project) == []


def test_a_schedule_fires_once_and_a_missed_one_says_how_late(cli: Invoke, project: Path) -> None:
    code, out = cli("send", issue_of(project), "--at", "2026-12-02 07:00", "--tz", "Europe/Berlin")
    assert code == 0, out
    code, out = cli("send-due", now="2026-12-02T05:59:00Z")  # a minute early: nothing
    assert code == 0 and "Nothing due" in out and outbox(project) == []
    # Nothing ran at 07:00 Berlin; the next start, 2 h 5 min later, sends it and says so.
    code, out = cli("send-due", now="2026-12-02T08:05:00Z")
    assert code == 0, out
    assert "was due 2026-12-02 07:00 CET (Europe/Berlin): sending now, 2 h 5 min late" in out
    assert len(outbox(project)) == len(PEOPLE)
    code, out = cli("send-due", now="2026-12-02T09:00:00Z")
    assert code == 0 and "Nothing due" in out and len(outbox(project)) == len(PEOPLE)
    assert [(s[1], s[2]) for s in schedules(project)] == [("done", 1)]
    code, listing = cli("schedule")
    assert "done" in listing and "2026-12-02 06:00 UTC" in listing


def test_an_issue_changed_after_scheduling_is_checked_again_and_fails_clearly(
    cli: Invoke, project: Path
) -> None:
    issue = project / issue_of(project)
    code, _ = cli("send", issue_of(project), "--at", "2026-12-02 07:00", "--tz", "Europe/Berlin")
    assert code == 0
    issue.write_text(issue.read_text().replace("title: ", "title: TODO: ", 1))
    code, out = cli("send-due", now="2026-12-02T06:00:30Z")
    assert code == 1 and "fails `newsletter check`" in out
    assert outbox(project) == []
    [(_, state, attempts, error)] = schedules(project)
    assert (state, attempts) == ("failed", 1) and "fails `newsletter check`" in (error or "")
    code, listing = cli("schedule")
    assert "failed" in listing and "fails `newsletter check`" in listing


def test_cancel(cli: Invoke, project: Path) -> None:
    issue = issue_of(project)
    slug = Path(issue).stem
    assert cli("send", issue, "--at", "2026-12-02 07:00", "--tz", "Europe/Berlin")[0] == 0
    code, out = cli("send", issue, "--at", "2026-12-03 07:00", "--tz", "Europe/Berlin")
    assert code == 1 and "already scheduled" in out and "schedule cancel" in out
    code, out = cli("schedule", "cancel", slug)
    assert code == 0 and "Cancelled" in out
    code, out = cli("schedule", "cancel", issue)
    assert code == 1 and "no scheduled send" in out
    code, out = cli("send-due", now="2026-12-03T00:00:00Z")
    assert "Nothing due" in out and outbox(project) == []
    code, listing = cli("schedule")
    assert "cancelled" in listing
    # cancelled, it can be scheduled again
    assert cli("send", issue, "--at", "2026-12-03 07:00", "--tz", "Europe/Berlin")[0] == 0


def test_cancel_names_the_list_when_an_issue_is_scheduled_for_several(
    cli: Invoke, project: Path
) -> None:
    with SubscriberStore.for_config(load_config(project / "newsletter.yaml")) as store:
        store.add("staff@example.net", lists=["staff"])
    issue = issue_of(project)
    assert cli("send", issue, "--at", "2026-12-02 07:00")[0] == 0
    assert cli("send", issue, "--at", "2026-12-02 08:00", "--list", "staff")[0] == 0
    code, out = cli("schedule", "cancel", Path(issue).stem)
    assert code == 1 and "several lists (default, staff): add --list" in out
    code, out = cli("schedule", "cancel", Path(issue).stem, "--list", "staff")
    assert code == 0
    assert [s[1] for s in schedules(project)] == ["scheduled", "cancelled"]


def _env(now: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return {**env, "NEWSLETTER_NOW": now}


def test_two_send_due_processes_racing_fire_a_schedule_once(cli: Invoke, project: Path) -> None:
    with SmtpServer() as relay:
        code, out = cli(
            "send",
            issue_of(project),
            "--at",
            "2026-12-02 07:00",
            "--tz",
            "Europe/Berlin",
            "--transport",
            relay.url(),
            "--rate",
            "40/s",
        )
        assert code == 0, out
        racers = [
            subprocess.Popen(
                [sys.executable, "-m", "newsletter", "send-due"],
                cwd=project,
                env=_env("2026-12-02T06:00:05Z"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120) for p in racers]
        assert all(p.returncode == 0 for p in racers), outputs
        assert sum("sending now" in err for _, err in outputs) == 1, outputs
        assert sorted(relay.count_by_recipient().items()) == [(p, 1) for p in PEOPLE]
    assert [(s[1], s[2]) for s in schedules(project)] == [("done", 1)]


def test_a_claimer_that_died_loses_its_lease_and_the_next_run_finishes_once(
    cli: Invoke, project: Path
) -> None:
    slow = fault("slow-data", "reader0[6-9]@*", delay=30.0)
    with SmtpServer(faults=[slow]) as relay:
        code, out = cli(
            "send",
            issue_of(project),
            "--at",
            "2026-12-02 07:00",
            "--tz",
            "Europe/Berlin",
            "--transport",
            relay.url(timeout=60),
            "--concurrency",
            "1",
        )
        assert code == 0, out
        doomed = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send-due"],
            cwd=project,
            env=_env("2026-12-02T06:00:05Z"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        relay.wait_for(6, timeout=60)
        doomed.kill()  # SIGKILL mid-send: no clean-up, the lease stays behind
        doomed.wait()
        before = set(relay.count_by_recipient())
        [(_, state, attempts, _)] = schedules(project)
        assert (state, attempts) == ("running", 1)
        # Within the lease nobody else takes it...
        code, out = cli("send-due", now="2026-12-02T06:01:00Z")
        assert "Nothing due" in out
        relay.handler.faults.clear()
        # ...after it, the next run claims it and the campaign resumes where it stopped.
        code, out = cli("send-due", now="2026-12-02T06:10:00Z")
        assert code == 0, out
        counts = relay.count_by_recipient()
        assert set(counts) == set(PEOPLE)
        # Only messages in flight when the process died (accepted, not yet recorded) can go
        # twice, with the same Message-ID, which mail systems collapse (the campaign's rule).
        assert {p for p, n in counts.items() if n > 1} <= before, counts
        ids: dict[str, set[str]] = {}
        for message in relay.parsed():
            ids.setdefault(str(message["To"]), set()).add(str(message["Message-ID"]))
        assert all(len(found) == 1 for found in ids.values()), ids
    assert [(s[1], s[2]) for s in schedules(project)] == [("done", 2)]


def test_two_serve_processes_on_one_database_fire_a_schedule_once(
    cli: Invoke, project: Path
) -> None:
    from tests.support.serve_process import serve_process

    with SmtpServer() as relay:
        code, out = cli(
            "send",
            issue_of(project),
            "--at",
            "2026-12-02 07:00",
            "--tz",
            "Europe/Berlin",
            "--transport",
            relay.url(),
        )
        assert code == 0, out
        # Both start three seconds before the schedule is due: it fires at its time, not at
        # a start-up, and only one of the two sends it.
        with (
            serve_process(project, NEWSLETTER_NOW="2026-12-02T05:59:57Z") as one,
            serve_process(project, NEWSLETTER_NOW="2026-12-02T05:59:57Z") as two,
        ):
            relay.wait_for(len(PEOPLE), timeout=60)
            deadline = time.monotonic() + 20
            while schedules(project)[0][1] != "done" and time.monotonic() < deadline:
                time.sleep(0.2)
            outputs = [one.stop(), two.stop()]
        assert sorted(relay.count_by_recipient().items()) == [(p, 1) for p in PEOPLE]
    assert sum("sending now" in o for o in outputs) == 1, outputs
    assert not any("late" in o for o in outputs)
    assert [(s[1], s[2]) for s in schedules(project)] == [("done", 1)]


def test_a_relay_down_at_fire_time_is_tried_again_later(cli: Invoke, project: Path) -> None:
    with SmtpServer() as gone:
        url = gone.url()
    code, out = cli(
        "send", issue_of(project), "--at", "2026-12-02 07:00", "--tz", "Europe/Berlin",
        "--transport", url,
    )  # fmt: skip
    assert code == 0, out
    code, out = cli("send-due", now="2026-12-02T06:00:10Z")
    assert code == 0 and "could not start" in out, out
    assert "trying again from 2026-12-02 07:05 CET" in out
    [(_, state, attempts, error)] = schedules(project)
    assert (state, attempts) == ("scheduled", 1) and "trying again" in (error or "")
    code, out = cli("schedule", now="2026-12-02T06:00:10Z")
    assert "scheduled" in out and "trying again" in out
    code, out = cli("send-due", now="2026-12-02T06:02:00Z")
    assert "Nothing due" in out
    relay = SmtpServer()
    relay.port = relay.controller.port = int(url.split(":")[2].split("?")[0])
    with relay:
        code, out = cli("send-due", now="2026-12-02T06:05:30Z")
        assert code == 0, out
        assert sorted(relay.count_by_recipient().items()) == [(p, 1) for p in PEOPLE]
    assert [(s[1], s[2]) for s in schedules(project)] == [("done", 2)]


def test_serve_stopped_mid_send_hands_the_schedule_back_and_it_resumes_once(
    cli: Invoke, project: Path
) -> None:
    from tests.support.serve_process import serve_process

    with SmtpServer(faults=[fault("slow-data", "reader0[6-9]@*", delay=2.0)]) as relay:
        code, out = cli(
            "send", issue_of(project), "--at", "2026-12-02 07:00", "--tz", "Europe/Berlin",
            "--transport", relay.url(), "--concurrency", "1",
        )  # fmt: skip
        assert code == 0, out
        with serve_process(project, NEWSLETTER_NOW="2026-12-02T06:00:01Z") as server:
            relay.wait_for(6, timeout=60)
            output = server.stop()  # Ctrl-C while the slow part is being sent
        assert "stopped; it resumes at the next run" in output, output
        [(_, state, attempts, _)] = schedules(project)
        assert (state, attempts) == ("scheduled", 1)
        assert len(relay.messages) < len(PEOPLE)
        relay.handler.faults.clear()
        code, out = cli("send-due", now="2026-12-02T06:03:00Z")
        assert code == 0 and "sending now" in out, out
        assert sorted(relay.count_by_recipient().items()) == [(p, 1) for p in PEOPLE]
    assert [(s[1], s[2]) for s in schedules(project)] == [("done", 2)]


def test_a_scheduled_send_to_a_segment_reaches_only_the_segment(cli: Invoke, project: Path) -> None:
    code, out = cli("subscribers", "tag", PEOPLE[0], PEOPLE[3], "pro")
    assert code == 0, out
    code, out = cli(
        "send", issue_of(project), "--segment", '"pro" in tags', "--at", "2026-12-02T07:00Z"
    )
    assert code == 0, out
    code, out = cli("send-due", now="2026-12-02T07:01:00Z")
    assert code == 0, out
    delivered = sorted(
        message_from_bytes(path.read_bytes())["To"].split("<")[-1].rstrip(">")
        for path in outbox(project)
    )
    assert delivered == [PEOPLE[0], PEOPLE[3]]
