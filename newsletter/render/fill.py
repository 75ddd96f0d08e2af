"""Compiled text with per-recipient slots: built once per issue, filled per recipient.

The renderer puts a marker (`NLSLOT0007X`: plain letters and digits, so it survives Markdown,
MJML, premailer and URL-encoding) wherever a per-recipient value goes, then cuts the finished
output at the markers. Filling is a join over the pieces: no template engine runs per recipient.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

MARKER = re.compile(r"NLSLOT(\d{4})X")
Escape = Literal["html", "text"]


def marker(index: int) -> str:
    return f"NLSLOT{index:04d}X"


@dataclass(frozen=True)
class Slot:
    name: str  # key into the per-recipient values, e.g. "unsubscribe_url" or "expr:3"
    escape: Escape


@dataclass(frozen=True)
class Fill:
    pieces: tuple[str | Slot, ...]

    @classmethod
    def from_marked(cls, text: str, slots: list[str], escape: Escape) -> Fill:
        """Cut `text` at markers; marker N stands for the value named slots[N]."""
        pieces: list[str | Slot] = []
        last = 0
        for match in MARKER.finditer(text):
            pieces.append(text[last : match.start()])
            pieces.append(Slot(slots[int(match.group(1))], escape))
            last = match.end()
        pieces.append(text[last:])
        return cls(tuple(p for p in pieces if p != ""))

    @property
    def slot_names(self) -> set[str]:
        return {p.name for p in self.pieces if isinstance(p, Slot)}

    def render(self, values: Mapping[str, str]) -> str:
        out: list[str] = []
        append = out.append
        for piece in self.pieces:
            if piece.__class__ is str:
                append(piece)  # type: ignore[arg-type]
            elif piece.escape == "html":  # type: ignore[union-attr]
                append(html.escape(values[piece.name], quote=True))  # type: ignore[union-attr]
            else:
                append(values[piece.name])  # type: ignore[union-attr]
        return "".join(out)

    def literal_parts(self) -> Iterable[str]:
        return (p for p in self.pieces if isinstance(p, str))
