"""A project whose example issue was sent (to the local outbox) with VERP, for the bounce
import tests: the readers, their ledger rows, VERP tokens and received Message-IDs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.campaign import send_issue
from newsletter.campaign.ledger import Ledger
from newsletter.config import Config, load_config
from newsletter.db import connect, has_table
from newsletter.issue import load_issue
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import secret_key, verp_token
from tests.support.bounce_mail import BOUNCE_BASE


@dataclass
class SentIssue:
    config: Config
    rows: dict[str, int]  # reader -> ledger row id
    secret: bytes

    def token(self, email: str) -> str:
        return verp_token(self.secret, self.rows[email])

    def message_id(self, email: str) -> str:
        """The Message-ID the reader received (read from the outbox), without <>."""
        for path in (self.config.root / "outbox").rglob("*.eml"):
            data = path.read_bytes()
            if f"<{email}>".encode() in data or f"To: {email}".encode() in data:
                for line in data.split(b"\r\n"):
                    if line.lower().startswith(b"message-id:"):
                        return line.split(b":", 1)[1].strip().decode().strip("<>")
        raise AssertionError(f"no outbox message for {email}")

    def statuses(self) -> dict[str, str]:
        with SubscriberStore.for_config(self.config) as store:
            return {email: store.get(email).status for email in self.rows}

    def feedback_rows(self) -> int:
        conn = connect(self.config.database)
        try:
            if not has_table(conn, "feedback_events"):
                return 0
            return int(conn.execute("SELECT count(*) FROM feedback_events").fetchone()[0])
        finally:
            conn.close()


def send_example(
    project: Path, readers: list[str], extra_config: str = "", *, database: str | None = None
) -> SentIssue:
    """Send the project's example issue to `readers` with `bounces.address` set (VERP), in
    `database` (an SQLite path or a PostgreSQL URL; default: the project's newsletter.db)."""
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(f"bounces:\n  address: {BOUNCE_BASE}\n{extra_config}")
        if database is not None:
            f.write(f"database: {database}\n")
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        for email in readers:
            store.add(email)
    issue = next((project / "issues").glob("*.yaml"))
    assert send_issue(config, issue).ok
    conn = connect(config.database)
    try:
        ledger = Ledger(conn)
        [campaign] = ledger.for_issue(load_issue(issue).slug)
        with SubscriberStore.for_config(config) as store:
            rows = {
                store.get_by_id(r["subscriber_id"]).email: r["id"] for r in ledger.rows(campaign.id)
            }
        secret = secret_key(config, conn)
    finally:
        conn.close()
    return SentIssue(config, rows, secret)
