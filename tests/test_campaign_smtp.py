"""Campaigns against real SMTP servers on loopback (aiosmtpd), including a fault-injecting one.

What is checked is what users care about: what each recipient's server received (parsed),
what the ledger and the subscriber store say afterwards, and that a one-click POST to a
delivered message's List-Unsubscribe URL unsubscribes.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dkim
import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from db_support import use_database
from smtp_servers import SmtpServer, fault

from newsletter.campaign import Campaign, RetryPolicy, campaign_status, send_issue
from newsletter.campaign.ledger import Ledger
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.errors import CampaignPaused, TransportAuthError, TransportConnectError
from newsletter.issue import load_issue
from newsletter.mail.dkim import DkimSigner
from newsletter.subscribers import SubscriberStore

FAST_RETRY = RetryPolicy(base_delay=0.05, max_delay=0.3)


@pytest.fixture
def env(project: Path, database: str):
    config = load_config(use_database(project, database) / "newsletter.yaml")
    store = SubscriberStore.for_config(config)
    issue = next((project / "issues").glob("*.yaml"))
    yield config, store, issue
    store.close()


def add(store: SubscriberStore, *emails: str) -> None:
    for address in emails:
        local = address.split("@")[0]
        store.add(address, name=f"{local.title()} Ünïcode")


def rows_by_email(config, store: SubscriberStore, issue: Path) -> dict[str, dict]:
    conn = connect(config.database)
    ledger = Ledger(conn)
    campaign = ledger.find(load_issue(issue).slug, "default")
    assert campaign is not None
    rows = {store.get_by_id(r["subscriber_id"]).email: dict(r) for r in ledger.rows(campaign.id)}
    conn.close()
    return rows


def test_delivered_messages_are_complete_personalised_and_dkim_signed(env, project: Path) -> None:
    config, store, issue = env
    key = rsa.generate_private_key(65537, 2048)
    (project / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with (project / "newsletter.yaml").open("a") as f:
        f.write("dkim:\n  domain: example.org\n  selector: s1\n  private_key: dkim.pem\n")
    config = load_config(project / "newsletter.yaml")
    signer = DkimSigner.from_config(config.dkim)
    add(store, *(f"reader{i}@example.net" for i in range(8)))
    with SmtpServer() as server:
        report = send_issue(config, issue, transport=server.url(), concurrency=3)
        assert report.ok and report.tally.sent == 8
        assert server.connections == 3  # persistent connections, one per worker
        assert server.count_by_recipient() == {f"reader{i}@example.net": 1 for i in range(8)}
        subject = load_issue(issue).subject
        for delivered in server.messages:
            msg = delivered.parsed()
            sub = store.get(delivered.rcpt_tos[0])
            assert delivered.mail_from == "news@example.org"
            assert msg["To"].addresses[0].display_name == sub.name
            assert msg["Subject"] == subject
            assert msg["Message-ID"].endswith("@example.org>")
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            text, html = (p.get_content() for p in msg.iter_parts())
            assert f"Hello {sub.name}" in text and f"Hello {sub.name}" in html
            dnsfunc = lambda name, timeout=5: signer.dns_record().encode()  # noqa: E731
            assert dkim.verify(delivered.data, dnsfunc=dnsfunc)
            signed = re.search(rb"\bh=([^;]+);", delivered.data.replace(b"\r\n ", b"")).group(1)
            covered = {h.strip().lower() for h in signed.decode().split(":")}
            assert {
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "list-unsubscribe",
                "list-unsubscribe-post",
            } <= covered


def test_each_fault_ends_in_the_right_ledger_and_subscriber_state(env) -> None:
    config, store, issue = env
    add(
        store,
        "ok1@example.net",
        "cap@example.net",
        "busy@example.net",
        "full@example.net",
        "gone@example.net",
        "spam@example.net",
        "drop@example.net",
        "slow@example.net",
        "ok2@example.net",
    )
    faults = [
        fault("421", "cap@*", times=1),
        fault("451", "busy@*", times=1),
        fault("452", "full@*"),
        fault("550", "gone@*"),
        fault("554", "spam@*"),
        fault("drop", "drop@*", times=1),
        fault("slow", "slow@*", times=1, delay=2.0),
    ]
    with SmtpServer(faults=faults) as server:
        url = server.url(timeout=1)
        report = send_issue(config, issue, transport=url, concurrency=2, retry=FAST_RETRY)
        delivered = server.count_by_recipient()
        attempts = server.attempts
    rows = rows_by_email(config, store, issue)
    status = {email: row["status"] for email, row in rows.items()}
    assert status == {
        "ok1@example.net": "sent",
        "cap@example.net": "sent",  # 421 and a hang-up, then a new connection
        "busy@example.net": "sent",  # 451 once, retried in the run
        "full@example.net": "deferred",  # 452 every time: left for the next run
        "gone@example.net": "bounced",
        "spam@example.net": "failed",
        "drop@example.net": "sent",  # connection dropped mid-DATA: unknown fate, retried
        "slow@example.net": "sent",  # reply slower than the timeout: retried
        "ok2@example.net": "sent",
    }
    for retried in ("cap", "busy", "drop", "slow"):  # each fault hit once, then a retry
        assert rows[f"{retried}@example.net"]["attempts"] == 2, retried
        assert attempts[f"{retried}@example.net"] == 2, retried
    assert rows["full@example.net"]["attempts"] == 3
    assert rows["full@example.net"]["reply"].startswith("452")
    assert rows["gone@example.net"]["reply"].startswith("550 5.1.1")
    assert rows["spam@example.net"]["reply"].startswith("554")
    assert store.get("gone@example.net").status == "bounced"
    assert store.get("spam@example.net").status == "active"  # a refused message is no bounce
    assert store.get("full@example.net").status == "active"
    # Permanent failures are never retried; nobody got two copies.
    assert attempts["gone@example.net"] == 1 and attempts["spam@example.net"] == 1
    assert "gone@example.net" not in delivered and "full@example.net" not in delivered
    assert set(delivered.values()) == {1} and len(delivered) == 6
    assert not report.ok and report.tally.failed == 1 and report.tally.bounced == 1
    assert report.counts.deferred == 1
    assert "1 still deferred" in report.summary()


def test_status_and_exit_code_after_failures(env, project: Path) -> None:
    _, store, issue = env
    add(store, "ok@example.net", "gone@example.net")
    with SmtpServer(faults=[fault("550", "gone@*")]) as server:
        result = CliRunner().invoke(
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
    assert result.exit_code == 1, result.output
    assert "1 sent, 0 failed, 1 bounced" in result.stdout
    status = CliRunner().invoke(
        main, ["--config", str(project / "newsletter.yaml"), "status", str(issue)]
    )
    assert "sent 1, deferred 0, failed 0, bounced 1, unknown 0" in status.output


def test_a_dead_server_pauses_the_campaign_instead_of_burning_the_list(env) -> None:
    config, store, issue = env
    add(store, *(f"r{i:02d}@example.net" for i in range(30)))
    with SmtpServer(faults=[fault("554", "*")]) as server:
        with pytest.raises(CampaignPaused, match="5 failed deliveries in a row") as info:
            send_issue(
                config, issue, transport=server.url(), concurrency=2, max_failures_in_a_row=5
            )
        tried = sum(server.attempts.values())
    assert "554" in str(info.value) and f"send {issue} --list default" in str(info.value)
    assert 5 <= tried <= 5 + 2
    [status] = campaign_status(config, issue)
    assert status.campaign.state == "paused" and status.counts.due == 30 - tried


@contextmanager
def serving(config) -> Iterator[str]:
    from newsletter.web.public import create_app, listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_one_click_post_to_a_delivered_list_unsubscribe_url_unsubscribes(env) -> None:
    config, store, issue = env
    add(store, "ann@example.net", "ben@example.net")
    with SmtpServer() as server:
        send_issue(config, issue, transport=server.url())
        [msg] = server.parsed("ann@example.net")
    url = msg["List-Unsubscribe"].strip("<>")
    assert url.startswith(config.base_url + "/unsubscribe/")
    with serving(config) as base:
        local = base + url[len(config.base_url) :]
        response = httpx.post(local, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert store.get("ann@example.net").status == "unsubscribed"
    assert store.get("ben@example.net").status == "active"
    # A later issue (here: the same one on resume with new members) skips her.
    store.add("cy@example.net")
    with SmtpServer() as server:
        # A new server (another port): resuming through it is a switch, asked for explicitly.
        send_issue(config, issue, transport=server.url(), include_new=True, switch_transport=True)
        assert server.count_by_recipient() == {"cy@example.net": 1}


def test_unreachable_refused_login_and_bad_tls_stop_before_anyone_is_sent(env, project) -> None:
    config, store, issue = env
    add(store, "ann@example.net")
    runner = CliRunner()
    cfg = ["--config", str(project / "newsletter.yaml")]
    secret = "pa55-w0rd-never-shown"

    def send(url: str, password: str = secret):
        return runner.invoke(
            main,
            [*cfg, "send", str(issue), "--yes", "--transport", url],
            env={"NEWSLETTER_SMTP_PASSWORD": password},
        )

    from smtp_servers import free_port

    unreachable = send(f"smtp://someone@127.0.0.1:{free_port()}?tls=none&timeout=2")
    with SmtpServer(auth={"someone": "right"}, tls="starttls") as server:
        refused = send(server.url(user="someone"))
        # The server's self-signed certificate is not trusted without its cafile.
        untrusted = send(server.url(user="someone").split("&cafile=")[0])
        assert not server.messages
    for result in (unreachable, refused, untrusted):
        assert result.exit_code == 1, result.output
        # The setup warnings of `doctor` come first (a loopback relay: warnings only).
        lines = [ln for ln in result.output.splitlines() if ": warning: " not in ln]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert secret not in result.output and "Traceback" not in result.output
    assert "127.0.0.1" in unreachable.output
    assert "535" in refused.output or "login" in refused.output.lower()
    assert "certificate" in untrusted.output.lower()
    assert campaign_status(config, issue) == []  # nobody marked, no campaign started

    with pytest.raises((TransportConnectError, TransportAuthError)):
        Campaign.prepare(
            config, issue, transport=f"smtp://127.0.0.1:{free_port()}?tls=none&timeout=1"
        ).run()
