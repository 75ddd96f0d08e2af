"""`newsletter send` and `newsletter status` as a user runs them (outbox transport)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.subscribers import SubscriberStore


@pytest.fixture
def cli(project: Path, runner: CliRunner, database: str):
    config = load_config(use_database(project, database) / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ada@example.net", name="Ada")
        store.add("grace@example.net", name="Grace")
        store.add("linus@example.net")
    issue = next((project / "issues").glob("*.yaml"))

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(
            main, ["--config", str(project / "newsletter.yaml"), *args], input=input
        )

    return invoke, issue, project / "outbox"


def test_send_with_yes_writes_one_message_each_and_status_shows_it(cli) -> None:
    invoke, issue, outbox = cli
    result = invoke("send", str(issue), "--yes")
    assert result.exit_code == 0, result.output
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 3
    recipients = sorted(
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["To"]
        .addresses[0]
        .addr_spec
        for f in files
    )
    assert recipients == ["ada@example.net", "grace@example.net", "linus@example.net"]
    assert "3 sent, 0 failed" in result.stdout
    assert "Traceback" not in result.output
    status = invoke("status", str(issue))
    assert status.exit_code == 0
    assert "list default: done" in status.output
    assert "due 0, sent 3, deferred 0, failed 0, bounced 0, unknown 0" in status.output
    # Sending again resumes: nobody gets a second copy.
    again = invoke("send", str(issue), "--yes")
    assert again.exit_code == 0 and "Nothing left to send" in again.output
    assert len(list(outbox.glob("*.eml"))) == 3


def test_it_asks_before_sending_and_no_sends_nothing(cli) -> None:
    invoke, issue, outbox = cli
    subject = load_issue(issue).subject
    result = invoke("send", str(issue), input="n\n")
    assert f"Send '{subject}' to 3 subscribers of list default via outbox:" in result.output
    assert result.exit_code == 1 and "Aborted" in result.output
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    assert "No campaign" in invoke("status", str(issue)).output
    result = invoke("send", str(issue), input="y\n")
    assert result.exit_code == 0, result.output
    assert len(list(outbox.glob("*.eml"))) == 3


def test_plain_progress_lines_when_not_a_terminal(cli) -> None:
    invoke, issue, _ = cli
    result = invoke("send", str(issue), "--yes")
    assert "sending '" in result.stderr and "3 to go" in result.stderr
    assert "3/3 done: 3 sent, 0 failed" in result.stderr
    assert "\r" not in result.stderr  # no bar redraws in a log


def test_test_copy_and_dry_run_record_nothing(cli) -> None:
    invoke, issue, outbox = cli
    result = invoke("send", str(issue), "--test", "me@example.com")
    assert result.exit_code == 0, result.output
    assert "Test message '[TEST] " in result.output
    [copy] = list(outbox.glob("*.eml"))
    msg = email.message_from_bytes(copy.read_bytes(), policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] ") and msg["To"] == "me@example.com"
    dry = invoke("send", str(issue), "--dry-run")
    assert dry.exit_code == 0 and "built 3 messages" in dry.output
    assert "nothing was sent" in dry.output
    assert len(list(outbox.glob("*.eml"))) == 1
    assert "No campaign" in invoke("status", str(issue)).output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--transport", "bogus://x"], "unknown transport 'bogus://x'"),
        (["--list", "nobody"], "nobody to send to"),
        (["--rate", "fast"], "invalid rate 'fast'"),
    ],
)
def test_bad_input_gets_one_clear_line(cli, args: list[str], expected: str) -> None:
    invoke, issue, outbox = cli
    result = invoke("send", str(issue), "--yes", *args)
    assert result.exit_code in (1, 2)
    assert expected in result.output
    assert "Traceback" not in result.output and not outbox.exists()


def test_an_issue_failing_check_is_refused(cli, project: Path) -> None:
    invoke, issue, outbox = cli
    broken = project / "issues" / "broken.yaml"
    broken.write_text(issue.read_text().replace("title:", "titel:", 1))
    result = invoke("send", str(broken), "--yes")
    assert result.exit_code == 1
    assert "fails `newsletter check`" in result.output and "broken.yaml:" in result.output
    assert not outbox.exists()


def test_console_transport_status_by_slug_and_the_include_new_hint(cli, project: Path) -> None:
    invoke, issue, _ = cli
    result = invoke("send", str(issue), "--yes", "--transport", "console:", "--list", "default")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "@example.net" in line]
    assert len(lines) == 3  # one line per message
    slug = load_issue(issue).slug
    by_slug = invoke("status", slug)
    assert f"{slug} -> list default: done" in by_slug.output and "sent 3" in by_slug.output
    with SubscriberStore.for_config(load_config(project / "newsletter.yaml")) as store:
        store.add("late@example.net")
    again = invoke("send", str(issue), "--yes", "--transport", "console:")
    assert "1 subscriber joined list default since this campaign started" in again.output
    assert "--include-new" in again.output and "Nothing left to send" in again.output
    added = invoke("send", str(issue), "--yes", "--transport", "console:", "--include-new")
    assert added.exit_code == 0 and "1 sent, 0 failed" in added.stdout
    assert "late@example.net" in added.stdout


def test_status_after_a_stopped_run_says_how_to_go_on(cli) -> None:
    from newsletter.campaign.ledger import Ledger
    from newsletter.db import connect

    invoke, issue, _ = cli
    assert invoke("send", str(issue), "--yes").exit_code == 0
    config_db = load_config(issue.parent.parent / "newsletter.yaml").database
    conn = connect(config_db)
    ledger = Ledger(conn)
    [campaign] = ledger.for_issue(load_issue(issue).slug)
    conn.execute("UPDATE campaign_recipients SET status = 'due' WHERE id = 1")
    ledger.set_state(campaign.id, "sending")
    conn.close()
    status = invoke("status", str(issue))
    assert "stopped before the end (send again to resume)" in status.output
    assert "due 1, sent 2" in status.output


def test_status_of_a_campaign_with_only_deferred_left_and_its_last_change(cli) -> None:
    from newsletter.campaign.ledger import Ledger
    from newsletter.db import connect

    invoke, issue, _ = cli
    assert invoke("send", str(issue), "--yes").exit_code == 0
    conn = connect(load_config(issue.parent.parent / "newsletter.yaml").database)
    ledger = Ledger(conn)
    [campaign] = ledger.for_issue(load_issue(issue).slug)
    conn.execute(
        "UPDATE campaign_recipients SET status = 'deferred', updated_at = '2999-01-01T00:00:00Z'"
        " WHERE id = 1"
    )
    ledger.set_state(campaign.id, "sending")
    conn.close()
    status = invoke("status", str(issue))
    assert "waiting to retry the deferred (send again to retry them)" in status.output
    assert "last change 2999-01-01T00:00:00Z" in status.output  # a recipient's, not the start


# SQLite only: a second connection holding the file's write lock (PostgreSQL waits for row
# locks instead; its lock timeout is the pool's, tested with newsletter.db).
@pytest.mark.engine("sqlite")
def test_a_locked_database_is_one_clear_line(cli, project: Path, monkeypatch) -> None:
    import sqlite3

    from newsletter.db import connect

    invoke, issue, _ = cli
    monkeypatch.setitem(connect.__kwdefaults__, "timeout", 0.2)  # a short busy timeout
    holder = sqlite3.connect(project / "newsletter.db", timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = invoke("send", str(issue), "--yes")
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 1
    assert "database error: database is locked" in result.output
    assert "Traceback" not in result.output


def test_the_question_on_resume_says_how_many_were_sent(cli, project: Path) -> None:
    invoke, issue, _ = cli
    assert invoke("send", str(issue), "--yes").exit_code == 0
    with SubscriberStore.for_config(load_config(project / "newsletter.yaml")) as store:
        store.add("late@example.net")
    result = invoke("send", str(issue), "--include-new", input="y\n")
    assert "to 1 subscriber of list default via outbox:" in result.output
    assert "(resuming: 3 already sent)?" in result.output
    assert result.exit_code == 0 and "1 sent, 0 failed" in result.output
