"""A campaign remembers how it was sent: transport, rate, concurrency (issue #9.3).

The first run stores them; a bare `newsletter send ISSUE` resumes with them whatever the
configuration now says; an explicit different transport is refused unless --switch-transport.
Checked by where the messages really arrive: a loopback SMTP server (aiosmtpd) or the outbox.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database
from smtp_servers import SmtpServer, fault

from newsletter.campaign import Campaign, campaign_status
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.subscribers import SubscriberStore
from newsletter.transports import url_without_secrets

READERS = ["ann@example.net", "bob@example.net", "cy@example.net"]


@pytest.fixture
def started(project: Path, database: str):
    """A campaign started via SMTP server A (rate 100/s, 2 connections) and stopped before
    anyone was sent: everything is still to send."""
    config = load_config(use_database(project, database) / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for address in READERS:
            store.add(address)
    issue = next((project / "issues").glob("*.yaml"))
    with SmtpServer() as server:
        stop = threading.Event()
        stop.set()
        campaign = Campaign.prepare(config, issue, transport=server.url())
        try:
            report = campaign.run(rate="100/s", concurrency=2, stop=stop)
        finally:
            campaign.close()
        assert report.interrupted and report.tally.done == 0
        yield project, issue, server


def _outbox_files(project: Path, name: str = "outbox") -> list[Path]:
    return sorted((project / name).glob("*.eml")) if (project / name).exists() else []


def _invoke(project: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(
        main, ["--config", str(project / "newsletter.yaml"), *args], env=env, input=None
    )


# (how the other transport is chosen now, extra arguments, where the rest must go)
CHOICES = [
    ("default (outbox)", "", [], {}, "smtp"),
    ("newsletter.yaml", "transport: outbox:./other\n", [], {}, "smtp"),
    ("NEWSLETTER_TRANSPORT", "", [], {"NEWSLETTER_TRANSPORT": "outbox:./other"}, "smtp"),
    ("--transport (same as stored)", "", ["--transport", "SAME"], {}, "smtp"),
    ("--transport other", "", ["--transport", "outbox:./other"], {}, "refused"),
    (
        "yaml + --switch-transport",
        "transport: outbox:./other\n",
        ["--switch-transport"],
        {},
        "other",
    ),
    (
        "env + --switch-transport",
        "",
        ["--switch-transport"],
        {"NEWSLETTER_TRANSPORT": "outbox:./other"},
        "other",
    ),
    (
        "--transport other + --switch-transport",
        "",
        ["--transport", "outbox:./other", "--switch-transport"],
        {},
        "other",
    ),
    ("default + --switch-transport", "", ["--switch-transport"], {}, "outbox"),
]


@pytest.mark.parametrize(
    ("source", "yaml_line", "args", "env", "goes_to"), CHOICES, ids=[c[0] for c in CHOICES]
)
def test_a_resume_keeps_the_campaigns_transport_unless_told_to_switch(
    started, monkeypatch, source, yaml_line, args, env, goes_to
) -> None:
    project, issue, server = started
    monkeypatch.chdir(project)
    if yaml_line:
        with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
            f.write(yaml_line)
    args = [server.url() if a == "SAME" else a for a in args]
    result = _invoke(project, "send", str(issue), "--yes", *args, env=env)
    delivered = sorted(r for m in server.messages for r in m.rcpt_tos)
    if goes_to == "refused":
        assert result.exit_code == 1, result.output
        assert "refusing to switch transports" in result.output
        assert f"sent via {url_without_secrets(server.url())}" in result.output
        assert "outbox:./other" in result.output and "--switch-transport" in result.output
        assert delivered == [] and _outbox_files(project, "other") == []
        assert "Traceback" not in result.output
        return
    assert result.exit_code == 0, result.output
    if goes_to == "smtp":
        assert delivered == READERS
        assert _outbox_files(project) == [] and _outbox_files(project, "other") == []
        if yaml_line or env:  # the configuration names another transport: say which is used
            assert "Resuming via smtp://127.0.0.1" in result.stderr
            assert "outbox:./other" in result.stderr
    else:
        assert delivered == []
        assert len(_outbox_files(project, goes_to)) == len(READERS)


def test_the_question_says_from_what_to_what_and_yes_alone_never_switches(started) -> None:
    project, issue, server = started
    refused = _invoke(project, "send", str(issue), "--yes", "--transport", "console:")
    assert refused.exit_code == 1 and "refusing to switch" in refused.output
    runner = CliRunner()
    asked = runner.invoke(
        main,
        [
            *("--config", str(project / "newsletter.yaml"), "send", str(issue)),
            *("--transport", "console:", "--switch-transport"),
        ],
        input="n\n",
    )
    stored = url_without_secrets(server.url())
    assert f"switching this campaign's transport from {stored} to console:" in asked.output
    assert asked.exit_code == 1 and "Aborted" in asked.output
    assert server.messages == []


def test_rate_and_concurrency_are_stored_and_reused_by_a_bare_resume(started) -> None:
    project, issue, _ = started
    config = load_config(project / "newsletter.yaml")
    [before] = campaign_status(config, issue)
    assert (before.campaign.rate, before.campaign.concurrency) == ("100/s", 2)
    result = _invoke(project, "send", str(issue), "--yes")
    assert result.exit_code == 0, result.output
    [after] = campaign_status(config, issue)
    assert (after.campaign.rate, after.campaign.concurrency) == ("100/s", 2)
    assert after.campaign.runs == 2 and after.counts.sent == len(READERS)
    status = _invoke(project, "status", str(issue))
    assert "rate 100/s, concurrency 2" in status.output


def test_values_given_again_replace_the_stored_ones(started) -> None:
    project, issue, server = started
    config = load_config(project / "newsletter.yaml")
    stop = threading.Event()
    stop.set()
    campaign = Campaign.prepare(config, issue)  # no transport given: the stored one
    try:
        campaign.run(concurrency=3, stop=stop)  # no rate given: the stored one
    finally:
        campaign.close()
    [row] = campaign_status(config, issue)
    assert (row.campaign.rate, row.campaign.concurrency) == ("100/s", 3)
    assert row.campaign.transport_url == url_without_secrets(server.url())
    # `--rate none` lifts the stored limit (a bare resume would keep it).
    result = _invoke(project, "send", str(issue), "--yes", "--rate", "none")
    assert result.exit_code == 0, result.output
    [row] = campaign_status(config, issue)
    assert (row.campaign.rate, row.campaign.concurrency) == (None, 3)
    assert row.counts.sent == len(READERS)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "smtp://ann:hunter2@mail.example.com:587?tls=starttls",
            "smtp://ann@mail.example.com:587?tls=starttls",
        ),
        ("mailgun:mg.example.com?api_key=key-123&region=eu", "mailgun:mg.example.com?region=eu"),
        ("sendgrid:?token=SG.abc", "sendgrid:"),
        ("smtp://h:25?tls=none&password=x&timeout=5", "smtp://h:25?tls=none&timeout=5"),
        ("ses:eu-west-1?secret=abc&configuration_set=cs", "ses:eu-west-1?configuration_set=cs"),
        ("outbox:./outbox", "outbox:./outbox"),
        (
            "smtp://127.0.0.1:2525?tls=none&cafile=/tmp/ca.pem",
            "smtp://127.0.0.1:2525?tls=none&cafile=/tmp/ca.pem",
        ),
    ],
)
def test_the_stored_transport_url_has_no_secrets(url: str, shown: str) -> None:
    assert url_without_secrets(url, {}) == shown


def test_the_printed_resume_command_resumes_when_run_verbatim(project: Path) -> None:
    """The issue's scenario: started with --transport, interrupted, resumed by pasting the
    printed command into a shell: the rest goes to the same relay, none to the outbox."""
    config = load_config(project / "newsletter.yaml")
    readers = [f"reader{i:02d}@example.net" for i in range(12)]
    with SubscriberStore.for_config(config) as store:
        for address in readers:
            store.add(address)
    issue = next((project / "issues").glob("*.yaml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    other = project.parent / f"{project.name}-elsewhere"
    other.mkdir()
    with SmtpServer(faults=[fault("slow", "reader03@*", delay=1.0)]) as server:
        first = subprocess.Popen(
            [
                *(sys.executable, "-m", "newsletter", "--config", str(project / "newsletter.yaml")),
                *("send", str(issue), "--yes", "--transport", server.url()),
                *("--concurrency", "1", "--rate", "20/s"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=other,  # not the project folder: the command must name the configuration
        )
        server.wait_for(2, timeout=20)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=30)
        assert first.returncode == 130, out + err
        hint = next(line for line in out.splitlines() if "To resume, run:" in line)
        command = hint.split("To resume, run: ", 1)[1]
        sent_before = len(server.messages)
        assert 0 < sent_before < len(readers)
        assert shlex.split(command)[0] == "newsletter" and "--transport" not in command
        resumed = subprocess.run(
            ["bash", "-c", command],
            input="y\n",  # the confirmation question, answered as a person would
            capture_output=True,
            text=True,
            env=env,
            cwd=other,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        time.sleep(0.1)
        counts = server.count_by_recipient()
    assert sorted(counts) == readers and set(counts.values()) == {1}
    assert _outbox_files(project) == [] and _outbox_files(other) == []


def test_a_campaign_started_before_transports_were_stored_is_not_switched_silently(
    started,
) -> None:
    """A ledger from before this version has only the transport's description: a resume that
    would go elsewhere is refused too; the same transport given again resumes."""
    project, issue, server = started
    config = load_config(project / "newsletter.yaml")
    conn = connect(config.database)
    conn.execute("UPDATE campaigns SET transport_url = NULL, rate = NULL, concurrency = NULL")
    conn.close()
    bare = _invoke(project, "send", str(issue), "--yes")
    assert bare.exit_code == 1 and "this campaign was sent via smtp://127.0.0.1" in bare.output
    assert "outbox:" in bare.output and server.messages == [] and _outbox_files(project) == []
    again = _invoke(project, "send", str(issue), "--yes", "--transport", server.url())
    assert again.exit_code == 0, again.output
    assert sorted(r for m in server.messages for r in m.rcpt_tos) == READERS
