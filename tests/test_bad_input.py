"""Bad input gets one clear line and exit status 1: never a traceback, never a secret.

Each test drives the real `newsletter` command (click's CliRunner) in a project made by
`init_project`, with secrets set in the environment, and checks the message a user would read,
the exit status, and that nothing was half-written.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from newsletter.scaffold import init_project
from newsletter.transports import SCHEMES, SECRET_VARIABLES, transport_class
from newsletter.transports.base import Transport

SECRETS = {
    "NEWSLETTER_SMTP_PASSWORD": "hunter2",
    "SENDGRID_API_KEY": "SG.secret",
}
TODAY = dt.date(2026, 3, 2)
ISSUE = "issues/2026-03-02-welcome.yaml"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("NEWSLETTER_", "SENDGRID_", "MAILGUN_", "POSTMARK_", "RESEND_")):
            monkeypatch.delenv(name)
    root = tmp_path / "project"
    init_project(root, name="Sweep", today=TODAY)
    monkeypatch.chdir(root)
    return root


def run(*args: str, **env: str) -> Result:
    result = CliRunner().invoke(main, list(args), env={**SECRETS, **env})
    output = result.output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    for secret in (*SECRETS.values(), *(v for k, v in env.items() if k in SECRET_VARIABLES)):
        assert secret not in output, f"secret {secret!r} printed: {output}"
    return result


def fails(*args: str, **env: str) -> str:
    """The one-line error of a command that must fail with status 1."""
    result = run(*args, **env)
    assert result.exit_code == 1, result.output
    # `send` prints the setup warnings of `newsletter doctor` first (outbox: warnings only).
    output = "".join(ln for ln in result.output.splitlines(True) if ": warning: " not in ln)
    assert output.startswith("Error: "), result.output
    return output


# ---------------------------------------------------------------- configuration


def test_empty_from_in_the_environment_is_refused_before_anything_is_built(project: Path) -> None:
    out = fails("build", ISSUE, NEWSLETTER_FROM="")
    assert "environment variable NEWSLETTER_FROM: 'from' must not be empty" in out
    assert not (project / "build").exists()


def test_empty_name_in_the_environment_is_refused(project: Path) -> None:
    out = fails("check", ISSUE, NEWSLETTER_NAME=" ")
    assert "NEWSLETTER_NAME: 'name' must not be empty" in out


def test_a_from_address_that_parseaddr_would_repair_is_refused(project: Path) -> None:
    # parseaddr turns 'x@exa mple.com' into 'x@example.com': mail would go out from a domain
    # nobody wrote.
    out = fails("check", ISSUE, NEWSLETTER_FROM="X <x@exa mple.com>")
    assert "'from' must be an address like" in out and "exa mple.com" in out
    assert run("check", ISSUE, NEWSLETTER_FROM="X <x@bücher.de>").exit_code == 0


def test_dkim_from_the_environment_names_the_missing_variable(project: Path) -> None:
    out = fails("check", ISSUE, NEWSLETTER_DKIM_PRIVATE_KEY="/nowhere.pem")
    assert "environment variable NEWSLETTER_DKIM_DOMAIN: 'dkim' is missing 'domain'" in out


def test_dkim_values_must_be_text(project: Path) -> None:
    config = project / "newsletter.yaml"
    config.write_text(
        config.read_text() + "dkim:\n  domain: [example.com]\n  selector: s1\n"
        "  private_key: dkim.pem\n"
    )
    out = fails("check", ISSUE)
    assert f"{config}:" in out and "'dkim.domain' must be text" in out


@pytest.mark.timeout(20)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused_without_reading_it_whole(project: Path) -> None:
    out = fails("build", "/dev/zero")
    assert "/dev/zero:1:1: error: file is larger than 5,000,000 bytes" in out
    out = fails("--config", "/dev/null", "check", ISSUE)  # not a regular file
    assert "/dev/null" in out


# ---------------------------------------------------------------- init


def test_init_where_a_folder_cannot_be_made_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = fails("init", str(tmp_path / "afile" / "news"))
    assert f"cannot create folder {tmp_path / 'afile' / 'news'}" in out


def test_init_that_fails_halfway_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "news"
    root.mkdir()
    (root / "issues").write_text("a file where the issues folder goes")
    out = fails("init", str(root))
    assert "issues: a file is in the way" in out
    # newsletter.yaml was written first: it must be gone again, or the next init would refuse.
    assert sorted(p.name for p in root.iterdir()) == ["issues"]


# ---------------------------------------------------------------- transports and secrets


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://[::1", "bad SMTP transport URL 'smtp://[::1': Invalid IPv6 URL"),
        ("smtp://user:hunter2@[::1", "'smtp://user:***@[::1'"),
        ("smtp://host:notaport", "the port must be a number from 1 to 65535"),
        ("smtp://host:99999", "the port must be a number from 1 to 65535"),
    ],
)
def test_bad_smtp_urls(project: Path, url: str, expected: str) -> None:
    out = fails("send", "--test", "a@example.com", "--transport", url, ISSUE)
    assert expected in out


@pytest.mark.parametrize("key", ["SG.secrét", "SG.secret\udcff", "SG.sec\x7fret"])
def test_an_api_key_with_a_character_no_key_has_is_refused(project: Path, key: str) -> None:
    out = fails(
        "send", "--test", "a@example.com", "--transport", "sendgrid:", ISSUE, SENDGRID_API_KEY=key
    )
    assert "SENDGRID_API_KEY contains a character that no API key has" in out


@pytest.mark.parametrize(
    "url",
    [
        "sendgrid:SG.pasted-into-the-url",
        "sendgrid:?key=SG.pasted-into-the-url",
        "mailgun:mg.example.com?api_key=SG.pasted-into-the-url",
        "postmark:SG.pasted-into-the-url",
    ],
)
def test_a_key_pasted_into_a_transport_url_is_not_repeated(project: Path, url: str) -> None:
    out = fails("send", "--test", "a@example.com", "--transport", url, ISSUE)
    assert "SG.pasted-into-the-url" not in out
    assert "belongs in the environment" in out or "belong in the environment" in out


def test_secret_values_are_masked_in_every_error(project: Path) -> None:
    # The value of a secret variable typed somewhere it gets repeated back.
    out = fails("send", "--test", "a@example.com", "--transport", "console:hunter2", ISSUE)
    assert "[NEWSLETTER_SMTP_PASSWORD]" in out


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_transport_declares_its_secret_and_its_value_is_masked(
    project: Path, scheme: str
) -> None:
    """The Transport contract: each class builds itself from its URL and names the variable
    holding its secret; that variable's value never comes back in a message."""
    cls = transport_class(scheme)
    assert issubclass(cls, Transport) and cls.from_url.__func__ is not Transport.from_url.__func__
    if cls.secret_variable is None:
        assert scheme in ("outbox", "console")  # only the local transports need no secret
        return
    value = f"pasted-{scheme}-secret"
    out = fails(
        "send", "--test", "a@example.com", "--transport", f"console:{value}", ISSUE,
        **{cls.secret_variable: value},
    )  # fmt: skip
    assert value not in out and f"[{cls.secret_variable}]" in out


