"""One-time webhook tokens already accepted (Mailgun's `signature.token`), in table
`webhook_nonces` so that every `serve` process refuses a replay, not only the one that saw it.
A token is kept only as long as its signed timestamp would still be accepted (`MAX_AGE` plus a
margin): an older replay is refused by its timestamp anyway, so the table stays small."""

from __future__ import annotations

from newsletter import db
from newsletter.bounces.webhooks.base import MAX_AGE

COMPONENT = "webhook_nonces"
MIGRATIONS = [
    "CREATE TABLE webhook_nonces ("
    " provider TEXT NOT NULL, nonce TEXT NOT NULL, seen_at REAL NOT NULL,"
    " PRIMARY KEY (provider, nonce)) WITHOUT ROWID;\n"
    "CREATE INDEX webhook_nonces_seen ON webhook_nonces (seen_at);\n"
]
POSTGRESQL_MIGRATIONS = [
    "CREATE TABLE webhook_nonces ("
    " provider TEXT NOT NULL, nonce TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (provider, nonce));\n"
    "CREATE INDEX webhook_nonces_seen ON webhook_nonces (seen_at);\n"
]
KEEP = 2 * MAX_AGE + 60  # seconds


def prepare(conn: db.Connection) -> None:
    """Create the table if needed (once, with a writable connection)."""
    db.migrate(conn, COMPONENT, MIGRATIONS, POSTGRESQL_MIGRATIONS)


def seen(conn: db.Connection, provider: str, nonce: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM webhook_nonces WHERE provider = ? AND nonce = ?", (provider, nonce)
    ).fetchone()
    return row is not None


def remember(conn: db.Connection, provider: str, nonce: str, now: float) -> None:
    """Record `nonce` as used and forget those past `KEEP` seconds (one transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM webhook_nonces WHERE seen_at < ?", (now - KEEP,))
        conn.execute(
            "INSERT INTO webhook_nonces (provider, nonce, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (provider, nonce) DO NOTHING",
            (provider, nonce, now),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
