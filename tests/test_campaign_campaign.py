"""The whole send path from Python: issue file -> check -> compile -> ledger -> transport.

Every delivered message is parsed with Python's email package and checked the way a mail client
would see it. The transport is the recording implementation of the interface (see
campaign_support); the SMTP tests repeat the essentials against real servers.
"""

from __future__ import annotations

import email
import email.policy
import re
from html import escape as html_escape
from pathlib import Path

import pytest
from campaign_support import DeliveryLog, RecordingTransport
from db_support import use_database

from newsletter.campaign import Campaign, campaign_status, send_issue, send_test
from newsletter.config import load_config
from newsletter.db import connect, is_postgresql
from newsletter.errors import CampaignError
from newsletter.issue import load_issue
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import UNSUBSCRIBE, read_token, secret_key

ISSUE_GLOB = "issues/*.yaml"


@pytest.fixture
def setup(project: Path, database: str):
    config = load_config(use_database(project, database) / "newsletter.yaml")
    issue = next(project.glob(ISSUE_GLOB))
    store = SubscriberStore.for_config(config)
    store.add("zoe@example.net", name="Zoë Ünïcode-Østergård")
    store.add("plain@example.net")
    store.add("bob@example.net", name="Bob O'Hara <admin>")
    store.add("other@example.net", name="Other", lists=["other"])
    store.add("pending@example.net", status="pending")
    yield config, issue, store
    store.close()


def _parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_each_subscriber_gets_a_complete_personalised_message(setup) -> None:
    config, issue_path, store = setup
    log = DeliveryLog()
    report = send_issue(config, issue_path, transport=lambda: RecordingTransport(log))
    assert report.ok and report.tally.sent == 3
    assert sorted(log.per_recipient()) == [
        "bob@example.net",
        "plain@example.net",
        "zoe@example.net",
    ]  # only active members of the default list
    issue = load_issue(issue_path)
    secret = secret_key(config, store.conn)
    ids = set()
    for delivery in log.items:
        raw = delivery.data
        assert b"\r\n" in raw and all(len(line) <= 998 for line in raw.split(b"\r\n"))
        msg = _parse(raw)
        sub = store.get(delivery.recipient)
        assert msg["From"] == "Test Letter <news@example.org>"
        assert msg["To"].addresses[0].addr_spec == sub.email
        assert (msg["To"].addresses[0].display_name or None) == sub.name
        assert msg["Subject"] == issue.subject
        assert msg["Date"] and msg["MIME-Version"] == "1.0"
        mid = msg["Message-ID"]
        assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", mid)
        assert mid == f"<{delivery.message_id}>"
        ids.add(mid)
        assert msg["List-Id"].endswith("example.org>")
        url = re.fullmatch(
            r"<(https://news\.example\.org/unsubscribe/([^>]+))>", msg["List-Unsubscribe"]
        )
        assert url, msg["List-Unsubscribe"]
        assert read_token(secret, UNSUBSCRIBE, url.group(2))[0] == sub.id
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_content_type() == "multipart/alternative"
        text_part, html_part = msg.iter_parts()
        assert text_part.get_content_type() == "text/plain"
        assert html_part.get_content_type() == "text/html"
        text, html = text_part.get_content(), html_part.get_content()
        greeting = sub.name or "there"
        assert f"Hello {greeting}" in text
        assert f"Hello {html_escape(greeting, quote=True)}" in html
        assert "<admin>" not in html  # subscriber data is escaped into HTML
        assert url.group(1) in text and url.group(1) in html  # footer link == header URL
    assert len(ids) == 3


def test_prepare_counts_and_describes_without_side_effects(setup) -> None:
    config, issue_path, _ = setup
    log = DeliveryLog()
    campaign = Campaign.prepare(config, issue_path, transport=lambda: RecordingTransport(log))
    assert campaign.pending == 3 and campaign.existing is None
    assert campaign.transport_description == "recording"
    assert campaign.subject == load_issue(issue_path).subject
    assert campaign_status(config, issue_path) == []  # nothing recorded by preparing
    assert log.opened == 0
    campaign.close()


def test_an_issue_failing_check_is_refused(setup, project: Path) -> None:
    config, issue_path, _ = setup
    broken = project / "issues" / "broken.yaml"
    broken.write_text(issue_path.read_text().replace("title:", "titel:", 1))
    with pytest.raises(CampaignError, match=r"broken\.yaml:\d+:\d+: error"):
        Campaign.prepare(config, broken, transport=lambda: RecordingTransport(DeliveryLog()))


def test_what_was_checked_is_what_is_sent(setup) -> None:
    """The check parses and compiles the file once and the send uses that: an edit made to the
    file after `prepare` (while the user answers the question) cannot slip past the check."""
    config, issue_path, _ = setup
    checked_subject = load_issue(issue_path).subject
    log = DeliveryLog()
    campaign = Campaign.prepare(config, issue_path, transport=lambda: RecordingTransport(log))
    text = issue_path.read_text(encoding="utf-8")
    issue_path.write_text(text.replace("subject:", "subject: EDITED", 1), encoding="utf-8")
    assert load_issue(issue_path).subject != checked_subject
    try:
        report = campaign.run()
    finally:
        campaign.close()
    assert report.ok and len(log.items) == 3
    assert {_parse(d.data)["Subject"] for d in log.items} == {checked_subject}


