"""`headers:` of newsletter.yaml: extra header fields for every issue message, validated.

Each name is an RFC 5322 field name (3.6.8: printable ASCII, no colon) that the message builder
does not write itself and that does not shape the message: a second From, Message-ID or
List-Unsubscribe makes a message invalid or ambiguous to filters, a Content-* one breaks its
MIME structure, DKIM-Signature, Return-Path or Received would forge transit. Each value is YAML
text (a number, yes/no or date is refused with "quote it": YAML would turn `1.10` into 1.1), one
line of ASCII, sent verbatim (no RFC 2047 encoding), so CR, LF, other controls and "=?" are
refused. Every problem is a ConfigError at the entry's line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError
from newsletter.yamlsource import YamlDocument

RESERVED_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
        "in-reply-to", "references", "mime-version", "return-path", "received",
        "dkim-signature", "authentication-results", "feedback-id", "precedence",
        "x-auto-response-suppress", "auto-submitted", "errors-to",
    }
)  # fmt: skip
RESERVED_HEADER_PREFIXES = ("content-", "list-", "resent-", "arc-")
HEADER_VALUE_MAX = 900  # octets of name + value: the line stays well within 998 (RFC 5322 2.1.1)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def reserved_header(name: str) -> bool:
    """A field newsletter writes itself or that shapes the message (case-insensitive)."""
    lower = name.lower()
    return lower in RESERVED_HEADERS or lower.startswith(RESERVED_HEADER_PREFIXES)


def parse_headers(
    raw: Any, path: Path | None, doc: YamlDocument | None
) -> tuple[tuple[str, str], ...]:
    """`headers: {X-Campaign: weekly}` as ((name, value), ...) in the file's order; None gives
    (). ConfigError at the entry's line for a reserved or invalid name, a name given twice
    (names are case-insensitive), or a value that is not one line of ASCII text."""

    def line(*keys: str, key: bool = False) -> int | None:
        return doc.where(("headers", *keys), key=key)[0] if doc is not None else None

    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(
            "'headers' must be a mapping of header names to values, e.g. "
            "'headers: {X-Campaign: weekly}'",
            path,
            line(),
        )
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in raw.items():
        name = str(key)
        problem = _name_problem(name, seen)
        if problem:
            raise ConfigError(f"'headers': {problem}", path, line(name, key=True))
        if not isinstance(value, str):
            # YAML turns `1.10` into the number 1.1, `010` into 8, `yes` into true, a date into
            # a date: the header would not be what was written.
            raise ConfigError(
                f"'headers.{name}' must be text, and YAML read this value as "
                f"{_yaml_kind(value)}; quote it to send it as written, "
                f"e.g. '{name}: \"1.10\"'",
                path,
                line(name),
            )
        text = value.strip()
        problem = _value_problem(name, text)
        if problem:
            raise ConfigError(f"'headers.{name}' {problem}, got {_shown(text)}", path, line(name))
        seen.add(name.lower())
        out.append((name, text))
    return tuple(out)


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, list | dict):
        return "a list or mapping"
    if isinstance(value, bool):
        kind = "a yes/no value"
    elif isinstance(value, int | float):
        kind = "a number"
    else:
        kind = f"a {type(value).__name__}"
    return f"{kind} ({str(value)[:SHOWN_MAX]})"


SHOWN_MAX = 60  # characters of a refused value echoed in an error


def _shown(text: str) -> str:
    """`text` quoted for an error message, cut after SHOWN_MAX characters."""
    if len(text) <= SHOWN_MAX:
        return repr(text)
    return f"{text[:SHOWN_MAX]!r}... ({len(text):,} characters)"


def _name_problem(name: str, seen: set[str]) -> str:
    if not _FIELD_NAME.match(name):
        return (
            f"invalid header name {name!r}: use printable ASCII without spaces or ':' "
            "(RFC 5322 3.6.8)"
        )
    if reserved_header(name):
        return (
            f"{name} is set by newsletter itself or gives the message its structure (From, To, "
            "Subject, Date, Message-ID, MIME-Version, Content-*, List-*, DKIM-Signature, "
            "Return-Path, Feedback-ID, Precedence, X-Auto-Response-Suppress...): it cannot be "
            "added"
        )
    if name.lower() in seen:
        return f"{name} is given twice (header names are case-insensitive)"
    return ""


def _value_problem(name: str, text: str) -> str:
    if not text:
        return "must not be empty"
    if _CONTROL.search(text):
        return "must be a single line (a line break would start a new header)"
    if not text.isascii():
        return "must be ASCII (a custom header is sent as written, without RFC 2047 encoding)"
    if "=?" in text:
        return "must not contain '=?': mail programs would decode it as an RFC 2047 encoded-word"
    if len(name) + len(text) > HEADER_VALUE_MAX:
        return f"is too long (at most {HEADER_VALUE_MAX} characters with the name)"
    return ""
