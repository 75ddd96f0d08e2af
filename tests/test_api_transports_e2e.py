"""`newsletter send ISSUE --transport PROVIDER:?endpoint=... --yes` end to end.

Subscribers are imported with the CLI, the campaign runs through the real runner and ledger,
and the local provider servers show what each subscriber would receive; the ledger in SQLite
shows what was recorded.
"""

from __future__ import annotations

import csv
import html
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_messages import TRICKY, make_project
from click.testing import CliRunner
from provider_servers import (
    Delivered,
    MailgunServer,
    PostmarkServer,
    ResendServer,
    SendGridServer,
    SesServer,
)

from newsletter.cli import main
from newsletter.transports import transport_class
from newsletter.transports._http import split_address

KEY = "e2e-Key-0f5b2c9d8e7a6-do-not-print"
DOMAIN = "news.example.org"
AWS = {"AWS_ACCESS_KEY_ID": "AKIAE2ETESTKEY000001", "AWS_SECRET_ACCESS_KEY": KEY}
SUBSCRIBERS = TRICKY[:10]


def server_for(provider: str):  # type: ignore[no-untyped-def]
    return {
        "sendgrid": lambda: SendGridServer(KEY),
        "mailgun": lambda: MailgunServer(KEY, DOMAIN),
        "postmark": lambda: PostmarkServer(KEY),
        "resend": lambda: ResendServer(KEY),
        "ses": lambda: SesServer(AWS["AWS_ACCESS_KEY_ID"], "eu-west-1"),
    }[provider]()


def url_and_env(provider: str, server_url: str, key: str = KEY) -> tuple[str, dict[str, str]]:
    if provider == "ses":
        return f"ses:eu-west-1?endpoint={server_url}", {**AWS, "AWS_SECRET_ACCESS_KEY": key}
    target = DOMAIN if provider == "mailgun" else ""
    variable = transport_class(provider).secret_variable  # type: ignore[attr-defined]
    return f"{provider}:{target}?endpoint={server_url}", {variable: key}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    with open(root / "subs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name"])
        for r in SUBSCRIBERS:
            writer.writerow([r.email, r.name or ""])
    result = CliRunner().invoke(main, ["subscribers", "import", "subs.csv"])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def issue(project: Path) -> str:
    return str(next((project / "issues").glob("*.yaml")))


def run_send(issue: str, url: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["send", issue, "--transport", url, "--yes"], env=env)


def ledger(project: Path) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(project / "newsletter.db")
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT s.email, s.status AS subscriber, r.status, r.provider_id, r.reply, r.attempts "
        "FROM campaign_recipients r JOIN subscribers s ON s.id = r.subscriber_id"
    ).fetchall()
    conn.close()
    return {row["email"]: row for row in rows}


def deliveries(server) -> list[Delivered]:  # type: ignore[no-untyped-def]
    return server.sent() if isinstance(server, SesServer) else server.delivered


@pytest.fixture(params=["sendgrid", "mailgun", "postmark", "resend", "ses"])
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[str, object]]:
    with server_for(request.param) as srv:
        if request.param == "ses":
            httpx.post(srv.url + "/moto-api/reset").raise_for_status()
            import boto3

            boto3.client(
                "sesv2",
                region_name="eu-west-1",
                endpoint_url=srv.url,
                aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=KEY,
            ).create_email_identity(EmailIdentity="example.org")
        yield request.param, srv
    assert srv.violations == []


