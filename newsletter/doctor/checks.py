"""The checks of `newsletter doctor` that need no network: the configuration as a sender to
real inboxes needs it, and the modes of the private files.

Each check is a function `(config, locator, transport) -> list[Finding]`; `CHECKS` runs in
order. Severities: "error" for what would reach a reader broken or not at all (a placeholder
address, a link to 127.0.0.1, a From domain that fails DMARC), "warning" for what weakens the
setup without breaking a message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from newsletter import db
from newsletter.config import Config
from newsletter.db import Database, PostgresDatabase
from newsletter.doctor import domains
from newsletter.doctor.findings import Finding, Locator, display_path
from newsletter.errors import ConfigError
from newsletter.lint import SKELETON_MARK
from newsletter.private import wider_than_private
from newsletter.subscribers.segment import SegmentError, parse_segment
from newsletter.tokens import MIN_SECRET_LENGTH
from newsletter.transports import redact_secrets

# What `newsletter init` writes as the postal address (newsletter/scaffold.py).
POSTAL_PLACEHOLDER = "1 Example Street"

Check = Callable[[Config, Locator, str], list[Finding]]


def check_from(config: Config, at: Locator, transport: str) -> list[Finding]:
    domain = config.sender.domain
    if domains.is_reserved(domain) or domains.ip_address(domain) is not None:
        return [
            at.finding(
                "from",
                "error",
                f"{config.sender.addr_spec} is on {domain}, a domain reserved for examples or "
                "private use: no receiver accepts mail from it; use an address at a domain you "
                "control",
            )
        ]
    if domains.is_free_mail(domain) and not _provider_submission(transport, domain):
        return [
            at.finding(
                "from",
                "error",
                f"{domain} is a mailbox provider's domain: its DMARC policy fails mail sent "
                "from any other server, so receivers reject or junk it; send from a domain "
                "you control",
            )
        ]
    return []


def check_reply_to(config: Config, at: Locator, transport: str) -> list[Finding]:
    reply_to = config.reply_to
    if reply_to is not None and domains.is_reserved(reply_to.domain):
        return [
            at.finding(
                "reply_to",
                "error",
                f"{reply_to.addr_spec} is on {reply_to.domain}, a domain reserved for "
                "examples: readers' replies would go nowhere",
            )
        ]
    return []


def check_unsubscribe_mailto(config: Config, at: Locator, transport: str) -> list[Finding]:
    mailto = config.unsubscribe_mailto
    domain = (mailto or "").rpartition("@")[2]
    if mailto and (domains.is_reserved(domain) or domains.is_not_public(domain)):
        return [
            at.finding(
                "unsubscribe_mailto",
                "error",
                f"{mailto} is on {domain}, a domain reserved for examples or private use: "
                "readers' unsubscribe mails (List-Unsubscribe mailto:) would go nowhere",
            )
        ]
    return []


def check_segments(config: Config, at: Locator, transport: str) -> list[Finding]:
    """Each named segment (`segments:`) that does not parse, found now rather than by the send
    to it. A warning: a send to that segment is refused before any mail goes, and sends to
    others are not concerned, so nothing reaches a reader broken."""
    found = []
    for name, named in config.segments.items():
        try:
            parse_segment(named.text, name=name)
        except SegmentError as exc:
            key = f"segments.{name}"
            message = exc.describe(f"segment {name!r}").removeprefix(f"segment {name!r}: ")
            found.append(
                at.finding(key, "warning", f"{message}\n    (`send --segment {name}` fails)")
            )
    return found


def check_base_url(config: Config, at: Locator, transport: str) -> list[Finding]:
    parts = urlsplit(config.base_url)
    host = parts.hostname or ""
    found: list[Finding] = []
    if domains.is_not_public(host):
        found.append(
            at.finding(
                "base_url",
                "error",
                f"{config.base_url} is a loopback, private or local address: every reader's "
                "'Unsubscribe' and 'View in browser' link would point at their own machine; "
                "use the public https:// URL of `newsletter serve`",
            )
        )
    elif domains.is_reserved(host):
        found.append(
            at.finding(
                "base_url",
                "error",
                f"{config.base_url} is on a domain reserved for examples: the 'Unsubscribe' "
                "and 'View in browser' links would lead nowhere",
            )
        )
    if parts.scheme != "https":
        found.append(
            at.finding(
                "base_url",
                "error",
                f"{config.base_url} is plain http: one-click unsubscribe (RFC 8058) needs an "
                "https:// List-Unsubscribe URL, so List-Unsubscribe-Post is left out of every "
                "issue (Gmail and Yahoo then offer no one-click unsubscribe), and links would "
                "travel unencrypted",
            )
        )
    return found


def check_postal_address(config: Config, at: Locator, transport: str) -> list[Finding]:
    postal = config.postal_address
    if not postal:
        return [
            at.finding(
                "postal_address",
                "error",
                "missing: anti-spam laws (CAN-SPAM, CASL) require a valid postal address in "
                "every commercial email; add postal_address: to the footer",
            )
        ]
    if POSTAL_PLACEHOLDER.lower() in postal.lower() or SKELETON_MARK in postal:
        return [
            at.finding(
                "postal_address",
                "error",
                f"still the placeholder written by `newsletter init` ({postal!r}): readers "
                "would see it in every footer",
            )
        ]
    return []


def check_dkim(config: Config, at: Locator, transport: str) -> list[Finding]:
    from newsletter.mail.dkim import DkimSigner

    dkim = config.dkim
    if dkim is None:
        return [
            at.finding(
                "dkim",
                "warning",
                "no DKIM: messages are unsigned, and large mailbox providers require DKIM of "
                "bulk senders; run `newsletter dkim keygen` and publish the record it prints",
            )
        ]
    found: list[Finding] = []
    if not domains.aligned(dkim.domain, config.sender.domain):
        found.append(
            at.finding(
                "dkim.domain",
                "warning",
                f"{dkim.domain} is not aligned with the From domain {config.sender.domain} "
                f"(organizational domains {domains.organizational_domain(dkim.domain)} and "
                f"{domains.organizational_domain(config.sender.domain)}): the signature "
                "cannot pass DMARC; sign with d= the From domain or its parent",
            )
        )
    try:
        DkimSigner.from_config(dkim)
    except (ConfigError, ValueError) as exc:
        found.append(at.finding("dkim.private_key", "error", str(exc)))
    return found


def check_secret_key(config: Config, at: Locator, transport: str) -> list[Finding]:
    variable = at.env.get("NEWSLETTER_SECRET_KEY")
    secret = variable or config.secret_key
    key = "secret_key"
    if secret:
        if len(secret) < MIN_SECRET_LENGTH:
            return [
                at.finding(
                    key,
                    "error",
                    f"shorter than {MIN_SECRET_LENGTH} characters: tokens would be guessable, "
                    "and sending refuses it; generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe())'`",
                )
            ]
        if not variable and at.in_file(key):
            return [
                at.finding(
                    key,
                    "warning",
                    "the secret that signs unsubscribe links is written in newsletter.yaml, "
                    "a file usually kept in git; set NEWSLETTER_SECRET_KEY instead",
                )
            ]
        return []
    shown, noun = db.describe(config.database), "database"
    if isinstance(config.database, Path):
        shown, noun = display_path(config.database), "file"
    if _database_has_secret(config.database):
        where = f"only in the database {shown}"
        consequence = f"losing or replacing that {noun} breaks every unsubscribe link sent"
    else:
        where = f"nowhere yet: one is generated on first use into {shown}"
        consequence = (
            f"`newsletter serve` must use that same {noun}, and losing it breaks every link"
        )
    return [
        at.finding(
            key,
            "warning",
            f"the signing secret is kept {where}; {consequence}: back the database up, or set "
            "NEWSLETTER_SECRET_KEY (at least 16 characters) where both send and serve run",
        )
    ]


def check_file_modes(config: Config, at: Locator, transport: str) -> list[Finding]:
    """Private files readable by group or others (newsletter.private creates them 0600)."""
    targets: list[tuple[str, Path]] = []
    database = config.database
    if isinstance(database, Path):  # a PostgreSQL server keeps its own files
        for suffix in ("", "-wal", "-shm", ".unsubscribe-spool"):
            targets.append(("database", database.with_name(database.name + suffix)))
    if config.dkim is not None:
        targets.append(("dkim.private_key", config.dkim.private_key))
    if config.path is not None and at.in_file("secret_key"):
        targets.append(("secret_key", config.path))  # the file holds a secret too
    outbox = _outbox_folder(config, transport)
    if outbox is not None and outbox.is_dir():
        targets.append(("transport", outbox))
        targets.extend(("transport", f) for f in sorted(outbox.glob("*.eml")))
    found: list[Finding] = []
    eml_wide = 0
    for key, path in targets:
        mode = wider_than_private(path)
        if mode is None:
            continue
        if path.suffix == ".eml":
            eml_wide += 1
            continue
        want = "700" if path.is_dir() else "600"
        found.append(
            Finding(
                display_path(path),
                "warning",
                key,
                f"mode {mode:04o}: other users of this machine can read it; run "
                f"`chmod {want} {_shell_quote(display_path(path))}`",
            )
        )
    if eml_wide and outbox is not None:
        shown = display_path(outbox)
        found.append(
            Finding(
                shown,
                "warning",
                "transport",
                f"{eml_wide} message file{'s' if eml_wide != 1 else ''} readable by other users "
                f"(addresses, personal unsubscribe links); run "
                f"`chmod 600 {_shell_quote(shown)}/*.eml`",
            )
        )
    return found


def check_transport(config: Config, at: Locator, transport: str) -> list[Finding]:
    """SMTP to another machine without encryption or without checking its certificate: the
    password and every reader's message could be read or changed on the way."""
    scheme = transport.partition(":")[0].lower()
    if scheme not in ("smtp", "smtps") or not domains.delivers_off_machine(transport):
        return []
    params = {k: v.lower() for k, v in parse_qsl(transport.partition("?")[2])}
    shown = redact_secrets(transport)
    where = at.where("transport") if transport == config.transport else "--transport"
    found: list[Finding] = []
    if scheme == "smtp" and params.get("tls") == "none":
        found.append(
            Finding(
                where,
                "warning",
                "transport",
                f"{shown} uses tls=none to another machine: the login and every message "
                "travel unencrypted; use tls=starttls (the default) or smtps://",
            )
        )
    if params.get("verify") in ("false", "0", "no"):
        found.append(
            Finding(
                where,
                "warning",
                "transport",
                f"{shown} uses verify=false: any server can pose as the relay and read the "
                "mail; trust a private certificate with cafile=PATH instead",
            )
        )
    return found


