"""Bulk-mail conventions (issue #15 section 4), read from the delivered messages.

- Every issue message carries `Precedence: bulk`, `X-Auto-Response-Suppress: OOF, AutoReply` and
  the `headers:` of newsletter.yaml, through SMTP (DKIM-signed, verified) and every email API;
  the confirmation mail is not bulk: Auto-Submitted and X-Auto-Response-Suppress only.
- `headers:` refuses names we set and invalid names or values, at their file and line.
- RFC 8058: a plain-http base_url sends no List-Unsubscribe-Post, and `check` and `doctor` say
  why; `unsubscribe_mailto:` adds `<mailto:ADDRESS?subject=unsubscribe%20TOKEN>` with the same
  unsubscribe token as the https URL, a token `newsletter.tokens` verifies.
"""

from __future__ import annotations

import email
import email.policy
import re
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from cli_support import run
from click.testing import CliRunner
from dkim_support import verify, write_key
from serve_support import running, sign_up
from smtp_servers import SmtpServer
from test_api_transports_e2e import AWS, deliveries, server_for, url_and_env

from newsletter import tokens
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.mail.dkim import DkimSigner
from newsletter.web.public import create_app

CUSTOM = "headers:\n  X-Campaign: weekly-48\n  X-Mailer-Team: editors@example.org\n"
READERS = ["ada@example.net", "bo@example.net"]


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def configure(project: Path, extra: str) -> None:
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(extra)


def import_readers(project: Path, runner: CliRunner) -> None:
    (project / "subs.csv").write_text("email\n" + "\n".join(READERS) + "\n", encoding="utf-8")
    code, output = run(runner, project, "subscribers", "import", "subs.csv")
    assert code == 0, output


def issue_of(project: Path) -> str:
    return str(next((project / "issues").glob("*.yaml")))


def subscriber_ids(project: Path) -> dict[str, int]:
    conn = sqlite3.connect(project / "newsletter.db")
    try:
        return dict(conn.execute("SELECT email, id FROM subscribers").fetchall())
    finally:
        conn.close()


def secret(project: Path) -> bytes:
    config = load_config(project / "newsletter.yaml")
    conn = sqlite3.connect(config.database)
    try:
        return tokens.secret_key(config, conn)
    finally:
        conn.close()


def assert_unsubscribe(project: Path, value: str, to: str, *, mailto: str | None) -> None:
    """List-Unsubscribe holds the https URL, then the mailto with the same, valid token."""
    parts = re.findall(r"<([^>]+)>", value)
    url = parts[0]
    assert url.startswith("https://news.example.org/unsubscribe/")
    token = url.rpartition("/")[2]
    assert (
        tokens.verify_token(secret(project), tokens.UNSUBSCRIBE, token)
        == subscriber_ids(project)[to]
    )
    if mailto is None:
        assert len(parts) == 1, value
    else:
        assert parts[1:] == [f"mailto:{mailto}?subject=unsubscribe%20{token}"], value


BULK = {"precedence": "bulk", "x-auto-response-suppress": "OOF, AutoReply"}
CUSTOM_VALUES = {"x-campaign": "weekly-48", "x-mailer-team": "editors@example.org"}


