"""The archive's machine-readable files: Atom 1.0 (RFC 4287, written by feedgen), JSON Feed 1.1
(https://jsonfeed.org/version/1.1), sitemap.xml (sitemaps.org 0.9) and robots.txt.

Every URL is absolute under base_url. Deterministic: entries newest first, times only from the
database (an entry is `published` on its issue date, `updated` when its published content last
changed; the feed's `updated` is its newest entry's), never the clock.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from feedgen.feed import FeedGenerator
from markupsafe import escape as html_escape

from newsletter.publishing import Entry

if TYPE_CHECKING:
    from newsletter.config import Config

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # the `updated` of a feed with no entry yet


def published_at(entry: Entry) -> dt.datetime:
    """Midnight UTC of the issue's date."""
    return dt.datetime.combine(entry.meta.date, dt.time(), tzinfo=dt.UTC)


def updated_at(entry: Entry) -> dt.datetime:
    """When the published content last changed (whole seconds, UTC), never before publication."""
    changed = dt.datetime.fromtimestamp(int(entry.updated), dt.UTC)
    return max(changed, published_at(entry))


def feed_updated(entries: list[Entry]) -> dt.datetime:
    return max((updated_at(e) for e in entries), default=EPOCH)


def _content_html(entry: Entry) -> str:
    items = "".join(f"<li>{html_escape(h)}</li>" for h in entry.meta.headlines)
    lead = f"<p>{html_escape(entry.meta.description)}</p>" if entry.meta.description else ""
    return f"{lead}<ul>{items}</ul>"


def atom(config: Config, entries: list[Entry], emptied_at: dt.datetime | None = None) -> bytes:
    """Atom 1.0: one entry per issue, id its stored `tag:` URI, summary its description.
    `updated` (required by RFC 4287) is the newest entry's; of a feed with no entry, the moment
    its last issue was unpublished (`emptied_at`), else (nothing ever published) the epoch."""
    base = config.base_url
    fg = FeedGenerator()
    fg.id(f"{base}/")
    fg.title(config.name)
    fg.author({"name": config.name})
    fg.link(href=f"{base}/", rel="alternate", type="text/html")
    fg.link(href=f"{base}/feed.xml", rel="self", type="application/atom+xml")
    fg.language(config.language)
    fg.generator("newsletter")
    fg.updated(feed_updated(entries) if entries or emptied_at is None else emptied_at)
    for entry in entries:
        fe = fg.add_entry(order="append")
        fe.id(entry.entry_id)
        fe.title(entry.meta.title)
        fe.link(href=f"{base}/issues/{entry.slug}/", rel="alternate", type="text/html")
        fe.published(published_at(entry))
        fe.updated(updated_at(entry))
        fe.summary(entry.meta.description or entry.meta.title)
        fe.content(_content_html(entry), type="html")
    return bytes(fg.atom_str(pretty=True))


def json_feed(config: Config, entries: list[Entry]) -> bytes:
    """JSON Feed 1.1, the same items as the Atom feed."""
    base = config.base_url
    items = []
    for entry in entries:
        item = {
            "id": entry.entry_id,
            "url": f"{base}/issues/{entry.slug}/",
            "title": entry.meta.title,
            "summary": entry.meta.description or entry.meta.title,
            "content_html": _content_html(entry),
            "date_published": _rfc3339(published_at(entry)),
            "date_modified": _rfc3339(updated_at(entry)),
        }
        if entry.meta.image:
            item["image"] = entry.meta.image
        items.append(item)
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": config.name,
        "home_page_url": f"{base}/",
        "feed_url": f"{base}/feed.json",
        "language": config.language,
        "authors": [{"name": config.name}],
        "items": items,
    }
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode()


def sitemap(config: Config, entries: list[Entry]) -> bytes:
    base = config.base_url
    newest = feed_updated(entries) if entries else None
    # Both index pages: the home page and /issues/ (the archive's list, served at both).
    urls = [(f"{base}/", newest), (f"{base}/issues/", newest)]
    urls += [(f"{base}/issues/{e.slug}/", updated_at(e)) for e in entries]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
    ]
    for loc, modified in urls:
        lastmod = f"<lastmod>{_rfc3339(modified)}</lastmod>" if modified else ""
        lines.append(f"  <url><loc>{escape(loc)}</loc>{lastmod}</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode()


def robots(config: Config) -> bytes:
    return f"User-agent: *\nAllow: /\n\nSitemap: {config.base_url}/sitemap.xml\n".encode()


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
