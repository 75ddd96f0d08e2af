"""`newsletter bounces import` as a user runs it: .eml files, mbox files and Maildir folders of
bounce mail after a real send (outbox, VERP), applied to the real SQLite database."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from tests.support import bounce_mail as mail
from tests.support.bounce_project import SentIssue, send_example
from tests.support.cli_support import run

READERS = [f"reader{i}@example.net" for i in range(6)]


def _without_verp(raw: bytes) -> bytes:
    """The bounce as a forwarding server might leave it: no envelope recipient headers."""
    drop = (b"Delivered-To:", b"X-Original-To:", b"To:", b"Envelope-to:")
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(drop))


def bounce_set(sent: SentIssue) -> list[tuple[str, bytes]]:
    """(what it should do, message) for one of each kind, each mapped a different way."""
    r = READERS
    return [
        # VERP token from Delivered-To
        ("bounced", mail.postfix_dsn(r[0], sent.token(r[0]), sent.message_id(r[0]))),
        # complaint with the recipient redacted: VERP in Original-Mail-From only
        ("complained", mail.arf_report(r[1], sent.token(r[1]), "elsewhere@x", shape="yahoo")),
        # no VERP at all: the original's Message-ID maps it
        ("bounced", _without_verp(mail.exchange_dsn(r[2], "", sent.message_id(r[2])))),
        # mailbox full: a soft bounce, recorded
        ("soft", mail.gmail_dsn(r[3], sent.token(r[3]), sent.message_id(r[3]), status="4.2.2")),
        # a non-standard bounce naming only the address
        ("bounced", _without_verp(mail.qmail_bounce(r[4], ""))),
        ("ignored", mail.auto_reply("exchange-oof", r[5])),
    ]


EXPECTED = {
    READERS[0]: "bounced",
    READERS[1]: "complained",
    READERS[2]: "bounced",
    READERS[3]: "active",
    READERS[4]: "bounced",
    READERS[5]: "active",
}


def write_as(kind: str, folder: Path, messages: list[bytes]) -> list[str]:
    """The messages as .eml files, one mbox file or one Maildir folder; the CLI arguments."""
    if kind == "eml":
        paths = []
        for i, raw in enumerate(messages):
            (folder / f"{i}.eml").write_bytes(raw)
            paths.append(str(folder / f"{i}.eml"))
        return paths
    if kind == "mbox":
        box = mailbox.mbox(folder / "bounces.mbox")
        for raw in messages:
            box.add(raw)
        box.close()
        return [str(folder / "bounces.mbox")]
    if kind == "maildir":
        box = mailbox.Maildir(folder / "Maildir")
        for raw in messages:
            box.add(raw)
        return [str(folder / "Maildir")]
    # a mix: half in a Maildir, the rest as .eml files
    return write_as("maildir", folder, messages[:3]) + write_as("eml", folder, messages[3:])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["eml", "mbox", "maildir", "mix"])
def test_import_applies_each_kind_once_and_dry_run_changes_nothing(project, runner, kind, database):
    sent = send_example(project, READERS, database=database)
    folder = project / "mail"
    folder.mkdir()
    paths = write_as(kind, folder, [raw for _, raw in bounce_set(sent)])
    before_files = snapshot(folder)

    code, out = run(runner, project, "bounces", "import", "--dry-run", *paths)
    assert code == 0, out
    assert set(sent.statuses().values()) == {"active"} and sent.feedback_rows() == 0
    assert snapshot(folder) == before_files
    assert "dry run" in out and "6 messages: 5 events, 1 ignored (1 auto-replies)" in out

    code, out = run(runner, project, "bounces", "import", *paths)
    assert code == 0, out
    assert sent.statuses() == EXPECTED
    lines = out.splitlines()
    assert len(lines) == 7  # one per message, then the summary
    assert any(f"{READERS[0]}: bounced (dsn 5.1.1: smtp; 550 5.1.1" in line for line in lines)
    assert any(f"{READERS[1]}: unsubscribed (complained) (arf abuse" in line for line in lines)
    assert any(READERS[3] in line and "soft bounce 1 of 3" in line for line in lines)
    assert any("ignored: auto-reply (X-Auto-Response-Suppress: All)" in line for line in lines)
    assert snapshot(folder) == before_files  # reading never changes the files
    recorded = sent.feedback_rows()

    code, again = run(runner, project, "bounces", "import", *paths)
    assert code == 0, again
    assert sent.statuses() == EXPECTED and sent.feedback_rows() == recorded
    assert [": already recorded (" in line for line in again.splitlines()[:6]].count(True) == 5


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda f: f / "missing.mbox", "no such file or folder"),
        (lambda f: (f / "plain").mkdir() or f / "plain", "not a Maildir"),
    ],
    ids=["missing path", "folder that is not a Maildir"],
)
def test_a_bad_path_applies_nothing(project, runner, make_bad, message, database):
    sent = send_example(project, READERS, database=database)
    good = project / "good.eml"
    good.write_bytes(mail.postfix_dsn(READERS[0], sent.token(READERS[0]), "x@y"))
    bad = make_bad(project)
    code, out = run(runner, project, "bounces", "import", str(good), str(bad))
    assert code == 1 and message in out and str(bad) in out
    assert set(sent.statuses().values()) == {"active"} and sent.feedback_rows() == 0


def test_an_unreadable_file_applies_nothing(project, runner, database):
    sent = send_example(project, READERS, database=database)
    good = project / "good.eml"
    good.write_bytes(mail.postfix_dsn(READERS[0], sent.token(READERS[0]), "x@y"))
    loop = project / "loop.eml"
    loop.symlink_to(loop)  # opening it fails (ELOOP), whoever runs the test, root included
    code, out = run(runner, project, "bounces", "import", str(good), str(loop))
    assert code == 1 and f"{loop}: cannot read" in out
    assert set(sent.statuses().values()) == {"active"} and sent.feedback_rows() == 0
