"""Each email API carries our ledger row id as the custom data its webhooks echo
(`newsletter_key`), checked against the contract-checking stand-ins; an event naming that key,
or the Message-ID the reader got, maps back to exactly that recipient. VERP configured does not
change what the providers are asked (SES names the From identity, not the envelope sender)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_messages import make_project
from click.testing import CliRunner
from provider_servers import MailgunServer, PostmarkServer, ResendServer, SendGridServer, SesServer

from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.policy import apply_events
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.transports import transport_class

KEY = "bounce-Key-1f4e8a0c2d9b7-never-shown"
DOMAIN = "news.example.org"
AWS = {"AWS_ACCESS_KEY_ID": "AKIABOUNCETESTKEY001", "AWS_SECRET_ACCESS_KEY": KEY}
READERS = [f"reader{i}@example.net" for i in range(4)]


def _server(provider: str):  # type: ignore[no-untyped-def]
    return {
        "sendgrid": lambda: SendGridServer(KEY),
        "mailgun": lambda: MailgunServer(KEY, DOMAIN),
        "postmark": lambda: PostmarkServer(KEY),
        "resend": lambda: ResendServer(KEY),
        "ses": lambda: SesServer(AWS["AWS_ACCESS_KEY_ID"], "eu-west-1"),
    }[provider]()


@pytest.fixture(params=["sendgrid", "mailgun", "postmark", "resend", "ses"])
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[str, object, str, dict]]:
    name = request.param
    with _server(name) as srv:
        if name == "ses":
            httpx.post(srv.url + "/moto-api/reset").raise_for_status()
            import boto3

            boto3.client(
                "sesv2",
                region_name="eu-west-1",
                endpoint_url=srv.url,
                aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=KEY,
            ).create_email_identity(EmailIdentity="news@example.org")
            url, env = f"ses:eu-west-1?endpoint={srv.url}", AWS
        else:
            target = DOMAIN if name == "mailgun" else ""
            variable = transport_class(name).secret_variable  # type: ignore[attr-defined]
            url, env = f"{name}:{target}?endpoint={srv.url}", {variable: KEY}
        yield name, srv, url, env
        assert srv.violations == []


def test_the_ledger_key_travels_and_maps_each_event_back(
    provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, server, url, env = provider
    root = make_project(tmp_path)
    with open(root / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write("bounces:\n  address: bounces@news.example.org\n")
    monkeypatch.chdir(root)
    runner = CliRunner()
    for email in READERS:
        assert runner.invoke(main, ["subscribers", "add", email]).exit_code == 0
    issue = str(next((root / "issues").glob("*.yaml")))
    result = runner.invoke(main, ["send", issue, "--transport", url, "--yes"], env=env)
    assert result.exit_code == 0, result.output
    delivered = server.sent() if name == "ses" else server.delivered
    conn = sqlite3.connect(root / "newsletter.db")
    rows = dict(
        conn.execute(
            "SELECT r.id, s.email FROM campaign_recipients r"
            " JOIN subscribers s ON s.id = r.subscriber_id"
        ).fetchall()
    )
    conn.close()
    assert sorted(d.to_email for d in delivered) == READERS
    by_reader = {d.to_email: d for d in delivered}
    for reader, got in by_reader.items():
        assert rows[int(got.custom["newsletter_key"])] == reader
    if name == "ses":  # the From identity, never the VERP envelope sender
        assert server.from_addresses == {"news@example.org"}
    config = load_config(root / "newsletter.yaml")
    events = [
        FeedbackEvent(
            "hard_bounce",
            name,
            "e0",
            ledger_key=int(by_reader[READERS[0]].custom["newsletter_key"]),
        ),
        FeedbackEvent(
            "complaint",
            name,
            "e1",
            message_id=by_reader[READERS[1]].headers["Message-ID"].strip("<>"),
        ),
    ]
    outcomes = apply_events(config, events).outcomes
    assert [(o.email, o.action) for o in outcomes] == [
        (READERS[0], "bounced"),
        (READERS[1], "unsubscribed (complained)"),
    ]
    assert all(o.campaign_id is not None for o in outcomes)
