"""What a subscriber is, and the rules every way in (CLI, import, web form) applies to its data."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _quote  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from newsletter.errors import SubscriberError
from newsletter.placeholders import Recipient

PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = (
    "pending",
    "active",
    "unsubscribed",
    "bounced",
    "complained",
)
STATUSES = (PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED)
# Statuses that end a subscription: only the subscriber's own confirmation can undo them.
STOPPED = frozenset({UNSUBSCRIBED, BOUNCED, COMPLAINED})
DEFAULT_LIST = "default"

NAME_MAX = 200
FIELD_VALUE_MAX = 1000
# Names and fields end up in mail headers (To:, Subject placeholders): no control characters,
# no Unicode line or paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
RESERVED_COLUMNS = frozenset({"email", "name", "status", "lists", "created_at", "tags"})
# A tag: letters (any script), digits, '_', '.', '-'; stored NFC and case-folded, so "Pro" and
# "pro" are one tag. No '|' (the CSV separator), spaces or commas: a tags cell needs no quoting.


@dataclass(frozen=True)
class Subscriber:
    """One subscriber as stored. `lists` is sorted; timestamps are UTC ISO-8601 (`...Z`)."""

    id: int
    email: str
    name: str | None
    status: str
    fields: dict[str, str]
    lists: tuple[str, ...]
    created_at: str
    updated_at: str

    def recipient(self) -> Recipient:
        """What the issue's placeholders may see of this subscriber."""
        return Recipient(self.email, self.name, self.fields)


@dataclass(frozen=True)
class Event:
    """One entry of a subscriber's append-only history (proof of consent)."""

    at: str
    kind: str  # subscribed, imported, updated, confirmation_sent, confirmed, unsubscribed, ...
    detail: str = ""
    subscriber_id: int | None = None


@dataclass(frozen=True)
class Tombstone:
    """An erased address: only its salted hash is kept."""

    email_hash: str
    erased_at: str


def now() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


def format_timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> str:
    """Accept ISO-8601 (date, or date and time; naive means UTC); return the stored form."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SubscriberError(
            f"{text!r} is not a date and time such as 2026-11-25T09:30:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return format_timestamp(moment)


def has_control(text: str) -> bool:
    """Line breaks, tabs and other control characters (not allowed in names and fields)."""
    return _CONTROL.search(text) is not None


# Joiners shape Persian and Indic words and emoji sequences; they neither reorder nor hide text.
_ALLOWED_FORMAT = frozenset("\u200c\u200d")


def format_character(text: str) -> str | None:
    """The first invisible format character (Unicode category Cf: bidi overrides such as U+202E,
    zero-width spaces such as U+200B, soft hyphens...) in `text`, else None. They let a name
    display as something else than it is; the zero-width (non-)joiner is allowed."""
    if text.isascii():
        return None
    return next(
        (c for c in text if unicodedata.category(c) == "Cf" and c not in _ALLOWED_FORMAT), None
    )


def clean_name(value: str | None) -> str | None:
    """A display name: one line, no control or invisible format characters; empty means none."""
    if value is None:
        return None
    text = value.strip()
    if _CONTROL.search(text):
        raise SubscriberError("the name contains a line break or a control character")
    hidden = format_character(text)
    if hidden is not None:
        raise SubscriberError(
            f"the name contains the invisible character U+{ord(hidden):04X} "
            f"({unicodedata.name(hidden, 'format character')}), which can disguise a name"
        )
    if len(text) > NAME_MAX:
        raise SubscriberError(f"the name is longer than {NAME_MAX} characters")
    return text or None


def check_status(value: str) -> str:
    status = value.strip().lower()
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {value!r}; expected one of {', '.join(STATUSES)}")
    return status


def check_list_name(value: str) -> str:
    name = value.strip()
    if not _LIST_NAME.match(name):
        raise SubscriberError(
            f"invalid list name {value!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_lists(value: str) -> tuple[str, ...]:
    """The `lists` column: names separated by '|' (as export writes them)."""
    names = {check_list_name(part) for part in value.split("|") if part.strip()}
    return tuple(sorted(names))


def format_lists(lists: tuple[str, ...]) -> str:
    return "|".join(lists)


def fold(text: str) -> str:
    """How tags and text values compare: NFC, Unicode case folding, NFC again ("Straße" ==
    "STRASSE"; casefold can leave decomposed letters, İ -> i + U+0307, which NFC recomposes
    where Unicode has one letter for them)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


