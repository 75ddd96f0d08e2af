"""Transient is transient (issue #9.7): a relay refusing connections before any mail.

A table over the stage (greeting, EHLO, STARTTLS, AUTH) x the reply (4xx for now, 5xx for
good), against a real aiosmtpd server with STARTTLS and AUTH whose session faults refuse some
connections (a cap of 2 simultaneous connections, with `--concurrency 4`) or all of them.
What is checked: what the server received, what the ledger holds, what the user is told.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from provider_servers import SendGridServer
from smtp_servers import SmtpServer, session_fault

from newsletter.campaign import RetryPolicy, campaign_status, send_issue
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.errors import CampaignError, TransportAuthError, TransportConnectError
from newsletter.subscribers import SubscriberStore

READERS = [f"reader{i}@example.net" for i in range(6)]
PASSWORD = {"NEWSLETTER_SMTP_PASSWORD": "right"}
FAST = RetryPolicy(base_delay=0.05, max_delay=0.2, connect_patience=0.6, max_connect_delay=0.1)
# Where the connection comes in the end: patience that a loaded machine cannot exhaust.
PATIENT = RetryPolicy(base_delay=0.05, max_delay=0.2, connect_patience=30, max_connect_delay=0.1)

# stage -> (reply for now, reply for good, what a permanent refusal raises)
STAGES = {
    "greeting": ("421 4.7.0 Too many concurrent connections", "554 5.7.1 No SMTP service here"),
    "ehlo": ("421 4.7.0 Too many concurrent connections", "550 5.7.1 Access denied"),
    "starttls": ("454 4.7.0 TLS not available due to temporary reason", "554 5.7.3 No TLS"),
    "auth": ("454 4.7.0 Temporary authentication failure", "535 5.7.8 Bad credentials"),
}
CASES = [(stage, kind) for stage in STAGES for kind in ("4xx", "5xx")]


@pytest.fixture
def project_with_readers(project: Path) -> Path:
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for address in READERS:
            store.add(address)
    return project


def _server(stage: str, kind: str, beyond: int | None) -> SmtpServer:
    reply = STAGES[stage][0 if kind == "4xx" else 1]
    return SmtpServer(
        tls="starttls",
        auth={"user": "right"},
        session_faults=[session_fault(stage, reply, beyond=beyond)],  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("stage", "kind"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_a_relay_allowing_fewer_connections_than_asked(
    project_with_readers: Path, stage: str, kind: str
) -> None:
    """4 connections asked, 2 allowed: a 4xx lets the 2 send everything and the summary
    suggests --concurrency 2; a 5xx stops before anyone is claimed."""
    project = project_with_readers
    issue = next((project / "issues").glob("*.yaml"))
    with _server(stage, kind, beyond=2) as server:
        result = CliRunner().invoke(
            main,
            [
                *("--config", str(project / "newsletter.yaml"), "send", str(issue), "--yes"),
                *("--transport", server.url(user="user"), "--concurrency", "4"),
            ],
            env=PASSWORD,
        )
        delivered = server.count_by_recipient()
        refused = server.refused_sessions
    assert refused >= 2, "the fault did not refuse any connection: the test tests nothing"
    assert "Traceback" not in result.output
    if kind == "4xx":
        assert result.exit_code == 0, result.output
        assert sorted(delivered) == READERS and set(delivered.values()) == {1}
        assert "refused 2 of 4 connections for now" in result.stdout
        assert STAGES[stage][0] in result.stdout
        assert "try --concurrency 2" in result.stdout
    else:
        assert result.exit_code == 1
        assert STAGES[stage][1] in result.output
        assert not delivered
        # Nobody claimed: no campaign was even created.
        status = CliRunner().invoke(
            main, ["--config", str(project / "newsletter.yaml"), "status", str(issue)]
        )
        assert "No campaign" in status.output


@pytest.mark.parametrize(("stage", "kind"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_a_relay_refusing_every_connection(
    project_with_readers: Path, stage: str, kind: str
) -> None:
    """Every connection refused: a 4xx is retried with backoff for a bounded time, then a clear
    stop; a 5xx (bad credentials: TransportAuthError) stops at once. Nothing claimed either way."""
    project = project_with_readers
    config = load_config(project / "newsletter.yaml")
    issue = next((project / "issues").glob("*.yaml"))
    expected: type[Exception]
    if kind == "4xx":
        expected = CampaignError
    else:
        expected = TransportAuthError if stage == "auth" else TransportConnectError
    with _server(stage, kind, beyond=None) as server, pytest.raises(expected) as info:
        send_issue(
            config,
            issue,
            transport=server.url(user="user"),
            concurrency=2,
            retry=FAST,
            environ=PASSWORD,
        )
    message = str(info.value)
    assert STAGES[stage][0 if kind == "4xx" else 1] in message
    if kind == "4xx":
        assert "refused for now" in message and "nobody was claimed" in message
        assert "lower --concurrency" in message
        assert server.refused_sessions > 2  # retried, not given up on the first refusal
    else:
        assert server.refused_sessions <= 2  # no retries of a permanent refusal
    assert not server.messages
    assert campaign_status(config, issue) == []


def test_refused_connections_that_get_through_later_carry_on(project_with_readers) -> None:
    """The relay refuses the first two extra connections only: their retries connect and send."""
    project = project_with_readers
    config = load_config(project / "newsletter.yaml")
    issue = next((project / "issues").glob("*.yaml"))
    with SmtpServer(
        session_faults=[session_fault("greeting", "421 4.7.0 Busy, try later", times=2)],
    ) as server:
        report = send_issue(
            config,
            issue,
            transport=server.url(),
            concurrency=4,
            rate="30/s",  # slow enough for the retries (about 0.1 s) to join in
            retry=FAST,
        )
        assert sorted(server.count_by_recipient()) == READERS
        assert server.connections == 4  # all four connections ended up sending
    assert report.ok
    assert "refused 2 of 4 connections for now" in report.summary()
    assert "they connected on a retry" in report.summary()


@pytest.mark.parametrize("status", [429, 503])
def test_an_email_api_answering_the_key_check_with_429_or_5xx_is_retried(
    project_with_readers: Path, status: int
) -> None:
    """The same kind over HTTP: the preflight key check answered 'later' is not a bad key."""
    config = load_config(project_with_readers / "newsletter.yaml")
    issue = next((project_with_readers / "issues").glob("*.yaml"))
    key = {"SENDGRID_API_KEY": "SG.key-for-the-test"}
    with SendGridServer(key["SENDGRID_API_KEY"]) as server:
        server.fail_next_checks(status, body={"errors": [{"message": "later"}]}, times=2)
        report = send_issue(
            config,
            issue,
            transport=f"sendgrid:?endpoint={server.url}",
            environ=key,
            retry=PATIENT,  # refused twice, then the check passes: never out of patience
        )
        assert sorted(d.to_email for d in server.delivered) == READERS
        server.fail_next_checks(status, body={"errors": [{"message": "later"}]}, times=1000)
        store = SubscriberStore.for_config(config)
        store.add("late@example.net")
        store.close()
        with pytest.raises(CampaignError, match=rf"refused for now \(SendGrid answered {status}"):
            send_issue(
                config,
                issue,
                transport=f"sendgrid:?endpoint={server.url}",
                environ=key,
                retry=FAST,
                include_new=True,
            )
        assert len(server.delivered) == len(READERS)
    assert len(server.delivered) == len(READERS)  # the late subscriber was not sent to
    assert report.ok and "a retry got through" in report.summary()
    assert f"refused 2 attempts to connect for now (SendGrid answered {status} " in report.summary()
