"""`newsletter archive`: the static site of every published issue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import db, imagestore, publishing
from newsletter.archive import feeds
from newsletter.archive.output import WriteReport, write_tree
from newsletter.archive.pages import INDEX, ArchiveSite

if TYPE_CHECKING:
    import sqlite3

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


def site_files(config: Config, conn: sqlite3.Connection) -> dict[str, bytes]:
    """Every file of the archive (relative path -> bytes) from what `conn` holds as published:
    nothing else is read, so an unpublished issue or an unpublished edit cannot appear."""
    entries = publishing.published_entries(conn)
    site = ArchiveSite(config, entries)
    files = {
        INDEX: site.index(0),
        f"issues/{INDEX}": site.index(1),
        "feed.xml": feeds.atom(config, entries),
        "feed.json": feeds.json_feed(config, entries),
        "sitemap.xml": feeds.sitemap(config, entries),
        "robots.txt": feeds.robots(config),
    }
    for entry in entries:
        snapshot = publishing.published_snapshot(conn, entry.slug)
        if snapshot is None:
            continue
        files[f"issues/{entry.slug}/{INDEX}"] = site.issue_page(entry.slug, snapshot.html)
        for name, data in imagestore.stored_images(conn, entry.slug):
            files[f"issues/{entry.slug}/{name}"] = data
    return files


def build_archive(config: Config, out: Path, *, clean: bool = False) -> ArchiveReport:
    """Write the archive into `out` (see newsletter.archive.output for how). Raises
    NewsletterError for a folder that is not ours or cannot be written."""
    conn = db.connect(config.database)
    try:
        publishing.prepare(conn)
        conn.execute("PRAGMA query_only = ON")
        files = site_files(config, conn)
        listed = [e.slug for e in publishing.published_entries(conn)]
        unlisted = sorted(publishing.published_slugs(conn) - set(listed))
    finally:
        conn.close()
    report = write_tree(out, files, clean=clean)
    return ArchiveReport(out, tuple(listed), report, tuple(unlisted))
