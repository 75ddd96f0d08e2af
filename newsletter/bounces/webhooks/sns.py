"""Amazon SNS message signatures (HTTP/HTTPS subscriptions), as AWS documents them in
"Verifying the signatures of Amazon SNS messages".

- The string to sign is `Name\\nvalue\\n` for, in this order, Message, MessageId, Subject (only
  if present), Timestamp, TopicArn, Type (a Notification), or Message, MessageId, SubscribeURL,
  Timestamp, Token, TopicArn, Type (SubscriptionConfirmation, UnsubscribeConfirmation).
- SignatureVersion 1 is RSA PKCS#1 v1.5 with SHA1, version 2 with SHA256, base64 in `Signature`.
- The key is the certificate at `SigningCertURL`, fetched only over HTTPS from a host
  `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`): anything else (http, another host, a
  lookalike such as `sns.us-east-1.amazonaws.com.evil.example`, userinfo, a port) is refused
  before any request. Fetched certificates are kept per URL for the life of the process.

For tests only, `NEWSLETTER_TEST_SNS_HOST` names the one `host:port` accepted instead of the AWS
rule (still HTTPS only) and `NEWSLETTER_TEST_SNS_CAFILE` the CA bundle that server's
certificate is checked against.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.bounces.webhooks.base import WebhookRefused, text

TEST_HOST_VARIABLE = "NEWSLETTER_TEST_SNS_HOST"
TEST_CAFILE_VARIABLE = "NEWSLETTER_TEST_SNS_CAFILE"
_AWS_HOST = re.compile(r"sns\.[a-z0-9]+(?:-[a-z0-9]+)*\.amazonaws\.com(?:\.cn)?\Z")
_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0  # seconds


class SnsHosts:
    """Which URLs may be fetched (signing certificates, SubscribeURL) and how."""

    def __init__(self, test_host: str = "", cafile: str = "") -> None:
        self.test_host = test_host.strip().lower()
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=cafile) if cafile else True
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SnsHosts:
        return cls(environ.get(TEST_HOST_VARIABLE, ""), environ.get(TEST_CAFILE_VARIABLE, ""))

    def allowed(self, url: str) -> bool:
        """True only for `https://sns.<region>.amazonaws.com/...` (or the test host)."""
        if not url or any(c.isspace() or c == "\\" for c in url):
            return False
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme != "https" or "@" in parts.netloc:
            return False
        if self.test_host:
            return parts.netloc.lower() == self.test_host
        return parts.netloc == parts.hostname and bool(_AWS_HOST.match(parts.netloc))

    def get(self, url: str, *, limit: int = MAX_CERT_BYTES) -> bytes:
        """GET an allowed URL (no redirects); WebhookRefused for any other or a failure."""
        if not self.allowed(url):
            raise WebhookRefused(
                f"refused to fetch {url[:200]!r}: not https://sns.<region>.amazonaws.com"
            )
        try:
            with (
                httpx.Client(verify=self.verify, timeout=FETCH_TIMEOUT) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise WebhookRefused(f"{url[:200]} answered {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise WebhookRefused(f"{url[:200]} answered more than {limit} bytes")
                return body
        except httpx.HTTPError as exc:
            raise WebhookRefused(f"{url[:200]} could not be fetched: {exc}") from None


class SnsVerifier:
    """Verifies SNS messages; signing keys are fetched once per certificate URL."""

    def __init__(self, hosts: SnsHosts) -> None:
        self.hosts = hosts
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def verify(self, message: Mapping[str, Any]) -> None:
        """Raise WebhookRefused unless `message` (the parsed SNS JSON) carries a valid
        signature from an SNS signing certificate."""
        if not message.get("Signature"):
            raise WebhookRefused("Signature missing")
        digest = _HASHES.get(text(message.get("SignatureVersion"), 4))
        if digest is None:
            raise WebhookRefused("SignatureVersion is neither 1 nor 2")
        try:
            signature = base64.b64decode(text(message.get("Signature"), 2000), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRefused("Signature is not base64") from None
        key = self._key(text(message.get("SigningCertURL"), 2000))
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), digest())
        except InvalidSignature:
            raise WebhookRefused("SNS signature does not verify") from None

    def _key(self, url: str) -> rsa.RSAPublicKey:
        with self._lock:
            key = self._keys.get(url)
        if key is not None:
            return key
        pem = self.hosts.get(url)
        try:
            found = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise WebhookRefused("SigningCertURL did not answer a PEM certificate") from None
        if not isinstance(found, rsa.RSAPublicKey):
            raise WebhookRefused("the SNS signing certificate is not RSA")
        with self._lock:
            self._keys[url] = found
        return found


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs for this message's Type (see the module docstring)."""
    kind = text(message.get("Type"), 40)
    if kind == "Notification":
        names = _NOTIFICATION
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        names = _SUBSCRIPTION
    else:
        raise WebhookRefused(f"unknown SNS message Type {kind!r}")
    lines = []
    for name in names:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise WebhookRefused(f"SNS message lacks {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()
