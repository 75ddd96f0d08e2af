"""QA faults in `newsletter bounces import`, run as a user runs it: only our one-line outcomes
on the terminal for mail no reader can parse, and a mailto unsubscribe whose subject a client
left percent-encoded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from newsletter import tokens
from newsletter.subscribers import SubscriberStore
from tests.support import bounce_mail as mail
from tests.support.bounce_project import send_example
from tests.support.cli_support import run
from tests.support.imap_server import PASSWORD, running_dovecot
from tests.support.serve_support import dump

READERS = ["reader0@example.net", "reader1@example.net"]
NEWSLETTER = Path(sys.executable).with_name("newsletter")


@pytest.mark.parametrize(
    "raw",
    [b"", bytes(range(256)) * 8, b"Subject: no sender\r\n\r\nhello\r\n"],
    ids=["empty", "random bytes", "no From"],
)
def test_unreadable_mail_gives_one_line_and_no_library_traceback(project, raw):
    send_example(project, READERS)
    (project / "odd.eml").write_bytes(raw)
    done = subprocess.run(
        [str(NEWSLETTER), "bounces", "import", "odd.eml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception in detector" not in done.stderr
    assert done.stderr == ""
    assert "odd.eml: ignored" in done.stdout


@pytest.mark.parametrize("subject", ["unsubscribe%20{token}", "Re: unsubscribe%20{token}"])
def test_a_percent_encoded_mailto_subject_unsubscribes(project, runner, subject):
    sent = send_example(project, READERS, "unsubscribe_mailto: leave@news.example.org\n")
    with SubscriberStore.for_config(sent.config) as store:
        subscriber_id = store.get(READERS[0]).id
    token = tokens.make_token(sent.secret, tokens.UNSUBSCRIBE, subscriber_id)
    raw = mail.unsubscribe_mail("leave@news.example.org", subject.format(token=token))
    (project / "leave.eml").write_bytes(raw)
    code, out = run(runner, project, "bounces", "import", "leave.eml")
    assert code == 0, out
    assert sent.statuses() == {READERS[0]: "unsubscribed", READERS[1]: "active"}


# ================================================= bounces fetch: what it may touch, folder names

PROCESSED = frozenset({"\\Seen", "NewsletterProcessed"})


@pytest.fixture
def dovecot(tmp_path):
    with running_dovecot(tmp_path / "dovecot") as server:
        yield server


@pytest.fixture
def fetch_sent(project, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    return send_example(project, READERS, "unsubscribe_mailto: leave@news.example.org\n")


HUMAN_REPLY = (
    b"From: Reader Zero <reader0@example.net>\r\n"
    b"To: bounces@news.example.org\r\n"
    b"Subject: Re: your newsletter\r\n"
    b"Message-ID: <human-1@example.net>\r\n"
    b"Date: Mon, 30 Nov 2026 03:00:00 +0000\r\n"
    b"\r\n"
    b"Thanks, loved the last issue. Can you write about DKIM next?\r\n"
)


def mixed_mail(sent) -> tuple[list[bytes], list[bytes]]:
    """(messages the fetch acts on, messages a person must see)."""
    acted = [
        mail.postfix_dsn(READERS[0], sent.token(READERS[0]), sent.message_id(READERS[0])),
        mail.auto_reply("rfc3834", READERS[1]),
    ]
    for_a_person = [
        HUMAN_REPLY,
        mail.unsubscribe_mail("leave@news.example.org", "please take me off your list"),
        mail.postfix_dsn("stranger@example.com", "", "not-ours@example.com"),
    ]
    return acted, for_a_person


@pytest.mark.parametrize("mode", ["flag", "move", "delete"])
def test_fetch_touches_only_what_it_acted_on(project, runner, dovecot, fetch_sent, mode):
    acted, for_a_person = mixed_mail(fetch_sent)
    dovecot.append(acted + for_a_person)
    args = {"flag": [], "move": ["--move-to", "Processed"], "delete": ["--delete"]}[mode]
    if mode == "move":
        dovecot.create("Processed")
    code, out = run(runner, project, "bounces", "fetch", *args, dovecot.url())
    assert code == 0, out
    assert "3 left unread in place for a person" in out
    inbox = dovecot.state()
    if mode == "flag":
        assert inbox == [(raw, PROCESSED) for raw in acted] + [
            (raw, frozenset()) for raw in for_a_person
        ]
    else:
        assert inbox == [(raw, frozenset()) for raw in for_a_person]
    if mode == "move":
        assert [raw for raw, _ in dovecot.state("Processed")] == acted
    assert fetch_sent.statuses() == {READERS[0]: "bounced", READERS[1]: "active"}
    # The next fetch reads what was left again (and still leaves it), nothing else.
    code, out = run(runner, project, "bounces", "fetch", *args, dovecot.url())
    assert code == 0, out
    assert out.splitlines()[-1].startswith("3 messages: 1 events, 2 ignored")


# The test's own oracle: the RFC 3501 5.1.3 forms, written out by hand.
FOLDERS = [("Ünïcode", "&ANw-n&AO8-code"), ("Verarbeität", "Verarbeit&AOQ-t")]


@pytest.mark.parametrize("mode", ["flag", "move", "dry-run"])
def test_non_ascii_folder_names_work(project, runner, dovecot, fetch_sent, mode):
    (source, source_utf7), (target, target_utf7) = FOLDERS
    dovecot.create(source_utf7)
    dovecot.create(target_utf7)
    acted, for_a_person = mixed_mail(fetch_sent)
    dovecot.append(acted + for_a_person[:1], mailbox=source_utf7)
    args = {"flag": [], "move": ["--move-to", target], "dry-run": ["--dry-run"]}[mode]
    code, out = run(runner, project, "bounces", "fetch", *args, dovecot.url(source))
    assert code == 0, out
    assert "1 left unread in place for a person" in out
    left = [raw for raw, flags in dovecot.state(source_utf7) if not flags]
    moved = [raw for raw, _ in dovecot.state(target_utf7)]
    if mode == "move":
        assert (left, moved) == (for_a_person[:1], acted)
    elif mode == "flag":
        assert (left, moved) == (for_a_person[:1], [])
    else:
        assert (left, moved) == (acted + for_a_person[:1], [])


# ========================================== after erasure, a late bounce keeps no plaintext address


def _database_text(sent) -> str:
    return "\n".join(dump(sent.config.database)).lower()


@pytest.mark.parametrize(
    "shape",
    ["postfix with VERP", "exchange without VERP", "non-standard", "gmail soft"],
)
def test_a_bounce_after_erasure_keeps_no_plaintext_address(project, runner, shape, database):
    sent = send_example(project, READERS, database=database)
    gone = READERS[0]
    bounce = {
        "postfix with VERP": lambda: mail.postfix_dsn(
            gone, sent.token(gone), sent.message_id(gone)
        ),
        "exchange without VERP": lambda: mail.exchange_dsn(gone, "", sent.message_id(gone)),
        "non-standard": lambda: mail.qmail_bounce(gone, ""),
        "gmail soft": lambda: mail.gmail_dsn(gone, "", "x@y", status="4.2.2"),
    }[shape]()
    code, out = run(runner, project, "subscribers", "remove", gone)
    assert code == 0, out
    assert gone not in _database_text(sent)
    (project / "late.eml").write_bytes(bounce)
    code, out = run(runner, project, "bounces", "import", "late.eml")
    assert code == 0, out
    assert sent.feedback_rows() == 1  # recorded, so a second import changes nothing ...
    assert gone not in _database_text(sent)  # ... but not whose address it was
    code, out = run(runner, project, "bounces", "import", "late.eml")
    assert "already recorded" in out and sent.feedback_rows() == 1
