"""The one bounce/complaint policy (`newsletter.bounces.policy.apply_events`) against a real
SQLite database after a real campaign (sent to the local outbox): every event kind, every way an
event names its message, idempotence, and dry runs that write nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cli_support import run

from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.policy import apply_events
from newsletter.campaign import send_issue
from newsletter.campaign.ledger import Ledger
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.dbtools.schema import read_schema
from newsletter.issue import load_issue
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import secret_key, verp_token

READERS = [f"reader{i}@example.net" for i in range(6)]


@pytest.fixture
def sent(project: Path, database: str):
    """A project whose example issue went to six readers, on each engine; (config, {email:
    ledger row})."""
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(f"bounces:\n  address: bounces@news.example.org\ndatabase: {database}\n")
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
    assert last.kind == "bounced"
    assert last.detail.startswith("source dsn, status 5.1.1")
    assert last.detail.endswith(": no such user")


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


def _dump(config) -> dict[str, list[tuple]]:
    """Every table's rows, to prove a dry run wrote nothing."""
    conn = connect(config.database)
    try:
        return {
            n: sorted((tuple(r) for r in conn.execute(f"SELECT * FROM {n}")), key=repr)
            for n in [*read_schema(conn), "schema_migrations"]
        }
    finally:
        conn.close()


def test_dry_run_writes_nothing_and_says_what_would_change(sent) -> None:
    config, ids = sent
    apply_events(config, [])  # the component's tables exist before the "before" dump
    events = [
        _event(config, ids, "reader0@example.net", "message_id", n="a", status="5.1.1"),
        FeedbackEvent("complaint", "arf", "c1", recipient="reader1@example.net"),
        *(
            FeedbackEvent("soft_bounce", "dsn", f"s{n}", ledger_key=ids["reader2@example.net"])
            for n in range(2)
        ),
        FeedbackEvent("soft_bounce", "dsn", "s-other", recipient="reader2@example.net"),
        FeedbackEvent("hard_bounce", "dsn", "nobody", recipient="stranger@example.com"),
        FeedbackEvent("complaint", "arf", "c1", recipient="reader1@example.net"),  # repeated
    ]
    before = _dump(config)
    report = apply_events(config, events, dry_run=True)
    assert _dump(config) == before
    actions = [o.action for o in report.outcomes]
    assert actions == [
        "bounced",
        "unsubscribed (complained)",
        "soft bounce 1 of 3 in 30 days",
        "soft bounce 1 of 3 in 30 days",  # the same message again
        "soft bounce 2 of 3 in 30 days",
        "no matching recipient",
        "already recorded",
    ]
    assert report.counts() == {
        "bounced": 1,
        "complained": 1,
        "soft bounce": 3,
        "no match": 1,
        "already recorded": 1,
    }
    assert "(dry run: nothing was changed)" in report.summary()
    assert report.outcomes[0].format() == "reader0@example.net: bounced (dsn 5.1.1)"
    assert report.outcomes[5].format() == ("stranger@example.com: no matching recipient (dsn)")
    # The real run does what the dry run said.
    assert [o.action for o in apply_events(config, events).outcomes] == actions
    assert [o.action for o in apply_events(config, events).outcomes] == ["already recorded"] * 7


def test_soft_bounces_older_than_the_window_do_not_count(sent) -> None:
    config, _ids = sent
    now = dt.datetime.now(dt.UTC)
    events = [
        FeedbackEvent(
            "soft_bounce",
            "dsn",
            f"old{n}",
            recipient="reader3@example.net",
            occurred_at=now - dt.timedelta(days=40 + n),
        )
        for n in range(2)
    ] + [
        FeedbackEvent(
            "soft_bounce",
            "dsn",
            "new",
            recipient="reader3@example.net",
            occurred_at=now - dt.timedelta(days=1),
        )
    ]
    assert apply_events(config, events).outcomes[-1].action == "soft bounce 1 of 3 in 30 days"
    assert _status(config, "reader3@example.net") == "active"


def test_soft_limit_and_window_are_configurable(project: Path) -> None:
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write("bounces:\n  soft_limit: 2\n  soft_days: 7\n")
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("flaky@example.net")
    events = [
        FeedbackEvent("soft_bounce", "postmark", f"p{n}", recipient="flaky@example.net")
        for n in range(2)
    ]
    actions = [o.action for o in apply_events(config, events).outcomes]
    assert actions == ["soft bounce 1 of 2 in 7 days", "bounced (2 soft bounces in 7 days)"]
    assert _status(config, "flaky@example.net") == "bounced"


@pytest.mark.parametrize("kind", ["complaint", "unsubscribe", "hard_bounce"])
def test_nothing_but_a_fresh_confirmed_opt_in_brings_them_back(
    sent, kind: str, runner, project: Path
) -> None:

    config, _ids = sent
    apply_events(config, [FeedbackEvent(kind, "ses", "x1", recipient="reader4@example.net")])
    stopped = _status(config, "reader4@example.net")
    assert stopped in ("complained", "unsubscribed", "bounced")
    (project / "again.csv").write_text("email,status\nreader4@example.net,active\n", "utf-8")
    code, out = run(runner, project, "subscribers", "import", "again.csv")
    assert code == 0, out
    code, out = run(runner, project, "subscribers", "add", "reader4@example.net")
    assert _status(config, "reader4@example.net") == stopped
    # A provider's "delivered" or a later soft bounce does not reactivate either.
    later = [
        FeedbackEvent("delivered", "ses", "x2", recipient="reader4@example.net"),
        FeedbackEvent("soft_bounce", "ses", "x3", recipient="reader4@example.net"),
    ]
    apply_events(config, later)
    assert _status(config, "reader4@example.net") == stopped


def test_subscribers_show_prints_each_event_with_source_status_reason_campaign(
    sent, runner, project: Path
) -> None:

    config, ids = sent
    row = ids["reader5@example.net"]
    apply_events(
        config,
        [
            FeedbackEvent("delivered", "postmark", "d1", ledger_key=row),
            FeedbackEvent(
                "soft_bounce",
                "dsn",
                "s1",
                ledger_key=row,
                status="4.2.2",
                reason="552 4.2.2 Mailbox full",
            ),
            FeedbackEvent(
                "complaint",
                "arf",
                "a1",
                ledger_key=row,
                status="abuse",
                reason="Yahoo feedback loop",
            ),
        ],
    )
    code, out = run(runner, project, "subscribers", "show", "reader5@example.net")
    assert code == 0
    history = out.split("history:")[1]
    slug = next(iter({p.stem for p in (project / "issues").glob("*.yaml")}))
    lines = [line.split("  ", 2)[-1] for line in history.strip().splitlines()]
    assert lines[-3:] == [
        f"delivered  (source postmark, campaign {slug}/default)",
        f"soft bounce  (source dsn, status 4.2.2, campaign {slug}/default: 552 4.2.2 Mailbox full)",
        f"complained  (source arf, status abuse, campaign {slug}/default: Yahoo feedback loop)",
    ]
    assert "status:   complained" in out
