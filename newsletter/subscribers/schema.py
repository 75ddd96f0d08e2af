"""The subscriber store's tables, as ordered migrations for `newsletter.db.migrate`.

An erased subscriber's id is never given to someone else (old unsubscribe tokens carry the id
and must never act on a different person): ids come from `next_subscriber_id`, which stays above
the highest id ever erased. That is AUTOINCREMENT's promise without its per-row bookkeeping,
which cost a third of a bulk import's insert time. On PostgreSQL too: every insert into
`subscribers` runs inside the store's `BEGIN IMMEDIATE` (the database-wide advisory write lock,
newsletter.db), so MAX(id) + 1 is read and used by one writer at a time whichever machine it
runs on, and the primary key refuses a duplicate should anything bypass that.

PostgreSQL (`POSTGRESQL_MIGRATIONS`): the same tables; their text columns use the "C"
collation so that ordering and comparing text (ORDER BY name, a segment's `<`, lower(), ILIKE)
is bytewise and ASCII-only as in SQLite, whatever the database's default locale. The SQL
functions a compiled segment and the search call (`nl_fold`, `nl_number`, `nl_casefold`, which
SQLite gets as Python functions, see segmentsql) are SQL functions there, driven by a table of
every character whose case folding or digit value differs from itself, written from Python's
own `unicodedata`: so both engines give the same answers.
"""

from __future__ import annotations

import functools
import secrets
import sys
import unicodedata
import zlib
from typing import Any

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


def _salt(conn: Any) -> None:
    # Tombstones hash the address with a per-database salt so a leaked database does not give
    # away erased addresses to a precomputed table.
    conn.execute(
        "INSERT INTO subscriber_settings (key, value) VALUES ('tombstone_salt', ?)",
        (secrets.token_hex(16),),
    )


def _key_crc(conn: Any) -> None:
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


# Step 1 is the SQLite schema after all its steps, in PostgreSQL's words (see newsletter.db).
_PG_V1 = """
CREATE TABLE subscribers (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    email TEXT COLLATE "C" NOT NULL,
    email_key TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C",
    status TEXT COLLATE "C" NOT NULL CHECK (status = 'active' OR status = 'pending'
        OR status = 'unsubscribed' OR status = 'bounced' OR status = 'complained'),
    fields TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    key_crc BIGINT NOT NULL DEFAULT 0,
    origin_at TEXT COLLATE "C",
    origin_kind TEXT COLLATE "C",
    origin_detail TEXT COLLATE "C"
);
CREATE INDEX subscribers_by_key_crc ON subscribers (key_crc);
CREATE UNIQUE INDEX subscribers_by_email_key ON subscribers (email_key);
CREATE TABLE subscriber_lists (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE subscriber_memberships (
    list_id BIGINT NOT NULL REFERENCES subscriber_lists (id),
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    PRIMARY KEY (list_id, subscriber_id)
);
CREATE INDEX subscriber_memberships_by_subscriber
    ON subscriber_memberships (subscriber_id, list_id);
CREATE TABLE subscriber_events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    subscriber_id BIGINT REFERENCES subscribers (id) ON DELETE CASCADE,
    at TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    detail TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX subscriber_events_by_subscriber ON subscriber_events (subscriber_id, id);
CREATE TABLE subscriber_tombstones (
    email_hash TEXT COLLATE "C" PRIMARY KEY,
    erased_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE subscriber_settings (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);
CREATE TABLE subscriber_signups (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    name TEXT COLLATE "C",
    lists TEXT COLLATE "C" NOT NULL,
    detail TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at TEXT COLLATE "C" NOT NULL,
    confirmed_at TEXT COLLATE "C"
);
CREATE INDEX subscriber_signups_by_subscriber ON subscriber_signups (subscriber_id);
CREATE TABLE subscriber_tags (
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    tag TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (subscriber_id, tag)
);
CREATE INDEX subscriber_tags_by_tag ON subscriber_tags (tag, subscriber_id);
"""

