"""Segments and tags as a user runs them: `subscribers tag/untag/show/list --segment`, and
`send --segment` checked by who really receives the issue (the outbox's files, a loopback SMTP
server), across resumes, `--include-new`, several segments of one issue and an old database."""

from __future__ import annotations

import email
import email.policy
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest
from cli_support import run
from click.testing import CliRunner
from db_support import use_database
from smtp_servers import SmtpServer

from newsletter.campaign import Campaign
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore

SEGMENTS = """\
segments:
  oslo-pros: 'fields.city == "Oslo" and "pro" in tags'
  broken: '"pro" in tags and'
  typo: 'fields.ctiy == "Oslo"'
"""


@pytest.fixture
def readers(project: Path, database: str) -> Path:
    """Six people: two active Oslo pros on the default list, and four who are not; on SQLite
    and on PostgreSQL."""
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as fh:
        fh.write(SEGMENTS)
    use_database(project, database)  # after the segments: their line numbers are checked
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ada@example.net", fields={"city": "Oslo"})
        store.add("bjorn@example.net", fields={"city": "OSLO"})
        store.add("chloe@example.net", fields={"city": "Bergen"})
        store.add("dan@example.net", fields={"city": "Oslo"})
        erin = store.add("erin@example.net", fields={"city": "Oslo"})
        store.unsubscribe(erin.id, "cli")
        store.add("fay@example.net", fields={"city": "Oslo"}, lists=["other"])
    for address in ("ada", "bjorn", "chloe", "erin", "fay"):
        code, out = run(CliRunner(), project, "subscribers", "tag", f"{address}@example.net", "Pro")
        assert code == 0, out
    return project


def cli(project: Path, *args: str) -> tuple[int, str]:
    return run(CliRunner(), project, *args)


def issue_of(project: Path) -> str:
    return str(next((project / "issues").glob("*.yaml")))


def received(project: Path) -> Counter[str]:
    """How many copies each address got in the outbox."""
    outbox = project / "outbox"
    files = sorted(outbox.glob("*.eml")) if outbox.exists() else []
    return Counter(
        str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["To"])
        for f in files
    )


@pytest.mark.parametrize(
    "segment",
    [
        "oslo-pros",
        'fields.city == "Oslo" and "pro" in tags',
        "fields.CITY=='Oslo' and ('pro' in tags)",
    ],
)
def test_send_to_a_segment_mails_exactly_its_active_members(readers, segment):
    code, out = cli(readers, "send", issue_of(readers), "--segment", segment, "--yes")
    assert code == 0, out
    assert received(readers) == {"ada@example.net": 1, "bjorn@example.net": 1}
    code, out = cli(readers, "status", issue_of(readers))
    assert 'fields.city == "Oslo" and "pro" in tags' in out and "sent 2" in out


def test_the_question_and_the_list_say_who(readers):
    code, out = cli(readers, "subscribers", "list", "--segment", "oslo-pros")
    assert code == 0, out
    shown = [line.split()[0] for line in out.splitlines()[1:-1]]
    # list shows every status and list; send takes the active members of its list
    assert shown == ["ada@example.net", "bjorn@example.net", "erin@example.net", "fay@example.net"]
    assert out.splitlines()[-1] == "4 subscribers matching the segment"
    code, out = cli(
        readers,
        "subscribers",
        "list",
        "--segment",
        "oslo-pros",
        "--status",
        "active",
        "--list",
        "default",
    )
    assert out.splitlines()[-1] == "2 subscribers matching the segment"
    code, out = run(CliRunner(), readers, "send", issue_of(readers), "--segment", "oslo-pros")
    assert "Send '" in out and "to 2 subscribers of list default, segment oslo-pros (" in out
    assert code != 0 and received(readers) == {}  # not confirmed: nothing sent
    code, out = cli(readers, "send", issue_of(readers), "--segment", "oslo-pros", "--dry-run")
    assert code == 0 and "Dry run: built 2 messages" in out and received(readers) == {}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--segment", 'fields.city = "Oslo"'], ["column 13", "(equality is ==)", "^"]),
        (["--segment", '"pro" in tag'], ["column 10", "unknown name 'tag' (did you mean 'tags'?)"]),
        (["--segment", "fields.ctiy == 'x'"], ["no subscriber has a field 'ctiy'"]),
        (["--segment", "broken"], ["newsletter.yaml:7: segment 'broken': column 18", "ends too"]),
        (["--segment", "typo"], ["newsletter.yaml:8: segment 'typo': column 1", "'ctiy'"]),
        (["--segment", "oslo-pro"], ["no segment named 'oslo-pro'", "did you mean 'oslo-pros'"]),
        (["--segment", 'fields.city == "Nowhere"'], ["nobody to send to", "segment"]),
    ],
)
@pytest.mark.parametrize("command", ["send", "list"])
def test_a_bad_segment_is_one_clear_error_and_nothing_is_sent(readers, args, expected, command):
    if command == "send":
        code, out = cli(readers, "send", issue_of(readers), "--yes", *args)
    else:
        code, out = cli(readers, "subscribers", "list", *args)
        if "nobody to send to" in expected:
            assert code == 0 and out.splitlines()[-1] == "0 subscribers matching the segment"
            return
    assert code == 1
    for part in expected:
        assert part in out
    assert received(readers) == {}