def test_smtp_issue_carries_bulk_custom_and_mailto_headers_dkim_signed(
    project: Path, runner: CliRunner
) -> None:
    key = write_key(project / "dkim.pem", "ed25519")
    with SmtpServer() as server:
        configure(
            project,
            f"transport: {server.url()}\n{CUSTOM}unsubscribe_mailto: leave@example.org\n"
            f"dkim:\n  domain: example.org\n  selector: s1\n  private_key: {key.name}\n",
        )
        import_readers(project, runner)
        code, output = run(runner, project, "send", issue_of(project), "--yes")
        assert code == 0, output
        delivered = server.wait_for(2)
    signer = DkimSigner.from_config(load_config(project / "newsletter.yaml").dkim)  # type: ignore[arg-type]
    for copy in delivered:
        msg = parse(copy.data)
        for name, value in {**BULK, **CUSTOM_VALUES}.items():
            assert msg.get_all(name) == [value], name
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert_unsubscribe(
            project, msg["List-Unsubscribe"], copy.rcpt_tos[0], mailto="leave@example.org"
        )
        assert verify(copy.data, signer)
        signed = re.search(r"h=([^;]+)", msg["DKIM-Signature"].replace(" ", ""))
        assert signed and {"precedence", "x-auto-response-suppress", "x-campaign"} <= set(
            signed.group(1).lower().replace("\r\n", "").replace("\t", "").split(":")
        )


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "resend", "ses"])
def test_every_api_gets_the_same_headers(provider: str, project: Path, runner) -> None:
    configure(project, f"{CUSTOM}unsubscribe_mailto: leave@example.org\n")
    import_readers(project, runner)
    with server_for(provider) as server:
        if provider == "ses":
            import boto3

            httpx.post(server.url + "/moto-api/reset").raise_for_status()
            boto3.client(
                "sesv2",
                region_name="eu-west-1",
                endpoint_url=server.url,
                aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
            ).create_email_identity(EmailIdentity="example.org")
        url, env = url_and_env(provider, server.url)
        result = CliRunner().invoke(
            main,
            [
                "--config",
                str(project / "newsletter.yaml"),
                "send",
                issue_of(project),
                "--transport",
                url,
                "--yes",
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        got = deliveries(server)
        assert server.violations == []
    assert sorted(d.to_email for d in got) == READERS
    for copy in got:
        if copy.data is not None:  # SES takes the raw message
            headers = {k.lower(): v for k, v in parse(copy.data).items()}
        else:
            headers = {k.lower(): v for k, v in copy.headers.items()}
        for name, value in {**BULK, **CUSTOM_VALUES}.items():
            assert headers[name] == value, (name, headers)
        assert_unsubscribe(
            project, headers["list-unsubscribe"], copy.to_email, mailto="leave@example.org"
        )


def test_the_confirmation_mail_is_not_bulk(project: Path) -> None:
    configure(project, CUSTOM)
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, rate_limit=(1000, 60), signup_min_seconds=0)) as server:
        assert sign_up(server, email="carol@example.org", list="default", website="").is_success
    [path] = (project / "outbox").glob("*.eml")
    msg = parse(path.read_bytes())
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    for absent in ("Precedence", "X-Campaign", "List-Unsubscribe", "List-Id"):
        assert msg[absent] is None, absent


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("From: other@example.org", "From is set by newsletter itself"),
        ("message-id: <x@y>", "message-id is set by newsletter itself"),
        ("Content-Type: text/plain", "Content-Type is set by newsletter itself"),
        ("List-Help: <https://x.example>", "List-Help is set by newsletter itself"),
        ("DKIM-Signature: v=1", "DKIM-Signature is set"),
        ("Return-Path: <x@y>", "Return-Path is set"),
        ("Feedback-ID: a:b:c", "Feedback-ID is set"),
        ("Precedence: list", "Precedence is set"),
        ("X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress is set"),
        ("'X Campaign': weekly", "invalid header name 'X Campaign'"),
        ("'X-É': weekly", "invalid header name"),
        ('X-Campaign: "weekly\\r\\nBcc: all@example.org"', "must be a single line"),
        ("X-Campaign: Wöchentlich", "must be ASCII"),
        ("X-Campaign: ''", "must not be empty"),
        ("X-Campaign: [a, b]", "'headers.X-Campaign' must be text"),
        # YAML would change what was written: refused with "quote it", the number as read.
        ("X-Version: 1.10", "YAML read this value as a number (1.1); quote it"),
        ("X-Build: 010", "as a number (8); quote it"),
        ("X-Tracking: no", "as a yes/no value (False); quote it"),
        ("X-Sent: 2026-11-30", "as a date (2026-11-30); quote it"),
        ("X-Empty:", "as empty (null); quote it"),
        # An over-long value is named by its start and length, not echoed whole.
        ("X-Long: " + "a" * 5000, "'" + "a" * 60 + "'... (5,000 characters)"),
        ('X-Campaign: "=?utf-8?b?QmNjOiB4QHkuZXhhbXBsZQ==?="', "must not contain '=?'"),
        ("x-fine: again", "x-fine is given twice"),
    ],
)
def test_bad_custom_headers_are_refused_at_their_line(
    project: Path, runner: CliRunner, entry: str, says: str
) -> None:
    configure(project, f"headers:\n  X-Fine: yes-it-is\n  {entry}\n")
    line = len((project / "newsletter.yaml").read_text().splitlines())
    code, output = run(runner, project, "build", issue_of(project))
    assert code != 0
    assert f"newsletter.yaml:{line}" in output and says in output, output
    assert not (project / "build").exists()


