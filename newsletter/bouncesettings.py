"""`bounces:` of newsletter.yaml: the VERP bounce address, the soft-bounce rule and the guard.

    bounces:
      address: bounces@news.example.com   # VERP: MAIL FROM bounces+<token>@news.example.com
      soft_limit: 3          # soft bounces ...
      soft_days: 30          # ... within this many days make the subscriber bounced
      guard_min_sent: 1000   # the reputation guard judges a campaign only past this many sent
      guard_bounce_rate: 5%  # pause when hard bounces pass this share of sent
      guard_complaint_rate: 0.3%  # pause when complaints pass this share of sent
      feedback_id: acme      # the <sender-id> field of Feedback-ID (default: the list-id)

Every key is optional; without `address` the envelope sender stays the `from` address.
Rates are written as `5%` or as a fraction (`0.05`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Protocol

from newsletter import idn
from newsletter.errors import ConfigError

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+)*\Z")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})\Z"
)
# RFC 5321 4.5.3.1.1: a local part is at most 64 octets. The VERP sender's is
# `<local>+<token>`, the token `<ledger row id in base 36>-<20 hex>` (tokens.verp_token): a
# row id up to SQLite's 2**63 - 1 is 13 base-36 digits, so the longest token is 34 characters.
LOCAL_PART_MAX = 64
VERP_TOKEN_MAX = 13 + 1 + 20
_FEEDBACK_FIELD = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
KEYS = (
    "address",
    "soft_limit",
    "soft_days",
    "guard_min_sent",
    "guard_bounce_rate",
    "guard_complaint_rate",
    "feedback_id",
)


@dataclass(frozen=True)
class BounceSettings:
    """The parsed `bounces:` block; the defaults are the issue's (3 in 30 days, 1,000 / 5% /
    0.3%, Gmail and Yahoo's complaint ceiling)."""

    address: str | None = None  # the VERP base address, e.g. bounces@news.example.com
    soft_limit: int = 3
    soft_days: int = 30
    guard_min_sent: int = 1000
    guard_bounce_rate: float = 0.05  # a fraction: 0.05 is 5%
    guard_complaint_rate: float = 0.003
    feedback_id: str | None = None  # Feedback-ID <sender-id>; None: the list-id

    @property
    def verp_local(self) -> str | None:
        return None if self.address is None else self.address.rpartition("@")[0]

    @property
    def verp_domain(self) -> str | None:
        return None if self.address is None else self.address.rpartition("@")[2]


class Where(Protocol):
    def __call__(self, *keys: str, key: bool = False) -> tuple[object, int | None]: ...


def parse_bounce_settings(raw: Any, where: Where) -> BounceSettings:
    """Validate the `bounces:` mapping (None: all defaults); ConfigError names file and line."""
    if raw is None:
        return BounceSettings()
    if not isinstance(raw, dict):
        raise ConfigError(
            "'bounces' must be a mapping such as 'bounces: {address: bounces@news.example.com}'",
            *where(),
        )
    for key in raw:
        if key not in KEYS:
            hint = difflib.get_close_matches(str(key), KEYS, n=1)
            suggestion = f" (did you mean 'bounces.{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"unknown key 'bounces.{key}'{suggestion}", *where(str(key), key=True)
            )
    defaults = BounceSettings()
    return BounceSettings(
        address=_verp_address(raw.get("address"), where),
        soft_limit=_count(raw, "soft_limit", defaults.soft_limit, where),
        soft_days=_count(raw, "soft_days", defaults.soft_days, where),
        guard_min_sent=_count(raw, "guard_min_sent", defaults.guard_min_sent, where),
        guard_bounce_rate=_rate(raw, "guard_bounce_rate", defaults.guard_bounce_rate, where),
        guard_complaint_rate=_rate(
            raw, "guard_complaint_rate", defaults.guard_complaint_rate, where
        ),
        feedback_id=_feedback_id(raw.get("feedback_id"), where),
    )


def _verp_address(value: Any, where: Where) -> str | None:
    if value is None:
        return None
    text = str(value).strip() if isinstance(value, str) else None
    local, _, domain = (text or "").rpartition("@")

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"'bounces.address' {why}, got {value!r}", *where("address"))

    if not text or not local or not domain:
        raise refuse("must be an address such as bounces@news.example.com")
    # The token goes after a '+' in the local part: the base must not have one already, and
    # only a plain ASCII local part is an envelope sender every server accepts.
    if "+" in local:
        raise refuse("must not contain '+' (the VERP token is added after one)")
    if not _LOCAL.match(local):
        raise refuse(
            "must have a plain ASCII local part (letters, digits, . and !#$%&'*/=?^_`{|}~-)"
        )
    longest = len(local) + 1 + VERP_TOKEN_MAX
    if longest > LOCAL_PART_MAX:
        raise refuse(
            f"has a local part of {len(local)} characters: with '+' and the VERP token (up to "
            f"{VERP_TOKEN_MAX}) it reaches {longest}, over the {LOCAL_PART_MAX} octets RFC 5321 "
            f"allows (use at most {LOCAL_PART_MAX - 1 - VERP_TOKEN_MAX})"
        )
    # An internationalised domain is sent as A-labels (IDNA 2008), as `from:` is.
    try:
        ascii_domain = idn.ascii_domain(domain)
    except UnicodeError as exc:
        raise refuse(f"has a domain IDNA 2008 refuses ({exc})") from None
    if not _DOMAIN.match(ascii_domain):
        raise refuse("must have a domain name such as news.example.com")
    return f"{local}@{ascii_domain}"


def _count(raw: dict[str, Any], key: str, default: int, where: Where) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"'bounces.{key}' must be a whole number of at least 1, got {value!r}", *where(key)
        )
    return value


def _rate(raw: dict[str, Any], key: str, default: float, where: Where) -> float:
    value = raw.get(key, default)
    rate: float | None = None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            rate = float(value.strip()[:-1]) / 100
        except ValueError:
            rate = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        rate = float(value)
    if rate is None or not 0 < rate <= 1:
        raise ConfigError(
            f"'bounces.{key}' must be a percentage such as 5% or a fraction such as 0.05"
            f" (above 0, at most 100%), got {value!r}",
            *where(key),
        )
    return rate


def _feedback_id(value: Any, where: Where) -> str | None:
    if value is None:
        return None
    # Feedback-ID fields are separated by ':'; Gmail wants short identifiers.
    if not isinstance(value, str) or not _FEEDBACK_FIELD.match(value):
        raise ConfigError(
            f"'bounces.feedback_id' must be 1-64 letters, digits, '.', '_' or '-', got {value!r}",
            *where("feedback_id"),
        )
    return value