def _is_tag(tag: str) -> bool:
    """1-64 characters: a letter or digit first, then letters, digits, combining marks (the
    vowel signs of Indic scripts, the dot of a folded İ), '.', '_' or '-'."""
    if not 1 <= len(tag) <= 64 or not tag[0].isalnum():
        return False
    return all(
        ch.isalnum() or ch in "._-" or unicodedata.category(ch).startswith("M") for ch in tag[1:]
    )


def check_tag(value: str) -> str:
    """A tag as stored (`fold`ed); SubscriberError saying the rule when invalid."""
    tag = fold(value.strip())
    if not _is_tag(tag):
        raise SubscriberError(
            f"invalid tag {value!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no spaces or '|')"
        )
    return tag


def parse_tags(value: str) -> tuple[str, ...]:
    """The `tags` column: tags separated by '|' (as export writes them), sorted, unique."""
    return tuple(sorted({check_tag(part) for part in value.split("|") if part.strip()}))


def format_tags(tags: tuple[str, ...]) -> str:
    return "|".join(sorted(tags))


def check_field_name(value: str) -> str:
    name = value.strip()
    if not _FIELD_NAME.match(name) or name.lower() in RESERVED_COLUMNS:
        raise SubscriberError(
            f"invalid field name {value!r}: use letters, digits and '_' (not starting with a "
            "digit, at most 64), and none of " + ", ".join(sorted(RESERVED_COLUMNS))
        )
    return name


def clean_field_value(name: str, value: str) -> str:
    text = value.strip()
    if _CONTROL.search(text):
        raise SubscriberError(f"field {name!r} contains a line break or a control character")
    if len(text) > FIELD_VALUE_MAX:
        raise SubscriberError(f"field {name!r} is longer than {FIELD_VALUE_MAX} characters")
    return text


def clean_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Validated fields; empty values are dropped (an empty CSV cell means 'no value')."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = check_field_name(str(key))
        text = clean_field_value(name, "" if value is None else str(value))
        if text:
            out[name] = text
    return out


class ImportRow(NamedTuple):
    """One valid row of an import file, ready for the store (a tuple: built 100,000s of times)."""

    line: int
    email: str  # normalized
    key: str  # email_key(email)
    name: str | None
    fields: dict[str, str]
    lists: tuple[str, ...]  # from a `lists` column, or (DEFAULT_LIST,); --list is added later
    status: str | None  # from a `status` column
    created_at: str | None  # from a `created_at` column
    tags: tuple[str, ...] = ()  # from a `tags` column (stored form); import only adds tags


@dataclass
class ImportCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def import_status(current: str, requested: str | None) -> str:
    """The status an import may give an existing subscriber.

    A file can stop a subscription (a suppression list) or confirm a pending one; it can never
    bring an unsubscribed, bounced or complained address back, nor make an active one pending.
    """
    if requested is None or requested == current:
        return current
    if requested in STOPPED and current in (PENDING, ACTIVE):
        return requested
    if requested == ACTIVE and current == PENDING:
        return ACTIVE
    return current


def dump_fields(fields: Mapping[str, str]) -> str:
    """The stored JSON of fields: canonical (sorted keys, no spaces, UTF-8 text), so equal
    fields compare equal as text. Field values are strings: encoding them directly with
    json's C string encoder is 2x `json.dumps(sort_keys=True)`, which counts in imports."""
    if not fields:
        return "{}"
    quote = _quote
    return "{" + ",".join([f"{quote(k)}:{quote(fields[k])}" for k in sorted(fields)]) + "}"
