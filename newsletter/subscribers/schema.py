"""The subscriber store's tables, as ordered migrations for `newsletter.db.migrate`.

An erased subscriber's id is never given to someone else (old unsubscribe tokens carry the id
and must never act on a different person): ids come from `next_subscriber_id`, which stays above
the highest id ever erased. That is AUTOINCREMENT's promise without its per-row bookkeeping,
which cost a third of a bulk import's insert time.
"""

from __future__ import annotations

import secrets
import sqlite3
import zlib

from newsletter.db import Migration

COMPONENT = "subscribers"

_V1 = """
CREATE TABLE subscribers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    name TEXT,
    -- An OR chain, not IN (...): SQLite builds an ephemeral table for IN on every row
    -- checked, which made this CHECK a third of a bulk import's insert time.
    status TEXT NOT NULL CHECK (status = 'active' OR status = 'pending'
        OR status = 'unsubscribed' OR status = 'bounced' OR status = 'complained'),
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


def _key_crc(conn: sqlite3.Connection) -> None:
    # Addresses are found through an index on the CRC-32 of their key (collisions are resolved
    # by comparing email_key): growing a unique index over the address text cost a quarter of
    # a bulk import. Uniqueness is kept by the store, whose writes are serialized
    # (BEGIN IMMEDIATE) and always look the address up first.
    conn.execute("ALTER TABLE subscribers ADD COLUMN key_crc INTEGER NOT NULL DEFAULT 0")
    rows = conn.execute("SELECT id, email_key FROM subscribers").fetchall()
    conn.executemany(
        "UPDATE subscribers SET key_crc = ? WHERE id = ?",
        [(zlib.crc32(str(key).encode()), sid) for sid, key in rows],
    )
    conn.execute("CREATE INDEX subscribers_by_key_crc ON subscribers (key_crc)")


# How a subscriber came to be (subscribed / imported, with detail and time) is the first entry
# of their history, stored on their row: an import of 100,000 rows then writes no 100,000 event
# rows and index entries (a quarter of its time). Later events go to subscriber_events.
_ORIGIN = """
ALTER TABLE subscribers ADD COLUMN origin_at TEXT;
ALTER TABLE subscribers ADD COLUMN origin_kind TEXT;
ALTER TABLE subscribers ADD COLUMN origin_detail TEXT;
"""

# A sign-up from the public form changes nothing on an existing record: what it asks for (lists,
# name) waits here until its own confirmation link is used (the link names this row).
_SIGNUPS = """
CREATE TABLE subscriber_signups (
    id INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    name TEXT,
    lists TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    confirmed_at TEXT
);
CREATE INDEX subscriber_signups_by_subscriber ON subscriber_signups (subscriber_id);
"""

# The store looks every address up before writing it (under BEGIN IMMEDIATE); the database
# backs that rule too, so no code path can ever hold two copies of one address in two
# spellings (the second, active copy would be mailed after the first unsubscribed).
_UNIQUE_KEY = "CREATE UNIQUE INDEX subscribers_by_email_key ON subscribers (email_key);"

# Tags (`subscribers tag`, the `tags` import column, `"pro" in tags` in a segment): stored
# case-folded; the index by tag answers a segment's EXISTS lookup.
_TAGS = """
CREATE TABLE subscriber_tags (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (subscriber_id, tag)
) WITHOUT ROWID;
CREATE INDEX subscriber_tags_by_tag ON subscriber_tags (tag, subscriber_id);
"""

MIGRATIONS: list[Migration] = [_V1, _salt, _key_crc, _ORIGIN, _SIGNUPS, _UNIQUE_KEY, _TAGS]


def next_subscriber_id(conn: sqlite3.Connection) -> int:
    """The id for the next new subscriber (call inside the write transaction)."""
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers").fetchone()[0]
    erased = conn.execute(
        "SELECT value FROM subscriber_settings WHERE key = 'erased_max_id'"
    ).fetchone()
    return max(int(top), int(erased[0]) if erased else 0) + 1


def remember_erased_id(conn: sqlite3.Connection, subscriber_id: int) -> None:
    """Called before deleting a subscriber row, so its id is never reused."""
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers").fetchone()[0]
    conn.execute(
        "INSERT INTO subscriber_settings (key, value) VALUES ('erased_max_id', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
        (max(int(top), subscriber_id),),
    )
