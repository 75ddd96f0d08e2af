"""The reputation guard through `newsletter send` as a user runs it (aiosmtpd relay on
loopback): the campaign pauses itself with the reason, `status` shows counts and rates, and a
later `send` resumes only after the question is answered (--yes; refused without a terminal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import run
from click.testing import CliRunner
from db_support import use_database
from smtp_servers import SmtpServer, fault

from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.policy import apply_events
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore

GUARD = "bounces:\n  guard_min_sent: 10\n  guard_bounce_rate: 20%\n  guard_complaint_rate: 10%\n"


@pytest.fixture(autouse=True)
def engine(project: Path, database: str) -> None:
    """Every test on each engine: the project's records in `database` (an SQLite file or a
    PostgreSQL URL)."""
    use_database(project, database)


@pytest.fixture
def guarded(project: Path) -> tuple[Path, Path]:
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(GUARD)
    return project, next((project / "issues").glob("*.yaml"))


def _add(project: Path, *emails: str) -> None:
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for email in emails:
            store.add(email)


def test_hard_bounces_past_the_limit_pause_the_send_and_resuming_asks(
    guarded, runner: CliRunner
) -> None:
    project, issue = guarded
    # Subscribers are sent in id order: the dead addresses come first.
    _add(project, *(f"dead{i}@example.net" for i in range(6)))
    _add(project, *(f"live{i:02d}@example.net" for i in range(24)))
    with SmtpServer(faults=[fault("550", "dead*")]) as server:
        url = server.url()
        code, out = run(
            runner, project, "send", str(issue), "--yes", "--transport", url, "--concurrency", "1"
        )
        assert code != 0
        assert "reputation guard: hard bounces 6 of" in out and "passed 20%" in out
        first = len(server.messages)
        assert 4 <= first < 24  # paused right past the minimum sample, not at the end
        code, status = run(runner, project, "status", str(issue))
        assert "paused (reputation guard: hard bounces 6 of" in status
        assert "hard bounces 6 (" in status and "complaints 0 (0%)" in status
        # No terminal and no --yes: refused with the reason, nothing sent.
        code, out = run(runner, project, "send", str(issue))
        assert code != 0 and "paused by the reputation guard" in out and "--yes" in out
        assert len(server.messages) == first
        code, out = run(runner, project, "send", str(issue), "--yes")
        assert code == 0, out
        assert "Resuming a campaign paused by the reputation guard" in out
        assert sorted(m.rcpt_tos[0] for m in server.messages) == [
            f"live{i:02d}@example.net" for i in range(24)
        ]
    code, status = run(runner, project, "status", str(issue))
    assert "-> list default: done" in status
    assert "hard bounces 6 (20%), complaints 0 (0%) of 30 sent" in status


def test_complaints_reported_between_runs_pause_the_next_run(guarded, runner: CliRunner) -> None:
    project, issue = guarded
    _add(project, *(f"reader{i:02d}@example.net" for i in range(12)))
    _add(project, *(f"later{i}@example.net" for i in range(4)))
    config = load_config(project / "newsletter.yaml")
    # The later readers' server defers every time: the campaign waits for another run.
    with SmtpServer(faults=[fault("451", "later*")]) as server:
        code, out = run(runner, project, "send", str(issue), "--yes", "--transport", server.url())
        assert code == 1 and len(server.messages) == 12
        complaints = [
            FeedbackEvent("complaint", "arf", f"arf-{i}", recipient=f"reader{i:02d}@example.net")
            for i in range(2)
        ]
        assert [o.action for o in apply_events(config, complaints).outcomes] == [
            "unsubscribed (complained)"
        ] * 2
        # The complaints came without a campaign clue: matched by address, they count for
        # no campaign. One more names the message through its ledger key.
        with SubscriberStore.for_config(config) as store:
            row = store.conn.execute(
                "SELECT r.id FROM campaign_recipients r JOIN subscribers s"
                " ON s.id = r.subscriber_id WHERE s.email = 'reader05@example.net'"
            ).fetchone()[0]
        apply_events(config, [FeedbackEvent("complaint", "sendgrid", "sg-1", ledger_key=row)])
        code, status = run(runner, project, "status", str(issue))
        assert "complaints 1 (8.33%) of 12 sent" in status
        apply_events(
            config,
            [FeedbackEvent("complaint", "mailgun", "mg-1", message_id=_mid(server, "reader06"))],
        )
        code, out = run(runner, project, "send", str(issue), "--yes")
    assert "reputation guard: complaints 2 of" in out and "passed 10%" in out


def _mid(server: SmtpServer, local: str) -> str:
    for message in server.messages:
        if message.rcpt_tos[0].startswith(local):
            return message.parsed()["Message-ID"].strip("<>")
    raise AssertionError(local)


def _at_terminal(project: Path, answers: list[tuple[str, str]], *args: str) -> tuple[int, str]:
    """`python -m newsletter ARGS` on a pseudo-terminal, answering each prompt (text to wait
    for, answer) as a person would; (exit status, everything shown)."""
    import os
    import pty
    import subprocess
    import sys
    import time

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=project,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        shown += chunk
        if pending and pending[0][0].encode() in shown.split(b"\n")[-1] + shown[-200:]:
            os.write(master, pending.pop(0)[1].encode() + b"\n")
    os.close(master)
    return proc.wait(timeout=30), shown.decode(errors="replace")


def test_at_a_terminal_resuming_asks_and_no_means_nothing_is_sent(
    guarded, runner: CliRunner
) -> None:
    project, issue = guarded
    _add(project, *(f"dead{i}@example.net" for i in range(6)))
    _add(project, *(f"live{i:02d}@example.net" for i in range(14)))
    with SmtpServer(faults=[fault("550", "dead*")]) as server:
        code, out = run(
            runner,
            project,
            "send",
            str(issue),
            "--yes",
            "--transport",
            server.url(),
            "--concurrency",
            "1",
        )
        assert "reputation guard" in out
        first = len(server.messages)
        code, shown = _at_terminal(project, [("Resume it anyway?", "n")], "send", issue.stem)
        assert code != 0 and "paused by the reputation guard: hard bounces 6 of" in shown
        assert len(server.messages) == first
        code, shown = _at_terminal(
            project, [("Resume it anyway?", "y"), ("Send '", "y")], "send", f"issues/{issue.name}"
        )
        assert code == 0, shown
        assert len(server.messages) == 14
