"""The bytes of every local story image that went out, kept under the name the email used.

An email names a local image by a hash of its bytes (`/issues/<slug>/ok-42a1749aa8.jpg`, see
newsletter.images); a sent email cannot be changed, so that URL must keep answering with those
bytes after the writer replaces or deletes the file beside the issue. When an issue is published
(`newsletter publish`) or sent (`newsletter send`, before the first message), each of its local
images is stored here, content-addressed: one row per (slug, published name), never updated.
`serve` answers a stored image for as long as the issue is published, whatever became of the
file.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from newsletter import db
from newsletter.errors import NewsletterError
from newsletter.images import LocalImage
from newsletter.issue import Issue

COMPONENT = "issue_images"
MIGRATIONS: list[db.Migration] = [
    """
    CREATE TABLE issue_images (
        issue_slug TEXT NOT NULL,
        name TEXT NOT NULL,
        media_type TEXT NOT NULL,
        data BLOB NOT NULL,
        stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        PRIMARY KEY (issue_slug, name)
    ) WITHOUT ROWID;
    """
]
POSTGRESQL_MIGRATIONS: list[str] = [
    """
    CREATE TABLE issue_images (
        issue_slug TEXT NOT NULL,
        name TEXT NOT NULL,
        media_type TEXT NOT NULL,
        data BYTEA NOT NULL,
        stored_at TEXT NOT NULL
            DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
        PRIMARY KEY (issue_slug, name)
    );
    """
]


def prepare(conn: db.Connection) -> None:
    """Create the table if needed (with a writable connection)."""
    db.migrate(conn, COMPONENT, MIGRATIONS, POSTGRESQL_MIGRATIONS)


def keep_issue_images(conn: db.Connection, issue: Issue) -> int:
    """Store every local image of `issue` under its published name; return how many were new.

    Idempotent (a name is a hash of the bytes, so a stored row is never replaced). Raises
    NewsletterError when a file cannot be read or no longer holds the bytes its name was made
    from (it changed since the issue was loaded): the caller must not send names it cannot
    answer."""
    images = [
        s.image.local for s in issue.stories if s.image is not None and s.image.local is not None
    ]
    if not images:
        return 0
    rows = [(issue.slug, image.name, image.media_type, _bytes_of(image)) for image in images]
    prepare(conn)
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO issue_images (issue_slug, name, media_type, data)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (issue_slug, name) DO NOTHING",
        rows,
    )
    return conn.total_changes - before


def stored_image(conn: db.Connection, slug: str, name: str) -> tuple[str, bytes, float] | None:
    """(media type, bytes, when stored in Unix seconds) of the image stored as `name` for
    `slug`, or None (read-only; works on a database no issue image was ever stored in)."""
    if not db.has_table(conn, "issue_images"):
        return None
    row = conn.execute(
        "SELECT media_type, data, stored_at FROM issue_images WHERE issue_slug = ? AND name = ?",
        (slug, name),
    ).fetchone()
    if row is None:
        return None
    stored = dt.datetime.strptime(str(row[2]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return str(row[0]), bytes(row[1]), float(int(stored.timestamp()))


def _bytes_of(image: LocalImage) -> bytes:
    try:
        data = image.path.read_bytes()
    except OSError as exc:
        raise NewsletterError(f"cannot read {image.path}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest()[:10] not in image.name:
        raise NewsletterError(
            f"{image.path} changed while the issue was being prepared; run the command again"
        )
    return data


def stored_images(conn: db.Connection, slug: str) -> list[tuple[str, bytes]]:
    """(published name, bytes) of every image stored for `slug`, by name (read-only)."""
    if not db.has_table(conn, "issue_images"):
        return []
    rows = conn.execute(
        "SELECT name, data FROM issue_images WHERE issue_slug = ? ORDER BY name", (slug,)
    ).fetchall()
    return [(str(r[0]), bytes(r[1])) for r in rows]