CHECKS: tuple[Check, ...] = (
    check_from,
    check_reply_to,
    check_unsubscribe_mailto,
    check_segments,
    check_base_url,
    check_postal_address,
    check_dkim,
    check_secret_key,
    check_transport,
    check_file_modes,
)


def _provider_submission(transport: str, domain: str) -> bool:
    """Sending through the mailbox provider's own SMTP server (smtp.gmail.com for gmail.com),
    which signs and aligns the provider's domain."""
    if not transport.lower().startswith(("smtp:", "smtps:")):
        return False
    host = urlsplit(transport).hostname or ""
    return domains.aligned(host, domain)


def _outbox_folder(config: Config, transport: str) -> Path | None:
    scheme, _, rest = transport.partition(":")
    if scheme.lower() != "outbox":
        return None
    path = Path(rest.removeprefix("//") or "./outbox").expanduser()
    return path if path.is_absolute() else config.root / path


def _database_has_secret(database: Database) -> bool:
    """Read-only look (never creates the SQLite file nor a PostgreSQL table): does the
    database hold a generated signing secret? False when it cannot be read."""
    try:
        if isinstance(database, PostgresDatabase):
            if not db.exists(database):
                return False
            conn: db.Connection = db.connect(database, timeout=2)
        elif database.is_file():
            conn = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=2)
        else:
            return False
        try:
            if not db.has_table(conn, "token_secrets"):
                return False
            row = conn.execute("SELECT 1 FROM token_secrets WHERE name = 'default'").fetchone()
        finally:
            conn.close()
    except db.Error:
        return False
    return row is not None


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
