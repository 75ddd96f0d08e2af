"""A batch sent as many paced requests (SES: one SendEmail per recipient) is not one request
(issue 15, QA).

- kill -9 during an SES run: a batch of 50 at MaxSendRate 3 took 17 s and was recorded only at
  its end; a crash then sent every accepted-but-unrecorded reader a second copy. Batches now
  take about a second at the account's rate, so only what was in flight can arrive twice
  (README: after a crash). The sender runs as a real subprocess against the SES stand-in.
- The summary counted throttles per batch ("throttled 2 requests" when 12 were): it counts
  requests, for SES each throttled message, for a batching API each throttled batch.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_send_limits import AWS, KEY, api_server, issue_of, project_with, send, ses_server, url_for

N = 30
RATE = 3  # the account's MaxSendRate


def start_send(root: Path, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", issue_of(root), "--transport", url, "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=root,
    )


def test_sigkill_during_a_paced_ses_run_repeats_only_what_was_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project_with(tmp_path, N)
    server = ses_server(max_send_rate=RATE)
    try:
        url = url_for("ses", server.url, monkeypatch)
        proc = start_send(root, url)
        deadline = time.monotonic() + 30
        while len(server.sent()) < 4 * RATE and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        accepted = len(server.sent())
        assert accepted < N
        conn = sqlite3.connect(root / "newsletter.db")
        recorded = conn.execute(
            "SELECT COUNT(*) FROM campaign_recipients WHERE status = 'sent'"
        ).fetchone()[0]
        conn.close()
        # Accepted by SES but not yet in the ledger: about a second's worth (plus a result
        # not yet written), not a whole 50-message batch.
        assert accepted - recorded <= RATE + 2, (accepted, recorded)

        resumed = start_send(root, url)
        out, err = resumed.communicate(timeout=90)
        assert resumed.returncode == 0, (out, err)
        copies = Counter(d.to_email for d in server.sent())
        assert len(copies) == N
        assert sum(n - 1 for n in copies.values()) <= RATE + 2, copies
    finally:
        server.stop()


@pytest.mark.parametrize(("provider", "refusals"), [("ses", 6), ("sendgrid", 2), ("postmark", 2)])
def test_the_summary_counts_throttled_requests_not_batches(
    provider: str, refusals: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES: 6 of one batch's requests refused = 6 requests; SendGrid and Postmark: a batch of
    20 is one request, refused twice = 2."""
    root = project_with(tmp_path, 20)
    if provider == "ses":
        server: object = ses_server()
        server.fail_next(  # type: ignore[attr-defined]
            429, "Throttling", times=refusals, message="Maximum sending rate exceeded."
        )
    else:
        server = api_server(provider)
        server.fail_next(429, times=refusals)  # type: ignore[attr-defined]
    try:
        url = url_for(provider, server.url, monkeypatch)  # type: ignore[attr-defined]
        code, output = send(root, url, "--concurrency", "1")
    finally:
        server.stop()  # type: ignore[attr-defined]
    assert code == 0, output
    assert f"throttled {refusals} requests" in output, output


@pytest.mark.parametrize("provider", ["smtp", "sendgrid", "ses"])
def test_a_provider_throttling_forever_ends_the_run_with_readers_put_back(
    provider: str, tmp_path: Path
) -> None:
    """Nothing accepted for `max_wait` seconds of throttling (300 by default; 2 here, through
    the documented Python API): the run ends, nobody spent an attempt or failed, the summary
    says why, and the next run tries them again."""
    from smtp_servers import SmtpServer, fault

    from newsletter.campaign import RetryPolicy, send_issue
    from newsletter.config import load_config

    root = project_with(tmp_path, 4)
    config = load_config(root / "newsletter.yaml")
    environ = dict(AWS)
    smtp = SmtpServer(faults=[fault("451-mail-rate", "*")]) if provider == "smtp" else None
    server: object = None
    if provider == "smtp":
        assert smtp is not None
        smtp.__enter__()
        url = smtp.url()
    elif provider == "sendgrid":
        server = api_server("sendgrid")
        server.fail_next(429, times=10_000)  # type: ignore[attr-defined]
        url = f"sendgrid:?endpoint={server.url}"  # type: ignore[attr-defined]
        environ["SENDGRID_API_KEY"] = KEY
    else:
        server = ses_server()
        server.fail_next(  # type: ignore[attr-defined]
            429, "Throttling", times=10_000, message="Maximum sending rate exceeded."
        )
        url = f"ses:eu-west-1?endpoint={server.url}"  # type: ignore[attr-defined]
    started = time.monotonic()
    try:
        report = send_issue(
            config, issue_of(root), transport=url, environ=environ, retry=RetryPolicy(max_wait=2)
        )
    finally:
        if smtp is not None:
            smtp.__exit__(None, None, None)
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 60
    assert not report.ok
    assert report.tally.sent == report.tally.failed == report.tally.deferred == 0
    summary = report.summary()
    assert "accepted nothing for 2 s of throttling" in summary, summary
    conn = sqlite3.connect(root / "newsletter.db")
    rows = conn.execute("SELECT status, attempts FROM campaign_recipients").fetchall()
    conn.close()
    assert {status for status, _ in rows} <= {"deferred", "due"}
    assert {attempts for _, attempts in rows} == {0}
