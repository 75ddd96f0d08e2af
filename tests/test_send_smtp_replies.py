"""Whose fault an SMTP refusal is, by the command it answers and its RFC 3463 code (issue 15, QA).

A rate reply about one mailbox (Gmail's `450 4.2.1 ... receiving mail at a rate` at RCPT) is
that reader's deferral, not a throttle for everyone; a 5xx to MAIL FROM (a daily quota spent)
is never about a recipient and pauses the run with the readers due. Through `newsletter send`
against aiosmtpd (tests/support/smtp_servers.py); the ledger is read from SQLite afterwards.
"""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from api_messages import make_project, many
from cli_support import run
from click.testing import CliRunner
from smtp_servers import SmtpServer, fault

from newsletter.transports.smtp import reply_result


def project_with(tmp_path: Path, readers: int) -> Path:
    root = make_project(tmp_path)
    with open(root / "subs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name"])
        for r in many(readers):
            writer.writerow([r.email, r.name or ""])
    code, output = run(CliRunner(), root, "subscribers", "import", "subs.csv")
    assert code == 0, output
    return root


def send(root: Path, url: str, *extra: str) -> tuple[int, str]:
    issue = str(next((root / "issues").glob("*.yaml")))
    return run(CliRunner(), root, "send", issue, "--transport", url, "--yes", *extra)


def ledger(root: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(root / "newsletter.db")
    rows = conn.execute(
        "SELECT s.email, r.status, r.attempts FROM campaign_recipients r"
        " JOIN subscribers s ON s.id = r.subscriber_id"
    ).fetchall()
    conn.close()
    return {email: (status, attempts) for email, status, attempts in rows}


def campaign_state(root: Path) -> tuple[str, str | None]:
    conn = sqlite3.connect(root / "newsletter.db")
    state, reason = conn.execute("SELECT state, state_reason FROM campaigns").fetchone()
    conn.close()
    return state, reason


GMAIL_RCPT_RATE = (
    "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents"
    " additional messages from being delivered. Please resend your message at a later point."
)


@pytest.mark.parametrize(
    ("code", "text", "stage", "kind"),
    [
        # A rate about one mailbox: the reader's deferral (an attempt), wherever it comes.
        (450, GMAIL_RCPT_RATE, "RCPT", "deferred"),
        (450, GMAIL_RCPT_RATE, "DATA", "deferred"),
        (450, GMAIL_RCPT_RATE, "MAIL", "deferred"),
        (452, "4.2.2 Mailbox receiving mail at too high a rate", "RCPT", "deferred"),
        (450, "Recipient receiving mail at a rate too high", "RCPT", "deferred"),
        # A rate about the sender or the connection: a throttle.
        (451, "4.7.1 Sending rate limit exceeded, slow down", "RCPT", "throttled"),
        (451, "4.7.1 Rate limit exceeded, try again later", "MAIL", "throttled"),
        (450, "4.4.2 Connection rate too high", "RCPT", "throttled"),
        (451, "Too many messages, slow down", "MAIL", "throttled"),
        (451, "Too many messages, slow down", "DATA", "throttled"),
        (421, "4.7.0 Too many messages, slow down", "MAIL", "throttled"),
        # A 5xx before RCPT is never about the recipient: the account (quota, sender).
        (550, "5.4.5 Daily user sending quota exceeded.", "MAIL", "account"),
        (554, "5.7.0 Your account has exceeded its daily sending limit", "MAIL", "account"),
        (550, "5.1.1 Unknown user", "MAIL", "account"),
        (553, "Sender rejected", "MAIL", "account"),
        (451, "4.3.0 Temporary local problem", "MAIL", "deferred"),
        # The same words about one recipient stay that recipient's.
        (550, "5.1.1 <reader@example.net>: User unknown", "RCPT", "bounced"),
        (452, "4.2.2 Mailbox full, quota exceeded", "RCPT", "deferred"),
    ],
)
def test_smtp_replies_are_read_by_stage_and_enhanced_code(
    code: int, text: str, stage: str, kind: str
) -> None:
    result = reply_result(code, text, stage)  # type: ignore[arg-type]
    got = "throttled" if result.throttled else "account" if result.account else result.status
    assert got == kind
    assert result.reply == f"{code} {text}"


def test_a_rate_reply_about_one_mailbox_defers_only_that_reader(tmp_path: Path) -> None:
    """Gmail's per-mailbox 450 4.2.1 for one reader, forever: the others go out once at full
    pace, that reader is tried 3 times (README: 3 tries per run) and the run ends."""
    root = project_with(tmp_path, 8)
    slow = "reader000003@example.net"
    with SmtpServer(faults=[fault("450-rcpt-rate", slow)]) as server:
        code, output = send(root, server.url())
        delivered = Counter(r for m in server.messages for r in m.rcpt_tos)
        tries = server.handler.attempts[slow]
    assert code != 0
    assert slow not in delivered
    assert len(delivered) == 7 and set(delivered.values()) == {1}
    rows = ledger(root)
    assert rows[slow] == ("deferred", 3)
    assert tries == 3
    assert {rows[e] for e in rows if e != slow} == {("sent", 1)}
    assert "throttled" not in output


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("550-quota", "Daily user sending quota exceeded"),
        ("554-daily-limit", "exceeded its daily sending limit"),
    ],
)
def test_a_refusal_at_mail_from_pauses_with_readers_due(
    kind: str, words: str, tmp_path: Path
) -> None:
    root = project_with(tmp_path, 10)
    quota = fault(kind, "*")  # type: ignore[arg-type]
    with SmtpServer(faults=[quota]) as server:
        code, output = send(root, server.url())
        assert code != 0
        assert words in output
        state, reason = campaign_state(root)
        assert state == "paused" and words in (reason or "")
        assert {status for status, _ in ledger(root).values()} == {"due"}
        assert server.messages == []
        # The next day the quota is back: resuming sends to everyone once.
        server.handler.faults.remove(quota)
        code, output = send(root, server.url())
        delivered = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert code == 0, output
    assert len(delivered) == 10 and set(delivered.values()) == {1}


def test_a_rate_reply_at_mail_from_is_a_throttle(tmp_path: Path) -> None:
    root = project_with(tmp_path, 10)
    with SmtpServer(faults=[fault("451-mail-rate", "*", times=4)]) as server:
        code, output = send(root, server.url())
        delivered = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert code == 0, output
    assert len(delivered) == 10 and set(delivered.values()) == {1}
    assert {row for row in ledger(root).values()} == {("sent", 1)}
    assert "throttled 4 requests" in output


def test_progress_says_throttled_readers_were_put_back_not_deferred(tmp_path: Path) -> None:
    root = project_with(tmp_path, 10)
    with SmtpServer(faults=[fault("451-mail-rate", "*", times=4)]) as server:
        code, output = send(root, server.url(), "--concurrency", "1")
    assert code == 0, output
    progress = [line for line in output.splitlines() if " done: " in line]
    assert progress, output
    assert "4 put back (throttled)" in progress[-1]
    assert "0 deferrals" in progress[-1]