def test_two_segments_and_the_whole_list_are_three_campaigns_and_nobody_gets_two(readers):
    issue = issue_of(readers)
    assert cli(readers, "send", issue, "--segment", "oslo-pros", "--yes")[0] == 0
    code, out = cli(readers, "send", issue, "--segment", 'fields.city == "Oslo"', "--yes")
    assert code == 0, out
    assert received(readers) == {"ada@example.net": 1, "bjorn@example.net": 1, "dan@example.net": 1}
    code, out = cli(readers, "send", issue, "--yes")  # the whole list: only chloe is left
    assert code == 0, out
    assert received(readers) == {
        f"{name}@example.net": 1 for name in ("ada", "bjorn", "chloe", "dan")
    }
    code, out = cli(readers, "status", issue)
    heads = [line for line in out.splitlines() if " -> " in line]
    assert [h.split(" -> ")[1].split(":")[0] for h in heads] == [
        "list default",
        'list default, segment fields.city == "Oslo"',
        'list default, segment oslo-pros (fields.city == "Oslo" and "pro" in tags)',
    ]
    code, out = cli(readers, "status", issue, "--recipients", "--segment", "oslo-pros")
    assert code == 0 and "ada@example.net" in out and "dan@example.net" not in out


def test_resume_keeps_the_snapshot_and_include_new_evaluates_the_segment_again(readers):
    """The campaign's rows are who the segment was when it started; a bare `send` resumes that
    segment (not the whole list); --include-new adds whoever matches now."""
    config = load_config(readers / "newsletter.yaml")
    issue = issue_of(readers)
    with SmtpServer() as server:
        stop = threading.Event()
        stop.set()  # the snapshot is taken, then the run stops before sending anyone
        campaign = Campaign.prepare(config, issue, segment="oslo-pros", transport=server.url())
        try:
            report = campaign.run(stop=stop)
        finally:
            campaign.close()
        assert report.interrupted
        assert report.resume_hint.endswith(" --list default --segment oslo-pros")
        assert cli(readers, "subscribers", "untag", "bjorn@example.net", "pro")[0] == 0
        assert cli(readers, "subscribers", "tag", "dan@example.net", "PRO")[0] == 0

        code, out = cli(readers, "send", issue, "--yes")
        assert code == 0, out
        assert "Resuming the campaign to list default, segment oslo-pros" in out
        assert "1 subscriber joined list default, segment oslo-pros" in out
        assert "--include-new" in out
        server.wait_for(2)
        assert server.count_by_recipient() == {"ada@example.net": 1, "bjorn@example.net": 1}

        code, out = cli(readers, "send", issue, "--include-new", "--yes")
        assert code == 0, out
        server.wait_for(3)
        assert server.count_by_recipient() == {
            "ada@example.net": 1,
            "bjorn@example.net": 1,
            "dan@example.net": 1,
        }


def test_a_named_segment_whose_definition_changed_is_refused_on_resume(readers):
    issue = issue_of(readers)
    assert cli(readers, "send", issue, "--segment", "oslo-pros", "--yes")[0] == 0
    config = readers / "newsletter.yaml"
    config.write_text(
        config.read_text().replace('"pro" in tags\'', '"vip" in tags\'', 1), encoding="utf-8"
    )
    code, out = cli(readers, "send", issue, "--segment", "oslo-pros", "--yes")
    assert code == 1
    assert 'was started with fields.city == "Oslo" and "pro" in tags' in out
    assert 'now says fields.city == "Oslo" and "vip" in tags' in out
    assert "newsletter.yaml:6: segment 'oslo-pros'" in out
    assert received(readers) == {"ada@example.net": 1, "bjorn@example.net": 1}


