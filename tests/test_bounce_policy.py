"""The one bounce/complaint policy (`newsletter.bounces.policy.apply_events`) against a real
SQLite database after a real campaign (sent to the local outbox): every event kind, every way an
event names its message, idempotence, and dry runs that write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.policy import apply_events
from newsletter.campaign import send_issue
from newsletter.campaign.ledger import Ledger
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.issue import load_issue
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import secret_key, verp_token

READERS = [f"reader{i}@example.net" for i in range(6)]


@pytest.fixture
def sent(project: Path):
    """A project whose example issue went to six readers; (config, {email: ledger row})."""
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write("bounces:\n  address: bounces@news.example.org\n")
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for email in READERS:
            store.add(email)
    issue = next((project / "issues").glob("*.yaml"))
    assert send_issue(config, issue).ok
    conn = connect(config.database)
    ledger = Ledger(conn)
    [campaign] = ledger.for_issue(load_issue(issue).slug)
    with SubscriberStore.for_config(config) as store:
        ids = {store.get_by_id(r["subscriber_id"]).email: r["id"] for r in ledger.rows(campaign.id)}
    conn.close()
    return config, ids


def _status(config, email: str) -> str:
    with SubscriberStore.for_config(config) as store:
        return store.get(email).status


def _secret(config) -> bytes:
    conn = connect(config.database)
    try:
        return secret_key(config, conn)
    finally:
        conn.close()


def _message_id(config, email: str) -> str:
    """The Message-ID the reader received, read from the outbox file."""
    for path in (config.root / "outbox").rglob("*.eml"):
        data = path.read_bytes()
        if f"To: {email}".encode() in data or f"<{email}>".encode() in data:
            for line in data.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no outbox message for {email}")


# Each way of naming the message, in the issue's order (the event carries only that clue).
CLUES = ["subscriber_id", "verp_token", "ledger_key", "message_id", "recipient"]


def _event(config, ids, email: str, clue: str, kind="hard_bounce", n="1", **extra):
    if clue == "subscriber_id":
        with SubscriberStore.for_config(config) as store:
            value: object = store.get(email).id
    elif clue == "verp_token":
        value = verp_token(_secret(config), ids[email])
    elif clue == "ledger_key":
        value = ids[email]
    elif clue == "message_id":
        value = _message_id(config, email).strip("<>")
    else:
        value = email
    return FeedbackEvent(kind=kind, source="dsn", event_id=f"{clue}-{n}", **{clue: value}, **extra)


@pytest.mark.parametrize("clue", CLUES)
def test_each_clue_maps_a_hard_bounce_to_its_one_recipient(sent, clue: str) -> None:
    config, ids = sent
    event = _event(config, ids, "reader2@example.net", clue, status="5.1.1", reason="no such user")
    report = apply_events(config, [event])
    [outcome] = report.outcomes
    assert (outcome.email, outcome.action) == ("reader2@example.net", "bounced")
    assert [e for e in READERS if _status(config, e) != "active"] == ["reader2@example.net"]
    if clue != "subscriber_id" and clue != "recipient":
        assert outcome.campaign_id is not None
    with SubscriberStore.for_config(config) as store:
        history = store.events(store.get("reader2@example.net").id)
    last = history[-1]
    assert last.kind == "bounced" and "dsn 5.1.1: no such user" in last.detail


KINDS = [
    ("hard_bounce", "bounced", "bounced"),
    ("complaint", "unsubscribed (complained)", "complained"),
    ("unsubscribe", "unsubscribed", "unsubscribed"),
    ("soft_bounce", "soft bounce 1 of 3 in 30 days", "active"),
    ("delivered", "delivery recorded", "active"),
]


@pytest.mark.parametrize(
    "source", ["dsn", "arf", "sendgrid", "mailgun", "postmark", "ses", "resend"]
)
@pytest.mark.parametrize(("kind", "action", "status"), KINDS)
def test_policy_per_kind_and_source(sent, source, kind, action, status) -> None:
    config, ids = sent
    event = FeedbackEvent(kind, source, f"{source}-1", ledger_key=ids["reader1@example.net"])
    [outcome] = apply_events(config, [event]).outcomes
    assert outcome.action == action
    assert _status(config, "reader1@example.net") == status
    again = apply_events(config, [event]).outcomes[0]
    assert again.action == "already recorded"
