"""Which issues are public, and what is served for them: the one notion `newsletter serve` (and
later the archive and feeds) use.

An issue is published when either
- it was explicitly published with `newsletter publish ISSUE` (and not unpublished since), or
- it was sent to a *public* list (`lists: {NAME: {public: true}}`, see Config.public_lists): a
  campaign on that list has at least one `sent` recipient, unless it was explicitly unpublished
  afterwards. A send to a private list publishes nothing.

The latest explicit decision wins over the sending record, so `unpublish` takes back a sent issue
too. Decisions are kept in `issue_publications` (one row per slug, with who and when).

What is served is a *snapshot* of the web version (`issue_snapshots`), taken when the issue is
published: before the first send to a public list, or by `newsletter publish` (again: refreshed).
Edits to the file after that stay private until the next `publish`, and a broken file cannot
break the page. An issue published before snapshots existed has none and is not served until it
is published again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from newsletter import clock, db
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.render.compiled import CompiledIssue

COMPONENT = "publishing"
MIGRATIONS: list[db.Migration] = [
    """
    CREATE TABLE issue_publications (
        issue_slug TEXT PRIMARY KEY,
        published INTEGER NOT NULL CHECK (published IN (0, 1)),
        changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        changed_by TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    """,
    # list_name: the public list whose send took it ('' when taken by `newsletter publish`).
    """
    CREATE TABLE issue_snapshots (
        issue_slug TEXT PRIMARY KEY,
        html BLOB NOT NULL,
        etag TEXT NOT NULL,
        taken_at REAL NOT NULL,
        list_name TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    """,
    # meta: what the archive, the feeds and the web version's card show (JSON, see IssueMeta);
    # entry_id: the feed entry id, set when the first snapshot is taken and never changed.
    """
    ALTER TABLE issue_snapshots ADD COLUMN meta TEXT NOT NULL DEFAULT '';
    ALTER TABLE issue_snapshots ADD COLUMN entry_id TEXT NOT NULL DEFAULT '';
    """,
]
# The same tables on PostgreSQL (step 1 = the final shape of the SQLite steps above).
POSTGRESQL_MIGRATIONS: list[str] = [
    """
    CREATE TABLE issue_publications (
        issue_slug TEXT PRIMARY KEY,
        published BIGINT NOT NULL CHECK (published IN (0, 1)),
        changed_at TEXT NOT NULL
            DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
        changed_by TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE issue_snapshots (
        issue_slug TEXT PRIMARY KEY,
        html BYTEA NOT NULL,
        etag TEXT NOT NULL,
        taken_at DOUBLE PRECISION NOT NULL,
        list_name TEXT NOT NULL DEFAULT '',
        meta TEXT NOT NULL DEFAULT '',
        entry_id TEXT NOT NULL DEFAULT ''
    );
    """,
]

# A slug's latest explicit decision, else: sent to someone on the public list whose send took
# the snapshot.
_SENT = (
    "SELECT 1 FROM issue_snapshots s JOIN campaigns c"
    " ON c.issue_slug = s.issue_slug AND c.list_name = s.list_name"
    " JOIN campaign_recipients r ON r.campaign_id = c.id"
    " WHERE s.issue_slug = ? AND r.status = 'sent' LIMIT 1"
)
_SENT_SLUGS = (
    "SELECT DISTINCT s.issue_slug FROM issue_snapshots s JOIN campaigns c"
    " ON c.issue_slug = s.issue_slug AND c.list_name = s.list_name WHERE EXISTS"
    " (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'sent')"
)


@dataclass(frozen=True)
class Snapshot:
    """The web version served for a published issue: HTML bytes, a strong ETag (quoted), and
    when it was taken (Unix seconds, for Last-Modified)."""

    slug: str
    html: bytes
    etag: str
    taken_at: float


@dataclass(frozen=True)
class IssueMeta:
    """What the archive, the feeds and the web version's preview card say about an issue, kept
    with its snapshot (so an edit to the file stays private until it is published again).

    `description` is plain text: the preheader as an anonymous reader sees it, else the first
    story's dek, else "". `image` is the first story image's absolute URL ("" if none)."""

    title: str
    date: dt.date
    description: str
    headlines: tuple[str, ...]
    image: str = ""
    image_alt: str = ""

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["date"] = self.date.isoformat()
        data["headlines"] = list(self.headlines)
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IssueMeta:
        data = json.loads(text)
        data["date"] = dt.date.fromisoformat(data["date"])
        data["headlines"] = tuple(data["headlines"])
        return cls(**data)


@dataclass(frozen=True)
class Entry:
    """One published issue as the archive lists it: `entry_id` is its permanent feed id (a
    `tag:` URI, RFC 4151), `updated` when its published content last changed (Unix seconds)."""

    slug: str
    meta: IssueMeta
    entry_id: str
    updated: float


@dataclass(frozen=True)
class Publication:
    """What `publish`/`unpublish` did: the slug, the new state, and whether it changed."""

    slug: str
    published: bool
    changed: bool
    sent: bool  # the issue was sent to a public list (published by that unless unpublished)
    base_url: str = ""
    snapshot: str = ""  # "taken", "refreshed" or "kept" (publish); "" (unpublish)

    def summary(self) -> str:
        state = "published" if self.published else "unpublished"
        already = "" if self.changed else "already "
        where = f" (web version: {self.base_url}/issues/{self.slug}/)"
        if self.published:
            how = {
                "taken": "its web version is a snapshot of the file as it is now",
                "refreshed": "its web version was refreshed from the file as it is now",
                "kept": "its web version is the snapshot taken earlier",
            }.get(self.snapshot)
            return f"Issue {self.slug} is {already}{state}{where}" + (f"; {how}." if how else ".")
        how = " (it was sent, but its web version is no longer served)" if self.sent else ""
        return f"Issue {self.slug} is {already}{state}{how}."


def prepare(conn: db.Connection) -> None:
    """Create the publishing table if needed (call once with a writable connection)."""
    db.migrate(conn, COMPONENT, MIGRATIONS, POSTGRESQL_MIGRATIONS)


def is_published(conn: db.Connection, slug: str) -> bool:
    """True if the issue `slug` may be served publicly (read-only; works before any migration)."""
    if _has_table(conn, "issue_publications"):
        row = conn.execute(
            "SELECT published FROM issue_publications WHERE issue_slug = ?", (slug,)
        ).fetchone()
        if row is not None:
            return bool(row[0])
    return _was_sent(conn, slug)


def published_slugs(conn: db.Connection) -> set[str]:
    """Every published slug (for an archive or a feed)."""
    slugs: set[str] = set()
    if _has_table(conn, "campaign_recipients") and _has_table(conn, "issue_snapshots"):
        slugs.update(str(r[0]) for r in conn.execute(_SENT_SLUGS).fetchall())
    if _has_table(conn, "issue_publications"):
        for slug, published in conn.execute(
            "SELECT issue_slug, published FROM issue_publications"
        ).fetchall():
            (slugs.add if published else slugs.discard)(str(slug))
    return slugs


def last_change(conn: db.Connection) -> dt.datetime | None:
    """When an issue was last published or unpublished explicitly (None: never); read-only."""
    if not _has_table(conn, "issue_publications"):
        return None
    row = conn.execute("SELECT max(changed_at) FROM issue_publications").fetchone()
    if row is None or row[0] is None:
        return None
    return dt.datetime.strptime(str(row[0]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def published_snapshot(conn: db.Connection, slug: str) -> Snapshot | None:
    """What to serve for `slug`: its snapshot if the issue is published, else None (read-only)."""
    if not _has_table(conn, "issue_snapshots") or not is_published(conn, slug):
        return None
    row = conn.execute(
        "SELECT html, etag, taken_at FROM issue_snapshots WHERE issue_slug = ?", (slug,)
    ).fetchone()
    return Snapshot(slug, bytes(row[0]), str(row[1]), float(row[2])) if row else None


def published_entries(conn: db.Connection) -> list[Entry]:
    """Every published issue that has a snapshot with its meta, newest first (issue date, then
    slug, both descending): what the archive, the feeds and the web version's previous/next
    links show. Read-only; [] on a database without snapshots."""
    if not _has_table(conn, "issue_snapshots") or not _has_column(conn, "issue_snapshots", "meta"):
        return []
    slugs = published_slugs(conn)
    rows = conn.execute(
        "SELECT issue_slug, meta, entry_id, taken_at FROM issue_snapshots WHERE meta != ''"
    ).fetchall()
    entries = [
        Entry(str(r[0]), IssueMeta.from_json(str(r[1])), str(r[2]), float(r[3]))
        for r in rows
        if str(r[0]) in slugs
    ]
    entries.sort(key=lambda e: (e.meta.date, e.slug), reverse=True)
    return entries


def issue_meta(compiled: CompiledIssue) -> IssueMeta:
    """The meta of a compiled issue (see IssueMeta)."""
    from newsletter.placeholders import Recipient

    issue, config = compiled.issue, compiled.config
    preheader = compiled.preheader.render(compiled.values_for(Recipient(email=""), ""))
    deks = [s.dek for s in issue.stories if s.dek]
    description = " ".join((preheader or (deks[0] if deks else "")).split())
    image = next((s.image for s in issue.stories if s.image is not None), None)
    url = ""
    if image is not None:
        url = image.local.url(config.base_url, issue.slug) if image.local else image.url
    return IssueMeta(
        title=issue.title,
        date=issue.date,
        description=description,
        headlines=tuple(s.headline for s in issue.stories),
        image=url,
        image_alt=image.alt if image is not None else "",
    )


def entry_id(base_url: str, slug: str, date: dt.date) -> str:
    """`tag:<host>,<date>:issues/<slug>` (RFC 4151): made once, when the issue is first
    published, and stored, so a later change of base_url does not change it."""
    host = urlsplit(base_url).hostname or "localhost"
    return f"tag:{host},{date.isoformat()}:issues/{slug}"


def snapshot_for_send(conn: db.Connection, compiled: CompiledIssue, list_name: str) -> bool:
    """Before a send of `compiled` to the *public* list `list_name`: keep its web version as it
    is now, unless an earlier public send or `publish` already did. True if taken now. The
    issue is published (served) once someone on that list was sent it."""
    prepare(conn)
    body = compiled.web_html.encode()
    meta = issue_meta(compiled)
    slug = compiled.issue.slug
    cur = conn.execute(
        "INSERT INTO issue_snapshots (issue_slug, html, etag, taken_at, list_name,"
        " meta, entry_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (issue_slug) DO NOTHING",
        (
            slug,
            body,
            _etag(body),
            clock.now().timestamp(),
            list_name,
            meta.to_json(),
            entry_id(compiled.config.base_url, slug, meta.date),
        ),
    )
    return cur.rowcount == 1


def set_published(
    conn: db.Connection, slug: str, published: bool, *, by: str = "cli"
) -> Publication:
    """Record an explicit publish/unpublish decision for `slug`; idempotent."""
    prepare(conn)
    before = is_published(conn, slug)
    conn.execute(
        "INSERT INTO issue_publications (issue_slug, published, changed_by) VALUES (?, ?, ?)"
        " ON CONFLICT (issue_slug) DO UPDATE SET published = excluded.published,"
        " changed_at = excluded.changed_at, changed_by = excluded.changed_by"
        " WHERE issue_publications.published != excluded.published",
        (slug, int(published), by),
    )
    return Publication(slug, published, before != published, _was_sent(conn, slug))


def publish_issue(config: Config, issue: str | Path, *, published: bool = True) -> Publication:
    """`newsletter publish ISSUE` / `unpublish`: ISSUE is an issue file (anywhere) or its slug.

    Publishing checks the file first (an issue with `check` errors, such as a skeleton's TODO
    text, is refused with its diagnostics) and takes (or refreshes) the snapshot that `serve`
    shows. A slug without a file in `issues/` can be published again only if it has a snapshot
    (which is kept). Unpublishing only needs the slug. Raises NewsletterError for an unknown
    issue."""
    from newsletter.issue import welcome_slug

    slug, path = _resolve(config, issue, need_file=False)
    if published and slug == welcome_slug(config.welcome):
        raise NewsletterError(
            f"'{slug}' is the welcome issue: it goes to each new subscriber and is never "
            "published (no web page, not in the archive or feeds)"
        )
    compiled = _compiled(config, path) if published and path is not None else None
    if path is None and not db.exists(config.database):
        raise NewsletterError(f"no issue with slug {slug!r} in {config.root / 'issues'}")
    conn = db.connect(config.database)
    try:
        prepare(conn)
        had = _has_snapshot(conn, slug)
        if path is None and not had and not _ever_published(conn, slug):
            how = "; name its file" if published else ""
            raise NewsletterError(
                f"no issue with slug {slug!r} in {config.root / 'issues'}, and none was "
                f"ever published{how}"
            )
        if published and path is not None:
            _keep_images(conn, path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if compiled is not None:
                _store_snapshot(conn, compiled)
            done = set_published(conn, slug, published)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    taken = "" if not published else "kept" if compiled is None else "refreshed" if had else "taken"
    return dataclasses.replace(done, base_url=config.base_url, snapshot=taken)


def _keep_images(conn: db.Connection, path: Path) -> None:
    """Keep the issue's local images as they are now (newsletter.imagestore), so the URLs its
    web version and emails name keep answering after the files change."""
    from newsletter.imagestore import keep_issue_images
    from newsletter.issue import load_issue

    keep_issue_images(conn, load_issue(path))


def issue_path(config: Config, slug: str) -> Path | None:
    """The file in `issues/` (or the welcome issue, wherever `welcome:` puts it) whose slug is
    `slug`, or whose base name is (`_welcome` names issues/_welcome.yaml as `welcome` does)."""
    from newsletter.issue import slugify

    folder = config.root / "issues"
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    if config.welcome is not None and config.welcome.parent.resolve() != folder.resolve():
        files.append(config.welcome)
    found = [p for p in files if slug in (slugify(p.stem), p.stem)]
    if len(found) > 1:
        names = ", ".join(str(p) for p in found)
        raise NewsletterError(f"{names} share the slug {slug!r}: rename all but one of them")
    return found[0] if found else None


def _resolve(config: Config, issue: str | Path, *, need_file: bool) -> tuple[str, Path | None]:
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
        path = issue_path(config, text)  # a slug, or a file's base name (`_welcome`)
        slug = slugify(path.stem) if path is not None else text
        if path is None and slugify(text) != text:
            raise NewsletterError(
                f"{text!r} is neither an issue file nor an issue slug (like 2026-11-25-title)"
            )
    if path is None:
        if need_file:
            raise NewsletterError(f"no issue with slug {slug!r} in {config.root / 'issues'}")
        return slug, None
    return slug, path


def _compiled(config: Config, path: Path) -> CompiledIssue:
    """The checked issue, compiled (NewsletterError with the diagnostics if it has errors)."""
    from newsletter.issue import load_issue
    from newsletter.render.compile import compile_issue

    _refuse_invalid(config, path)
    return compile_issue(load_issue(path), config)


# taken_at (Last-Modified, the feeds' `updated`) moves only when what is published changed, so
# publishing an unchanged file again changes no byte of the archive.
_STORE = (
    "INSERT INTO issue_snapshots (issue_slug, html, etag, taken_at, meta, entry_id)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (issue_slug) DO UPDATE SET html = excluded.html, etag = excluded.etag,"
    " taken_at = CASE WHEN issue_snapshots.etag = excluded.etag"
    " AND issue_snapshots.meta = excluded.meta THEN issue_snapshots.taken_at"
    " ELSE excluded.taken_at END, meta = excluded.meta,"
    " entry_id = CASE WHEN issue_snapshots.entry_id = '' THEN excluded.entry_id"
    " ELSE issue_snapshots.entry_id END"
)


def _store_snapshot(conn: db.Connection, compiled: CompiledIssue) -> None:
    body = compiled.web_html.encode()
    meta = issue_meta(compiled)
    slug = compiled.issue.slug
    ident = entry_id(compiled.config.base_url, slug, meta.date)
    conn.execute(_STORE, (slug, body, _etag(body), clock.now().timestamp(), meta.to_json(), ident))


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _ever_published(conn: db.Connection, slug: str) -> bool:
    row = conn.execute("SELECT 1 FROM issue_publications WHERE issue_slug = ?", (slug,)).fetchone()
    return row is not None or _was_sent(conn, slug)


def _has_snapshot(conn: db.Connection, slug: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM issue_snapshots WHERE issue_slug = ?", (slug,)).fetchone()
        is not None
    )


def _refuse_invalid(config: Config, path: Path) -> None:
    from newsletter.lint import check_issue

    errors = [d for d in check_issue(path, config) if d.severity == "error"]
    if errors:
        lines = "\n".join(d.format() for d in errors)
        raise NewsletterError(f"{path} has errors; fix them before publishing:\n{lines}")


_has_table = db.has_table


def _has_column(conn: db.Connection, table: str, column: str) -> bool:
    if db.is_postgresql(conn):
        sql = (
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? AND column_name = ?"
        )
        return conn.execute(sql, (table, column)).fetchone() is not None
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _was_sent(conn: db.Connection, slug: str) -> bool:
    if not _has_table(conn, "campaign_recipients") or not _has_table(conn, "issue_snapshots"):
        return False
    return conn.execute(_SENT, (slug,)).fetchone() is not None


__all__ = [
    "Entry",
    "IssueMeta",
    "Publication",
    "Snapshot",
    "entry_id",
    "is_published",
    "issue_meta",
    "issue_path",
    "prepare",
    "publish_issue",
    "published_entries",
    "published_slugs",
    "published_snapshot",
    "set_published",
    "snapshot_for_send",
]
