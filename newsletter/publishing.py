"""Which issues are public: the one notion `newsletter serve` (and later the archive and feeds) use.

An issue is published when either
- it was explicitly published with `newsletter publish ISSUE` (and not unpublished since), or
- it was sent to a list (a campaign of its slug has at least one `sent` recipient), unless it
  was explicitly unpublished afterwards.

The latest explicit decision wins over the sending record, so `unpublish` takes back a sent issue
too. Decisions are kept in the table `issue_publications` (one row per slug, with who and when);
nothing else is public: drafts, skeletons and embargoed files are never served.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import db
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.config import Config

COMPONENT = "publishing"
MIGRATIONS: list[db.Migration] = [
    """
    CREATE TABLE issue_publications (
        issue_slug TEXT PRIMARY KEY,
        published INTEGER NOT NULL CHECK (published IN (0, 1)),
        changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        changed_by TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    """
]

# A slug's latest explicit decision, else: sent to anyone in any campaign.
_SENT = (
    "SELECT 1 FROM campaigns c JOIN campaign_recipients r ON r.campaign_id = c.id"
    " WHERE c.issue_slug = ? AND r.status = 'sent' LIMIT 1"
)


@dataclass(frozen=True)
class Publication:
    """What `publish`/`unpublish` did: the slug, the new state, and whether it changed."""

    slug: str
    published: bool
    changed: bool
    sent: bool  # the issue was sent to a list (published by that unless unpublished)
    base_url: str = ""

    def summary(self) -> str:
        state = "published" if self.published else "unpublished"
        already = "" if self.changed else "already "
        where = f" (web version: {self.base_url}/issues/{self.slug}/)"
        if self.published:
            return f"Issue {self.slug} is {already}{state}{where}."
        how = " (it was sent, but its web version is no longer served)" if self.sent else ""
        return f"Issue {self.slug} is {already}{state}{how}."


def prepare(conn: sqlite3.Connection) -> None:
    """Create the publishing table if needed (call once with a writable connection)."""
    db.migrate(conn, COMPONENT, MIGRATIONS)


def is_published(conn: sqlite3.Connection, slug: str) -> bool:
    """True if the issue `slug` may be served publicly (read-only; works before any migration)."""
    if _has_table(conn, "issue_publications"):
        row = conn.execute(
            "SELECT published FROM issue_publications WHERE issue_slug = ?", (slug,)
        ).fetchone()
        if row is not None:
            return bool(row[0])
    return _was_sent(conn, slug)


def published_slugs(conn: sqlite3.Connection) -> set[str]:
    """Every published slug (for an archive or a feed)."""
    slugs: set[str] = set()
    if _has_table(conn, "campaign_recipients"):
        rows = conn.execute(
            "SELECT DISTINCT c.issue_slug FROM campaigns c WHERE EXISTS (SELECT 1 FROM"
            " campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'sent')"
        ).fetchall()
        slugs.update(str(r[0]) for r in rows)
    if _has_table(conn, "issue_publications"):
        for slug, published in conn.execute(
            "SELECT issue_slug, published FROM issue_publications"
        ).fetchall():
            (slugs.add if published else slugs.discard)(str(slug))
    return slugs


def set_published(
    conn: sqlite3.Connection, slug: str, published: bool, *, by: str = "cli"
) -> Publication:
    """Record an explicit publish/unpublish decision for `slug`; idempotent."""
    prepare(conn)
    before = is_published(conn, slug)
    conn.execute(
        "INSERT INTO issue_publications (issue_slug, published, changed_by) VALUES (?, ?, ?)"
        " ON CONFLICT (issue_slug) DO UPDATE SET published = excluded.published,"
        " changed_at = excluded.changed_at, changed_by = excluded.changed_by"
        " WHERE published != excluded.published",
        (slug, int(published), by),
    )
    return Publication(slug, published, before != published, _was_sent(conn, slug))


def publish_issue(config: Config, issue: str | Path, *, published: bool = True) -> Publication:
    """`newsletter publish ISSUE` / `unpublish`: ISSUE is an issue file or its slug.

    Publishing checks the issue first (an issue with `check` errors, such as a skeleton's TODO
    text, is refused with its diagnostics); unpublishing only needs the slug. Raises
    NewsletterError for an unknown issue."""
    slug = _resolve(config, issue, need_file=published)
    conn = db.connect(config.database)
    try:
        if published:
            _keep_images(config, conn, issue, slug)
        done = set_published(conn, slug, published)
    finally:
        conn.close()
    return dataclasses.replace(done, base_url=config.base_url)


def _keep_images(config: Config, conn: sqlite3.Connection, issue: str | Path, slug: str) -> None:
    """Keep the issue's local images as they are now (newsletter.imagestore), so the URLs its
    web version and emails name keep answering after the files change."""
    from newsletter.imagestore import keep_issue_images
    from newsletter.issue import load_issue

    written = Path(str(issue).strip())
    path = written if written.is_file() else issue_path(config, slug)
    if path is not None:
        keep_issue_images(conn, load_issue(path))


def issue_path(config: Config, slug: str) -> Path | None:
    """The file in `issues/` whose slug is `slug`, if any."""
    from newsletter.issue import slugify

    folder = config.root / "issues"
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.glob("*.y*ml")) if slugify(p.stem) == slug), None)


def _resolve(config: Config, issue: str | Path, *, need_file: bool) -> str:
    from newsletter.issue import slugify

    text = str(issue).strip()
    if not text:
        raise NewsletterError("name an issue: its file (issues/....yaml) or its slug")
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise NewsletterError(f"{candidate}: no such issue file")
        path: Path | None = candidate
        slug = slugify(candidate.stem)
    else:
        slug = text
        if slugify(slug) != slug:
            raise NewsletterError(
                f"{text!r} is neither an issue file nor an issue slug (like 2026-11-25-title)"
            )
        path = issue_path(config, slug)
    if path is None:
        if need_file:
            raise NewsletterError(f"no issue with slug {slug!r} in {config.root / 'issues'}")
        return slug
    if need_file:
        _refuse_invalid(config, path)
    return slug


def _refuse_invalid(config: Config, path: Path) -> None:
    from newsletter.lint import check_issue

    errors = [d for d in check_issue(path, config) if d.severity == "error"]
    if errors:
        lines = "\n".join(d.format() for d in errors)
        raise NewsletterError(f"{path} has errors; fix them before publishing:\n{lines}")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _was_sent(conn: sqlite3.Connection, slug: str) -> bool:
    if not _has_table(conn, "campaign_recipients"):
        return False
    return conn.execute(_SENT, (slug,)).fetchone() is not None


__all__ = [
    "Publication",
    "is_published",
    "issue_path",
    "prepare",
    "publish_issue",
    "published_slugs",
    "set_published",
]
