"""`newsletter archive`: the static site of every published issue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import db, imagestore, publishing
from newsletter.archive import feeds
from newsletter.archive.output import WriteReport, write_tree
from newsletter.archive.pages import INDEX, ArchiveSite

if TYPE_CHECKING:
    from newsletter.config import Config


@dataclass(frozen=True)
class ArchiveReport:
    out: Path
    issues: tuple[str, ...]  # slugs in the archive, newest first
    files: WriteReport
    without_meta: tuple[str, ...]  # published before snapshots kept their meta: not listed

    def summary(self) -> str:
        f = self.files
        lines = [
            f"Archive of {len(self.issues)} published issue(s) in {self.out}: "
            f"{len(f.written)} file(s) written, {len(f.unchanged)} unchanged, "
            f"{len(f.removed)} removed."
        ]
        lines += [
            f"warning: issue {slug} is published but its snapshot predates the archive: "
            f"run `newsletter publish {slug}` to list it"
            for slug in self.without_meta
        ]
        return "\n".join(lines)


class _Site:
    """The archive as `conn` holds it now: nothing but published entries and their snapshots is
    read, so an unpublished issue or an unpublished edit cannot appear."""

    def __init__(self, config: Config, conn: db.Connection) -> None:
        self.config, self.conn = config, conn
        self.entries = publishing.published_entries(conn)
        self.pages = ArchiveSite(config, self.entries)
        # Unix seconds: the newest change of any entry (a list changes with any of them).
        self.modified = max((e.updated for e in self.entries), default=0.0)

    def lists(self) -> dict[str, Callable[[], bytes]]:
        config, entries = self.config, self.entries
        return {
            INDEX: lambda: self.pages.index(0),
            f"issues/{INDEX}": lambda: self.pages.index(1),
            "feed.xml": lambda: feeds.atom(
                config, entries, None if entries else publishing.last_change(self.conn)
            ),
            "feed.json": lambda: feeds.json_feed(config, entries),
            "sitemap.xml": lambda: feeds.sitemap(config, entries),
            "robots.txt": lambda: feeds.robots(config),
        }

    def issue_page(self, slug: str) -> tuple[bytes, float] | None:
        snapshot = publishing.published_snapshot(self.conn, slug)
        if snapshot is None:
            return None
        page = self.pages.issue_page(slug, snapshot.html)
        # Its previous/next links change when another issue is published: count those in.
        listed = any(e.slug == slug for e in self.entries)
        return page, max(snapshot.taken_at, self.modified) if listed else snapshot.taken_at


def site_files(config: Config, conn: db.Connection) -> dict[str, bytes]:
    """Every file of the archive: relative path -> bytes."""
    site = _Site(config, conn)
    files = {name: make() for name, make in site.lists().items()}
    for entry in site.entries:
        page = site.issue_page(entry.slug)
        if page is None:
            continue
        files[f"issues/{entry.slug}/{INDEX}"] = page[0]
        for name, data in imagestore.stored_images(conn, entry.slug):
            files[f"issues/{entry.slug}/{name}"] = data
    return files


def site_file(config: Config, conn: db.Connection, name: str) -> tuple[bytes, float] | None:
    """One file of the archive, as `site_files` would write it, with when it last changed
    (Unix seconds, for Last-Modified): a list (`index.html`, `issues/index.html`, `feed.xml`,
    `feed.json`, `sitemap.xml`, `robots.txt`) or `issues/<slug>/index.html`. None if there is
    no such file (an unpublished issue). What `newsletter serve` answers."""
    site = _Site(config, conn)
    make = site.lists().get(name)
    if make is not None:
        return make(), site.modified
    slug = name.removeprefix("issues/").removesuffix(f"/{INDEX}")
    if name != f"issues/{slug}/{INDEX}" or "/" in slug:
        return None
    return site.issue_page(slug)


def build_archive(config: Config, out: Path, *, clean: bool = False) -> ArchiveReport:
    """Write the archive into `out` (see newsletter.archive.output for how). Raises
    NewsletterError for a folder that is not ours or cannot be written."""
    conn = db.connect(config.database)
    try:
        publishing.prepare(conn)
        # Reading only, whatever a template asks for (PostgreSQL: a read-only transaction, as
        # a session setting would outlive this use of the pooled connection).
        conn.execute("BEGIN READ ONLY" if db.is_postgresql(conn) else "PRAGMA query_only = ON")
        files = site_files(config, conn)
        listed = [e.slug for e in publishing.published_entries(conn)]
        unlisted = sorted(publishing.published_slugs(conn) - set(listed))
    finally:
        conn.close()
    report = write_tree(out, files, clean=clean)
    return ArchiveReport(out, tuple(listed), report, tuple(unlisted))
