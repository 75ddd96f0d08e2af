"""Provider webhooks on a real `newsletter serve` (uvicorn on loopback): keys generated here,
payloads in each provider's documented shape, signed the way the provider signs them
(tests/support/webhook_support.py). Every refusal is checked against a dump of the whole
database taken before and after: a refused webhook changes nothing."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import dump, populate, running
from webhook_support import (
    Event,
    MailgunSigner,
    PostmarkSigner,
    ResendSigner,
    SendGridSigner,
    SesSigner,
    Signed,
    SnsCertServer,
    sns_sign,
)

from newsletter.bounces.webhooks.sns import SnsHosts
from newsletter.config import Config, load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app

PROVIDERS = ["sendgrid", "mailgun", "postmark", "ses", "resend"]
STALE = {"sendgrid": 600, "mailgun": 600, "resend": 600, "ses": 7200}  # Postmark signs no time


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnsCertServer]:
    with SnsCertServer(tmp_path_factory.mktemp("sns")) as server:
        yield server


def signer_for(provider: str, certs: SnsCertServer) -> Any:
    return {
        "sendgrid": SendGridSigner,
        "mailgun": MailgunSigner,
        "postmark": PostmarkSigner,
        "resend": ResendSigner,
        "ses": lambda: SesSigner(certs),
    }[provider]()


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project / "newsletter.yaml")


@pytest.fixture
def ada(config: Config) -> Event:
    """Ada, active, sent the published issue: a webhook event about that message."""
    site = populate(config)
    conn = sqlite3.connect(config.database)
    key = conn.execute(
        "SELECT id FROM campaign_recipients WHERE subscriber_id = ?", (site.ada_id,)
    ).fetchone()[0]
    conn.close()
    return Event("hard_bounce", "ada@example.com", key=key)


def status_of(config: Config, email: str) -> str:
    with SubscriberStore.for_config(config) as store:
        found = store.get(email)
        assert found is not None
        return found.status


def post(server: str, provider: str, signed: Signed) -> httpx.Response:
    return httpx.post(f"{server}/webhooks/{provider}", content=signed.body, headers=signed.headers)


def without_nonces(lines: list[str]) -> list[str]:
    return [line for line in lines if "webhook_nonces" not in line]


# ====================================================================== the table of cases


CASES = [
    (provider, case)
    for provider in PROVIDERS
    for case in ("valid", "missing", "wrong", "stale", "replay", "get")
    if not (provider == "postmark" and case == "stale")
]


@pytest.mark.parametrize(("provider", "case"), CASES)
def test_signature_table(provider, case, config, ada, certs, caplog):
    signer = signer_for(provider, certs)
    kind = "soft_bounce" if case == "replay" else "hard_bounce"
    event = Event(kind, ada.email, key=ada.key)
    knobs: dict[str, Any] = {
        "missing": {"signature": "missing"},
        "wrong": {"signature": "wrong"},
        "stale": {"age": STALE.get(provider, 0)},
    }.get(case, {})
    [signed] = signer.requests([event], **knobs)
    app = create_app(config, environ=signer.environ)  # creates its tables
    before = dump(config.database)
    with running(app) as server:
        if case == "get":
            answer = httpx.get(f"{server}/webhooks/{provider}", headers=signed.headers)
            assert answer.status_code == 405
            assert dump(config.database) == before
            return
        answer = post(server, provider, signed)
        if case in ("missing", "wrong", "stale"):
            assert answer.status_code == 401, answer.text
            assert dump(config.database) == before
            why = {"missing": "missing", "wrong": "not", "stale": "s from now"}[case]
            assert any(why in r.getMessage() for r in caplog.records), caplog.text
            return
        assert answer.status_code == 200, answer.text
        after = dump(config.database)
        if case == "valid":
            assert status_of(config, ada.email) == "bounced"
            return
        assert after != before  # the soft bounce was recorded...
        again = post(server, provider, signed)
        assert again.status_code == 200, again.text
        assert dump(config.database) == after  # ...once
    assert status_of(config, ada.email) == "active"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_route_is_off_while_its_secret_is_unset(provider, config, ada, certs, caplog):
    signer = signer_for(provider, certs)
    [signed] = signer.requests([ada])
    app = create_app(config, environ={})
    before = dump(config.database)
    with running(app) as server:
        answer = post(server, provider, signed)
    assert answer.status_code == 404
    assert dump(config.database) == before
    assert any(
        f"webhook {provider} is off" in r.getMessage()
        and next(iter(signer.environ)) in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_event_types_are_answered_200_and_ignored(provider, config, ada, certs, caplog):
    caplog.set_level(logging.INFO, "newsletter.serve")
    signer = signer_for(provider, certs)
    [signed] = signer.requests([Event("unknown", ada.email, key=ada.key)])
    app = create_app(config, environ=signer.environ)  # creates its tables
    before = dump(config.database)
    with running(app) as server:
        answer = post(server, provider, signed)
    assert answer.status_code == 200, answer.text
    assert without_nonces(dump(config.database)) == without_nonces(before)
    assert any("ignored:" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_too_large_is_refused(provider, config, ada, certs):
    signer = signer_for(provider, certs)
    app = create_app(config, environ=signer.environ)  # creates its tables
    before = dump(config.database)
    with running(app) as server:
        answer = httpx.post(f"{server}/webhooks/{provider}", content=b"[" + b" " * (5 << 20) + b"]")
    assert answer.status_code == 413
    assert dump(config.database) == before