# ---------------------------------------------------------------- subscribers


def test_import_never_overwrites_its_own_input_with_the_rejects(project: Path) -> None:
    data = "email,name\ngood@example.com,G\nnot-an-address,X\n"
    source = project / "list.csv"
    source.write_text(data)
    out = fails("subscribers", "import", "list.csv", "--rejects", "list.csv")
    assert "list.csv: the rejects file would overwrite the file being imported" in out
    assert source.read_text() == data
    # nothing was imported either
    assert "0 subscribers" in run("subscribers", "count").output


def test_a_database_under_a_file_names_the_file_in_the_way(project: Path) -> None:
    (project / "afile").write_text("x")
    out = fails("subscribers", "add", "a@example.com", "--db", "afile/news.db")
    assert f"{project / 'afile'} is a file, not a folder" in out


# ---------------------------------------------------------------- DKIM


DKIM_ENV = {"NEWSLETTER_DKIM_DOMAIN": "example.com", "NEWSLETTER_DKIM_SELECTOR": "s1"}


def test_dkim_selector_that_is_not_a_dns_name_is_a_config_error(project: Path) -> None:
    config = project / "newsletter.yaml"
    config.write_text(
        config.read_text() + 'dkim:\n  domain: example.com\n  selector: "s1; x=y"\n'
        "  private_key: dkim.pem\n"
    )
    out = fails("send", "--test", "a@example.com", "--transport", "console:", ISSUE)
    line = config.read_text().splitlines().index('  selector: "s1; x=y"') + 1
    assert f"{config}:{line}: 'dkim.selector' must be a DNS name" in out


