"""Stopping a send: Ctrl-C (clean) and SIGKILL (a crash), each followed by a resume.

The sender runs as a real subprocess (`python -m newsletter send ... --yes`) with a small rate
so it is mid-campaign when the signal arrives.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore

N = 30


@pytest.fixture
def sender(project: Path):
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for i in range(N):
            store.add(f"reader{i:02d}@example.net", name=f"Reader {i}")
    issue = next((project / "issues").glob("*.yaml"))

    def start(*args: str) -> subprocess.Popen[str]:
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
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=project,
        )

    return start, config.database, issue


def ledger_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM campaign_recipients GROUP BY status"
        ).fetchall()
    except sqlite3.OperationalError:  # the campaign tables are not created yet
        return {}
    finally:
        conn.close()
    return dict(rows)


def wait_for_sent(db: Path, at_least: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger_counts(db).get("sent", 0) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} sent after {timeout}s: {ledger_counts(db)}")


def test_ctrl_c_stops_after_in_flight_messages_and_says_how_to_resume(sender) -> None:
    start, db, issue = sender
    proc = start("--rate", "10/s")
    wait_for_sent(db, 5)
    proc.send_signal(signal.SIGINT)
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
