"""A campaign through a batching email-API transport (the SendGrid stand-in on loopback).

The runner is transport-agnostic: the same ledger guarantees hold when a transport takes 1,000
recipients per request and is shared by all workers (thread-safe).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from db_support import use_database
from provider_servers import SendGridServer

from newsletter.campaign import RetryPolicy, campaign_status, send_issue
from newsletter.campaign.ledger import Ledger
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.issue import load_issue
from newsletter.subscribers import SubscriberStore

KEY = "SG.test-key-never-shown"


@pytest.fixture
def env(project: Path, database: str):
    config = load_config(use_database(project, database) / "newsletter.yaml")
    store = SubscriberStore.for_config(config)
    for i in range(25):
        store.add(f"reader{i:02d}@example.net", name=f"Reader {i}")
    yield config, store, next((project / "issues").glob("*.yaml"))
    store.close()


def test_campaign_over_a_batching_api_with_a_429_in_between(env) -> None:
    config, store, issue = env
    with SendGridServer(KEY) as server:
        server.fail_next(429, body={"message": "slow down"}, headers={"Retry-After": "1"})
        report = send_issue(
            config,
            issue,
            transport=f"sendgrid:?endpoint={server.url}",
            environ={"SENDGRID_API_KEY": KEY},
            concurrency=2,
            retry=RetryPolicy(base_delay=0.05),
        )
        delivered = {d.to_email: d for d in server.delivered}
        assert server.violations == []
    assert report.ok and report.tally.sent == 25
    # The 429 put its batch back (throttled), which is not a deferral (issue 15).
    assert report.tally.put_back >= 1 and report.tally.deferred == 0
    assert sorted(delivered) == [f"reader{i:02d}@example.net" for i in range(25)]
    subject = load_issue(issue).subject
    for email, got in delivered.items():
        assert got.subject == subject
        assert f"Hello {store.get(email).name}" in got.text
    conn = connect(config.database)
    ledger = Ledger(conn)
    [campaign] = ledger.for_issue(load_issue(issue).slug)
    rows = ledger.rows(campaign.id)
    conn.close()
    assert all(r["status"] == "sent" and r["provider_id"] for r in rows)
    # The 429 put its readers back without spending one of their attempts (issue 15).
    assert {r["attempts"] for r in rows} == {1}
    assert all("429" not in (r["reply"] or "") for r in rows)
    [status] = campaign_status(config, issue)
    assert KEY not in (status.campaign.transport or "")