@pytest.mark.timeout(20)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_dkim_key_path_to_an_endless_file_is_refused(project: Path) -> None:
    env = {**DKIM_ENV, "NEWSLETTER_DKIM_PRIVATE_KEY": "/dev/zero"}
    out = fails("send", "--test", "a@example.com", "--transport", "console:", ISSUE, **env)
    assert "/dev/zero: larger than 65,536 bytes: not a PEM private key" in out


# ---------------------------------------------------------------- issue placeholders


@pytest.mark.parametrize(
    "expression", ["1/0", "range(10**9) | list", "'a' * 10**10", "10**60**60**60**60"]
)
def test_a_placeholder_that_cannot_be_computed_renders_empty(
    project: Path, expression: str
) -> None:
    issue = project / ISSUE
    text = issue.read_text().replace(
        "preheader: ", f'subject: "Hi {{{{ {expression} }}}}"\npreheader: ', 1
    )
    issue.write_text(text)
    assert run("check", ISSUE).exit_code == 0
    assert run("build", ISSUE).exit_code == 0
    eml = next((project / "build").rglob("message.eml")).read_text()
    assert "\nSubject: Hi\n" in eml.replace("\r\n", "\n")


# ---------------------------------------------------------------- options and output paths


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-30", "'2026-02-30' is not a calendar date (day is out of range for month)"),
        ("tomorrow", "'tomorrow' is not a date in the form YYYY-MM-DD"),
    ],
)
def test_new_with_an_impossible_date(project: Path, value: str, expected: str) -> None:
    result = run("new", "Next issue", "--date", value)
    assert result.exit_code == 2 and expected in result.output
    assert sorted(p.name for p in (project / "issues").iterdir()) == ["2026-03-02-welcome.yaml"]


def test_an_outbox_path_that_is_a_file(project: Path) -> None:
    out = fails("send", "--test", "a@example.com", "--transport", "outbox:newsletter.yaml", ISSUE)
    assert "cannot create the outbox folder" in out and "a file is in the way" in out


def test_export_into_a_folder_that_is_a_file(project: Path) -> None:
    (project / "afile").write_text("x")
    assert run("subscribers", "add", "a@example.com").exit_code == 0  # a database to export
    out = fails("subscribers", "export", "-o", "afile/list.csv")
    assert "afile/list.csv: cannot write: afile is a file, not a folder" in out


@pytest.mark.parametrize("host", ["256.1.1.1", "192.0.2.1"])  # unknown; not of this machine
def test_serve_on_a_wrong_host_blames_the_host_not_the_port(project: Path, host: str) -> None:
    out = fails("serve", "--host", host, "--port", "0")
    assert f"cannot listen on {host}:0" in out
    assert "--host must be an address of this machine" in out and "--port" not in out


def test_a_damaged_database_is_the_only_line_of_subscribers_list(project: Path) -> None:
    assert run("subscribers", "add", "a@example.com").exit_code == 0
    db = project / "newsletter.db"
    db.write_bytes(db.read_bytes()[:100])  # truncated: the header survives, the pages do not
    for name in ("newsletter.db-wal", "newsletter.db-shm"):
        (project / name).unlink(missing_ok=True)
    out = fails("subscribers", "list")
    assert out.count("\n") == 1 and "cannot open the database" in out and str(db) in out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"NEWSLETTER_BASE_URL": "https://reader:pw-in-url@news.example.com"},
            "'base_url' must not contain a user name or password",
        ),
        (
            {"NEWSLETTER_BASE_URL": "https://news.example.com/?utm=1"},
            "'base_url' must not contain spaces, '?' or '#'",
        ),
        ({"NEWSLETTER_BASE_URL": "http:// news.example.com"}, "must not contain spaces"),
        ({"NEWSLETTER_LANGUAGE": 'en"><b>'}, "'language' must be a language tag"),
        ({"NEWSLETTER_FROM": "X <ü@example.com>"}, "'from' must have an ASCII part before the @"),
    ],
)
def test_settings_that_would_break_every_email(
    project: Path, env: dict[str, str], expected: str
) -> None:
    out = fails("build", ISSUE, **env)
    assert expected in out and "environment variable NEWSLETTER_" in out
    assert "pw-in-url" not in out
    assert not (project / "build").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["export", "-o", "newsletter.db"], "newsletter.db: is the subscriber database"),
        (["export", "-o", "newsletter.yaml"], "newsletter.yaml: exists and is not a file this"),
        (["import", "list.csv", "--rejects", "newsletter.db"], "is the subscriber database"),
        (["import", "list.csv", "--rejects", "newsletter.yaml"], "exists and is not a file"),
    ],
)
def test_csv_output_never_replaces_the_database_or_the_configuration(
    project: Path, args: list[str], expected: str
) -> None:
    assert run("subscribers", "add", "a@example.com").exit_code == 0
    (project / "list.csv").write_text("email\nb@example.com\nnot-an-address\n")
    config = (project / "newsletter.yaml").read_bytes()
    out = fails("subscribers", *args)
    assert expected in out
    assert (project / "newsletter.yaml").read_bytes() == config
    assert "1 subscriber" in run("subscribers", "count").output  # the database is intact


