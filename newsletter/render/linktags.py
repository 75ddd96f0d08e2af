"""UTM link tagging (off by default): `utm: {source: newsletter, medium: email}` in
newsletter.yaml gives every http(s) link of an issue's stories, intro and outro `utm_source`,
`utm_medium` and `utm_campaign` (the issue's slug), in the HTML part, the text part and the web
version alike. Applied once per issue, while compiling (never per recipient).

Left alone: links that already carry any `utm_` parameter (the writer chose), mailto: and every
other scheme, and the links the theme adds itself (unsubscribe, web version), which never pass
through here. Existing query parameters and the fragment are kept as written. No open or click
tracking: the link still goes straight to its site.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from newsletter.config import Config


@dataclass(frozen=True)
class LinkTags:
    """The three UTM values of one issue (hashable: part of the Markdown cache key)."""

    source: str
    medium: str
    campaign: str

    @classmethod
    def for_issue(cls, config: Config, slug: str) -> LinkTags | None:
        """The issue's tags, or None when newsletter.yaml has no `utm:`."""
        if config.utm is None:
            return None
        return cls(config.utm.source, config.utm.medium, slug)

    def apply(self, url: str) -> str:
        """`url` with utm_source, utm_medium, utm_campaign appended to its query (percent-encoded
        per RFC 3986); unchanged if it is not http(s) or already has a `utm_` parameter."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            return url
        names = [field.split("=", 1)[0].lower() for field in parts.query.split("&") if field]
        if any(name.startswith("utm_") for name in names):
            return url
        added = "&".join(
            f"utm_{name}={quote(value, safe='')}"
            for name, value in (
                ("source", self.source),
                ("medium", self.medium),
                ("campaign", self.campaign),
            )
        )
        query = f"{parts.query}&{added}" if parts.query else added
        return urlunsplit(parts._replace(query=query))