# No `?` in these texts: the connection would read it as a placeholder.
# ASCII text (nearly every value) is folded by translate(), which no locale changes; other
# text character by character through nl_char_map.
_ASCII = "'^[\\x01-\\x7f]*$'"
_UPPER = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
_LOWER = "'abcdefghijklmnopqrstuvwxyz'"
_PG_FUNCTIONS = f"""
CREATE TABLE nl_char_map (
    ch TEXT COLLATE "C" PRIMARY KEY,
    folded TEXT COLLATE "C",
    number_char TEXT COLLATE "C"
);
CREATE FUNCTION nl_casefold(value TEXT) RETURNS TEXT LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value IS NULL THEN ''
        WHEN value ~ {_ASCII} THEN translate(value, {_UPPER}, {_LOWER})
        ELSE (SELECT string_agg(COALESCE(m.folded, c.ch), '' ORDER BY c.i)
              FROM unnest(string_to_array(value, NULL)) WITH ORDINALITY AS c (ch, i)
              LEFT JOIN nl_char_map m ON m.ch = c.ch)
    END COLLATE "C"
$$;
CREATE FUNCTION nl_fold(value TEXT) RETURNS TEXT LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value IS NULL THEN ''
        WHEN value ~ {_ASCII} THEN translate(value, {_UPPER}, {_LOWER})
        ELSE normalize(nl_casefold(normalize(value, NFC)), NFC)
    END COLLATE "C"
$$;
CREATE FUNCTION nl_number(value TEXT) RETURNS DOUBLE PRECISION LANGUAGE sql STABLE
PARALLEL SAFE AS $$
    SELECT CASE WHEN v ~ '^ *-{{0,1}}[0-9]+(\\.[0-9]+){{0,1}} *$' THEN v::DOUBLE PRECISION END
    FROM (SELECT CASE
        WHEN value ~ '^[-0-9. ]*$' THEN value
        ELSE (SELECT string_agg(COALESCE(m.number_char, c.ch), '' ORDER BY c.i)
              FROM unnest(string_to_array(value, NULL)) WITH ORDINALITY AS c (ch, i)
              LEFT JOIN nl_char_map m ON m.ch = c.ch)
    END AS v) AS t
$$;
"""


@functools.cache
def char_map() -> list[tuple[str, str | None, str | None]]:
    """(character, its case folding, its ASCII stand-in for a number) for every character
    where either differs from itself: Python's rules, for the PostgreSQL functions above
    (`str.casefold`; a decimal digit of any script is its digit and any white space a space,
    as `float()` and the `\\d`/`\\s` of segment.as_number read them)."""
    out = []
    for code in range(1, sys.maxunicode + 1):
        if 0xD800 <= code < 0xE000:
            continue  # surrogates: not text in PostgreSQL
        ch = chr(code)
        folded = ch.casefold()
        if ch.isspace() and ch not in "\x1c\x1d\x1e\x1f":  # what float() strips
            number: str | None = " "
        elif unicodedata.category(ch) == "Nd":
            number = str(unicodedata.decimal(ch))
        else:
            number = None
        if folded != ch or (number is not None and number != ch):
            out.append((ch, folded if folded != ch else None, number))
    return out


def _pg_functions(conn: Any) -> None:
    conn.execute(_PG_FUNCTIONS)
    _fill_char_map(conn)


def rebuild_char_map(conn: Any) -> None:
    """Rewrite PostgreSQL's nl_char_map from char_map() in one transaction (rows deleted or
    changed by hand, or a Python whose Unicode tables are newer); it holds no data of anyone."""
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM nl_char_map")
        _fill_char_map(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def _fill_char_map(conn: Any) -> None:
    columns = [list(column) for column in zip(*char_map(), strict=True)]
    conn.execute(  # one statement, not 2,000: a new database is ready in milliseconds
        "INSERT INTO nl_char_map (ch, folded, number_char)"
        " SELECT * FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]))",
        columns,
    )


# One-click unsubscribes that arrived while another writer held the write lock (a long
# import), kept in the database every instance shares (newsletter.subscribers.spool): an
# INSERT here takes no write lock, so it never waits behind the import.
_PG_SPOOL = """
CREATE TABLE unsubscribe_spool (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id BIGINT NOT NULL,
    how TEXT NOT NULL,
    spooled_at TEXT NOT NULL
        DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
);
"""

POSTGRESQL_MIGRATIONS: list[Any] = [_PG_V1, _salt, _pg_functions, _PG_SPOOL]


def next_subscriber_id(conn: Any) -> int:
    """The id for the next new subscriber (call inside the write transaction)."""
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers").fetchone()[0]
    erased = conn.execute(
        "SELECT value FROM subscriber_settings WHERE key = 'erased_max_id'"
    ).fetchone()
    return max(int(top), int(erased[0]) if erased else 0) + 1


def remember_erased_id(conn: Any, subscriber_id: int) -> None:
    """Called before deleting a subscriber row, so its id is never reused."""
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers").fetchone()[0]
    # Compared as numbers on both sides: the stored value is text, and SQLite ranks any text
    # above any number, so MAX(number, text) used to keep the newer, possibly lower, id.
    conn.execute(
        "INSERT INTO subscriber_settings (key, value) VALUES ('erased_max_id', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = CASE"
        " WHEN CAST(subscriber_settings.value AS BIGINT) > CAST(excluded.value AS BIGINT)"
        " THEN subscriber_settings.value ELSE excluded.value END",
        (str(max(int(top), subscriber_id)),),
    )
