"""A From on an internationalised domain (`news@bücher.example`, issue #15 section 3): every
ASCII header and protocol field carries the IDNA form, through every way a message leaves.

Table over build, `send` (aiosmtpd with DKIM, each email API stand-in), `send --test`, the
confirmation mail of `serve`'s sign-up form and `doctor --dns`: the delivered bytes are parsed,
the `xn--` forms asserted, the DKIM signature verified with dkimpy. A domain IDNA refuses is a
configuration error naming the key and the reason.
"""

from __future__ import annotations

import csv
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from cli_support import run
from click.testing import CliRunner
from dkim_support import verify, write_key
from serve_support import running, sign_up
from smtp_servers import SmtpServer
from test_api_transports_e2e import deliveries, server_for, url_and_env
from test_dkim_setup import StubDns

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.mail.dkim import DkimSigner
from newsletter.web.public import create_app

UNICODE = "bücher.example"
ASCII = "xn--bcher-kva.example"
READERS = ["ada@example.net", "jo@straße.example"]


def idn_project(root: Path, extra: str = "") -> Path:
    from conftest import EXAMPLE

    (root / "issues").mkdir(parents=True, exist_ok=True)
    (root / "issues" / EXAMPLE.name).write_text(EXAMPLE.read_text(encoding="utf-8"))
    (root / "newsletter.yaml").write_text(
        "name: Bücherbrief\n"
        f"from: Bücherbrief <news@{UNICODE}>\n"
        f"reply_to: Redaktion <redaktion@{UNICODE}>\n"
        "base_url: https://news.example.org\n"
        "postal_address: 1 Test Street, Testville\n" + extra,
        encoding="utf-8",
    )
    with open(root / "subs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name"])
        writer.writerows([[r, "Reader"] for r in READERS])
    return root


def assert_ascii_sender(msg: EmailMessage, data: bytes | None = None) -> None:
    assert msg["From"].addresses[0].addr_spec == f"news@{ASCII}"
    assert msg["From"].addresses[0].display_name == "Bücherbrief"
    assert msg["Reply-To"].addresses[0].addr_spec == f"redaktion@{ASCII}"
    assert msg["Message-ID"].endswith(f"@{ASCII}>")
    if data is not None:
        assert data.isascii()


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


@pytest.fixture
def idn(tmp_path: Path) -> Path:
    return idn_project(tmp_path)


def test_config_holds_the_idna_form_of_every_domain(idn: Path) -> None:
    with open(idn / "newsletter.yaml", "a") as f:
        f.write(f"dkim:\n  domain: {UNICODE}\n  selector: s1\n  private_key: k.pem\n")
    config = load_config(idn / "newsletter.yaml")
    assert config.sender.addr_spec == f"news@{ASCII}" and config.sender_domain == ASCII
    assert config.reply_to is not None and config.reply_to.domain == ASCII
    assert config.dkim is not None and config.dkim.domain == ASCII
    assert config.list_id_token.endswith(f".{ASCII}")


def test_build_writes_an_ascii_sample_message(idn: Path, runner: CliRunner) -> None:
    code, output = run(runner, idn, "build", str(next((idn / "issues").glob("*.yaml"))))
    assert code == 0, output
    [eml] = (idn / "build").glob("*/message.eml")
    data = eml.read_bytes()
    msg = parse(data)
    assert_ascii_sender(msg, data)
    assert msg["List-Id"].endswith(f".{ASCII}>")