def test_an_earlier_export_may_be_replaced(project: Path) -> None:
    assert run("subscribers", "add", "a@example.com").exit_code == 0
    for _ in range(2):
        assert run("subscribers", "export", "-o", "all.csv").exit_code == 0
    assert (project / "all.csv").read_text().startswith("email,name,status,lists,created_at")


def test_a_theme_file_that_is_not_utf8_is_named(project: Path) -> None:
    theme = project / "theme"
    theme.mkdir()
    (theme / "footer.mjml").write_bytes(b"<mj-text>caf\xe9</mj-text>\n")  # latin-1
    out = fails("build", ISSUE, NEWSLETTER_TEMPLATES="theme")
    assert "theme/footer.mjml: not valid UTF-8 (byte 0xe9 at offset 12)" in out


def test_the_console_transport_on_an_ascii_terminal(project: Path) -> None:
    # A subject with an em dash, printed where stdout cannot encode it (an old Windows console,
    # PYTHONIOENCODING=ascii): replaced, not a UnicodeEncodeError.
    env = {**os.environ, **SECRETS, "PYTHONIOENCODING": "ascii"}
    args = ["send", "--test", "a@example.com", "--transport", "console:", ISSUE]
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *args], env=env, capture_output=True, timeout=60
    )
    output = (done.stdout + done.stderr).decode("ascii", "replace")
    assert done.returncode == 0 and "Traceback" not in output, output
    assert "Subject: [TEST] Sweep ? March 2, 2026" in output


def test_a_damaged_unsubscribe_spool_keeps_its_good_lines(project: Path) -> None:
    assert run("subscribers", "add", "a@example.com").exit_code == 0
    spool = project / "newsletter.db.unsubscribe-spool"
    spool.write_bytes(
        b'{"id": 1, "how": "one-click"}\n\xff\xfe garbage\n{"id": 99999999999999999999999, '
        b'"how": "x"}\n{"id": 424242, "how": "x"}\n'
    )
    out = run("subscribers", "show", "a@example.com").output
    assert "status:   unsubscribed" in out and "(one-click)" in out
    assert not spool.exists()


def test_a_folder_where_the_unsubscribe_spool_goes(project: Path) -> None:
    assert run("subscribers", "add", "a@example.com").exit_code == 0
    (project / "newsletter.db.unsubscribe-spool").mkdir()
    out = fails("subscribers", "count")
    assert "newsletter.db.unsubscribe-spool: cannot read the unsubscribe spool" in out


@pytest.mark.parametrize("endpoint", ["http://[::1", "http://127.0.0.1:99999"])
def test_an_unparseable_api_endpoint(project: Path, endpoint: str) -> None:
    url = f"sendgrid:?endpoint={endpoint}"
    out = fails("send", "--test", "a@example.com", "--transport", url, ISSUE)
    assert f"'endpoint' must be a base URL like http://127.0.0.1:8025 in {url!r}" in out


def test_a_title_used_as_the_subject_follows_the_placeholder_rules(project: Path) -> None:
    issue = project / ISSUE
    text = issue.read_text()
    title_line = next(line for line in text.splitlines() if line.startswith("title: "))
    issue.write_text(text.replace(title_line, 'title: "Issue {{ 3"'))
    out = run("check", ISSUE).output
    assert "title: unbalanced '{{' or '}}' in placeholder" in out
    assert "Error: " in fails("build", ISSUE)


def test_status_names_a_missing_issue_and_does_not_create_a_database(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["status", "2026-01-01-never-sent"])
    assert result.exit_code == 0, result.output
    assert "No campaign for 2026-01-01-never-sent yet." in result.output
    assert not (tmp_path / "newsletter.db").exists()
    result = runner.invoke(main, ["status", " "])
    assert result.exit_code == 1
    assert "no issue given" in result.output and "Traceback" not in result.output
