"""`newsletter dkim keygen`: a DKIM key, the `dkim:` block and the DNS record, without Python.

The private key is written PKCS#8 PEM, mode 0600 in a folder made 0700, and never over an
existing file. The `dkim:` block goes into newsletter.yaml only when that is safe: the file has
no `dkim` key yet, the edit keeps every other byte (comments included: the block replaces
`init`'s commented-out example or is appended), and the edited text parses to the same settings
plus the new block; it is then written to a temporary file and renamed. Otherwise the block is
returned for the user to paste, with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.config import Config, ascii_domain
from newsletter.errors import ConfigError, NewsletterError
from newsletter.mail.dkim import DkimSigner
from newsletter.private import FILE_MODE, make_private_dirs, open_private
from newsletter.yamlsource import YamlInvalid, parse_yaml

KeyType = Literal["rsa", "ed25519"]
RSA_BITS = 2048
KEY_FOLDER = "dkim"
# `newsletter init` writes this commented-out example (newsletter/scaffold.py).
_COMMENTED_BLOCK = re.compile(r"^# dkim:[^\n]*\n(?:#   [a-z_]+:[^\n]*\n)*", re.MULTILINE)
TXT_CHUNK = 255  # one character-string of a TXT record (RFC 1035 3.3.14)


@dataclass(frozen=True)
class KeygenResult:
    key_path: Path
    block: str  # the `dkim:` YAML block
    config_updated: bool
    not_updated_because: str | None  # why the block must be pasted by hand
    dns_name: str
    dns_value: str

    def zone_line(self) -> str:
        """The record as a zone-file line, the value cut into 255-character strings."""
        chunks = [
            self.dns_value[i : i + TXT_CHUNK] for i in range(0, len(self.dns_value), TXT_CHUNK)
        ]
        return f"{self.dns_name}. IN TXT ( " + " ".join(f'"{c}"' for c in chunks) + " )"


def default_selector(today: dt.date | None = None) -> str:
    """`nlYYYYMM`: a date in the selector lets the next key live beside this one."""
    return f"nl{(today or dt.date.today()):%Y%m}"


def generate_dkim_key(
    config: Config,
    *,
    selector: str | None = None,
    key_type: KeyType = "rsa",
    domain: str | None = None,
    key_path: Path | None = None,
) -> KeygenResult:
    """Write a new private key and add the `dkim:` block to the configuration when safe.

    Raises ConfigError for a bad selector or domain and NewsletterError when the key file
    exists (never overwritten) or cannot be written."""
    selector = selector or default_selector()
    # An internationalised --domain is signed and published as IDNA (d= and the DNS name).
    domain = (
        ascii_domain(domain, "the DKIM domain", (None, None)) if domain else config.sender.domain
    )
    for what, value in (("selector", selector), ("domain", domain)):
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", value):
            raise ConfigError(f"the DKIM {what} must be a DNS name, got {value!r}")
    path = key_path or config.root / KEY_FOLDER / f"{selector}.{domain}.pem"
    if not path.is_absolute():
        path = Path.cwd() / path
    key = ed25519.Ed25519PrivateKey.generate() if key_type == "ed25519" else _rsa_key()
    _write_key(path, key)
    signer = DkimSigner(domain, selector, key)
    block = _block(domain, selector, _relative(path, config.root))
    updated, reason = _add_block(config, block)
    return KeygenResult(path, block, updated, reason, signer.dns_name, signer.dns_record())


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _write_key(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        make_private_dirs(path.parent)
        fd = open_private(path, os.O_WRONLY | os.O_EXCL)
    except FileExistsError:
        raise NewsletterError(f"already exists, not overwriting: {path}") from None
    except OSError as exc:
        raise NewsletterError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise NewsletterError(f"cannot write {path}: {exc.strerror or exc}") from None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _block(domain: str, selector: str, key_path: str) -> str:
    return (
        "dkim:\n"
        f"  domain: {domain}\n"
        f"  selector: {selector}\n"
        f"  private_key: {json.dumps(key_path, ensure_ascii=False)}\n"
    )


def _add_block(config: Config, block: str) -> tuple[bool, str | None]:
    path = config.path
    if path is None:
        return False, "there is no newsletter.yaml (built-in defaults are in use)"
    if any(k.startswith("NEWSLETTER_DKIM_") for k in os.environ):
        return False, "NEWSLETTER_DKIM_* variables are set and would override the file"
    try:
        text = path.read_text(encoding="utf-8")
        before = parse_yaml(text, str(path))
    except (OSError, UnicodeDecodeError, YamlInvalid) as exc:
        return False, f"{path} cannot be read safely ({exc})"
    if not isinstance(before.data, dict):
        return False, f"{path} is not a mapping of settings"
    if "dkim" in before.data:
        return False, f"{path} already has a dkim: block (edit it to switch keys)"
    if _COMMENTED_BLOCK.search(text):
        edited = _COMMENTED_BLOCK.sub(lambda _m: block, text, count=1)
    else:
        edited = text + ("" if text.endswith("\n") or not text else "\n") + block
    try:
        after = parse_yaml(edited, str(path)).data
    except YamlInvalid:
        after = None
    expected = {**before.data, "dkim": parse_yaml(block, "block").data["dkim"]}
    if after != expected:  # e.g. a flow-style file: appending would not add one key
        return False, f"adding the block would change other settings in {path}"
    _replace_text(path, edited)
    return True, None


def _replace_text(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = path.stat().st_mode & 0o7777
    try:
        fd = open_private(temp, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode or FILE_MODE)  # newsletter.yaml keeps its own mode
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