def test_a_quoted_number_is_sent_as_written(project: Path, runner: CliRunner) -> None:
    with SmtpServer() as server:
        configure(
            project,
            f'transport: {server.url()}\nheaders:\n  X-Version: "1.10"\n  X-Build: "010"\n',
        )
        import_readers(project, runner)
        code, output = run(runner, project, "send", issue_of(project), "--yes")
        assert code == 0, output
        delivered = server.wait_for(2)
    for copy in delivered:
        msg = parse(copy.data)
        assert (msg["X-Version"], msg["X-Build"]) == ("1.10", "010")


def test_an_unquoted_number_stops_send_before_anything_goes_out(
    project: Path, runner: CliRunner
) -> None:
    import_readers(project, runner)
    with SmtpServer() as server:
        configure(project, f"transport: {server.url()}\nheaders:\n  X-Version: 1.10\n")
        code, output = run(runner, project, "send", issue_of(project), "--yes")
        assert code != 0 and "quote it" in output and "Traceback" not in output, output
        line = len((project / "newsletter.yaml").read_text().splitlines())
        assert f"newsletter.yaml:{line}" in output
        assert server.messages == []


def test_headers_must_be_a_mapping(project: Path, runner: CliRunner) -> None:
    configure(project, "headers:\n  - X-Campaign: weekly\n")
    code, output = run(runner, project, "check", issue_of(project))
    assert code != 0 and "'headers' must be a mapping" in output, output


def test_plain_http_base_url_leaves_out_one_click_and_check_and_doctor_say_so(
    project: Path, runner: CliRunner
) -> None:
    text = (project / "newsletter.yaml").read_text()
    (project / "newsletter.yaml").write_text(
        text.replace("https://news.example.org", "http://news.example.org")
    )
    code, output = run(runner, project, "check", issue_of(project))
    assert code == 0, output
    assert re.search(
        r"newsletter\.yaml:3:1: warning: base_url: http://news\.example\.org is plain http: "
        r"one-click unsubscribe \(RFC 8058\) needs an https:// URI",
        output,
    ), output
    assert "List-Unsubscribe-Post" in output
    result = runner.invoke(main, ["--config", str(project / "newsletter.yaml"), "doctor"])
    assert re.search(
        r"base_url: http://news\.example\.org is plain http: .*RFC 8058", result.output
    )
    assert "List-Unsubscribe-Post is left out" in result.output
    import_readers(project, runner)
    code, output = run(runner, project, "send", issue_of(project), "--yes")
    assert code == 0, output
    for path in (project / "outbox").glob("*.eml"):
        msg = parse(path.read_bytes())
        assert msg["List-Unsubscribe"].startswith("<http://news.example.org/unsubscribe/")
        assert msg["List-Unsubscribe-Post"] is None
        assert msg["Precedence"] == "bulk"


def test_https_base_url_has_no_warning(project: Path, runner: CliRunner) -> None:
    _code, output = run(runner, project, "check", issue_of(project))
    assert "warning: base_url" not in output and "plain http" not in output, output


@pytest.mark.parametrize(
    "value", ["not-an-address", "a b@example.org", "x?subject=y@example.org", "@example.org"]
)
def test_a_bad_unsubscribe_mailto_is_refused(project: Path, runner: CliRunner, value) -> None:
    configure(project, f"unsubscribe_mailto: '{value}'\n")
    code, output = run(runner, project, "check", issue_of(project))
    assert code != 0
    assert "newsletter.yaml:5" in output and "'unsubscribe_mailto' must be a bare ASCII" in output


@pytest.mark.parametrize(
    ("mailto", "finding"),
    [("leave@example.org", True), ("leave@localhost", True), ("leave@letter.co.uk", False)],
)
def test_doctor_refuses_an_unsubscribe_mailbox_nobody_receives(
    project: Path, runner: CliRunner, mailto: str, finding: bool
) -> None:
    configure(project, f"unsubscribe_mailto: {mailto}\n")
    result = runner.invoke(main, ["--config", str(project / "newsletter.yaml"), "doctor"])
    assert "Traceback" not in result.output
    pattern = rf"newsletter\.yaml:5:\d+: error: unsubscribe_mailto: {re.escape(mailto)} is on "
    assert bool(re.search(pattern, result.output)) == finding, result.output
