"""Signed tokens for the public links (unsubscribe, confirm) and `unsubscribe_url`.

A token is `<id>.<mac>` or, when it carries its issue time, `<id>.<issued>.<mac>`: the
subscriber id (for a confirmation: the sign-up request's id) and issue time (Unix seconds) in
base 36, then the first 16 bytes of HMAC-SHA256(secret, purpose | id | issued) in URL-safe
base64 (22 characters). The purpose is in the MAC, not in the token, so a confirm token is
worthless as an unsubscribe token and vice versa. Unsubscribe tokens carry no time and never
expire (old emails must keep working); confirmation tokens expire after 7 days. Verification is
constant-time and rejects any non-canonical spelling, so each (purpose, subscriber) has exactly
one valid unsubscribe token.

`unsubscribe_url` is on the send hot path (once per recipient): a few microseconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from newsletter import db
from newsletter.errors import ConfigError, TokenError

if TYPE_CHECKING:
    from newsletter.config import Config

UNSUBSCRIBE = "unsubscribe"
# A confirmation token names a sign-up request (subscribers.signup), not a subscriber. Links
# issued before that change carried subscriber ids under the purpose "confirm": a new purpose
# makes them fail the MAC instead of naming someone else's sign-up with the same number.
CONFIRM = "confirm-signup"
CONFIRM_MAX_AGE = 7 * 24 * 3600
MIN_SECRET_LENGTH = 16
MAC_BYTES = 16
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(r"([0-9a-z]{1,13})(?:\.([0-9a-z]{1,13}))?\.([A-Za-z0-9_-]{22})\Z")

_MIGRATIONS: list[db.Migration] = [
    "CREATE TABLE token_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL, created_at TEXT"
    " NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')))"
]
POSTGRESQL_MIGRATIONS = [
    "CREATE TABLE token_secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL, created_at TEXT"
    " NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')))"
]


def secret_key(config: Config, conn: db.Connection) -> bytes:
    """The signing secret: NEWSLETTER_SECRET_KEY, else `secret_key:` in the config, else one
    generated on first use and kept in the database (so links survive restarts)."""
    configured = os.environ.get("NEWSLETTER_SECRET_KEY") or config.secret_key
    if configured:
        if len(configured) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"the secret key must be at least {MIN_SECRET_LENGTH} characters long "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe())')",
                config.path,
            )
        return configured.encode()
    db.migrate(conn, "tokens", _MIGRATIONS, POSTGRESQL_MIGRATIONS)
    # Insert if absent, then read: two processes starting at once agree on one secret.
    conn.execute(
        "INSERT INTO token_secrets (name, value) VALUES ('default', ?)"
        " ON CONFLICT (name) DO NOTHING",
        (secrets.token_bytes(32),),
    )
    row = conn.execute("SELECT value FROM token_secrets WHERE name = 'default'").fetchone()
    return bytes(row[0])


def make_token(
    secret: bytes, purpose: str, subscriber_id: int, *, issued_at: int | None = None
) -> str:
    """A token for `purpose` and subscriber; `issued_at` (Unix seconds) makes it expirable."""
    sid = _b36(subscriber_id)
    body = sid if issued_at is None else f"{sid}.{_b36(int(issued_at))}"
    return f"{body}.{_mac(secret, purpose, body)}"


def read_token(
    secret: bytes, purpose: str, token: str, *, max_age: int | None = None
) -> tuple[int, int | None]:
    """(subscriber id, issued_at or None) of a valid token; raise TokenError otherwise.

    With `max_age`, the token must carry its issue time and be at most that many seconds old.
    """
    match = _TOKEN.match(token) if isinstance(token, str) and len(token) <= 64 else None
    if match is None:
        raise TokenError("the link is incomplete or damaged")
    sid_text, issued_text, mac = match.groups()
    body = sid_text if issued_text is None else f"{sid_text}.{issued_text}"
    if not hmac.compare_digest(mac, _mac(secret, purpose, body)):
        raise TokenError("the link is not valid")
    # Canonical spelling only (no leading zeros), checked after the MAC so timing says nothing.
    if sid_text != _b36(int(sid_text, 36)) or (
        issued_text is not None and issued_text != _b36(int(issued_text, 36))
    ):
        raise TokenError("the link is not valid")
    issued = int(issued_text, 36) if issued_text is not None else None
    if max_age is not None:
        if issued is None:
            raise TokenError("the link is not valid")
        if time.time() - issued > max_age:
            raise TokenError("the link has expired")
    return int(sid_text, 36), issued


def verify_token(secret: bytes, purpose: str, token: str, *, max_age: int | None = None) -> int:
    """The subscriber id of a valid token; raise TokenError if forged, truncated, for another
    purpose, or older than `max_age` seconds."""
    return read_token(secret, purpose, token, max_age=max_age)[0]


def unsubscribe_url(config: Config, subscriber_id: int, secret: bytes) -> str:
    """`{base_url}/unsubscribe/{token}` for the List-Unsubscribe header and the footer link."""
    return f"{config.base_url}/unsubscribe/{make_token(secret, UNSUBSCRIBE, subscriber_id)}"


def confirm_url(
    config: Config, signup_id: int, secret: bytes, *, issued_at: int | None = None
) -> str:
    """`{base_url}/confirm/{token}`: the double opt-in link of one sign-up request (the id from
    `SubscriberStore.request_subscription`), valid for 7 days."""
    when = int(time.time()) if issued_at is None else int(issued_at)
    return f"{config.base_url}/confirm/{make_token(secret, CONFIRM, signup_id, issued_at=when)}"


# VERP tokens ride in an address's local part, which some servers lower-case: the row id in base
# 36 and 80 bits of the MAC in hex, `<row>-<20 hex digits>`, are case-proof (and hex is C-fast,
# where base64.b32encode is pure Python: this is once per recipient).
VERP = "verp"
_VERP_TOKEN = re.compile(r"([0-9a-z]{1,13})-([0-9a-f]{20})\Z")
_VERP_ADDRESS = re.compile(r"<?(?:mailto:)?([^@<>\s]+)\+([0-9A-Za-z]{1,13}-[0-9A-Fa-f]{20})@")


def verp_token(secret: bytes, row_id: int) -> str:
    """The VERP token of one campaign ledger row: `<row id base 36>-<MAC>` (lower case, 22-34
    characters); on the send hot path (about as costly as an unsubscribe token)."""
    body = _b36(row_id)
    return f"{body}-{_verp_mac(secret, body)}"


def read_verp_token(secret: bytes, token: str) -> int:
    """The ledger row id of a valid VERP token; TokenError if forged, damaged or not in its
    one canonical spelling (lower case, no leading zeros). Constant-time MAC comparison."""
    match = _VERP_TOKEN.match(token) if isinstance(token, str) and len(token) <= 40 else None
    if match is None:
        raise TokenError("not a VERP token")
    body, mac = match.groups()
    if not hmac.compare_digest(mac, _verp_mac(secret, body)) or body != _b36(int(body, 36)):
        raise TokenError("the VERP token is not valid")
    return int(body, 36)


def verp_address(secret: bytes, row_id: int, local: str, domain: str) -> str:
    """`local+<token>@domain`: the envelope sender of one campaign message."""
    return f"{local}+{verp_token(secret, row_id)}@{domain}"


def verp_token_from_address(address: str) -> str | None:
    """The token of a VERP address (`bounces+<token>@domain`, with or without <> or mailto:), as
    found in a bounce's Return-Path, envelope recipient or To; None when there is none. Not
    verified here (`read_verp_token` does that); lower-cased, as a server may have upper-cased
    the local part."""
    match = _VERP_ADDRESS.search(address or "")
    return match.group(2).lower() if match else None


def _verp_mac(secret: bytes, body: str) -> str:
    states = _STATES.get((secret, VERP))
    if states is None:
        states = _states(secret, VERP)
    inner = states[0].copy()
    inner.update(body.encode())
    outer = states[1].copy()
    outer.update(inner.digest())
    return outer.digest()[:10].hex()


def _mac(secret: bytes, purpose: str, body: str) -> str:
    """Truncated HMAC-SHA256(secret, "purpose|body"), URL-safe base64 without padding."""
    states = _STATES.get((secret, purpose))
    if states is None:
        states = _states(secret, purpose)
    inner = states[0].copy()
    inner.update(body.encode())
    outer = states[1].copy()
    outer.update(inner.digest())
    return base64.urlsafe_b64encode(outer.digest()[:MAC_BYTES]).rstrip(b"=").decode()


# HMAC by its definition, H((K^opad) || H((K^ipad) || m)), with both keyed states (and the
# purpose prefix) computed once per secret: copying them costs ~0.3 us where hmac.digest()
# rebuilds the keyed context each call (~4 us). tests check it against hmac.new().
_STATES: dict[tuple[bytes, str], tuple[Any, Any]] = {}


def _states(secret: bytes, purpose: str) -> tuple[Any, Any]:
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(f"{purpose}|".encode())
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    if len(_STATES) > 64:
        _STATES.clear()
    _STATES[(secret, purpose)] = (inner, outer)
    return inner, outer


def _b36(value: int) -> str:
    if value < 0:
        raise ValueError("negative ids cannot be encoded")
    if value < 36:
        return _B36[value]
    out = []
    while value:
        value, digit = divmod(value, 36)
        out.append(_B36[digit])
    return "".join(reversed(out))


__all__ = [
    "CONFIRM",
    "CONFIRM_MAX_AGE",
    "UNSUBSCRIBE",
    "confirm_url",
    "make_token",
    "read_token",
    "read_verp_token",
    "secret_key",
    "unsubscribe_url",
    "verify_token",
    "verp_address",
    "verp_token",
    "verp_token_from_address",
]
