"""Test DKIM keys (generated once per session) and verification by dkimpy, an independent
verifier, against the signer's own DNS record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.mail.dkim import DkimSigner

KEYS: dict[str, object] = {}


def private_key(kind: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if kind not in KEYS:  # RSA generation is slow: once per test session
        KEYS[kind] = (
            rsa.generate_private_key(65537, 2048)
            if kind == "rsa"
            else ed25519.Ed25519PrivateKey.generate()
        )
    return KEYS[kind]  # type: ignore[return-value]


def write_key(path: Path, kind: str) -> Path:
    pem = private_key(kind).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return path


def dns_for(signer: DkimSigner) -> Callable[..., bytes]:
    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        name = name.decode() if isinstance(name, bytes) else name
        assert name.rstrip(".") == signer.dns_name
        return signer.dns_record().encode()

    return dnsfunc


def verify(data: bytes, signer: DkimSigner) -> bool:
    return bool(dkim.verify(data, dnsfunc=dns_for(signer)))
