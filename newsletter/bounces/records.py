"""The `bounces` component's tables: every applied event, and the Message-ID index.

`feedback_events` holds one row per (source, event_id) ever applied, matched or not: that UNIQUE
key is what makes importing the same DSN twice, or a replayed webhook, change nothing. The soft
bounce rule and the reputation guard count from it.

`feedback_message_ids` maps the digest part of our Message-IDs to ledger rows. A Message-ID is
derived (`mail.message.message_id_digest`) from the campaign and subscriber, never stored at
send time (the hot path); the first bounce that names a Message-ID indexes the campaigns not yet
indexed, once (`feedback_indexed`: the highest row id seen per campaign, as `--include-new` adds
rows later).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from newsletter import db

COMPONENT = "bounces"
MIGRATIONS: list[db.Migration] = [
    """
    CREATE TABLE feedback_events (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE CASCADE,
        campaign_id INTEGER,
        row_id INTEGER,
        status TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        occurred_at TEXT NOT NULL,
        applied_at TEXT NOT NULL,
        action TEXT NOT NULL,
        UNIQUE (source, event_id)
    );
    CREATE INDEX feedback_events_by_subscriber
        ON feedback_events (subscriber_id, kind, occurred_at);
    CREATE INDEX feedback_events_by_campaign ON feedback_events (campaign_id, kind);
    CREATE TABLE feedback_message_ids (
        digest TEXT PRIMARY KEY,
        row_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE feedback_indexed (
        campaign_id INTEGER PRIMARY KEY,
        max_row_id INTEGER NOT NULL
    );
    """,
]


def migrate(conn: sqlite3.Connection) -> None:
    db.migrate(conn, COMPONENT, MIGRATIONS)


def recorded(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (source, event_id) pairs are already in feedback_events."""
    found: set[tuple[str, str]] = set()
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        marks = " OR ".join(["(source = ? AND event_id = ?)"] * len(chunk))
        params = [v for pair in chunk for v in pair]
        found.update(
            (r[0], r[1])
            for r in conn.execute(
                f"SELECT source, event_id FROM feedback_events WHERE {marks}", params
            )
        )
    return found


def insert_event(
    conn: sqlite3.Connection,
    values: tuple[str, str, str, int | None, int | None, int | None, str, str, str, str, str],
) -> None:
    """(source, event_id, kind, subscriber_id, campaign_id, row_id, status, reason,
    occurred_at, applied_at, action)."""
    conn.execute(
        "INSERT OR IGNORE INTO feedback_events (source, event_id, kind, subscriber_id,"
        " campaign_id, row_id, status, reason, occurred_at, applied_at, action)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
    )


def soft_rows_since(conn: sqlite3.Connection, subscriber_id: int, since: str) -> set[str]:
    """The distinct soft-bounced messages of a subscriber since `since` (ISO 8601 UTC): several
    reports about one message (a DSN `delayed`, then again) are one `r<row id>`; a report with
    no known message is its own `e<event id>`."""
    rows = conn.execute(
        "SELECT DISTINCT COALESCE('r' || row_id, 'e' || id) FROM feedback_events"
        " WHERE subscriber_id = ? AND kind = 'soft_bounce' AND occurred_at >= ?",
        (subscriber_id, since),
    ).fetchall()
    return {str(r[0]) for r in rows}


def campaign_counts(conn: sqlite3.Connection, campaign_id: int) -> dict[str, int]:
    """Distinct subscribers per event kind of a campaign (a complaint reported twice by two
    feedback loops is one complaint)."""
    rows = conn.execute(
        "SELECT kind, COUNT(DISTINCT subscriber_id) FROM feedback_events"
        " WHERE campaign_id = ? AND subscriber_id IS NOT NULL GROUP BY kind",
        (campaign_id,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def message_row(conn: sqlite3.Connection, digest: str) -> int | None:
    row = conn.execute(
        "SELECT row_id FROM feedback_message_ids WHERE digest = ?", (digest,)
    ).fetchone()
    return None if row is None else int(row[0])


def indexed_up_to(conn: sqlite3.Connection) -> dict[int, int]:
    return {
        int(r[0]): int(r[1])
        for r in conn.execute("SELECT campaign_id, max_row_id FROM feedback_indexed")
    }


def add_message_ids(
    conn: sqlite3.Connection, campaign_id: int, pairs: Iterable[tuple[str, int]]
) -> None:
    """Index (digest, row id) pairs of one campaign and remember how far it is indexed."""
    top = 0
    batch: list[tuple[str, int]] = []
    for digest, row_id in pairs:
        batch.append((digest, row_id))
        top = max(top, row_id)
        if len(batch) >= 2000:
            conn.executemany("INSERT OR IGNORE INTO feedback_message_ids VALUES (?, ?)", batch)
            batch.clear()
    conn.executemany("INSERT OR IGNORE INTO feedback_message_ids VALUES (?, ?)", batch)
    if top:
        conn.execute(
            "INSERT INTO feedback_indexed (campaign_id, max_row_id) VALUES (?, ?)"
            " ON CONFLICT (campaign_id) DO UPDATE SET max_row_id = excluded.max_row_id",
            (campaign_id, top),
        )
