"""One rule for whose fault a refusal is, whatever the source (newsletter.enhancedstatus): the
same RFC 3463 status leaves the subscriber in the same state whether it arrives in a DSN
imported with `bounces import`, in a non-standard bounce, as the relay's reply while sending,
or in a provider's webhook. A 5.7.x block (Microsoft's 5.7.515 "sender not authenticated", a
5.7.1 spam block) is about the sender: the reader is NOT marked bounced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from smtp_servers import Fault, SmtpServer
from webhook_support import Event, MailgunSigner, SendGridSigner, SesSigner, SnsCertServer

from newsletter.config import load_config
from newsletter.web.public import create_app
from tests.support import bounce_mail as mail
from tests.support.bounce_project import SentIssue, send_example
from tests.support.cli_support import run
from tests.support.serve_support import running

READER = "bob@example.net"
OTHER = "ann@example.net"

# (status, the subscriber's status after, what the history says)
CODES = [
    ("5.1.1", "bounced", "bounced"),  # bad mailbox
    ("5.1.10", "bounced", "bounced"),  # Microsoft: recipient not found
    ("5.2.1", "bounced", "bounced"),  # mailbox disabled
    ("5.7.515", "active", "blocked"),  # Microsoft: sender not authenticated
    ("5.7.1", "active", "blocked"),  # policy / spam block
    ("5.7.26", "active", "blocked"),  # DMARC failure
    ("5.1.8", "active", "blocked"),  # the SENDER's domain is bad
    ("5.3.4", "active", "blocked"),  # message too big for the system
    ("5.2.2", "active", "soft bounce"),  # mailbox full
    ("4.7.1", "active", "soft bounce"),  # try later
]
WEBHOOKS = ["sendgrid", "mailgun", "ses"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnsCertServer]:
    with SnsCertServer(tmp_path_factory.mktemp("sns")) as server:
        yield server


def status_and_history(project: Path) -> tuple[str, str]:
    code, out = run(CliRunner(), project, "subscribers", "show", READER)
    assert code == 0, out
    status = next(line for line in out.splitlines() if line.lower().startswith("status"))
    return status.split(":", 1)[1].strip(), out


def assert_outcome(project: Path, status: str, expected: str, history: str) -> None:
    now, shown = status_and_history(project)
    assert now == expected, shown
    assert status in shown and history in shown, shown


@pytest.mark.parametrize(("status", "expected", "history"), CODES)
def test_a_dsn_imported(project: Path, tmp_path: Path, status, expected, history, database) -> None:
    sent = send_example(project, [READER, OTHER], database=database)
    action = "delayed" if status.startswith("4") else "failed"
    code_ = "450" if status.startswith("4") else "550"
    dsn = mail.postfix_dsn(
        READER,
        sent.token(READER),
        sent.message_id(READER),
        action=action,
        status=status,
        diagnostic=f"smtp; {code_} {status} refused by the receiving server",
    )
    (tmp_path / "bounce.eml").write_bytes(dsn)
    code, out = run(CliRunner(), project, "bounces", "import", str(tmp_path / "bounce.eml"))
    assert code == 0, out
    assert_outcome(project, status, expected, history)


@pytest.mark.parametrize(("status", "expected", "history"), CODES)
def test_a_non_standard_bounce_quoting_the_servers_reply(
    project: Path, tmp_path: Path, status, expected, history
) -> None:
    if status.startswith("4"):
        pytest.skip("flufl.bounce reads qmail's bounce as a permanent failure only")
    sent = send_example(project, [READER, OTHER])
    bounce = mail.qmail_bounce(READER, sent.token(READER)).replace(b"#5.1.1", status.encode())
    (tmp_path / "bounce.eml").write_bytes(bounce)
    code, out = run(CliRunner(), project, "bounces", "import", str(tmp_path / "bounce.eml"))
    assert code == 0, out
    assert_outcome(project, status, expected, history)


@pytest.mark.parametrize(("status", "expected", "history"), CODES)
def test_the_relays_reply_while_sending(project: Path, status, expected, history) -> None:
    if status.startswith("4"):
        pytest.skip("a 4xx while sending is retried, not a bounce")
    reply = f"{'552' if status == '5.2.2' else '550'} {status} <{{rcpt}}>: refused"
    with SmtpServer(faults=[Fault(READER, "rcpt", reply)]) as relay:
        (project / "newsletter.yaml").write_text(
            (project / "newsletter.yaml").read_text() + f"transport: {relay.url()}\n"
        )
        run(CliRunner(), project, "subscribers", "add", READER)
        run(CliRunner(), project, "subscribers", "add", OTHER)
        issue = next((project / "issues").glob("*.yaml"))
        _, out = run(CliRunner(), project, "send", str(issue), "--yes")
        assert [m.rcpt_tos for m in relay.messages] == [[OTHER]], out
    now, shown = status_and_history(project)
    assert now == expected, (out, shown)
    if expected == "bounced":
        assert status in shown, shown


@pytest.mark.parametrize("provider", WEBHOOKS)
@pytest.mark.parametrize(("status", "expected", "history"), CODES)
def test_a_providers_webhook(
    project: Path, certs: SnsCertServer, provider, status, expected, history, database
) -> None:
    sent: SentIssue = send_example(project, [READER, OTHER], database=database)
    signer = {
        "sendgrid": SendGridSigner,
        "mailgun": MailgunSigner,
        "ses": lambda: SesSigner(certs),
    }[provider]()
    # The provider's own class says "permanent" for every 5.x.x: the status decides.
    kind = "soft_bounce" if status.startswith("4") else "hard_bounce"
    event = Event(
        kind, READER, key=sent.rows[READER], message_id=sent.message_id(READER), status=status
    )
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests([event]):
            answer = httpx.post(
                f"{server}/webhooks/{provider}", content=signed.body, headers=signed.headers
            )
            assert answer.status_code == 200, answer.text
    assert_outcome(project, status, expected, history)


def test_blocks_count_for_the_campaigns_reputation_guard(project: Path, tmp_path: Path) -> None:
    """A block leaves the reader active but still counts against the campaign: many servers
    refusing the sender is what the reputation guard is for."""
    sent = send_example(project, [READER, OTHER])
    for i, reader in enumerate((READER, OTHER)):
        dsn = mail.postfix_dsn(
            reader,
            sent.token(reader),
            sent.message_id(reader),
            status="5.7.1",
            diagnostic="smtp; 550 5.7.1 Message rejected as spam",
        )
        (tmp_path / f"{i}.eml").write_bytes(dsn)
    paths = [str(tmp_path / f"{i}.eml") for i in range(2)]
    code, out = run(CliRunner(), project, "bounces", "import", *paths)
    assert code == 0 and out.count("blocked (not about the reader") == 2, out
    slug = next((project / "issues").glob("*.yaml")).stem
    code, out = run(CliRunner(), project, "status", slug)
    assert "hard bounces 0 and blocks 2 (100%)" in out, out
    assert sent.statuses() == {READER: "active", OTHER: "active"}
