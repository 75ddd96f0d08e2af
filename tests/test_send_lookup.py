"""The send path's subscriber lookup (one `recipients_for` per chunk of due rows): whoever left
after the snapshot, in any way, is skipped with the reason, and whoever is still active gets a
message personalised from what is stored now (name, fields), not from the snapshot. On both
engines."""

from __future__ import annotations

import email
import email.policy
import threading
from pathlib import Path

import pytest
from campaign_support import DeliveryLog, RecordingTransport
from db_support import use_database

from newsletter.campaign import Campaign, send_issue
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.subscribers import SubscriberStore

LEAVING = [
    ("unsubscribed", lambda store, s: store.unsubscribe(s.id, "one-click")),
    ("bounced", lambda store, s: store.mark_bounced(s.id, "550 5.1.1 gone")),
    ("complained", lambda store, s: store.mark_complained(s.id, "abuse report")),
    ("erased", lambda store, s: store.erase(s.email)),
]


@pytest.fixture
def setup(project: Path, database: str):
    use_database(project, database)
    issue = next(project.glob("issues/*.yaml"))
    text = issue.read_text(encoding="utf-8")
    subject = next(line for line in text.splitlines() if line.startswith("subject:"))
    issue.write_text(
        text.replace(subject, "subject: \"For {{ subscriber.fields.city | default('you') }}\""),
        encoding="utf-8",
    )
    config = load_config(project / "newsletter.yaml")
    store = SubscriberStore.for_config(config)
    yield config, issue, store
    store.close()


def _snapshot_then_stop(config, issue) -> None:
    stopped = threading.Event()
    stopped.set()  # the campaign and its rows are created, nobody is sent
    first = Campaign.prepare(config, issue, transport=lambda: RecordingTransport(DeliveryLog()))
    try:
        assert first.run(stop=stopped).counts.due > 0
    finally:
        first.close()


@pytest.mark.parametrize(("status", "leave"), LEAVING, ids=[s for s, _ in LEAVING])
def test_who_left_after_the_snapshot_is_skipped_with_why(setup, status, leave) -> None:
    config, issue, store = setup
    stays = store.add("stays@example.net", name="Stays Here", fields={"city": "Oslo"})
    leaves = store.add("leaves@example.net", name="Leaves Soon", fields={"city": "Rome"})
    _snapshot_then_stop(config, issue)
    leave(store, leaves)
    # Changed after the snapshot: the message carries what is stored at send time.
    store.add("stays@example.net", name="Stays Renamed", fields={"city": "Bergen"})
    log = DeliveryLog()
    report = send_issue(config, issue, transport=lambda: RecordingTransport(log))
    assert report.ok and report.tally.sent == 1 and report.tally.skipped == 1
    assert log.per_recipient() == {"stays@example.net": 1}
    msg = email.message_from_bytes(log.items[0].data, policy=email.policy.default)
    assert msg["To"].addresses[0].display_name == "Stays Renamed"
    assert msg["Subject"] == "For Bergen"
    conn = connect(config.database)
    try:
        rows = {
            r["subscriber_id"]: (r["status"], r["reply"])
            for r in conn.execute("SELECT subscriber_id, status, reply FROM campaign_recipients")
        }
    finally:
        conn.close()
    why = "was erased" if status == "erased" else f"is {status}"
    assert rows[leaves.id] == ("skipped", f"skipped: the subscriber {why}")
    assert rows[stays.id][0] == "sent"
