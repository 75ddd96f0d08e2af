"""Signed tokens: compact, purpose-bound, canonical, expiring when they should, and fast enough."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import pytest
from db_support import use_database

from newsletter import tokens
from newsletter.config import load_config
from newsletter.errors import ConfigError, TokenError
from newsletter.subscribers import SubscriberStore
from newsletter.web.public.guard import FormTokens

SECRET = b"a-test-secret-of-sufficient-length"


def test_round_trip_and_compactness():
    for sid in (1, 35, 36, 123_456, 2**40):
        token = tokens.make_token(SECRET, tokens.UNSUBSCRIBE, sid)
        assert tokens.verify_token(SECRET, tokens.UNSUBSCRIBE, token) == sid
        assert len(token) < 40
        assert all(c.isalnum() or c in "._-" for c in token)
    confirm = tokens.make_token(SECRET, tokens.CONFIRM, 7, issued_at=int(time.time()))
    assert tokens.verify_token(SECRET, tokens.CONFIRM, confirm, max_age=60) == 7
    assert len(confirm) < 50


def test_mac_is_hmac_sha256_over_purpose_and_subscriber():
    token = tokens.make_token(SECRET, tokens.UNSUBSCRIBE, 42)
    body, mac = token.rsplit(".", 1)
    expected = hmac.new(SECRET, f"unsubscribe|{body}".encode(), hashlib.sha256).digest()[:16]
    import base64

    assert base64.urlsafe_b64decode(mac + "==") == expected
    # Keys longer than a SHA-256 block are hashed first, as HMAC requires.
    long_key = b"k" * 100
    token = tokens.make_token(long_key, tokens.CONFIRM, 5, issued_at=1_800_000_000)
    body, mac = token.rsplit(".", 1)
    expected = hmac.new(long_key, f"confirm-signup|{body}".encode(), hashlib.sha256).digest()[:16]
    assert base64.urlsafe_b64decode(mac + "==") == expected


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t[:10],
        lambda t: t + "A",
        lambda t: t.replace(".", ".0", 1),  # leading zero in a number
        lambda t: "0" + t,
        lambda t: t.upper(),
        lambda t: "z" + t[1:],
        lambda t: t.replace(".", "/", 1),
        lambda t: "",
        lambda t: "x" * 500,
    ],
)
def test_forged_and_truncated_tokens_are_refused(mangle):
    token = tokens.make_token(SECRET, tokens.CONFIRM, 77, issued_at=int(time.time()))
    with pytest.raises(TokenError):
        tokens.verify_token(SECRET, tokens.CONFIRM, mangle(token))


def test_cross_purpose_other_secret_and_expiry():
    unsubscribe = tokens.make_token(SECRET, tokens.UNSUBSCRIBE, 9)
    with pytest.raises(TokenError):
        tokens.verify_token(SECRET, tokens.CONFIRM, unsubscribe)
    with pytest.raises(TokenError):
        tokens.verify_token(b"another-secret-entirely-123", tokens.UNSUBSCRIBE, unsubscribe)
    with pytest.raises(TokenError):  # confirmation requires an issue time
        tokens.verify_token(SECRET, tokens.UNSUBSCRIBE, unsubscribe, max_age=10)
    old = tokens.make_token(SECRET, tokens.CONFIRM, 9, issued_at=int(time.time()) - 8 * 86400)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify_token(SECRET, tokens.CONFIRM, old, max_age=tokens.CONFIRM_MAX_AGE)
    # Unsubscribe tokens never expire.
    assert tokens.verify_token(SECRET, tokens.UNSUBSCRIBE, unsubscribe) == 9


def test_secret_from_environment_config_or_database(project, monkeypatch, database):
    use_database(project, database)
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        generated = tokens.secret_key(config, store.conn)
        assert len(generated) == 32
        assert tokens.secret_key(config, store.conn) == generated  # kept in the database
    with SubscriberStore.for_config(config) as store:
        assert tokens.secret_key(config, store.conn) == generated  # survives a restart
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "from-the-environment-1234")
        assert tokens.secret_key(config, store.conn) == b"from-the-environment-1234"
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "short")
        with pytest.raises(ConfigError, match="at least 16"):
            tokens.secret_key(config, store.conn)
        monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
        (project / "newsletter.yaml").write_text(
            (project / "newsletter.yaml").read_text() + "secret_key: from-the-config-file-99\n"
        )
        configured = load_config(project / "newsletter.yaml")
        assert tokens.secret_key(configured, store.conn) == b"from-the-config-file-99"


def test_urls_under_base_url(project):
    config = load_config(project / "newsletter.yaml")
    url = tokens.unsubscribe_url(config, 12, SECRET)
    assert url.startswith("https://news.example.org/unsubscribe/")
    assert tokens.verify_token(SECRET, tokens.UNSUBSCRIBE, url.rsplit("/", 1)[1]) == 12
    confirm = tokens.confirm_url(config, 12, SECRET)
    assert confirm.startswith("https://news.example.org/confirm/")
    token = confirm.rsplit("/", 1)[1]
    assert tokens.verify_token(SECRET, tokens.CONFIRM, token, max_age=60) == 12


def _unsubscribe_case() -> tuple[str, Callable[[str], bool]]:
    def check(token: str) -> bool:
        try:
            return tokens.verify_token(SECRET, tokens.UNSUBSCRIBE, token) == 42
        except TokenError:
            return False

    return tokens.make_token(SECRET, tokens.UNSUBSCRIBE, 42), check


def _confirm_case() -> tuple[str, Callable[[str], bool]]:
    def check(token: str) -> bool:
        try:
            return tokens.verify_token(SECRET, tokens.CONFIRM, token, max_age=60) == 7
        except TokenError:
            return False

    return tokens.make_token(SECRET, tokens.CONFIRM, 7, issued_at=int(time.time())), check


def _signup_form_case() -> tuple[str, Callable[[str], bool]]:
    form = FormTokens(SECRET)
    return form.issue("203.0.113.9"), lambda token: form.valid("203.0.113.9", token)


@pytest.mark.parametrize(
    "case", [_unsubscribe_case, _confirm_case, _signup_form_case], ids=lambda c: c.__name__
)
def test_token_macs_are_compared_in_constant_time(monkeypatch, case):
    """Every MAC we check goes through hmac.compare_digest: `==` would stop at the first
    differing character and let a stranger find a valid MAC byte by byte from the timing."""
    token, check = case()
    mac = token.rsplit(".", 1)[1]
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert check(token) is True
    assert check(forged) is False
    assert [a for a, _ in compared] == [mac, forged.rsplit(".", 1)[1]]
