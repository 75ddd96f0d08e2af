"""The archive's HTML pages, rendered from the theme's `archive/` templates.

Links between pages are relative and name files (`issues/<slug>/index.html`, `../../index.html`)
so the same bytes work from any static host, from `newsletter serve` and opened from the file
system (where a folder is not a page). Links that leave the page for good (canonical, Open
Graph, the feeds' own links, the sign-up form) are absolute under `base_url`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.publishing import Entry
from newsletter.render import theme
from newsletter.subscribers import DEFAULT_LIST

if TYPE_CHECKING:
    from newsletter.config import Config

INDEX = "index.html"
_BODY_OPEN = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class PageLink:
    title: str
    href: str


@dataclass(frozen=True)
class SignupForm:
    action: str  # absolute: serve's sign-up page
    list_name: str


class ArchiveSite:
    """The pages of the published `entries` (newest first, see publishing.published_entries)."""

    def __init__(self, config: Config, entries: list[Entry]) -> None:
        self.config = config
        self.entries = entries
        self.base_url = config.base_url
        self.env = theme.environment(config)

    def issue_url(self, slug: str) -> str:
        return f"{self.base_url}/issues/{slug}/"

    def index(self, depth: int) -> bytes:
        """The index page for `index.html` (depth 0) or `issues/index.html` (depth 1)."""
        up = "../" * depth
        entries = [
            {
                "title": e.meta.title,
                "date": e.meta.date,
                "description": e.meta.description,
                "headlines": e.meta.headlines,
                "href": f"{up}issues/{e.slug}/{INDEX}",
            }
            for e in self.entries
        ]
        context = {
            **self._common(up),
            "entries": entries,
            "canonical": f"{self.base_url}/",
        }
        return theme.render(self.env, "archive/index.html", context).encode()

    def issue_page(self, slug: str, snapshot: bytes) -> bytes:
        """The published web version `snapshot` of `slug` with the archive's additions: head
        meta (canonical, Open Graph, Twitter card), a bar above and one below (previous, next,
        all issues, sign-up form). The snapshot itself is not re-rendered."""
        at = next((i for i, e in enumerate(self.entries) if e.slug == slug), None)
        if at is None:
            return snapshot  # published before snapshots kept their meta: served as it was
        entry = self.entries[at]
        older = self.entries[at + 1] if at + 1 < len(self.entries) else None
        newer = self.entries[at - 1] if at > 0 else None
        context = {
            **self._common("../../"),
            "issue": entry.meta,
            "canonical": self.issue_url(slug),
            "previous": _link(older),
            "next": _link(newer),
            "signup": self._signup(),
        }
        head = theme.render(self.env, "archive/issue-head.html", context).encode()
        top = theme.render(self.env, "archive/issue-top.html", context).encode()
        bottom = theme.render(self.env, "archive/issue-bottom.html", context).encode()
        return _splice(self._own_images_relative(slug, snapshot), head, top, bottom)

    def _own_images_relative(self, slug: str, snapshot: bytes) -> bytes:
        """The issue's local images (`<base_url>/issues/<slug>/<name>`, beside the page in the
        archive) named relatively, so they show from disk and from any host too."""
        own = html.escape(f"{self.base_url}/issues/{slug}/", quote=True).encode()
        return snapshot.replace(b'src="' + own, b'src="')

    def _common(self, up: str) -> dict[str, Any]:
        return {
            "newsletter": {
                "name": self.config.name,
                "language": self.config.language,
                "base_url": self.base_url,
            },
            "brand": self.config.brand,
            "links": {
                "archive": f"{up}{INDEX}",
                "feed_atom": f"{up}feed.xml",
                "feed_json": f"{up}feed.json",
                "subscribe": f"{self.base_url}{path}" if (path := self.config.signup_path) else "",
            },
        }

    def _signup(self) -> SignupForm | None:
        public = sorted(self.config.public_lists)
        if not public:
            return None
        list_name = DEFAULT_LIST if DEFAULT_LIST in public else public[0]
        return SignupForm(f"{self.base_url}/subscribe", list_name)


def _link(entry: Entry | None) -> PageLink | None:
    if entry is None:
        return None
    return PageLink(entry.meta.title, f"../{entry.slug}/{INDEX}")


def _splice(page: bytes, head: bytes, top: bytes, bottom: bytes) -> bytes:
    """`head` before </head>, `top` right after <body ...>, `bottom` before </body>; a page
    without those tags gets the pieces around it instead."""
    end_head = page.lower().find(b"</head>")
    if end_head >= 0:
        page = page[:end_head] + head + page[end_head:]
    opened = _BODY_OPEN.search(page)
    at = opened.end() if opened else 0
    page = page[:at] + top + page[at:]
    end_body = page.lower().rfind(b"</body>")
    if end_body >= 0:
        return page[:end_body] + bottom + page[end_body:]
    return page + bottom
