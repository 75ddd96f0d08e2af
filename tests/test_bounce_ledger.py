"""A hard bounce that comes back after the send (a DSN imported later) shows on the campaign's
row: `status` counts the reader as bounced once, the rate line agrees, and `status
--recipients bounced` names the reader with the reason. A complaint is not a bounce (the
message was delivered): its row stays sent."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.campaign.ledger import Ledger
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import secret_key, verp_token
from tests.support import bounce_mail as mail
from tests.support.bounce_project import SentIssue, send_example
from tests.support.cli_support import run
from tests.support.smtp_servers import SmtpServer, fault

READERS = ["ann@example.net", "bo@example.net", "cy@example.net"]
SLUG = "2026-11-25-microsoft-openai-partnership"

BOUNCES: dict[str, Callable[[SentIssue, str], bytes]] = {
    "postfix-verp": lambda s, r: mail.postfix_dsn(r, s.token(r), s.message_id(r)),
    "exim-verp": lambda s, r: mail.exim_dsn(r, s.token(r), s.message_id(r)),
    "exchange-message-id": lambda s, r: mail.exchange_dsn(r, "", s.message_id(r)),
    "gmail-verp": lambda s, r: mail.gmail_dsn(r, s.token(r), s.message_id(r)),
}


def figures(out: str) -> tuple[int, int, int]:
    """(ledger bounced, rate line's hard bounces, rate line's sent) from `status`."""
    bounced = int(re.search(r"bounced (\d+)", out)[1])  # type: ignore[index]
    hard = re.search(r"hard bounces (\d+).* of (\d+) sent", out)
    assert hard, out
    return bounced, int(hard[1]), int(hard[2])


@pytest.mark.parametrize("shape", list(BOUNCES))
def test_a_later_hard_bounce_is_on_the_campaigns_row(
    project: Path, runner, shape: str, database
) -> None:
    sent = send_example(project, READERS, database=database)
    (project / "b.eml").write_bytes(BOUNCES[shape](sent, READERS[0]))
    code, out = run(runner, project, "bounces", "import", "b.eml")
    assert code == 0 and "bounced" in out, out
    code, out = run(runner, project, "status", SLUG)
    assert code == 0, out
    assert figures(out) == (1, 1, 3), out
    code, out = run(runner, project, "status", SLUG, "--recipients", "bounced")
    assert code == 0, out
    assert READERS[0] in out and READERS[1] not in out and READERS[2] not in out, out
    assert "5." in out, out  # the reason: the DSN's status and diagnostic
    # The same bounce again changes nothing.
    code, again = run(runner, project, "bounces", "import", "b.eml")
    assert code == 0 and "already recorded" in again, again
    code, out = run(runner, project, "status", SLUG)
    assert figures(out) == (1, 1, 3), out


def test_a_complaint_leaves_the_row_sent(project: Path, runner, database) -> None:
    sent = send_example(project, READERS, database=database)
    reader = READERS[1]
    (project / "c.eml").write_bytes(mail.arf_report(reader, sent.token(reader), reader))
    code, out = run(runner, project, "bounces", "import", "c.eml")
    assert code == 0 and "complained" in out, out
    code, out = run(runner, project, "status", SLUG)
    assert figures(out) == (0, 0, 3) and "complaints 1" in out, out
    code, out = run(runner, project, "status", SLUG, "--recipients", "bounced")
    assert reader not in out, out


def test_a_5xx_while_sending_and_a_later_dsn_count_once(project: Path, runner) -> None:
    """The relay refused one reader (row bounced, an `smtp` event); a DSN for the same message
    arrives too: still one bounce everywhere, and the row keeps the relay's reply."""
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(f"bounces:\n  address: {mail.BOUNCE_BASE}\n")
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for reader in READERS:
            store.add(reader)
    gone = READERS[2]
    with SmtpServer(faults=[fault("550", "cy@*")]) as server:
        code, out = run(runner, project, "send", SLUG, "--yes", "--transport", server.url())
    code, out = run(runner, project, "status", SLUG)
    assert figures(out) == (1, 1, 3), out
    conn = connect(config.database)
    try:
        [campaign] = Ledger(conn).for_issue(SLUG)
        with SubscriberStore.for_config(config) as store:
            row = Ledger(conn).row_of(campaign.id, store.get(gone).id)
        token = verp_token(secret_key(config, conn), row)
    finally:
        conn.close()
    (project / "b.eml").write_bytes(mail.postfix_dsn(gone, token, f"x{row}@example.org"))
    code, out = run(runner, project, "bounces", "import", "b.eml")
    assert code == 0 and "hard bounce recorded (already bounced)" in out, out
    code, out = run(runner, project, "status", SLUG)
    assert figures(out) == (1, 1, 3), out
    code, out = run(runner, project, "status", SLUG, "--recipients", "bounced")
    assert gone in out and "550" in out, out
