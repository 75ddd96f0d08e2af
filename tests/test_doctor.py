"""`newsletter doctor`: each check as a table (config variant -> key, line, severity), the exit
codes, and `send` refusing a broken setup off this machine before any connection."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.campaign import campaign_status
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.doctor import check_before_send, delivers_off_machine
from newsletter.errors import SetupRefused
from newsletter.subscribers import SubscriberStore

SECRET = "a-long-enough-signing-secret-0123456789"
# A setup `doctor` passes without a word: every line is one key, so variants name their line.
CLEAN = """\
name: Clean Letter
from: Clean Letter <news@letter.co.uk>
base_url: https://news.letter.co.uk
postal_address: 1 Real Road, Realtown
dkim:
  domain: letter.co.uk
  selector: s1
  private_key: dkim.pem
"""
FINDING = re.compile(
    r"^(?P<where>.+?): (?P<severity>error|warning): (?P<key>[a-z_.]+): (?P<msg>.+)$"
)


@pytest.fixture
def clean(tmp_path: Path, runner: CliRunner) -> Path:
    """A project whose setup has no finding (the key made by `dkim keygen` beside it)."""
    (tmp_path / "newsletter.yaml").write_text(CLEAN.split("dkim:")[0], encoding="utf-8")
    made = runner.invoke(
        main,
        ["--config", str(tmp_path / "newsletter.yaml"), "dkim", "keygen", "--selector", "s1"],
        env={"NEWSLETTER_SECRET_KEY": SECRET},
    )
    assert made.exit_code == 0, made.output
    (tmp_path / "dkim" / "s1.letter.co.uk.pem").rename(tmp_path / "dkim.pem")
    (tmp_path / "newsletter.yaml").write_text(CLEAN, encoding="utf-8")
    return tmp_path


def doctor(project: Path, runner: CliRunner, *args: str, env: dict[str, str] | None = None):
    """(exit code, [(where, severity, key, message)], whole output)."""
    result = runner.invoke(
        main,
        ["--config", str(project / "newsletter.yaml"), "doctor", *args],
        env={"NEWSLETTER_SECRET_KEY": SECRET, **(env or {})},
    )
    assert "Traceback" not in result.output
    found = []
    for line in result.output.splitlines():
        if m := FINDING.match(line):
            found.append((m["where"], m["severity"], m["key"], m["msg"]))
    return result.exit_code, found, result.output


def test_a_clean_setup_has_no_finding_prints_the_record_and_exits_0(clean, runner) -> None:
    code, found, output = doctor(clean, runner)
    assert (code, found) == (0, []), output
    assert "DKIM record to publish: TXT at s1._domainkey.letter.co.uk" in output
    assert "v=DKIM1; k=rsa; p=MIIB" in output


def replace_line(text: str, number: int, new: str | None) -> str:
    lines = text.splitlines()
    if new is None:
        del lines[number - 1]
    else:
        lines[number - 1] = new
    return "\n".join(lines) + "\n"


# (line to replace, new text or None to delete it) -> (key, line or None, severity)
VARIANTS = [
    ((2, "from: X <news@example.com>"), ("from", 2, "error")),
    ((2, "from: X <news@mail.example.net>"), ("from", 2, "error")),
    ((2, "from: X <news@example.org>"), ("from", 2, "error")),
    ((2, "from: X <news@letter.test>"), ("from", 2, "error")),
    ((2, "from: X <news@letter.invalid>"), ("from", 2, "error")),
    ((2, "from: X <news@letter.example>"), ("from", 2, "error")),
    ((2, "from: X <news@localhost>"), ("from", 2, "error")),
    ((2, "from: X <someone@gmail.com>"), ("from", 2, "error")),
    ((2, "from: X <someone@yahoo.co.uk>"), ("from", 2, "error")),
    ((2, "from: X <someone@hotmail.fr>"), ("from", 2, "error")),
    ((2, "from: X <someone@outlook.com>"), ("from", 2, "error")),
    ((2, "from: X <someone@aol.com>"), ("from", 2, "error")),
    ((2, "from: X <someone@icloud.com>"), ("from", 2, "error")),
    ((2, "from: X <someone@gmx.de>"), ("from", 2, "error")),
    ((3, "base_url: http://127.0.0.1:8000"), ("base_url", 3, "error")),
    ((3, "base_url: https://localhost:8000"), ("base_url", 3, "error")),
    ((3, "base_url: https://10.1.2.3"), ("base_url", 3, "error")),
    ((3, "base_url: https://192.168.1.20/news"), ("base_url", 3, "error")),
    ((3, "base_url: https://[::1]:8000"), ("base_url", 3, "error")),
    ((3, "base_url: https://169.254.1.1"), ("base_url", 3, "error")),
    ((3, "base_url: https://intranet"), ("base_url", 3, "error")),
    ((3, "base_url: https://news.example.com"), ("base_url", 3, "error")),
    ((3, "base_url: http://news.letter.co.uk"), ("base_url", 3, "error")),
    ((4, None), ("postal_address", None, "error")),
    ((4, "postal_address: X, 1 Example Street, Springfield 1, C"), ("postal_address", 4, "error")),
    ((4, 'postal_address: "TODO: our address"'), ("postal_address", 4, "error")),
    ((6, "  domain: other-letter.org"), ("dkim.domain", 6, "warning")),
    ((8, "  private_key: missing.pem"), ("dkim.private_key", 8, "error")),
]


@pytest.mark.parametrize(
    ("change", "expected"), VARIANTS, ids=[v[0][1] or "delete" for v in VARIANTS]
)
def test_each_check_names_its_key_line_and_severity(clean, runner, change, expected) -> None:
    config = clean / "newsletter.yaml"
    config.write_text(replace_line(CLEAN, *change), encoding="utf-8")
    code, found, output = doctor(clean, runner)
    key, line, severity = expected
    where = f"{config}:{line}:" if line else str(config)
    matching = [f for f in found if f[2] == key]
    assert matching, output
    assert all(f[1] == severity for f in matching), output
    assert all(f[0].startswith(where) and (line or f[0] == where) for f in matching), output
    # The variant and nothing else (a From elsewhere also leaves the DKIM domain unaligned).
    also = {"dkim.domain"} if key == "from" else set()
    assert {f[2] for f in found if f[2] != key} <= also, output
    assert code == (1 if severity == "error" else 0)


@pytest.mark.parametrize(
    "change",
    [
        (6, "  domain: mail.letter.co.uk"),  # DMARC relaxed alignment: same organizational domain
        (2, "from: X <news@mail.letter.co.uk>"),
        (4, "postal_address: 1 Test Street, Testville"),
    ],
)
def test_aligned_and_real_values_are_not_findings(clean, runner, change) -> None:
    (clean / "newsletter.yaml").write_text(replace_line(CLEAN, *change), encoding="utf-8")
    code, found, output = doctor(clean, runner)
    assert (code, found) == (0, []), output


def test_no_dkim_is_a_warning_at_the_file(clean, runner) -> None:
    config = clean / "newsletter.yaml"
    config.write_text(CLEAN.split("dkim:")[0], encoding="utf-8")
    code, found, _ = doctor(clean, runner)
    assert code == 0
    assert [(f[0], f[1], f[2]) for f in found] == [(str(config), "warning", "dkim")]


@pytest.mark.parametrize(
    ("variable", "value", "key", "severity"),
    [
        ("NEWSLETTER_FROM", "X <news@example.com>", "from", "error"),
        ("NEWSLETTER_BASE_URL", "http://127.0.0.1:8000", "base_url", "error"),
        ("NEWSLETTER_POSTAL_ADDRESS", "1 Example Street", "postal_address", "error"),
        ("NEWSLETTER_REPLY_TO", "Editors <editors@example.org>", "reply_to", "error"),
        ("NEWSLETTER_SECRET_KEY", "short", "secret_key", "error"),
        ("NEWSLETTER_DKIM_DOMAIN", "other-letter.org", "dkim.domain", "warning"),
    ],
)
def test_a_value_from_the_environment_names_the_variable(
    clean, runner, variable, value, key, severity
) -> None:
    env = {variable: value}
    if variable.startswith("NEWSLETTER_DKIM_"):  # the environment then gives the whole block
        env |= {"NEWSLETTER_DKIM_SELECTOR": "s1", "NEWSLETTER_DKIM_PRIVATE_KEY": "dkim.pem"}
    _code, found, output = doctor(clean, runner, env=env)
    mine = [f for f in found if f[2] == key]
    assert mine and all(f[:2] == (f"environment variable {variable}", severity) for f in mine), (
        output
    )


def test_where_the_signing_secret_is_kept(clean, runner, database) -> None:
    from newsletter import db, tokens

    config = clean / "newsletter.yaml"
    with config.open("a", encoding="utf-8") as f:
        f.write(f"database: {database}\n")
    # Not set anywhere: generated into the database on first use (a warning saying so).
    result = runner.invoke(main, ["--config", str(config), "doctor"])
    assert result.exit_code == 0
    assert re.search(r": warning: secret_key: .*generated on first use", result.output)
    conn = db.connect(load_config(config).database)
    tokens.secret_key(load_config(config), conn)  # what the first send or serve does
    conn.close()
    result = runner.invoke(main, ["--config", str(config), "doctor"])
    assert re.search(r": warning: secret_key: .*kept only in the database", result.output)
    # In the file: a warning at its line (a file kept in git); too short: an error.
    config.write_text(CLEAN + f"secret_key: {SECRET}\n", encoding="utf-8")
    result = runner.invoke(main, ["--config", str(config), "doctor"])
    assert f"{config}:9:13: warning: secret_key:" in result.output
    config.write_text(CLEAN + "secret_key: tooshort\n", encoding="utf-8")
    result = runner.invoke(main, ["--config", str(config), "doctor"])
    assert f"{config}:9:13: error: secret_key:" in result.output and result.exit_code == 1


def test_without_any_config_the_defaults_are_reported(tmp_path, runner, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "built-in defaults (no newsletter.yaml found): error: from:" in result.output


def test_init_s_project_fails_doctor_on_every_placeholder(tmp_path, runner) -> None:
    runner.invoke(main, ["init", str(tmp_path / "letter")])
    config = tmp_path / "letter" / "newsletter.yaml"
    assert "# dkim:" in config.read_text()  # the block is shown, commented out
    result = runner.invoke(main, ["--config", str(config), "doctor"])
    assert result.exit_code == 1
    keys = {m["key"] for ln in result.output.splitlines() if (m := FINDING.match(ln))}
    assert {"from", "base_url", "postal_address", "dkim", "secret_key"} <= keys


@pytest.mark.parametrize(
    ("transport", "says"),
    [
        ("smtp://mail.letter.co.uk?tls=none", "tls=none to another machine"),
        ("smtp://mail.letter.co.uk:587?verify=false", "verify=false"),
        ("smtps://mail.letter.co.uk?verify=0", "verify=false"),
        ("smtp://127.0.0.1:2525?tls=none", None),  # a trusted local relay
        ("smtp://mail.letter.co.uk?tls=starttls", None),
        ("sendgrid:", None),
    ],
)
def test_smtp_to_another_machine_without_tls_or_certificate_checks(
    clean, runner, transport, says
) -> None:
    _code, found, output = doctor(clean, runner, "--transport", transport)
    mine = [f for f in found if f[2] == "transport"]
    if says is None:
        assert mine == [], output
    else:
        assert [(f[0], f[1]) for f in mine] == [("--transport", "warning")], output
        assert says in mine[0][3]
    # The same URL in newsletter.yaml is reported at its line.
    config = clean / "newsletter.yaml"
    config.write_text(CLEAN + f"transport: {transport}\n", encoding="utf-8")
    _code, found, output = doctor(clean, runner)
    mine = [f for f in found if f[2] == "transport"]
    assert [f[0] for f in mine] == ([] if says is None else [f"{config}:9:12"]), output


# --- send runs the same checks -------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """A tripwire: any name lookup or connection to another machine fails the test."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network used: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


