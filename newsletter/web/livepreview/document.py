"""Turn the email's HTML into the document a preview frame shows: light or dark, links in new tabs.

A frame cannot be told "the reader prefers dark" on its own: `prefers-color-scheme` follows the
operating system (or, in some browsers, the frame element's `color-scheme`). So the preview pins
the scheme in the document itself: the theme's `(prefers-color-scheme: dark)` conditions are
rewritten to always-true for the dark view and always-false for the light one, which is exactly
what Apple Mail or Outlook.com apply for a reader in that mode, independent of the developer's OS.
"""

from __future__ import annotations

import re
from typing import Literal

Scheme = Literal["light", "dark"]

# A media feature `(prefers-color-scheme: dark|light)`, inside an @media prelude or a <link media>.
_FEATURE = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.I)
_ALWAYS = "(min-width: 0px)"
_NEVER = "(max-width: -1px)"  # an impossible width: the query never matches
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.I)
_HTML = re.compile(r"<html(\s[^>]*)?>", re.I)
_COLOR_SCHEME_META = re.compile(
    r"""<meta\s[^>]*name\s*=\s*["']?(?:color-scheme|supported-color-schemes)["']?[^>]*>""", re.I
)


def pin_color_scheme(html: str, scheme: Scheme) -> str:
    """Rewrite every prefers-color-scheme condition so the document renders in `scheme`."""

    def replace(match: re.Match[str]) -> str:
        return _ALWAYS if match.group(1).lower() == scheme else _NEVER

    return _FEATURE.sub(replace, html)


def declares_dark_support(html: str) -> bool:
    """Whether the email says it handles dark mode (clients only darken such emails themselves)."""
    return any("dark" in m.group().lower() for m in _COLOR_SCHEME_META.finditer(html))


def frame_document(html: str, scheme: Scheme) -> str:
    """The email as a recipient in `scheme` sees it, made safe to show in a preview frame."""
    document = pin_color_scheme(html, scheme)
    # Clicking a link must not navigate the frame away from the preview.
    extra = '<base target="_blank">'
    if scheme == "dark" and declares_dark_support(html):
        # What a dark-mode client does for an email declaring `color-scheme: light dark`:
        # default canvas, text and scrollbar colours turn dark too.
        extra += "<style>:root{color-scheme:dark!important}</style>"
    elif scheme == "light":
        extra += "<style>:root{color-scheme:light!important}</style>"
    head = _HEAD.search(document)
    if head:
        return document[: head.end()] + extra + document[head.end() :]
    root = _HTML.search(document)
    if root:
        return document[: root.end()] + "<head>" + extra + "</head>" + document[root.end() :]
    return "<!doctype html><head>" + extra + "</head>" + document
