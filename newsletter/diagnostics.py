"""A located problem in a source file, as `check` reports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int
    col: int
    severity: Severity
    field: str  # dotted field path such as "stories[0].why_it_matters"; "" for the whole file
    message: str
    # A second, more technical line (PyYAML's own words for a syntax error), for experts.
    detail: str = ""

    def format(self) -> str:
        field = f"{self.field}: " if self.field else ""
        first = f"{self.path}:{self.line}:{self.col}: {self.severity}: {field}{self.message}"
        return f"{first}\n    ({self.detail})" if self.detail else first

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values; `detail` only when there is one."""
        out = asdict(self)
        if not self.detail:
            del out["detail"]
        return out


def field_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
