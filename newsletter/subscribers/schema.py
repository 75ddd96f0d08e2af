"""The subscriber store's tables, as ordered migrations for `newsletter.db.migrate`.

Ids come from AUTOINCREMENT so an erased subscriber's id is never given to someone else: old
unsubscribe tokens carry the id and must never act on a different person.
"""

from __future__ import annotations

import secrets
import sqlite3

from newsletter.db import Migration

COMPONENT = "subscribers"

_V1 = """
CREATE TABLE subscribers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    name TEXT,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    fields TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE subscriber_lists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE subscriber_memberships (
    list_id INTEGER NOT NULL REFERENCES subscriber_lists (id),
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    PRIMARY KEY (list_id, subscriber_id)
) WITHOUT ROWID;
CREATE INDEX subscriber_memberships_by_subscriber
    ON subscriber_memberships (subscriber_id, list_id);
CREATE TABLE subscriber_events (
    id INTEGER PRIMARY KEY,
    subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX subscriber_events_by_subscriber ON subscriber_events (subscriber_id, id);
CREATE TABLE subscriber_tombstones (
    email_hash TEXT PRIMARY KEY,
    erased_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE subscriber_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _salt(conn: sqlite3.Connection) -> None:
    # Tombstones hash the address with a per-database salt so a leaked database does not give
    # away erased addresses to a precomputed table.
    conn.execute(
        "INSERT INTO subscriber_settings (key, value) VALUES ('tombstone_salt', ?)",
        (secrets.token_hex(16),),
    )


MIGRATIONS: list[Migration] = [_V1, _salt]
