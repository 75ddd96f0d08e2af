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