def test_send_over_smtp_signs_with_the_idna_domain(idn: Path, runner: CliRunner) -> None:
    key = write_key(idn / "dkim.pem", "rsa")
    with SmtpServer() as server:
        with open(idn / "newsletter.yaml", "a") as f:
            f.write(
                f"transport: {server.url()}\n"
                f"dkim:\n  domain: {UNICODE}\n  selector: s1\n  private_key: {key.name}\n"
            )
        assert run(runner, idn, "subscribers", "import", "subs.csv")[0] == 0
        issue = str(next((idn / "issues").glob("*.yaml")))
        code, output = run(runner, idn, "send", issue, "--yes")
        assert code == 0, output
        code, output = run(runner, idn, "send", issue, "--test", "me@example.com")
        assert code == 0, output
        delivered = server.wait_for(3)
    config = load_config(idn / "newsletter.yaml")
    signer = DkimSigner.from_config(config.dkim)  # type: ignore[arg-type]
    assert sorted(r for d in delivered for r in d.rcpt_tos) == sorted(
        ["ada@example.net", "jo@xn--strae-oqa.example", "me@example.com"]
    )
    for copy in delivered:
        assert copy.mail_from == f"news@{ASCII}"
        assert copy.helo == ASCII
        msg = parse(copy.data)
        assert_ascii_sender(msg, copy.data)
        assert f"d={ASCII};" in msg["DKIM-Signature"].replace(" ", "")
        assert verify(copy.data, signer)


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "resend", "ses"])
def test_send_through_each_api_uses_the_idna_sender(provider: str, idn: Path, runner) -> None:
    with server_for(provider) as server:
        if provider == "ses":
            import boto3

            httpx.post(server.url + "/moto-api/reset").raise_for_status()
            boto3.client(
                "sesv2",
                region_name="eu-west-1",
                endpoint_url=server.url,
                aws_access_key_id="AKIAE2ETESTKEY000001",
                aws_secret_access_key="e2e-Key-0f5b2c9d8e7a6-do-not-print",
            ).create_email_identity(EmailIdentity=ASCII)
        url, env = url_and_env(provider, server.url)
        assert run(runner, idn, "subscribers", "import", "subs.csv")[0] == 0
        issue = str(next((idn / "issues").glob("*.yaml")))
        result = CliRunner().invoke(
            main,
            ["--config", str(idn / "newsletter.yaml"), "send", issue, "--transport", url, "--yes"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        got = deliveries(server)
        assert server.violations == []
    assert len(got) == len(READERS)
    for copy in got:
        if copy.data is not None:  # SES: the raw message
            assert_ascii_sender(parse(copy.data), copy.data)
            continue
        assert copy.from_header.endswith(f"<news@{ASCII}>")
        assert copy.reply_to is not None and f"redaktion@{ASCII}" in copy.reply_to
        headers = {k.lower(): v for k, v in copy.headers.items()}
        assert headers["message-id"].endswith(f"@{ASCII}>")
        assert headers["list-id"].endswith(f".{ASCII}>")


def test_the_sign_up_confirmation_goes_out_from_the_idna_domain(idn: Path) -> None:
    config = load_config(idn / "newsletter.yaml")
    with running(create_app(config, rate_limit=(1000, 60), signup_min_seconds=0)) as server:
        response = sign_up(server, email="carol@example.org", list="default", website="")
        assert response.status_code == 200 and "Check your inbox" in response.text
    [path] = (idn / "outbox").glob("*.eml")
    data = path.read_bytes()
    assert_ascii_sender(parse(data), data)


def test_doctor_looks_up_the_idna_names(idn: Path, runner: CliRunner) -> None:
    made = runner.invoke(
        main,
        ["--config", str(idn / "newsletter.yaml"), "dkim", "keygen", "--selector", "s1"],
    )
    assert made.exit_code == 0, made.output
    assert f"s1._domainkey.{ASCII}" in made.output
    with StubDns({ASCII: ["v=spf1 -all"], f"_dmarc.{ASCII}": ["v=DMARC1; p=none"]}) as dns:
        result = runner.invoke(
            main,
            ["--config", str(idn / "newsletter.yaml"), "doctor", "--dns", "--nameserver",
             dns.address],
            env={"NEWSLETTER_SECRET_KEY": "a-long-enough-signing-secret-0123456789"},
        )  # fmt: skip
    assert "Traceback" not in result.output
    assert {f"s1._domainkey.{ASCII}", ASCII, f"_dmarc.{ASCII}"} <= set(dns.asked)
    assert "no SPF record" not in result.output and "no DMARC record" not in result.output


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("from", "News <news@aא.example>"),  # Latin and Hebrew in one label: the Bidi rule
        ("reply_to", "Desk <desk@xn--a.example>"),  # an A-label that decodes to nothing valid
        ("dkim", "\n  domain: aא.example\n  selector: s1\n  private_key: k.pem"),
        ("unsubscribe_mailto", "unsubscribe@aא.example"),
    ],
)
def test_a_domain_idna_refuses_is_a_config_error(
    tmp_path: Path, runner: CliRunner, key: str, value: str
) -> None:
    root = idn_project(tmp_path)
    text = (root / "newsletter.yaml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
    lines.append(f"{key}: {value}")
    (root / "newsletter.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, output = run(runner, root, "build", str(next((root / "issues").glob("*.yaml"))))
    assert code != 0
    line = len(lines) + (1 if key == "dkim" else 0)
    assert f"newsletter.yaml:{line}" in output, output
    assert "IDNA" in output or "must be" in output, output
    assert not (root / "build").exists()


@pytest.mark.parametrize(
    ("helo", "sent"),
    [(None, ASCII), ("mx.bücher.example", f"mx.{ASCII}"), ("relay.test", "relay.test")],
)
def test_the_ehlo_name_is_ascii(idn: Path, runner: CliRunner, helo: str | None, sent: str) -> None:
    with SmtpServer() as server:
        url = server.url(**({"helo": helo} if helo else {}))
        issue = str(next((idn / "issues").glob("*.yaml")))
        code, output = run(
            runner, idn, "send", issue, "--test", "me@example.com", "--transport", url
        )
        assert code == 0, output
        [copy] = server.wait_for(1)
    assert copy.helo == sent


def test_an_ehlo_name_idna_refuses_is_a_clear_error(idn: Path, runner: CliRunner) -> None:
    with SmtpServer() as server:
        issue = str(next((idn / "issues").glob("*.yaml")))
        url = server.url(helo="aא.example")
        code, output = run(
            runner, idn, "send", issue, "--test", "me@example.com", "--transport", url
        )
        assert server.messages == []
    assert code != 0 and "helo" in output and "IDNA 2008" in output, output