def test_several_unfinished_segments_need_naming_on_resume(readers):
    config = load_config(readers / "newsletter.yaml")
    issue = issue_of(readers)
    for segment in ("oslo-pros", 'fields.city == "Bergen"'):
        stop = threading.Event()
        stop.set()
        campaign = Campaign.prepare(config, issue, segment=segment)
        try:
            report = campaign.run(stop=stop)
        finally:
            campaign.close()
        if segment != "oslo-pros":  # an expression is named as written canonically, quoted
            assert report.resume_hint.endswith(""" --segment 'fields.city == "Bergen"'""")
    code, out = cli(readers, "send", issue, "--yes")
    assert code == 1
    assert "2 unfinished campaigns to segments of list default" in out
    assert "--segment 'oslo-pros'" in out and "--segment 'fields.city == \"Bergen\"'" in out
    assert received(readers) == {}


@pytest.mark.engine("sqlite")
def test_a_campaign_from_before_segments_resumes_as_the_whole_list(readers):
    """An old database: the campaign tables as they were before segments, one campaign half
    sent. The migration keeps it (segment NULL: the whole list) and its rows. SQLite only:
    an old SQLite file's schema (PostgreSQL starts at the current one)."""
    from newsletter.campaign.ledger import MIGRATIONS
    from newsletter.db import connect, migrate

    config = load_config(readers / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        ada, chloe = store.get("ada@example.net"), store.get("chloe@example.net")
    from newsletter.issue import load_issue

    slug = load_issue(Path(issue_of(readers))).slug
    conn = connect(config.database)
    migrate(conn, "campaigns", MIGRATIONS[:3])  # the schema before segments
    conn.execute(
        "INSERT INTO campaigns (issue_slug, list_name, subject, transport_url)"
        " VALUES (?, 'default', 'old', 'outbox:./outbox')",
        (slug,),
    )
    conn.executemany(
        "INSERT INTO campaign_recipients (campaign_id, subscriber_id, status) VALUES (1, ?, ?)",
        [(ada.id, "sent"), (chloe.id, "due")],
    )
    # Tables of other components that point at campaigns (and at them) keep their rows.
    conn.execute(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY,"
        " campaign_id INTEGER REFERENCES campaigns(id) ON DELETE CASCADE, text TEXT)"
    )
    conn.execute(
        "CREATE TABLE note_marks (note_id INTEGER REFERENCES notes (id) ON DELETE CASCADE)"
    )
    conn.execute("INSERT INTO notes (campaign_id, text) VALUES (1, 'kept')")
    conn.execute("INSERT INTO note_marks (note_id) VALUES (1)")
    conn.close()
    code, out = cli(readers, "send", issue_of(readers), "--yes")
    assert code == 0, out
    assert received(readers) == {"chloe@example.net": 1}
    code, out = cli(readers, "status", issue_of(readers))
    assert f"{slug} -> list default: done" in out and "sent 2" in out
    with sqlite3.connect(config.database) as check:
        assert check.execute("SELECT segment FROM campaigns").fetchall() == [(None,)]
        assert check.execute("SELECT campaign_id, text FROM notes").fetchall() == [(1, "kept")]
        assert check.execute("SELECT note_id FROM note_marks").fetchall() == [(1,)]
        assert check.execute("PRAGMA foreign_key_check").fetchall() == []
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_tag_untag_and_show(readers):
    code, out = cli(readers, "subscribers", "tag", "dan@example.net", "ADA@example.net", "Beta")
    assert code == 0 and "tagged 2 (dan@example.net, ada@example.net): beta" in out
    code, out = cli(readers, "subscribers", "tag", "ada@example.net", "beta")
    assert code == 0 and "1 already had beta: ada@example.net" in out
    code, out = cli(readers, "subscribers", "show", "ada@example.net")
    assert "tags:     beta, pro" in out
    code, out = cli(readers, "subscribers", "untag", "ada@example.net", "BETA")
    assert code == 0 and "untagged 1 (ada@example.net): beta" in out
    code, out = cli(readers, "subscribers", "show", "chloe@example.net")
    assert "tags:     pro" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tag", "ada@example.net", "nobody@example.net", "vip"], "no subscriber nobody@example"),
        (["tag", "ada@example.net", "two words"], "invalid tag 'two words'"),
        (["tag", "ada@example.net", "a|b"], "invalid tag 'a|b'"),
        (["untag", "not-an-address", "pro"], "no subscriber not-an-address"),
        (["tag", "vip"], "give one or more addresses and then the tag"),
    ],
)
def test_bad_tag_commands_change_nothing(readers, args, message):
    code, out = cli(readers, "subscribers", *args)
    assert code != 0 and message in out
    code, out = cli(readers, "subscribers", "show", "ada@example.net")
    assert "tags:     pro" in out
