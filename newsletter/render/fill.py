"""Compiled text with per-recipient slots: built once per issue, filled per recipient.

The renderer puts a marker (`NLSLOT0007X`: plain letters and digits, so it survives Markdown,
MJML, premailer and URL-encoding) wherever a per-recipient value goes, then cuts the finished
output at the markers. Filling is a join over the pieces: no template engine runs per recipient.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Literal

from newsletter.render.urlslots import clean_url, encode_component, html_position, text_position

MARKER = re.compile(r"NLSLOT(\d{4})X")
# How a value goes into its place: "html" and "text" as they are (HTML-escaped or not); the
# others sit in a URL (see urlslots): "*-part" one encoded component, "*-url" a whole URL that
# must pass `clean_url`, "html-tag" a whole element (`<a ...>`, `<img ...>`) kept only when its
# URL passes, "html-close" the `</a>` that goes with it.
Escape = Literal[
    "html", "text", "html-part", "text-part", "html-url", "text-url", "html-tag", "html-close"
]


def marker(index: int) -> str:
    return f"NLSLOT{index:04d}X"


@dataclass(frozen=True)
class Slot:
    name: str  # key into the per-recipient values, e.g. "unsubscribe_url" or "expr:3"
    escape: Escape
    before: str = ""  # "html-tag": the element up to the value; "html-close": the close tag
    after: str = ""  # "html-tag": the rest of the opening tag

    def apply(self, value: str) -> str:
        """The text that stands in the output for `value`."""
        return _APPLY[self.escape](self, value)

    @property
    def is_url(self) -> bool:
        """A whole URL from a per-recipient value, checked (and maybe dropped) when filled."""
        return self.escape in ("html-url", "text-url", "html-tag")


def _whole_html(slot: Slot, value: str) -> str:
    url = clean_url(value)
    return "" if url is None else html.escape(url, quote=True)


def _tag(slot: Slot, value: str) -> str:
    url = clean_url(value)
    return "" if url is None else slot.before + html.escape(url, quote=True) + slot.after


_APPLY: dict[str, Callable[[Slot, str], str]] = {
    "html": lambda _, v: html.escape(v, quote=True),
    "text": lambda _, v: v,
    "html-part": lambda _, v: html.escape(encode_component(v), quote=True),
    "text-part": lambda _, v: encode_component(v),
    "html-url": _whole_html,
    "text-url": lambda _, v: clean_url(v) or "",
    "html-tag": _tag,
    "html-close": lambda s, v: s.before if clean_url(v) is not None else "",
}


@dataclass(frozen=True)
class Fill:
    pieces: tuple[str | Slot, ...]

    @classmethod
    def from_marked(
        cls,
        text: str,
        slots: list[str],
        escape: Escape,
        in_urls: Container[str] = (),
    ) -> Fill:
        """Cut `text` at markers; marker N stands for the value named slots[N].

        Slots named in `in_urls` (per-recipient data) are looked up in the output: inside an
        href/src value (HTML) or a `[n] URL` reference (text) they become URL slots."""
        pieces: list[str | Slot] = []
        last = 0
        close_at: dict[int, Slot] = {}  # where a droppable link's `</a>` starts
        for match in MARKER.finditer(text):
            name = slots[int(match.group(1))]
            if match.start() < last:
                continue  # inside a droppable element already cut out
            slot, start, end = Slot(name, escape), match.start(), match.end()
            if name in in_urls:
                slot, start, end = _url_slot(text, name, escape, start, end, close_at)
            for at in sorted(a for a in close_at if last <= a < start):
                closing = close_at.pop(at)
                pieces += [text[last:at], closing]
                last = at + len(closing.before)
            pieces.append(text[last:start])
            pieces.append(slot)
            last = end
        for at in sorted(close_at):
            closing = close_at[at]
            pieces += [text[last:at], closing]
            last = at + len(closing.before)
        pieces.append(text[last:])
        return cls(tuple(p for p in pieces if p != ""))

    @property
    def url_slots(self) -> set[str]:
        """Names of the slots that are a whole URL (checked per recipient)."""
        return {p.name for p in self.pieces if isinstance(p, Slot) and p.is_url}

    def render(self, values: Mapping[str, str]) -> str:
        out: list[str] = []
        append = out.append
        for piece in self.pieces:
            if piece.__class__ is str:
                append(piece)  # type: ignore[arg-type]
            else:
                append(piece.apply(values[piece.name]))  # type: ignore[union-attr]
        return "".join(out)


def _url_slot(
    text: str, name: str, escape: Escape, start: int, end: int, close_at: dict[int, Slot]
) -> tuple[Slot, int, int]:
    """The slot for the marker at text[start:end] and the span of text it replaces."""
    if escape == "text":
        position = text_position(text, start)
        kind = {"whole": "text-url", "part": "text-part", None: "text"}[position]
        return Slot(name, kind), start, end  # type: ignore[arg-type]
    found = html_position(text, start)
    if found is None:
        return Slot(name, escape), start, end
    position, tag = found
    if position == "part":
        return Slot(name, "html-part"), start, end
    if tag is None or MARKER.search(text, tag.start, start) or MARKER.search(text, end, tag.end):
        return Slot(name, "html-url"), start, end  # an unusual element: left without a URL
    slot = Slot(name, "html-tag", text[tag.start : start], text[end : tag.end])
    if tag.close is not None and tag.close_end is not None:
        close_at[tag.close] = Slot(name, "html-close", text[tag.close : tag.close_end])
    return slot, tag.start, tag.end
