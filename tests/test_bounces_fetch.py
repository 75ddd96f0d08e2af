"""`newsletter bounces fetch imaps://...` against a real Dovecot on loopback (TLS verified
through ?cafile=): what is applied, what happens to the messages on the server, and what a dry
run or a bad setup leaves unchanged."""

from __future__ import annotations

import pytest

from tests.support import bounce_mail as mail
from tests.support.bounce_project import send_example
from tests.support.cli_support import run
from tests.support.imap_server import PASSWORD, running_dovecot

READERS = [f"reader{i}@example.net" for i in range(4)]
PROCESSED = frozenset({"\\Seen", "NewsletterProcessed"})


@pytest.fixture
def dovecot(tmp_path):
    with running_dovecot(tmp_path / "dovecot") as server:
        yield server


@pytest.fixture
def sent(project, monkeypatch, database):
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    return send_example(project, READERS, database=database)


def messages(sent):
    r = READERS
    return [
        mail.postfix_dsn(r[0], sent.token(r[0]), sent.message_id(r[0])),
        mail.arf_report(r[1], sent.token(r[1]), sent.message_id(r[1]), shape="microsoft"),
        mail.auto_reply("rfc3834", r[2]),
    ]


EXPECTED = {
    READERS[0]: "bounced",
    READERS[1]: "complained",
    READERS[2]: "active",
    READERS[3]: "active",
}


def flags(dovecot, mailbox="INBOX"):
    return [f for _, f in dovecot.state(mailbox)]


def test_fetch_applies_flags_and_skips_what_it_processed(project, runner, dovecot, sent):
    dovecot.append(messages(sent))
    before = [body for body, _ in dovecot.state()]
    code, out = run(runner, project, "bounces", "fetch", dovecot.url())
    assert code == 0, out
    assert sent.statuses() == EXPECTED
    assert "3 messages: 2 events, 1 ignored (1 auto-replies)" in out
    assert flags(dovecot) == [PROCESSED] * 3  # flagged, never deleted
    assert [body for body, _ in dovecot.state()] == before

    dovecot.append([mail.gmail_dsn(READERS[3], sent.token(READERS[3]), "x@y")])
    code, out = run(runner, project, "bounces", "fetch", dovecot.url())
    assert code == 0, out
    assert out.splitlines()[-1].startswith("1 messages: 1 events")  # only the new one
    assert sent.statuses()[READERS[3]] == "bounced"
    assert flags(dovecot) == [PROCESSED] * 4


def test_dry_run_changes_nothing_on_the_server_or_in_the_database(project, runner, dovecot, sent):
    dovecot.append(messages(sent))
    before = dovecot.state()
    code, out = run(runner, project, "bounces", "fetch", "--dry-run", dovecot.url())
    assert code == 0, out
    assert "dry run" in out and "3 messages: 2 events" in out
    assert dovecot.state() == before  # not even \Seen
    assert set(sent.statuses().values()) == {"active"} and sent.feedback_rows() == 0


def test_move_to_moves_processed_messages(project, runner, dovecot, sent):
    dovecot.append(messages(sent))
    dovecot.create("Processed")
    code, out = run(runner, project, "bounces", "fetch", "--move-to", "Processed", dovecot.url())
    assert code == 0, out
    assert dovecot.state() == [] and len(dovecot.state("Processed")) == 3
    assert sent.statuses() == EXPECTED


def test_delete_only_when_asked(project, runner, dovecot, sent):
    dovecot.append(messages(sent))
    code, out = run(runner, project, "bounces", "fetch", "--delete", dovecot.url())
    assert code == 0, out
    assert dovecot.state() == [] and sent.statuses() == EXPECTED


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--move-to", "Nowhere", "{url}"], None, "no folder 'Nowhere'"),
        (["{url_no_ca}"], None, "certificate is not trusted"),
        (["{url_bad_ca}"], None, "cannot load cafile="),
        (["{url_wrong_folder}"], None, "cannot open folder 'Bounces'"),
        (["{url}"], "wrong", "login refused"),
        (["{url}"], "", "set NEWSLETTER_IMAP_PASSWORD"),
        (["{url_with_password}"], None, "holds a password"),
        (["{url_plain}"], None, "imaps://"),
        (["--move-to", "Processed", "--delete", "{url}"], None, "not both"),
    ],
    ids=[
        "missing move folder",
        "untrusted certificate",
        "unloadable cafile",
        "missing folder",
        "wrong password",
        "no password",
        "password in URL",
        "not imaps",
        "move and delete",
    ],
)
def test_a_bad_setup_is_a_clear_error_and_changes_nothing(
    project, runner, dovecot, sent, monkeypatch, args, env, message
):
    dovecot.append(messages(sent))
    before = dovecot.state()
    if env is not None:
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", env)
    url = dovecot.url()
    urls = {
        "url": url,
        "url_no_ca": url.split("?")[0],
        "url_bad_ca": url.split("?")[0] + "?cafile=/nonexistent/ca.pem",
        "url_wrong_folder": dovecot.url("Bounces"),
        "url_with_password": url.replace("@127", ":secret@127"),
        "url_plain": url.replace("imaps://", "imap://"),
    }
    code, out = run(runner, project, "bounces", "fetch", *[a.format(**urls) for a in args])
    assert code == 1 and message in out, out
    assert PASSWORD not in out and "secret" not in out.replace("secret@", "")
    assert dovecot.state() == before
    assert set(sent.statuses().values()) == {"active"} and sent.feedback_rows() == 0


@pytest.mark.parametrize("option", [[], ["--move-to", "Processed"], ["--delete"]])
def test_a_mailbox_larger_than_one_command_is_processed_whole(
    project, runner, dovecot, sent, option
):
    # 450 messages: more UIDs than one FETCH/STORE/MOVE command carries (200)
    dovecot.append(
        messages(sent) + [mail.auto_reply("x-autoreply", f"r{i}@example.org") for i in range(447)]
    )
    dovecot.create("Processed")
    code, out = run(runner, project, "bounces", "fetch", *option, dovecot.url())
    assert code == 0, out
    assert "450 messages: 2 events, 448 ignored (448 auto-replies)" in out
    assert sent.statuses() == EXPECTED
    if not option:
        assert flags(dovecot) == [PROCESSED] * 450
    else:
        assert dovecot.state() == []
        assert len(dovecot.state("Processed")) == (450 if option[0] == "--move-to" else 0)
