"""The welcome mail: owed on confirmation (serve) and on `subscribers add --welcome`, sent once
per person through the campaign pipeline (personalised, DKIM-signed, List-Unsubscribe), never
making a confirmation wait for the relay."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from db_support import use_database
from welcome_issue import WELCOME

from newsletter.config import load_config
from newsletter.mail.dkim import DkimSigner
from tests.support.cli_support import run
from tests.support.dkim_support import verify, write_key
from tests.support.serve_process import serve_process
from tests.support.serve_support import sign_up
from tests.support.smtp_servers import SmtpServer, fault


@pytest.fixture
def project(project: Path, database: str) -> Path:
    """Every test of this file on SQLite and on PostgreSQL (newsletter.yaml's `database:`)."""
    use_database(project, database)
    return project


@pytest.fixture
def welcoming(project: Path) -> Path:
    (project / "issues" / "_welcome.yaml").write_text(WELCOME, encoding="utf-8")
    write_key(project / "dkim.pem", "rsa")
    with (project / "newsletter.yaml").open("a") as f:
        f.write("dkim:\n  domain: example.org\n  selector: s1\n  private_key: dkim.pem\n")
    return project


def parsed(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def welcomes(project: Path) -> list[email.message.EmailMessage]:
    found = [parsed(p) for p in sorted((project / "outbox").glob("*.eml"))]
    return [m for m in found if str(m["Subject"]).startswith("Welcome")]


def test_add_with_welcome_sends_it_once_personalised_and_signed(
    welcoming: Path, runner: CliRunner
) -> None:
    code, out = run(
        runner, welcoming, "subscribers", "add", "ada@example.net", "--name", "Ada", "--welcome"
    )
    assert code == 0, out
    assert "Welcome mail: 1 sent" in out
    [message] = welcomes(welcoming)
    assert message["To"].addresses[0].addr_spec == "ada@example.net"
    assert str(message["Subject"]) == "Welcome, Ada"
    assert "Hello Ada, thanks for joining." in message.get_body(("plain",)).get_content()
    assert message["List-Unsubscribe"] and message["List-Unsubscribe-Post"]
    signer = DkimSigner.from_config(load_config(welcoming / "newsletter.yaml").dkim)
    raw = next((welcoming / "outbox").glob("*.eml")).read_bytes()
    assert verify(raw, signer)
    # Again, and again with the address spelled differently: still one welcome.
    for spelling in ("ada@example.net", "ADA@Example.NET"):
        code, out = run(runner, welcoming, "subscribers", "add", spelling, "--welcome")
        assert code == 0 and "welcomed already" in out
    assert len(welcomes(welcoming)) == 1
    code, out = run(runner, welcoming, "status", "welcome")
    assert "sent 1" in out


def test_add_with_welcome_without_a_welcome_issue_is_a_clear_error(
    project: Path, runner: CliRunner
) -> None:
    code, out = run(runner, project, "subscribers", "add", "ada@example.net", "--welcome")
    assert code == 2 and "no welcome issue" in out and "_welcome.yaml" in out
    code, out = run(runner, project, "subscribers", "list")
    assert "ada@example.net" not in out  # nothing half-done


def test_a_welcome_named_by_the_welcome_key(project: Path, runner: CliRunner) -> None:
    (project / "hello.yaml").write_text(WELCOME.replace("Welcome,", "Welcome aboard,"))
    with (project / "newsletter.yaml").open("a") as f:
        f.write("welcome: hello.yaml\n")
    line = len((project / "newsletter.yaml").read_text().splitlines())
    code, out = run(runner, project, "subscribers", "add", "bo@example.net", "--welcome")
    assert code == 0, out
    [message] = [parsed(p) for p in (project / "outbox").glob("*.eml")]
    assert str(message["Subject"]) == "Welcome aboard, reader"
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text().replace("hello.yaml", "gone.yaml")
    )
    code, out = run(runner, project, "subscribers", "list")
    assert code == 1 and f"newsletter.yaml:{line}" in out and "'gone.yaml' does not exist" in out


def test_a_welcome_that_cannot_go_now_stays_owed_and_send_due_sends_it(
    welcoming: Path, runner: CliRunner
) -> None:
    with SmtpServer() as relay:
        url = relay.url()
    # The relay is gone: the subscriber is added, the welcome stays owed.
    config = welcoming / "newsletter.yaml"
    config.write_text(config.read_text() + f"transport: {url}\n")
    code, out = run(runner, welcoming, "subscribers", "add", "cy@example.net", "--welcome")
    assert code == 1 and "Welcome mail not sent yet" in out and "send-due" in out
    code, out = run(runner, welcoming, "subscribers", "list")
    assert "cy@example.net" in out and "active" in out
    relay = SmtpServer()
    relay.port = int(url.split(":")[2].split("?")[0])
    relay.controller.port = relay.port
    with relay:
        code, out = run(runner, welcoming, "send-due")
        assert code == 0 and "Welcome mail: 1 sent" in out, out
        code, out = run(runner, welcoming, "send-due")
        assert "Nothing due" in out
        assert relay.count_by_recipient() == {"cy@example.net": 1}


def test_confirming_through_serve_welcomes_once_without_waiting_for_the_relay(
    welcoming: Path,
) -> None:
    with (
        SmtpServer() as relay,
        serve_process(welcoming, NEWSLETTER_TRANSPORT=relay.url(timeout=30)) as server,
    ):
        assert sign_up(server.url, email="eve@example.net", name="Eve").status_code == 200
        [confirmation] = relay.wait_for(1, timeout=20)
        token = re.search(
            r"/confirm/([A-Za-z0-9._-]+)", confirmation.parsed().get_body(("plain",)).get_content()
        )
        assert token, confirmation.parsed()
        relay.handler.faults.append(fault("slow-data", "*", delay=6.0))  # a slow relay now
        started = time.monotonic()
        answer = httpx.post(f"{server.url}/confirm/{token.group(1)}")
        assert answer.status_code == 200 and time.monotonic() - started < 3.0
        delivered = relay.wait_for(2, timeout=30)
        welcome = delivered[1].parsed()
        assert str(welcome["Subject"]) == "Welcome, Eve"
        assert welcome["To"].addresses[0].addr_spec == "eve@example.net"
        assert "Hello Eve" in welcome.get_body(("plain",)).get_content()
        assert welcome["List-Unsubscribe"]
        signer = DkimSigner.from_config(load_config(welcoming / "newsletter.yaml").dkim)
        assert verify(delivered[1].data, signer)
        # Confirming again changes nothing and welcomes nobody twice.
        relay.handler.faults.clear()
        assert httpx.post(f"{server.url}/confirm/{token.group(1)}").status_code == 200
        time.sleep(2.0)
        assert relay.count_by_recipient() == {"eve@example.net": 2}  # confirmation + welcome
        # The welcome issue is not a published issue.
        assert httpx.get(f"{server.url}/issues/welcome/").status_code == 404
        output = server.stop()
    assert "Welcome mail: 1 sent" in output


def test_welcomes_follow_the_transport_configured_now(welcoming: Path, runner: CliRunner) -> None:
    config = welcoming / "newsletter.yaml"
    code, out = run(runner, welcoming, "subscribers", "add", "a@example.net", "--welcome")
    assert code == 0 and len(list((welcoming / "outbox").glob("*.eml"))) == 1
    config.write_text(config.read_text() + "transport: outbox:./elsewhere\n")
    code, out = run(runner, welcoming, "subscribers", "add", "b@example.net", "--welcome")
    assert code == 0, out
    [moved] = [parsed(p) for p in (welcoming / "elsewhere").glob("*.eml")]
    assert moved["To"].addresses[0].addr_spec == "b@example.net"
    assert len(list((welcoming / "outbox").glob("*.eml"))) == 1


def test_every_link_a_welcome_carries_answers_through_serve(
    welcoming: Path, runner: CliRunner
) -> None:
    """The welcome issue is never published, so its mail has no "View in browser" link (it
    was a 404); every link it does carry to our site (unsubscribe, in the parts and in
    List-Unsubscribe) answers, and GETting them changes nothing."""
    from newsletter.web.public import create_app
    from tests.support.serve_support import free_port, running

    port = free_port()
    config_path = welcoming / "newsletter.yaml"
    config_path.write_text(
        config_path.read_text().replace(
            "base_url: https://news.example.org", f"base_url: http://127.0.0.1:{port}"
        )
    )
    code, out = run(runner, welcoming, "subscribers", "add", "ada@example.net", "--welcome")
    assert code == 0 and "Welcome mail: 1 sent" in out, out
    [message] = welcomes(welcoming)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    header = str(message["List-Unsubscribe"])
    links = set(re.findall(r'href="(http[^"]+)"', html))
    links |= set(re.findall(r"https?://\S+", text)) | set(re.findall(r"<(http[^>]+)>", header))
    ours = {link.replace("&amp;", "&") for link in links if "127.0.0.1" in link}
    assert "View in browser" not in html and "View in your browser" not in text
    assert not [link for link in ours if "/issues/" in link]
    assert any("/unsubscribe/" in link for link in ours), links
    config = load_config(config_path)
    with running(create_app(config, signup_min_seconds=0), port=port) as server:
        assert server == f"http://127.0.0.1:{port}"
        for link in sorted(ours):
            assert httpx.get(link).status_code == 200, link
    code, out = run(runner, welcoming, "subscribers", "show", "ada@example.net")
    assert "active" in out  # opening the unsubscribe page is not unsubscribing


def test_a_copied_theme_that_prints_web_url_in_the_welcome_is_a_clear_error(
    welcoming: Path, runner: CliRunner
) -> None:
    """A theme copied before the welcome lost its web link prints `{{ web_url }}` unguarded:
    `check` names the theme file and line instead of mailing `href="None"`."""
    theme = welcoming / "theme"
    theme.mkdir()
    builtin = Path(__file__).resolve().parents[1] / "templates" / "footer.mjml"
    old = builtin.read_text(encoding="utf-8").replace("{% if web_url %}", "{% if true %}")
    (theme / "footer.mjml").write_text(old, encoding="utf-8")
    with (welcoming / "newsletter.yaml").open("a") as f:
        f.write("templates: theme\n")
    code, out = run(runner, welcoming, "check", "issues/_welcome.yaml")
    assert code == 1 and "footer.mjml:" in out and "no web version" in out, out
    code, out = run(runner, welcoming, "subscribers", "add", "ada@example.net", "--welcome")
    assert "Welcome mail not sent yet" in out and "no web version" in out, out
    assert welcomes(welcoming) == []
    # Any other issue still links its web version through the same theme.
    code, out = run(
        runner, welcoming, "check", "issues/2026-11-25-microsoft-openai-partnership.yaml"
    )
    assert code == 0, out


def test_send_due_exits_1_when_an_owed_welcome_fails_check(
    welcoming: Path, runner: CliRunner
) -> None:
    """A welcome that fails `newsletter check` stays owed, and cron sees the failure."""
    config = welcoming / "newsletter.yaml"
    config.write_text(config.read_text() + "transport: outbox:./outbox\n")
    welcome = welcoming / "issues" / "_welcome.yaml"
    welcome.write_text(WELCOME.replace("subject:", "nosuchfield: 1\nsubject:"), encoding="utf-8")
    code, out = run(runner, welcoming, "subscribers", "add", "di@example.net", "--welcome")
    assert code == 1 and "Welcome mail not sent yet" in out, out
    code, out = run(runner, welcoming, "send-due")
    assert code == 1, out
    assert "Welcome mail not sent yet" in out and "check" in out, out
    assert not list(welcoming.glob("outbox/*.eml"))
    welcome.write_text(WELCOME, encoding="utf-8")  # fixed: the next run sends it, exit 0
    code, out = run(runner, welcoming, "send-due")
    assert code == 0 and "Welcome mail: 1 sent" in out, out
