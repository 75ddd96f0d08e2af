"""What every bounce-mail reader shares: addresses, the original message inside a report, VERP,
the event id, dates.

Works on `email.message.Message` objects parsed with the compat32 policy (the fastest of the
standard library's parsers; header values are plain `str`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from newsletter.tokens import verp_token_from_address

# The headers in which a mail server records the envelope recipient of the mail it delivers
# (Postfix/Exim/Dovecot: Delivered-To; Postfix: X-Original-To), then the header recipients.
ENVELOPE_RECIPIENT_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "to", "cc")


@dataclass(frozen=True, slots=True)
class MailboxAddresses:
    """The addresses of our own mailboxes that bounce mail is read for.

    bounce_address: `bounces.address` of newsletter.yaml (the VERP base, `bounces@domain`);
        None when VERP is not configured.
    unsubscribe_address: the `unsubscribe_mailto:` address (RFC 2369 List-Unsubscribe mailto);
        None when not configured.
    secret: the token signing secret (tokens.secret_key), to verify unsubscribe tokens.
    """

    bounce_address: str | None = None
    unsubscribe_address: str | None = None
    secret: bytes | None = None


def normalise_address(value: str | None) -> str | None:
    """`Local@Example.COM` -> `Local@example.com`; `rfc822; <a@b>` -> `a@b`; None if empty."""
    if not value:
        return None
    if ";" in value:  # RFC 3464 `address-type; address`
        value = value.split(";", 1)[1]
    value = value.strip().strip("<>").strip()
    if "@" not in value:
        return None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def header_addresses(msg: Message, names: tuple[str, ...]) -> list[str]:
    """Every address in the named headers, in order, normalised."""
    found = []
    for name in names:
        values = msg.get_all(name)
        if values:
            for _, address in getaddresses([str(v) for v in values]):
                if (norm := normalise_address(address)) is not None:
                    found.append(norm)
    return found


def verp_token(
    msg: Message | None, names: tuple[str, ...], bounce_address: str | None
) -> str | None:
    """The VERP token (tokens.verp_token_from_address, not yet verified) of the first
    `local+<token>@domain` in the named headers of `msg` whose base is our bounce address, or
    any when no bounce address is configured (the policy verifies the token's MAC either way).
    Reads the raw header values: no address parsing on this path, which every DSN takes."""
    if msg is None:
        return None
    base_local, _, base_domain = (bounce_address or "").lower().rpartition("@")
    for name in names:
        for value in msg.get_all(name) or ():
            text = str(value)
            token = verp_token_from_address(text)
            if token is not None and (
                bounce_address is None or f"{base_local}+{token}@{base_domain}" in text.lower()
            ):
                return token
    return None


def original_headers(report: Message) -> Message | None:
    """The headers of the original message a report quotes (its `message/rfc822` or
    `text/rfc822-headers` part, RFC 3464 section 2 and RFC 5965 section 2), or None."""
    if not report.is_multipart():
        return None
    for part in report.get_payload():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                return inner[0]
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True) or b""
            return BytesHeaderParser().parsebytes(raw)
    return None


def message_id(msg: Message | None) -> str | None:
    """The Message-ID without angle brackets, or None."""
    if msg is None:
        return None
    value = msg.get("message-id")
    if not value:
        return None
    value = str(value).strip()
    return value[1:-1].strip() if value.startswith("<") and value.endswith(">") else value or None


def event_id(report: Message, raw: bytes, recipient: str | None) -> str:
    """Deterministic id of one event of one report: its Message-ID and the recipient, or a
    SHA-256 of the report's bytes when it has no Message-ID (the same mail imported twice gets
    the same id, so applying it again changes nothing)."""
    base = message_id(report) or "sha256:" + hashlib.sha256(raw).hexdigest()
    return f"{base}|{recipient or ''}"


def report_date(*values: str | None) -> datetime | None:
    """The first RFC 5322 date among `values` that parses, in UTC."""
    for value in values:
        if not value:
            continue
        try:
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC)
    return None


_WHITESPACE = re.compile(r"\s+")


def one_line(value: str | None, limit: int = 300) -> str:
    """A header value unfolded to one line, cut at `limit` characters."""
    text = _WHITESPACE.sub(" ", str(value or "")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
