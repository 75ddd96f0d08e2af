"""Per-recipient values inside URLs: where a slot sits in the output, and what may go there.

Found once per issue, when the compiled output is cut at its slot markers:

- `whole`: the slot is the whole URL (`[site]({{ subscriber.fields.site }})`). The value must
  be an absolute http, https or mailto URL, read the way a browser reads it (WHATWG URL:
  surrounding spaces and C0 controls stripped, tabs and line breaks removed), so ` javascript:`
  cannot slip through. Anything else is dropped: an HTML link keeps its text without the link,
  an image goes, and the plain-text reference is left empty.
- `part`: the slot is inside a URL the issue wrote (`https://example.com/u/{{ ... }}?q=...`):
  the value is one path segment or query value, percent-encoded with everything but RFC 3986's
  unreserved characters, so `?`, `#`, `&`, `/` or a quote cannot change the URL around it.

`check` refuses a placeholder in a URL's scheme or host before anything is sent; this module is
what keeps a subscriber's own field from becoming a `javascript:` link when one gets through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from markdown_it.common.normalize_url import normalizeLink

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_AROUND = "".join(chr(c) for c in range(0x21))  # C0 controls and space (WHATWG strips them)
_INSIDE = str.maketrans("", "", "\t\n\r")  # WHATWG removes these anywhere in a URL
_URL_ATTRIBUTE = re.compile(r'\s(?:href|src)="([^"]*)$')
_REFERENCE = re.compile(r"[ \t]*\[\d+\] (\S*)$")  # `[1] https://...` in the text part

Position = Literal["whole", "part"]


def clean_url(value: str) -> str | None:
    """`value` as an encoded absolute URL, or None when its scheme is not http, https or mailto
    (or it has none: `//evil.example`, a bare word)."""
    url = value.strip(_AROUND).translate(_INSIDE)
    match = _SCHEME.match(url)
    if match is None or match.group(1).lower() not in ALLOWED_SCHEMES:
        return None
    return normalizeLink(url)  # percent-encoded the way the issue's own links are


def encode_component(value: str) -> str:
    """One path segment or query value (RFC 3986: everything but unreserved is %XX)."""
    return quote(value, safe="")


@dataclass(frozen=True)
class Tag:
    """An HTML element whose URL attribute is a whole-URL slot: text[start:end] is its opening
    tag (with the slot at `slot`), and for a link text[close:close_end] is its `</a>`."""

    start: int
    end: int
    close: int | None = None
    close_end: int | None = None


def html_position(text: str, start: int) -> tuple[Position, Tag | None] | None:
    """Where the slot at text[start] sits in HTML: in an href/src value or not (None).

    For a whole URL, the element to drop when the value is refused (None when its shape is not
    the simple one the renderer writes; the URL is then left empty instead)."""
    tag_start = text.rfind("<", 0, start)
    if tag_start < 0 or text.rfind(">", 0, start) > tag_start:
        return None
    attribute = _URL_ATTRIBUTE.search(text, tag_start, start)
    if attribute is None:
        return None
    if attribute.group(1):
        return "part", None
    tag_end = text.find(">", start) + 1
    if tag_end <= 0:
        return "whole", None
    name = re.match(r"<([a-zA-Z]+)", text[tag_start:tag_end])
    if name is None or name.group(1).lower() not in ("a", "img"):
        return "whole", None
    if name.group(1).lower() == "img":
        return "whole", Tag(tag_start, tag_end)
    close = text.find("</a>", tag_end)
    if close < 0:
        return "whole", None
    return "whole", Tag(tag_start, tag_end, close, close + len("</a>"))


def text_position(text: str, start: int) -> Position | None:
    """Where the slot at text[start] sits in the text part: in a `[n] URL` reference or not."""
    line_start = text.rfind("\n", 0, start) + 1
    match = _REFERENCE.match(text, line_start, start)
    if match is None:
        return None
    return "part" if match.group(1) else "whole"
