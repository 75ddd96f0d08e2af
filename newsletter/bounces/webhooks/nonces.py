"""One-time webhook tokens already accepted (Mailgun's `signature.token`), in table
`webhook_nonces` so that every `serve` process refuses a replay, not only the one that saw it.
A token is kept only as long as its signed timestamp would still be accepted (`MAX_AGE` plus a
margin): an older replay is refused by its timestamp anyway, so the table stays small."""

from __future__ import annotations

import sqlite3

from newsletter import db
from newsletter.bounces.webhooks.base import MAX_AGE

COMPONENT = "webhook_nonces"
MIGRATIONS = [
    "CREATE TABLE webhook_nonces ("
    " provider TEXT NOT NULL, nonce TEXT NOT NULL, seen_at REAL NOT NULL,"
    " PRIMARY KEY (provider, nonce)) WITHOUT ROWID;\n"
    "CREATE INDEX webhook_nonces_seen ON webhook_nonces (seen_at);\n"
]
KEEP = 2 * MAX_AGE + 60  # seconds


def prepare(conn: sqlite3.Connection) -> None:
    """Create the table if needed (once, with a writable connection)."""
    db.migrate(conn, COMPONENT, MIGRATIONS)


def seen(conn: sqlite3.Connection, provider: str, nonce: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM webhook_nonces WHERE provider = ? AND nonce = ?", (provider, nonce)
    ).fetchone()
    return row is not None


def remember(conn: sqlite3.Connection, provider: str, nonce: str, now: float) -> None:
    """Record `nonce` as used and forget those past `KEEP` seconds (one transaction)."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM webhook_nonces WHERE seen_at < ?", (now - KEEP,))
        conn.execute(
            "INSERT OR IGNORE INTO webhook_nonces (provider, nonce, seen_at) VALUES (?, ?, ?)",
            (provider, nonce, now),
        )