OFF_MACHINE = [
    "smtp://mail.example.net",
    "smtp://user@mail.example.net:587?tls=starttls",
    "smtps://smtp.example.net",
    "smtp://192.0.2.10?tls=none",
    "sendgrid:",
    "mailgun:mg.example.net?region=eu",
    "postmark:?stream=broadcast",
    "ses:eu-west-1",
    "resend:",
    "sendgrid:?endpoint=https://api.example.net",
]


# Stand-in credentials: the refusal comes after the URL and its secrets are checked.
FAKE_SECRETS = {
    "NEWSLETTER_SMTP_PASSWORD": "not-a-real-password",
    "SENDGRID_API_KEY": "SG.not-a-real-key",
    "MAILGUN_API_KEY": "not-a-real-key",
    "POSTMARK_SERVER_TOKEN": "not-a-real-token",
    "RESEND_API_KEY": "re_not_a_real_key",
    "AWS_ACCESS_KEY_ID": "AKIANOTAREALKEY",
    "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
}


@pytest.mark.parametrize("transport", OFF_MACHINE)
def test_send_refuses_a_broken_setup_off_this_machine_before_any_connection(
    project, runner, no_network, transport, monkeypatch
) -> None:
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ada@example.net", name="Ada")
    issue = next((project / "issues").glob("*.yaml"))
    result = runner.invoke(
        main,
        [
            "--config",
            str(project / "newsletter.yaml"),
            "send",
            str(issue),
            "--yes",
            "--transport",
            transport,
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: not sending:")
    assert ": error: from: news@example.org" in result.output
    assert ": error: base_url: https://news.example.org" in result.output
    assert no_network == []
    assert campaign_status(config, issue) == []  # no campaign started, nobody claimed
    assert "Traceback" not in result.output


LOCAL = [
    "outbox:./out",
    "console:",
    "smtp://127.0.0.1:2525?tls=none",
    "smtp://localhost",
    "smtp://[::1]:25?tls=none",
    "sendgrid:?endpoint=http://127.0.0.1:8025",
    "mailgun:mg.example.net?endpoint=http://localhost:9000",
    "ses:eu-west-1?endpoint=http://127.0.0.1:5000",
]


@pytest.mark.parametrize(
    ("transport", "off"), [(t, True) for t in OFF_MACHINE] + [(t, False) for t in LOCAL]
)
def test_which_transports_deliver_off_this_machine(transport, off, no_network) -> None:
    assert delivers_off_machine(transport) is off
    assert no_network == []


def test_test_copies_and_dry_runs_get_warnings_even_off_machine(project) -> None:
    config = load_config(project / "newsletter.yaml")
    with pytest.raises(SetupRefused) as refused:
        check_before_send(config, "smtp://mail.example.net", real=True, environ={})
    assert {f.key for f in refused.value.findings} >= {"from", "base_url"}
    warnings = check_before_send(config, "smtp://mail.example.net", real=False, environ={})
    assert {f.key for f in warnings} >= {"from", "base_url"}
    assert {f.severity for f in warnings} == {"warning"}


def test_dry_run_off_machine_prints_warnings_and_builds(project, runner, no_network) -> None:
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ada@example.net", name="Ada")
    issue = next((project / "issues").glob("*.yaml"))
    result = runner.invoke(
        main,
        [
            "--config",
            str(project / "newsletter.yaml"),
            "send",
            str(issue),
            "--dry-run",
            "--transport",
            "smtp://mail.example.net",
        ],
    )
    assert result.exit_code == 0, result.output
    assert ": warning: from: news@example.org" in result.output
    assert ": error:" not in result.output and "Error" not in result.output
    assert no_network == []


def test_a_loopback_relay_gets_warnings_and_the_mail(project, runner) -> None:
    from smtp_servers import SmtpServer

    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ada@example.net", name="Ada")
    issue = next((project / "issues").glob("*.yaml"))
    with SmtpServer() as server:
        result = runner.invoke(
            main,
            [
                "--config",
                str(project / "newsletter.yaml"),
                "send",
                str(issue),
                "--yes",
                "--transport",
                server.url(),
            ],
        )
        assert result.exit_code == 0, result.output
        delivered = server.wait_for(1)
    assert delivered[0].rcpt_tos == ["ada@example.net"]
    assert ": warning: from: news@example.org" in result.output
    assert ": warning: base_url:" in result.output
    assert ": error:" not in result.output


@pytest.mark.parametrize(
    ("expression", "column", "reason"),
    [
        ("'\"pro\" in tags and'", 18, "ends too early"),
        ("'fields.city = \"Oslo\"'", 13, "expected"),
        ("'tags contains pro'", 6, "expected"),
    ],
)
def test_a_bad_named_segment_is_reported_with_its_line_and_column(
    clean, runner, expression, column, reason
) -> None:
    """A named segment was parsed only by the send to it; doctor reports it now, at its line
    in newsletter.yaml with the parser's column, and a good one is not a finding."""
    path = clean / "newsletter.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines += ["segments:", "  oslo: 'fields.city == \"Oslo\"'", f"  broken: {expression}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, found, output = doctor(clean, runner)
    [(where, severity, key, message)] = found
    assert where.endswith(f"newsletter.yaml:{len(lines)}:11") and code == 0, output
    assert (severity, key) == ("warning", "segments.broken")
    assert message.startswith(f"column {column}: ") and reason in message, output
    assert "send --segment broken" in output