def test_an_empty_list_has_nobody_to_send_to(setup) -> None:
    config, issue_path, _ = setup
    with pytest.raises(CampaignError, match="nobody to send to"):
        Campaign.prepare(
            config,
            issue_path,
            list_name="nobody",
            transport=lambda: RecordingTransport(DeliveryLog()),
        )


def test_dry_run_builds_every_message_and_sends_nothing(setup) -> None:
    config, issue_path, _ = setup
    log = DeliveryLog()
    campaign = Campaign.prepare(config, issue_path, transport=lambda: RecordingTransport(log))
    report = campaign.dry_run()
    campaign.close()
    assert report.messages == 3 and report.bytes > 3 * 5000 and not report.failed
    assert "built 3 messages" in report.summary()
    assert not log.items and log.opened == 0
    assert campaign_status(config, issue_path) == []


def test_a_test_copy_is_marked_and_not_recorded(setup) -> None:
    config, issue_path, _ = setup
    log = DeliveryLog()
    report = send_test(
        config, issue_path, "Me@Example.COM", transport=lambda: RecordingTransport(log)
    )
    assert [d.recipient for d in log.items] == ["Me@example.com"]
    msg = _parse(log.items[0].data)
    assert msg["Subject"] == "[TEST] " + load_issue(issue_path).subject
    assert report.subject.startswith("[TEST] ")
    assert campaign_status(config, issue_path) == []


def test_resume_sends_only_to_those_not_yet_sent_and_new_ones_on_request(setup) -> None:
    config, issue_path, store = setup
    log = DeliveryLog()
    factory = lambda: RecordingTransport(log)  # noqa: E731
    send_issue(config, issue_path, transport=factory)
    store.add("newcomer@example.net", name="New")
    again = Campaign.prepare(config, issue_path, transport=factory)
    assert again.pending == 0 and again.new_members == 1
    report = again.run()
    again.close()
    assert report.tally.done == 0 and len(log.items) == 3
    send_issue(config, issue_path, transport=factory, include_new=True)
    assert log.per_recipient()["newcomer@example.net"] == 1
    assert set(log.per_recipient().values()) == {1}
    [status] = campaign_status(config, issue_path)
    assert status.counts.sent == 4 and status.campaign.state == "done"
    assert "sent 4" in status.format() and "default" in status.format()


def test_the_database_holds_one_campaign_per_issue_and_list(setup) -> None:
    config, issue_path, _ = setup
    log = DeliveryLog()
    send_issue(config, issue_path, transport=lambda: RecordingTransport(log))
    send_issue(config, issue_path, list_name="other", transport=lambda: RecordingTransport(log))
    statuses = campaign_status(config, issue_path)
    assert [s.campaign.list_name for s in statuses] == ["default", "other"]
    assert [s.counts.sent for s in statuses] == [3, 1]
    conn = connect(config.database)
    rows = conn.execute("SELECT list_name FROM campaigns ORDER BY list_name").fetchall()
    assert [r[0] for r in rows] == ["default", "other"]
    if not is_postgresql(conn):  # the SQLite file's own check (PostgreSQL has no such pragma)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_recipient_whose_message_cannot_be_built_fails_alone(setup) -> None:
    config, issue_path, store = setup
    jorg = store.add("jorg@example.net", name="Jörg")
    with store.transaction() as conn:  # as stored before the address rule: needs SMTPUTF8
        conn.execute("UPDATE subscribers SET email = 'jörg@example.net' WHERE id = ?", (jorg.id,))
    log = DeliveryLog()
    report = send_issue(config, issue_path, transport=lambda: RecordingTransport(log))
    assert report.tally.sent == 3 and report.tally.failed == 1 and not report.ok
    assert "jörg@example.net" not in log.per_recipient()
    rows = {r["subscriber_id"]: r for r in _rows(config)}
    failed = rows[jorg.id]
    assert failed["status"] == "failed" and failed["reply"].startswith("message not built:")


def _rows(config) -> list:
    conn = connect(config.database)
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM campaign_recipients")]
    finally:
        conn.close()


def test_who_left_after_the_snapshot_is_skipped_on_resume(setup) -> None:
    import threading

    config, issue_path, store = setup
    log = DeliveryLog()
    factory = lambda: RecordingTransport(log)  # noqa: E731
    stopped = threading.Event()
    stopped.set()  # snapshot the list, then stop before anyone is sent
    first = Campaign.prepare(config, issue_path, transport=factory)
    report = first.run(stop=stopped)
    first.close()
    assert report.interrupted and report.counts.due == 3 and not log.items
    store.unsubscribe(store.get("bob@example.net").id, "one-click")
    store.mark_bounced(store.get("plain@example.net").id, "550 5.1.1 gone")
    report = send_issue(config, issue_path, transport=factory)
    assert log.per_recipient() == {"zoe@example.net": 1}
    assert report.tally.skipped == 2 and report.counts.skipped == 2 and report.ok
    replies = {r["reply"] for r in _rows(config) if r["status"] == "skipped"}
    assert replies == {
        "skipped: the subscriber is unsubscribed",
        "skipped: the subscriber is bounced",
    }
