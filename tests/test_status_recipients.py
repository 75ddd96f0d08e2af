"""See who, and why (issue #9.8): `status ISSUE --recipients [STATE]`, `send --dry-run` failing,
`send --test A --test B`.

The campaign is sent to a real SMTP server on loopback whose faults refuse, bounce and defer
some recipients; the listing must say exactly who is in which state and the server's reply.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database
from smtp_servers import SmtpServer, fault

from newsletter.campaign import RetryPolicy, send_issue
from newsletter.campaign.recipients import spreadsheet_safe
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore

OK = ["ann@example.net", "=1+2@example.net", "-cmd@example.net", "+x@example.net"]
FAULTS = {
    "gone@example.net": ("550", "bounced", "550 5.1.1"),
    "spam@example.net": ("554", "failed", "554 5.7.1"),
    "busy@example.net": ("451", "deferred", "451 4.3.0"),
}
EXPECTED = {
    "sent": sorted(OK),
    "bounced": ["gone@example.net"],
    "failed": ["spam@example.net"],
    "deferred": ["busy@example.net"],
    "due": [],
    "all": sorted([*OK, *FAULTS]),
}


@pytest.fixture
def sent(project: Path, database: str):
    config = load_config(use_database(project, database) / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for address in [*OK, *FAULTS]:
            store.add(address)
    issue = next((project / "issues").glob("*.yaml"))
    faults = [fault(kind, address) for address, (kind, _, _) in FAULTS.items()]  # type: ignore[arg-type]
    with SmtpServer(faults=faults) as server:
        send_issue(
            config,
            issue,
            transport=server.url(),
            retry=RetryPolicy(base_delay=0.02, max_delay=0.05),
        )

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--config", str(project / "newsletter.yaml"), *args])

    return invoke, issue, config


@pytest.mark.parametrize("state", list(EXPECTED))
def test_recipients_in_each_state_with_their_reply(sent, state: str) -> None:
    invoke, issue, _ = sent
    result = invoke("status", str(issue), "--recipients", state, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["list"] == "default"
    people = doc["recipients"]
    assert sorted(p["email"] for p in people) == EXPECTED[state]
    for p in people:
        assert p["state"] in EXPECTED and p["time"]
        if p["email"] in FAULTS:
            _, expected_state, reply = FAULTS[p["email"]]
            assert p["state"] == expected_state and p["last_reply"].startswith(reply)
            assert p["attempts"] == (3 if expected_state == "deferred" else 1)
        else:
            assert p["state"] == "sent" and p["last_reply"].startswith("250")


def test_csv_is_spreadsheet_safe_and_parses_back(sent) -> None:
    invoke, issue, _ = sent
    result = invoke("status", str(issue), "--recipients", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["email", "state", "attempts", "last_reply", "time"]
    cells = {r[0]: r for r in rows[1:]}
    # Addresses starting with a formula character arrive as text: a leading apostrophe.
    assert {"'=1+2@example.net", "'-cmd@example.net", "'+x@example.net"} <= set(cells)
    assert "ann@example.net" in cells and len(cells) == len(EXPECTED["all"])
    assert cells["gone@example.net"][1:3] == ["bounced", "1"]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r)


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("250 2.0.0 OK", "250 2.0.0 OK"),
        ("a=b", "a=b"),
    ],
)
def test_formula_cells_are_neutralised(cell: str, shown: str) -> None:
    assert spreadsheet_safe(cell) == shown


def test_text_table_names_each_recipient_and_why(sent) -> None:
    invoke, issue, _ = sent
    result = invoke("status", str(issue), "--recipients", "failed")
    assert result.exit_code == 0
    [header, line] = result.stdout.splitlines()
    assert header.split()[:2] == ["email", "state"]
    assert line.startswith("spam@example.net") and "554 5.7.1 Message rejected as spam" in line
    assert "1 recipient of" in result.stderr and "in state failed" in result.stderr


def test_several_lists_need_list(sent) -> None:
    invoke, issue, config = sent
    with SubscriberStore.for_config(config) as store:
        store.add("other@example.net", lists=["weekly"])
    with SmtpServer() as server:
        send_issue(config, issue, list_name="weekly", transport=server.url())
    both = invoke("status", str(issue), "--recipients")
    assert both.exit_code == 1 and "several lists (default, weekly)" in both.output
    assert "--list" in both.output and "Traceback" not in both.output
    weekly = invoke("status", str(issue), "--recipients", "--list", "weekly", "--format", "json")
    assert [p["email"] for p in json.loads(weekly.stdout)["recipients"]] == ["other@example.net"]
    missing = invoke("status", str(issue), "--recipients", "--list", "nope")
    assert missing.exit_code == 1 and "it was sent to: default, weekly" in missing.output
    bad_state = invoke("status", str(issue), "--recipients", "lost")
    assert bad_state.exit_code == 2 and "'lost' is not one of" in bad_state.output


def test_dry_run_fails_when_a_message_cannot_be_built(project: Path) -> None:
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ann@example.net")
        jorg = store.add("jorg@example.net")
        with store.transaction() as conn:  # as stored before the address rule: needs SMTPUTF8
            conn.execute(
                "UPDATE subscribers SET email = 'jörg@example.net' WHERE id = ?", (jorg.id,)
            )
    issue = next((project / "issues").glob("*.yaml"))
    result = CliRunner().invoke(
        main, ["--config", str(project / "newsletter.yaml"), "send", str(issue), "--dry-run"]
    )
    assert result.exit_code == 1, result.output
    assert "built 1 message," in result.stdout
    assert "1 message could not be built" in result.stdout
    assert "jörg@example.net:" in result.stdout
    assert "Traceback" not in result.output


def test_each_test_address_gets_its_own_copy(project: Path) -> None:
    issue = next((project / "issues").glob("*.yaml"))
    addresses = ["a@example.net", "b@example.net", "c@example.net"]
    with SmtpServer() as server:
        result = CliRunner().invoke(
            main,
            [
                *("--config", str(project / "newsletter.yaml"), "send", str(issue)),
                *(arg for a in addresses for arg in ("--test", a)),
                *("--transport", server.url()),
            ],
        )
        assert result.exit_code == 0, result.output
        assert server.count_by_recipient() == {a: 1 for a in addresses}
        ids = set()
        for address in addresses:
            [msg] = server.parsed(address)
            assert msg["To"] == address and msg["Subject"].startswith("[TEST] ")
            ids.add(msg["Message-ID"])
        assert len(ids) == 3  # each its own message
    for address in addresses:
        assert f"sent to {address} via" in result.stdout


def test_one_copy_per_address_whatever_its_case_and_an_issue_named_by_its_slug(
    project: Path,
) -> None:
    slug = next((project / "issues").glob("*.yaml")).stem
    with SmtpServer() as server:
        result = CliRunner().invoke(
            main,
            [
                *("--config", str(project / "newsletter.yaml"), "send", slug),
                *("--test", "a@example.net", "--test", "A@Example.NET", "--test", "b@example.net"),
                *("--transport", server.url()),
            ],
        )
        assert result.exit_code == 0, result.output
        assert server.count_by_recipient() == {"a@example.net": 1, "b@example.net": 1}


def test_a_refused_test_copy_is_named_and_fails_the_command(project: Path) -> None:
    issue = next((project / "issues").glob("*.yaml"))
    with SmtpServer(faults=[fault("550", "gone@*")]) as server:
        result = CliRunner().invoke(
            main,
            [
                *("--config", str(project / "newsletter.yaml"), "send", str(issue)),
                *("--test", "me@example.net", "--test", "gone@example.net"),
                *("--transport", server.url()),
            ],
        )
        assert server.count_by_recipient() == {"me@example.net": 1}
    assert result.exit_code == 1
    assert "sent to me@example.net" in result.stdout
    assert "to gone@example.net was NOT accepted" in result.stdout and "550 5.1.1" in result.stdout
    msg = email.message_from_bytes(server.messages[0].data, policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] ")
