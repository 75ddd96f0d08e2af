"""QA faults in the provider webhooks, through a real `serve`: Postmark's complaint and
suppression shapes apply; numbers a provider sends (our ledger key, signed timestamps) that no
integer or clock can hold are "no key" / refused, never a 500."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from db_support import use_database
from serve_support import dump, populate, running
from webhook_support import (
    PROVIDERS,
    Event,
    PostmarkSigner,
    Signed,
    signer_for,
)

from newsletter import db
from newsletter.config import Config, load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app


@pytest.fixture
def config(project: Path, database: str) -> Config:
    """The project on each engine (`database`: an SQLite file, a PostgreSQL URL)."""
    use_database(project, database)
    return load_config(project / "newsletter.yaml")


@pytest.fixture
def ada_key(config: Config) -> int:
    site = populate(config)
    conn = db.connect(config.database)
    try:
        return conn.execute(
            "SELECT id FROM campaign_recipients WHERE subscriber_id = ?", (site.ada_id,)
        ).fetchone()[0]
    finally:
        conn.close()


def status_of(config: Config, email: str) -> str:
    with SubscriberStore.for_config(config) as store:
        found = store.get(email)
        assert found is not None
        return found.status


def post(server: str, provider: str, signed: Signed) -> httpx.Response:
    return httpx.post(f"{server}/webhooks/{provider}", content=signed.body, headers=signed.headers)


def feedback_kinds(config: Config) -> list[str]:
    conn = db.connect(config.database)
    try:
        return [r[0] for r in conn.execute("SELECT kind FROM feedback_events ORDER BY id")]
    finally:
        conn.close()


# ============================================================= Postmark complaints and suppressions


def postmark_record(record_type: str, key: int, **fields: Any) -> dict[str, Any]:
    return {
        "RecordType": record_type,
        "MessageStream": "broadcast",
        "MessageID": "00000000-0000-0000-0000-000000000001",
        "ServerID": 23,
        "Metadata": {"newsletter_key": str(key)},
        **fields,
    }


POSTMARK = [
    # The spam complaint record, with the documented TypeCode and with SpamNotification's.
    (
        "SpamComplaint",
        {"ID": 42, "Type": "SpamComplaint", "TypeCode": 100001, "Email": "ada@example.com"},
        "complained",
    ),
    (
        "SpamComplaint",
        {"ID": 43, "Type": "SpamNotification", "TypeCode": 512, "Email": "ada@example.com"},
        "complained",
    ),
    # Broadcast streams: the suppression can be the only record of what happened.
    (
        "SubscriptionChange",
        {
            "Recipient": "ada@example.com",
            "ChangedAt": "2026-11-30T03:00:00Z",
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "SpamComplaint",
        },
        "complained",
    ),
    (
        "SubscriptionChange",
        {
            "Recipient": "ada@example.com",
            "ChangedAt": "2026-11-30T03:00:00Z",
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "HardBounce",
        },
        "bounced",
    ),
    (
        "SubscriptionChange",
        {
            "Recipient": "ada@example.com",
            "ChangedAt": "2026-11-30T03:00:00Z",
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
        },
        "unsubscribed",
    ),
    # A reactivation on Postmark's side is not a confirmed opt-in here: nothing changes.
    (
        "SubscriptionChange",
        {
            "Recipient": "ada@example.com",
            "ChangedAt": "2026-11-30T03:00:00Z",
            "Origin": "Customer",
            "SuppressSending": False,
            "SuppressionReason": None,
        },
        "active",
    ),
]


@pytest.mark.parametrize(("record_type", "fields", "status"), POSTMARK)
def test_postmark_complaints_and_suppressions_apply(record_type, fields, status, config, ada_key):
    signer = PostmarkSigner()
    body = json.dumps(postmark_record(record_type, ada_key, **fields)).encode()
    with running(create_app(config, environ=signer.environ)) as server:
        answer = post(server, "postmark", signer.sign(body))
        assert answer.status_code == 200, answer.text
        # Postmark retries, and sends the suppression after the record: changes nothing twice.
        assert post(server, "postmark", signer.sign(body)).status_code == 200
    assert status_of(config, "ada@example.com") == status
    assert len(feedback_kinds(config)) == (0 if status == "active" else 1)


# =================================================================== numbers no column can hold


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("key", [10**19, 10**25, 10**400 // 7])
def test_an_out_of_range_ledger_key_is_no_key(provider, key, config, ada_key, certs):
    """The event still lands, by the next clue (the address), never a 500."""
    signer = signer_for(provider, certs)
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests([Event("hard_bounce", "ada@example.com", key=key)]):
            answer = post(server, provider, signed)
            assert answer.status_code == 200, answer.text
    assert status_of(config, "ada@example.com") == "bounced"


BAD_STAMPS = ["NaN", "nan", "inf", "-Infinity", "1e999", "9" * 400, "1e300", "-0x1p9", ""]


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "resend"])
@pytest.mark.parametrize("stamp", BAD_STAMPS)
def test_a_timestamp_that_is_no_finite_time_is_refused(provider, stamp, config, ada_key, certs):
    """Freshness cannot be checked: 401, and nothing changes."""
    signer = signer_for(provider, certs)
    event = Event("hard_bounce", "ada@example.com", key=ada_key)
    if provider == "sendgrid":
        signed = signer.sign(signer.payload([event]), stamp=stamp)
    else:
        signed = signer.sign_one(event, stamp=stamp)
    with running(create_app(config, environ=signer.environ)) as server:
        answer = post(server, provider, signed)
    assert answer.status_code == 401, answer.text
    assert status_of(config, "ada@example.com") == "active"
    assert feedback_kinds(config) == []


# ============================================ an unsigned ledger key must fit the event it rides


def ledger_rows(config: Config) -> list[tuple[int | None, int | None]]:
    conn = db.connect(config.database)
    try:
        rows = conn.execute("SELECT subscriber_id, row_id FROM feedback_events").fetchall()
        return [tuple(r) for r in rows]
    finally:
        conn.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_ledger_key_naming_another_reader_does_not_hit_that_reader(
    provider, config, ada_key, certs
):
    """Ada's key on an event about Bob (another database's row 1, a forged key): Bob, found by
    his address, bounces; Ada stays."""
    with SubscriberStore.for_config(config) as store:
        bob = store.add("bob@example.com")
    signer = signer_for(provider, certs)
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests([Event("hard_bounce", "bob@example.com", key=ada_key)]):
            assert post(server, provider, signed).status_code == 200
    assert status_of(config, "ada@example.com") == "active"
    assert status_of(config, "bob@example.com") == "bounced"
    assert ledger_rows(config) == [(bob.id, None)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_ledger_key_fits_the_same_address_in_another_case(provider, config, ada_key, certs):
    signer = signer_for(provider, certs)
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests([Event("hard_bounce", "Ada@EXAMPLE.com", key=ada_key)]):
            assert post(server, provider, signed).status_code == 200
    assert status_of(config, "ada@example.com") == "bounced"
    [(_, row_id)] = ledger_rows(config)
    assert row_id == ada_key


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_ledger_key_of_a_campaign_sent_through_another_provider_is_not_trusted(
    provider, config, ada_key, certs
):
    other = "postmark" if provider != "postmark" else "sendgrid"
    conn = db.connect(config.database)  # autocommit: the UPDATE is its own transaction
    try:  # the campaign went out through another provider (as `send` records it)
        conn.execute("UPDATE campaigns SET transport_url = ?", (f"{other}:",))
    finally:
        conn.close()
    signer = signer_for(provider, certs)
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests([Event("hard_bounce", "ada@example.com", key=ada_key)]):
            assert post(server, provider, signed).status_code == 200
    # Still Ada's (by her address), but not tied to a row the provider did not send.
    assert status_of(config, "ada@example.com") == "bounced"
    [(_, row_id)] = ledger_rows(config)
    assert row_id is None


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ["hard_bounce", "complaint", "delivered"])
def test_an_event_after_erasure_keeps_no_plaintext_address(provider, kind, config, ada_key, certs):
    with SubscriberStore.for_config(config) as store:
        assert store.erase("ada@example.com")
    signer = signer_for(provider, certs)
    signed = signer.requests([Event(kind, "ada@example.com", key=ada_key)])
    with running(create_app(config, environ=signer.environ)) as server:
        for request in signed + signed:  # the provider's retry counts once
            assert post(server, provider, request).status_code == 200
    text = "\n".join(dump(config.database)).lower()
    conn = db.connect(config.database)
    try:
        count = conn.execute("SELECT COUNT(*) FROM feedback_events").fetchone()[0]
    finally:
        conn.close()
    assert "ada@example.com" not in text
    assert count == 1


# ==================================================== `newsletter serve` logs each webhook request


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_logs_one_line_per_webhook_request_with_counts_and_no_address(config, ada_key):
    signer = PostmarkSigner()
    port = _free_port()
    env = {**os.environ, **signer.environ}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("newsletter")), "serve", "--port", str(port)],
        cwd=config.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        bounce = Event("hard_bounce", "ada@example.com", key=ada_key)
        for signed in [signer.sign_one(bounce)] * 2 + [
            signer.sign_one(Event("unknown", "ada@example.com", key=ada_key))
        ]:
            assert post(url, "postmark", signed).status_code == 200
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    lines = [line for line in out.splitlines() if "webhook postmark" in line]
    assert any("1 event: 1 bounced" in line for line in lines), out
    assert any("1 event: 1 already recorded" in line for line in lines), out
    assert any("0 events; ignored: Open x1" in line for line in lines), out
    assert "a***@example.com: bounced" in out
    assert "ada@example.com" not in out
    assert signer.password not in out
