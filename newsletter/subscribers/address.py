"""Email address normalisation: email-validator's rules, no DNS, with a fast path for imports.

`normalize_email` returns the address as stored (local part as typed, domain lower-cased and in
Unicode form, so `a@xn--bcher-kva.de` and `a@BÜCHER.de` are the same subscriber) and `email_key`
gives the case-insensitive key the store compares on.

The address rule, held from intake to delivery: the local part (before the @) is ASCII, because
a non-ASCII one needs SMTPUTF8 (RFC 6531) at every hop, which the transports do not use; the
domain may be internationalised (stored in Unicode, sent as IDNA `xn--`). Encoded-word syntax
(`=?`, RFC 2047) is refused: mail programs decode it even inside an address. `normalize_email`
enforces the rule for new addresses (import, `subscribers add`, the sign-up form, `send --test`);
`normalize_lookup` only normalises, so an address stored by an older version can still be
found, unsubscribed and erased (sending to it fails with a clear reason in `newsletter.mail.mime`).

email-validator costs ~50 us per address, mostly in the IDNA domain check; an import of 100,000
rows would spend 5 s there alone. Real lists repeat few domains, so the fast path validates each
domain once (cached) and checks the local part with email-validator's own dot-atom expression.
It only ever *accepts*: anything unusual (quotes, Unicode local parts, role names such as
`postmaster` that email-validator lower-cases, over-long addresses, any doubt) goes through the
full `validate_email`, which also produces the error message. tests/test_subscribers_address.py
checks that both paths agree.
"""

from __future__ import annotations

import zlib

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from email_validator.syntax import validate_email_domain_name

from newsletter.errors import SubscriberError

LOCAL_PART_MAX = 64  # RFC 5321 4.5.3.1.1; email-validator enforces it only in strict mode
MAX_INPUT = 320  # longer input is rejected before any parsing
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_DOMAIN_CACHE_MAX = 20_000
_SHORT = EMAIL_MAX_LENGTH // 4 - 1  # shorter spellings cannot exceed the limit in bytes
# RFC 2047: every encoded-word starts so (the mail stage's header encoder knows it too; the
# store does not import the mail stage, which sits on a higher floor).
ENCODED_WORD_START = "=?"
_domains: dict[str, tuple[str, str] | None] = {}


class InvalidEmail(SubscriberError):
    """The text is not an email address we accept; str() says why."""


def normalize_email(text: str) -> str:
    """The stored form of a new address, or raise InvalidEmail with a readable reason.

    Refuses, besides what email-validator refuses (quoted local parts among them), a non-ASCII
    local part and encoded-word syntax (see the module docstring)."""
    email = text.strip()
    if ENCODED_WORD_START in email:
        raise InvalidEmail(
            f"{email!r} is not accepted: '=?' starts an RFC 2047 encoded-word, which mail "
            "programs would decode into other characters (even line breaks)"
        )
    normalized = normalize_lookup(email)
    local = normalized.rpartition("@")[0]
    if not local.isascii():
        raise InvalidEmail(
            f"{email!r} is not accepted: the part before the @-sign has non-ASCII characters, "
            "which only mail servers with SMTPUTF8 (RFC 6531) can deliver and this newsletter "
            "does not use; international domains (after the @) are fine"
        )
    return normalized


def normalize_lookup(text: str) -> str:
    """The stored form of an address to look up (any address a store may hold, including one
    added before the address rule), or raise InvalidEmail with a readable reason."""
    email = text.strip()
    if not email:
        raise InvalidEmail("the email address is empty")
    if len(email) > MAX_INPUT:
        raise InvalidEmail(f"the email address is too long ({len(email)} characters)")
    fast = _fast_path(email)
    if fast is not None:
        return fast
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"{email!r} is not a valid email address: {exc}") from None
    local = result.local_part or ""
    if len(local) > LOCAL_PART_MAX:
        raise InvalidEmail(
            f"{email!r} is not a valid email address: the part before the @-sign is longer "
            f"than {LOCAL_PART_MAX} characters"
        )
    return result.normalized


def email_key(normalized: str) -> str:
    """The unique key: addresses are compared case-insensitively."""
    return normalized.lower()


def key_crc(key: str) -> int:
    """CRC-32 of an email key: what the store indexes (a 4-byte integer index is much cheaper
    to grow than one over the address text); lookups compare the key itself as well."""
    return zlib.crc32(key.encode())


def _fast_path(email: str) -> str | None:
    local, at, domain_part = email.partition("@")
    if (
        not at
        or "@" in domain_part
        or len(local) > LOCAL_PART_MAX
        or DOT_ATOM_TEXT.match(local) is None
        or local.lower() in _CASE_INSENSITIVE
    ):
        return None
    domains = _domains.get(domain_part, False)
    if domains is False:
        domains = _check_domain(domain_part)
    if domains is None:
        return None
    domain, ascii_domain = domains
    normalized = f"{local}@{domain}"
    # email-validator's length rule counts UTF-8 bytes of three spellings; a UTF-8 character is
    # at most 4 bytes, so addresses this short cannot break it and skip the encoding.
    if len(email) > _SHORT or len(normalized) > _SHORT or len(ascii_domain) > _SHORT:
        for form in (email, normalized, f"{local}@{ascii_domain}"):
            if len(form.encode()) > EMAIL_MAX_LENGTH:
                return None
    return normalized


def _check_domain(domain_part: str) -> tuple[str, str] | None:
    try:
        info = validate_email_domain_name(domain_part)
        value: tuple[str, str] | None = (info["domain"], info["ascii_domain"])
    except EmailNotValidError:
        value = None
    if len(_domains) >= _DOMAIN_CACHE_MAX:
        _domains.clear()
    _domains[domain_part] = value
    return value
