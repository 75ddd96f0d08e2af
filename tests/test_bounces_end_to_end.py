"""The whole loop with real parts: send with VERP to an aiosmtpd relay, bounce mail written
from what the relay received (a DSN quoting the delivered message, an ARF report), imported with
`newsletter bounces import` from a Maildir, and the next campaign skips exactly the bounced and
the complained."""

from __future__ import annotations

import mailbox
import shutil

from newsletter.campaign import send_issue
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import verp_token_from_address
from tests.support import bounce_mail as mail
from tests.support.cli_support import run
from tests.support.smtp_servers import SmtpServer


def test_bounce_mail_fed_back_makes_the_next_campaign_skip_them(project, runner, database):
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(f"bounces:\n  address: {mail.BOUNCE_BASE}\ndatabase: {database}\n")
    config = load_config(project / "newsletter.yaml")
    example = next((project / "issues").glob("*.yaml"))
    second = project / "issues" / "2026-12-09-next-issue.yaml"
    shutil.copy(example, second)
    readers = ["gone@example.net", "angry@example.net", "away@example.net", "fine@example.net"]
    with SubscriberStore.for_config(config) as store:
        for email in readers:
            store.add(email)

    with SmtpServer() as relay:
        assert send_issue(config, example, transport=relay.url()).ok
        delivered = {m.rcpt_tos[0]: m for m in relay.messages}
    assert set(delivered) == set(readers)

    def token(email: str) -> str:
        value = verp_token_from_address(delivered[email].mail_from)
        assert value is not None, delivered[email].mail_from
        return value

    def message_id(email: str) -> str:
        return delivered[email].parsed()["Message-ID"].strip("<>")

    box = mailbox.Maildir(project / "Bounces")
    box.add(
        mail.postfix_dsn(
            "gone@example.net",
            token("gone@example.net"),
            message_id("gone@example.net"),
            quoted=delivered["gone@example.net"].data,
        )
    )
    box.add(
        mail.arf_report(
            "angry@example.net",
            token("angry@example.net"),
            message_id("angry@example.net"),
            shape="yahoo",
        )
    )
    box.add(mail.auto_reply("rfc3834", "away@example.net"))

    code, out = run(runner, project, "bounces", "import", str(project / "Bounces"))
    assert code == 0, out
    assert "gone@example.net: bounced (dsn 5.1.1: smtp; 550 5.1.1" in out
    assert "angry@example.net: unsubscribed (complained) (arf abuse" in out

    with SmtpServer() as relay:
        assert send_issue(config, second, transport=relay.url()).ok
        assert sorted(m.rcpt_tos[0] for m in relay.messages) == [
            "away@example.net",
            "fine@example.net",
        ]