def test_send_delivers_each_subscriber_their_own_copy(provider, project: Path, issue: str) -> None:  # type: ignore[no-untyped-def]
    name, server = provider
    url, env = url_and_env(name, server.url)
    result = run_send(issue, url, env)
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    got = {d.to_email: d for d in deliveries(server)}
    assert sorted(got) == sorted(r.email for r in SUBSCRIBERS)
    assert len(deliveries(server)) == len(SUBSCRIBERS)  # exactly one copy each
    unsubscribe_urls, message_ids = set(), set()
    for r in SUBSCRIBERS:
        copy = got[r.email]
        shown_name, address = split_address(copy.to_header)
        assert address == r.email and (shown_name or None) == (r.name or None)
        assert copy.subject == f"Your brief, {r.name or 'friend'}: Microsoft and OpenAI"
        assert f"Hello {html.escape(r.name or 'there')}, here is" in copy.html
        assert f"Hello {r.name or 'there'}, here is" in copy.text
        headers = {k.lower(): v for k, v in copy.headers.items()}
        url_match = re.fullmatch(r"<(https://news\.example\.org/\S+)>", headers["list-unsubscribe"])
        assert url_match, headers["list-unsubscribe"]
        assert html.escape(url_match.group(1)) in copy.html  # the footer link is the same URL
        assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", headers["message-id"])
        unsubscribe_urls.add(url_match.group(1))
        message_ids.add(headers["message-id"])
        for other in SUBSCRIBERS:
            if other.email != r.email:
                assert other.email not in copy.html + copy.text + copy.to_header
    assert len(unsubscribe_urls) == len(message_ids) == len(SUBSCRIBERS)
    rows = ledger(project)
    for r in SUBSCRIBERS:
        assert rows[r.email]["status"] == "sent"
        assert rows[r.email]["provider_id"] == got[r.email].provider_id
    # Running it again resumes: nobody gets a second copy.
    again = run_send(issue, url, env)
    assert again.exit_code == 0, again.output
    assert "Nothing left to send" in again.output
    assert len(deliveries(server)) == len(SUBSCRIBERS)


@pytest.mark.parametrize("name", ["sendgrid", "postmark", "resend"])
def test_a_bad_key_stops_the_run_and_marks_nobody_sent(
    name: str, project: Path, issue: str
) -> None:
    with server_for(name) as server:
        url, env = url_and_env(name, server.url, key="wrong-key-123456")
        result = run_send(issue, url, env)
    assert result.exit_code != 0
    assert env and next(iter(env)) in result.output  # names the variable to fix
    assert "wrong-key-123456" not in result.output and "Traceback" not in result.output
    assert {row["status"] for row in ledger(project).values()} <= {"due"}
    assert server.delivered == []


def test_rate_limited_batch_is_retried_after_retry_after(project: Path, issue: str) -> None:
    with ResendServer(KEY) as server:
        server.fail_next(429, body={"name": "rate_limit_exceeded"}, headers={"Retry-After": "1"})
        url, env = url_and_env("resend", server.url)
        result = run_send(issue, url, env)
        assert server.violations == []
    assert result.exit_code == 0, result.output
    assert len(server.delivered) == len(SUBSCRIBERS)
    rows = ledger(project)
    assert {row["status"] for row in rows.values()} == {"sent"}
    # A 429 puts its readers back without spending an attempt (issue 15).
    assert {row["attempts"] for row in rows.values()} == {1}


def test_inactive_and_invalid_recipients_land_in_the_ledger(project: Path, issue: str) -> None:
    with PostmarkServer(KEY) as server:
        server.refuse(SUBSCRIBERS[1].email, "inactive")
        server.refuse(SUBSCRIBERS[2].email, "invalid")
        url, env = url_and_env("postmark", server.url)
        result = run_send(issue, url, env)
    assert result.exit_code == 1  # someone failed permanently
    rows = ledger(project)
    assert rows[SUBSCRIBERS[1].email]["status"] == "bounced"
    assert rows[SUBSCRIBERS[1].email]["subscriber"] == "bounced"  # later issues skip them
    assert rows[SUBSCRIBERS[2].email]["status"] == "failed"
    assert rows[SUBSCRIBERS[2].email]["subscriber"] == "active"
    others = [r.email for r in SUBSCRIBERS if r not in SUBSCRIBERS[1:3]]
    assert {rows[e]["status"] for e in others} == {"sent"}
    assert sorted(d.to_email for d in server.delivered) == sorted(others)
