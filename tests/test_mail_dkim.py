"""DKIM signatures checked by dkimpy, an independent verifier, against the test keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from dkim_support import private_key, verify, write_key
from message_support import compiled_issue, parse

from newsletter.config import DkimConfig, load_config
from newsletter.errors import ConfigError
from newsletter.mail.dkim import DkimSigner
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import Recipient


@pytest.fixture(params=["rsa", "ed25519"])
def signed_template(request: pytest.FixtureRequest, project: Path) -> MessageTemplate:
    key = write_key(project / f"{request.param}.pem", request.param)
    with (project / "newsletter.yaml").open("a") as f:
        f.write(
            "reply_to: Editors <editors@example.org>\n"
            f"dkim:\n  domain: example.org\n  selector: s{request.param}\n"
            f"  private_key: {key.name}\n"
        )
    compiled, config = compiled_issue(project)
    signer = DkimSigner.from_config(config.dkim)  # type: ignore[attr-defined]
    return MessageTemplate(compiled, config, campaign_key="c", dkim=signer)  # type: ignore[arg-type]


RECIPIENTS = [
    Recipient("ann@example.com", "Ann"),
    Recipient("zoe@example.com", "Zoë Ångström 🎉"),
    Recipient("long@example.com", "Ünïcode " * 30),
    Recipient("q@example.com", 'Quote "me", please'),
]


def test_signed_messages_verify_with_dkimpy(signed_template: MessageTemplate) -> None:
    signer = signed_template.dkim
    assert signer is not None
    for i, r in enumerate(RECIPIENTS):
        data = signed_template.bytes_for(
            r, unsubscribe_url=f"https://news.example.org/u/{i}", message_id=f"{i}@example.org"
        )
        assert data.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm.encode())
        assert verify(data, signer), r
        for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
            assert len(line) <= 998
        sig = parse(data)["DKIM-Signature"]
        h = re.search(r"h=([^;]+);", str(sig).replace("\r\n", "").replace("\t", ""))
        assert h is not None
        signed = set(h.group(1).replace(" ", "").split(":"))
        assert signed >= {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "list-unsubscribe",
            "list-unsubscribe-post",
            "list-id",
            "reply-to",
        }


def test_dkim_header_lines_are_short(signed_template: MessageTemplate) -> None:
    data = signed_template.bytes_for(
        RECIPIENTS[0], unsubscribe_url="https://e.x/u", message_id="a@example.org"
    )
    sig_block = data.split(b"\r\nFrom: ")[0]
    assert all(len(line) <= 78 for line in sig_block.split(b"\r\n"))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.replace(b"Subject: News for Ann", b"Subject: News for Bob"),
        lambda d: d.replace(b"https://e.x/u/ann", b"https://e.x/u/bob"),
        lambda d: d.replace(b"Plain line", b"Plain lime"),
        lambda d: d.replace(b"\r\nFrom: ", b"\r\nFrom: Evil <evil@example.net>\r\nFrom: ", 1),
        lambda d: d.replace(b"\r\nFrom: ", b"\r\nList-Unsubscribe-Post: x\r\nFrom: ", 1),
        lambda d: d.replace(b"\r\nMIME-Version", b"\r\nReply-To: evil@example.net\r\nMIME-Version"),
    ],
    ids=["subject", "unsubscribe-url", "body", "extra-from", "extra-one-click", "added-reply-to"],
)
def test_tampering_breaks_the_signature(
    signed_template: MessageTemplate, tamper: Callable[[bytes], bytes]
) -> None:
    signer = signed_template.dkim
    assert signer is not None
    data = signed_template.bytes_for(
        Recipient("ann@example.com", "Ann"),
        unsubscribe_url="https://e.x/u/ann",
        message_id="a@example.org",
    )
    assert verify(data, signer)
    changed = tamper(data)
    assert changed != data
    assert not verify(changed, signer)


def test_relaxed_header_canonicalisation_survives_refolding(
    signed_template: MessageTemplate,
) -> None:
    signer = signed_template.dkim
    assert signer is not None
    data = signed_template.bytes_for(
        Recipient("ann@example.com", "Ann"), unsubscribe_url="https://e.x/u", message_id="a@ex.org"
    )
    # A relay that re-folds a header and changes the case of its name keeps the signature valid.
    refolded = data.replace(b"\r\nSubject: News for Ann", b"\r\nsubject:  News\r\n  for Ann")
    assert refolded != data
    assert verify(refolded, signer)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("body_canon", ["simple", "relaxed"])
def test_raw_messages_with_utf8_headers_and_odd_bodies(kind: str, body_canon: str) -> None:
    signer = DkimSigner("example.org", "sel", private_key(kind), body_canon=body_canon)  # type: ignore[arg-type]
    for body in (b"", b"x", b"line  with\t spaces  \r\n\r\n\r\n", b"a\r\n" * 1000):
        message = (
            "From: Zoë <zoe@example.org>\r\nTo: a@example.com\r\n"
            "Subject: Grüße   aus\r\n\t Köln\r\nDate: Wed, 25 Nov 2026 01:00:00 GMT\r\n"
            "Message-ID: <1@example.org>\r\n\r\n"
        ).encode() + body
        signed = signer.sign(message)
        assert signed.endswith(message)
        assert verify(signed, signer), (kind, body_canon, body[:20])


def test_key_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"missing\.pem.*cannot read"):
        DkimSigner.from_config(DkimConfig("example.org", "s", missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"garbage\.pem.*not a usable PEM private key"):
        DkimSigner.from_config(DkimConfig("example.org", "s", garbage))
    public_only = tmp_path / "public.pem"
    public_only.write_bytes(
        private_key("ed25519")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match=r"public\.pem"):
        DkimSigner.from_config(DkimConfig("example.org", "s", public_only))
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        private_key("ed25519").private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(ConfigError, match=r"enc\.pem.*encrypted"):
        DkimSigner.from_config(DkimConfig("example.org", "s", encrypted))


def test_config_dkim_block_loads_a_signer(project: Path) -> None:
    write_key(project / "k.pem", "ed25519")
    with (project / "newsletter.yaml").open("a") as f:
        f.write("dkim:\n  domain: Example.org\n  selector: news\n  private_key: k.pem\n")
    config = load_config(project / "newsletter.yaml")
    signer = DkimSigner.from_config(config.dkim)  # type: ignore[arg-type]
    assert signer.dns_name == "news._domainkey.example.org"
    assert signer.dns_record().startswith("v=DKIM1; k=ed25519; p=")


def test_prepared_signing_matches_signing_the_finished_message(
    signed_template: MessageTemplate,
) -> None:
    """The template signs from its pieces (fixed headers canonicalised once); signing the
    finished message from scratch with the same timestamp must give the same bytes."""
    signer = signed_template.dkim
    assert signer is not None
    for i, r in enumerate(RECIPIENTS):
        data = signed_template.bytes_for(
            r, unsubscribe_url=f"https://news.example.org/u/{i}", message_id=f"{i}@example.org"
        )
        header, sep, message = data.partition(b"\r\nFrom: ")
        stamp = re.search(rb"\bt=(\d+);", header)
        assert sep and stamp is not None
        assert signer.sign(b"From: " + message, timestamp=int(stamp.group(1))) == data
        assert verify(data, signer)


def test_prepared_signer_checks_its_inputs() -> None:
    signer = DkimSigner("example.org", "sel", private_key("ed25519"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="occurs twice"):
        signer.prepare([("From", b"From: a@example.org"), ("from", None)])
    prepared = signer.prepare([("From", b"From: a@example.org"), ("To", None)])
    with pytest.raises(ValueError, match="expected 1 per-message"):
        prepared.sign([], [b"body\r\n"])
    # A body not already in simple canonical form (trailing empty lines) is canonicalised.
    to = b"To: b@example.com\r\n"
    message = b"From: a@example.org\r\n" + to + b"\r\nbody\r\n\r\n\r\n"
    signed = prepared.sign([to], [b"body\r\n\r\n", b"\r\n"], timestamp=1) + message
    assert signed == signer.sign(message, timestamp=1)
    assert verify(signed, signer)
