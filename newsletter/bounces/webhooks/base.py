"""What every provider webhook module shares: the request it is handed, the one contract, the
refusals, and the small readers of signed timestamps and JSON bodies.

A provider module exposes `from_environ(environ) -> Provider | None` (None: its secret is unset,
the route is off) and a `Provider` with
- `verify(request, now) -> str | None`: raises `WebhookRefused` unless the provider's documented
  signature (or credentials) over the exact request holds; returns the request's one-time token
  when the provider gives one (Mailgun), which `receive` refuses to accept twice;
- `events(request) -> Batch`: the documented payload (a batch or one event) as FeedbackEvents,
  with the event types it does not act on counted. Called only after `verify` passed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from newsletter.bounces.events import FeedbackEvent

MAX_AGE = 300  # seconds: a signed timestamp older (or further ahead) than this is refused
_SQLITE_MAX = 2**63 - 1  # the largest rowid: a bigger key would overflow SQLite's integer
_KEY_DIGITS = len(str(_SQLITE_MAX))


class WebhookRefused(Exception):
    """The request is not proven to come from the provider (401, nothing changes)."""


class WebhookPayloadError(Exception):
    """A verified request whose body is not the provider's documented shape (400)."""


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of one POST a provider signs: headers (names lower-cased) and the raw body."""

    headers: Mapping[str, str]
    body: bytes


@dataclass
class Batch:
    """What one request carried: the events to apply, the ignored types with their counts, and
    what else was done for it (an SNS subscription confirmed) for the log."""

    events: list[FeedbackEvent] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    done: str = ""


class Provider(Protocol):
    name: str
    proof: str  # what verify() checks, named in a 401: "signature" or "credentials"

    def verify(self, request: WebhookRequest, now: float) -> str | None: ...

    def events(self, request: WebhookRequest) -> Batch: ...


def check_age(timestamp: str | int | float, now: float, max_age: float = MAX_AGE) -> None:
    """Refuse a Unix timestamp (seconds) further than `max_age` from `now`, either way, and one
    that is not a finite number (NaN, inf, hundreds of digits): its freshness cannot be checked."""
    try:
        stamp = float(timestamp)
    except (TypeError, ValueError, OverflowError):
        raise WebhookRefused("timestamp is not a number") from None
    if not math.isfinite(stamp):
        raise WebhookRefused("timestamp is not a finite number")
    if abs(now - stamp) > max_age:
        raise WebhookRefused(f"timestamp {int(stamp)} is more than {int(max_age)} s from now")


def load_json(body: bytes) -> Any:
    """The body as JSON; WebhookPayloadError when it is not UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookPayloadError(f"body is not JSON: {exc}") from None


def as_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"{what} is not a JSON object")
    return value


def text(value: object, limit: int = 1000) -> str:
    """A payload value as bounded text ('' for null)."""
    return "" if value is None else str(value)[:limit]


def address(value: object) -> str | None:
    """The recipient address a provider names, domain lower-cased; None if it names none."""
    raw = text(value, 320).strip().strip("<>")
    if "@" not in raw:
        return None
    local, _, domain = raw.rpartition("@")
    return f"{local}@{domain.lower()}"


def ledger_key(value: object) -> int | None:
    """Our `newsletter_key` custom value (the ledger row id, a positive SQLite integer) echoed
    by the provider; None ("no key") for anything else: not ASCII digits, or out of range."""
    if isinstance(value, list) and value:  # SES mail.tags: {"name": ["value"]}
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    raw = text(value, _KEY_DIGITS + 1).strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _KEY_DIGITS:
        return None
    key = int(raw)
    return key if 0 < key <= _SQLITE_MAX else None


def message_id(value: object) -> str | None:
    """A Message-ID without angle brackets; None if absent."""
    raw = text(value, 998).strip().strip("<>").strip()
    return raw or None


def from_unix(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def from_iso(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(text(value, 64).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
