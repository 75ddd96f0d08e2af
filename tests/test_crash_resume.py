"""Stopping a send: Ctrl-C (clean) and SIGKILL (a crash), each followed by a resume.

The sender runs as a real subprocess (`python -m newsletter send ... --yes`) with a small rate
so it is mid-campaign when the signal arrives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from db_support import use_database

from newsletter import db
from newsletter.config import load_config
from newsletter.db import Database, connect
from newsletter.subscribers import SubscriberStore

N = 30


@pytest.fixture
def sender(project: Path, database: str):
    config = load_config(use_database(project, database) / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for i in range(N):
            store.add(f"reader{i:02d}@example.net", name=f"Reader {i}")
    issue = next((project / "issues").glob("*.yaml"))

    def start(*args: str, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "newsletter",
                "--config",
                str(project / "newsletter.yaml"),
                "send",
                str(issue),
                "--yes",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=project,
        )

    return start, config.database, issue


def ledger_counts(database: Database) -> dict[str, int]:
    conn = connect(database)
    try:
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM campaign_recipients GROUP BY status"
        ).fetchall()
    except db.Error:  # the campaign tables are not created yet
        return {}
    finally:
        conn.close()
    return {str(r[0]): int(r[1]) for r in rows}


def file_is_sound(conn: db.Connection) -> None:
    """SQLite's own check of the file after a kill (PostgreSQL's WAL makes a commit whole)."""
    if not db.is_postgresql(conn):
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def wait_for_sent(db: Database, at_least: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger_counts(db).get("sent", 0) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} sent after {timeout}s: {ledger_counts(db)}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_after_in_flight_messages_and_says_how_to_resume(sender, signum) -> None:
    start, db, issue = sender
    proc = start("--rate", "10/s")
    wait_for_sent(db, 5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, (out, err)
    assert "Stopping after the messages in flight" in err
    assert f"To resume, run: newsletter send {issue} --list default" in out
    assert "Traceback" not in out + err
    counts = ledger_counts(db)
    assert counts.get("inflight", 0) == 0  # a clean stop leaves nobody "unknown"
    assert 5 <= counts["sent"] < N and counts["sent"] + counts["due"] == N

    resumed = start()
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, (out, err)
    assert ledger_counts(db) == {"sent": N}
    assert f"{N - counts['sent']} sent, 0 failed" in out


def test_sigkill_mid_campaign_then_resume_delivers_everyone_once_but_in_flight(
    sender, project: Path
) -> None:
    from click.testing import CliRunner
    from smtp_servers import SmtpServer

    from newsletter.cli import main

    start, db, issue = sender
    with SmtpServer() as server:
        proc = start("--transport", server.url(), "--rate", "20/s", "--concurrency", "3")
        server.wait_for(8, timeout=20)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

        conn = connect(db)
        file_is_sound(conn)
        inflight = {
            row[0]
            for row in conn.execute(
                "SELECT s.email FROM campaign_recipients r JOIN subscribers s"
                " ON s.id = r.subscriber_id WHERE r.status = 'inflight'"
            )
        }
        recorded_sent = conn.execute(
            "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'sent'"
        ).fetchone()[0]
        conn.close()
        before = server.count_by_recipient()
        # Marked sent only after the server accepted: the ledger never runs ahead of the server.
        assert recorded_sent <= sum(before.values()) < N
        status = CliRunner().invoke(
            main, ["--config", str(project / "newsletter.yaml"), "status", str(issue)]
        )
        assert f"unknown {len(inflight)}" in status.output

        resumed = start("--transport", server.url())
        out, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, (out, err)
        counts = server.count_by_recipient()
        assert set(counts) == {f"reader{i:02d}@example.net" for i in range(N)}
        duplicated = {rcpt for rcpt, n in counts.items() if n > 1}
        assert all(n <= 2 for n in counts.values())
        assert duplicated <= inflight, (duplicated, inflight)
        # Only what the 3 connections were sending (plus a result not yet written) can repeat.
        assert len(duplicated) <= 3 + 2, duplicated
        for rcpt in duplicated:
            ids = {m["Message-ID"] for m in server.parsed(rcpt)}
            assert len(ids) == 1  # the resend carries the same Message-ID: receivers dedupe
    assert ledger_counts(db) == {"sent": N}


def test_progress_bar_on_a_terminal(sender) -> None:
    import pty

    start, _, _ = sender
    main_fd, child_fd = pty.openpty()
    # stderr on a pseudo-terminal: the bar is redrawn in place.
    tty_proc = start("--rate", "40/s", "--transport", "console:", stderr=child_fd)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the terminal closed when the sender exited
            break
        if not data:
            break
        chunks.append(data)
    tty_proc.wait(timeout=30)
    os.close(main_fd)
    output = b"".join(chunks).decode()
    assert tty_proc.returncode == 0, output
    assert "\r[" in output and "#" in output and "ETA" in output
    assert f"{N}/{N}" in output


def test_a_second_ctrl_c_stops_at_once_and_resume_still_completes(sender) -> None:
    start, db, _ = sender
    proc = start("--rate", "10/s")
    wait_for_sent(db, 3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    conn = connect(db)
    file_is_sound(conn)
    conn.close()
    resumed = start()
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, (out, err)
    assert ledger_counts(db) == {"sent": N}
