"""End to end per provider: `newsletter send` through the provider's local stand-in, then the
events that provider would post back (signed as it signs them, carrying the custom data our
transport gave it) to a real `serve`, then the next issue goes to everybody but exactly the
bounced and the complained."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_messages import TRICKY, make_project
from click.testing import CliRunner
from db_support import use_database
from provider_servers import MailgunServer, PostmarkServer, ResendServer, SendGridServer, SesServer
from serve_support import running
from webhook_support import (
    Event,
    signer_for,
)

from newsletter import db
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.transports import transport_class
from newsletter.web.public import create_app

KEY = "e2e-Key-0f5b2c9d8e7a6-do-not-print"
DOMAIN = "news.example.org"
AWS = {"AWS_ACCESS_KEY_ID": "AKIAE2ETESTKEY000001", "AWS_SECRET_ACCESS_KEY": KEY}
SUBSCRIBERS = [r.email for r in TRICKY[:8]]
FEEDBACK = {  # who gets which event back from the provider
    SUBSCRIBERS[0]: "hard_bounce",
    SUBSCRIBERS[1]: "complaint",
    SUBSCRIBERS[2]: "soft_bounce",
    SUBSCRIBERS[3]: "delivered",
    SUBSCRIBERS[4]: "delivered",
}
SKIPPED = {SUBSCRIBERS[0], SUBSCRIBERS[1]}


def stand_in(provider: str) -> Any:
    if provider == "ses":
        server = SesServer(AWS["AWS_ACCESS_KEY_ID"], "eu-west-1")
    else:
        server = {
            "sendgrid": lambda: SendGridServer(KEY),
            "mailgun": lambda: MailgunServer(KEY, DOMAIN),
            "postmark": lambda: PostmarkServer(KEY),
            "resend": lambda: ResendServer(KEY),
        }[provider]()
    return server


def prepare_ses(url: str) -> None:
    import boto3

    httpx.post(url + "/moto-api/reset").raise_for_status()
    boto3.client(
        "sesv2",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=KEY,
    ).create_email_identity(EmailIdentity="example.org")


def send(provider: str, issue: Path) -> dict[str, tuple[int, str]]:
    """`newsletter send ISSUE --transport PROVIDER:...`: per address the provider delivered to,
    the ledger key it was given as custom data (what its webhooks echo) and the Message-ID."""
    with stand_in(provider) as server:
        if provider == "ses":
            prepare_ses(server.url)
            url, env = f"ses:eu-west-1?endpoint={server.url}", dict(AWS)
        else:
            target = DOMAIN if provider == "mailgun" else ""
            variable = transport_class(provider).secret_variable  # type: ignore[attr-defined]
            url, env = f"{provider}:{target}?endpoint={server.url}", {variable: KEY}
        result = CliRunner().invoke(
            main, ["send", str(issue), "--transport", url, "--yes"], env=env
        )
        assert result.exit_code == 0, result.output
        delivered = server.sent() if provider == "ses" else server.delivered
        assert server.violations == []
    headers = [{k.lower(): v for k, v in d.headers.items()} for d in delivered]
    return {
        d.to_email: (int(d.custom["newsletter_key"]), h.get("message-id", "").strip("<>"))
        for d, h in zip(delivered, headers, strict=True)
    }


def ledger_keys(database: Path | str) -> dict[str, int]:
    conn = db.connect(database)
    try:
        rows = conn.execute(
            "SELECT s.email, r.id FROM campaign_recipients r "
            "JOIN subscribers s ON s.id = r.subscriber_id"
        ).fetchall()
    finally:
        conn.close()
    return {str(r[0]): int(r[1]) for r in rows}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str) -> Path:
    """A project (on each engine) with the subscribers imported."""
    root = make_project(tmp_path)
    use_database(root, database)
    monkeypatch.chdir(root)
    with open(root / "subs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email"])
        writer.writerows([email] for email in SUBSCRIBERS)
    result = CliRunner().invoke(main, ["subscribers", "import", "subs.csv"])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "ses", "resend"])
def test_next_campaign_skips_exactly_the_bounced_and_complained(provider, project, certs):
    first = next((project / "issues").glob("*.yaml"))
    sent = send(provider, first)
    assert sorted(sent) == sorted(SUBSCRIBERS)
    keys = ledger_keys(load_config(project / "newsletter.yaml").database)
    assert {email: key for email, (key, _) in sent.items()} == keys

    config = load_config(project / "newsletter.yaml")
    signer = signer_for(provider, certs)
    events = [
        Event(kind, email, key=sent[email][0], message_id=sent[email][1])
        for email, kind in FEEDBACK.items()
    ]
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests(events):
            answer = httpx.post(
                f"{server}/webhooks/{provider}", content=signed.body, headers=signed.headers
            )
            assert answer.status_code == 200, answer.text

    # The webhook's hard bounce is on the campaign's row too, counted once (the rate line).
    status = CliRunner().invoke(main, ["status", str(first)])
    assert status.exit_code == 0, status.output
    assert "bounced 1, " in status.output and "hard bounces 1 " in status.output, status.output
    assert f"of {len(SUBSCRIBERS)} sent" in status.output, status.output
    bounced = CliRunner().invoke(main, ["status", str(first), "--recipients", "bounced"])
    assert SUBSCRIBERS[0] in bounced.output and SUBSCRIBERS[1] not in bounced.output

    second = first.with_name("2026-12-09-next-week.yaml")
    shutil.copy(first, second)
    assert sorted(send(provider, second)) == sorted(set(SUBSCRIBERS) - SKIPPED)
