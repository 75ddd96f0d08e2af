"""`imaps://user@host[:port]/FOLDER[?cafile=PATH]`: bounce mail read from an IMAP mailbox.

The password comes from NEWSLETTER_IMAP_PASSWORD, never from the URL. TLS is implicit (IMAPS,
port 993 by default) and the certificate is verified against the system store, or only against
`cafile=` (the SMTP transport's helper). Messages are read with BODY.PEEK (reading sets no flag);
after their events are applied they are flagged `\\Seen` plus the keyword `NewsletterProcessed`
(RFC 3501 keywords), or moved to `move_to` (RFC 6851 MOVE, else COPY + delete), and deleted only
when asked. Messages already carrying the keyword are skipped, so a second fetch reads only new
mail.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.errors import MailboxError, TransportConfigError
from newsletter.transports.smtp import client_tls_context

PASSWORD_VARIABLE = "NEWSLETTER_IMAP_PASSWORD"
PROCESSED_KEYWORD = "NewsletterProcessed"
_UIDS = re.compile(rb"\d+")
_FETCHED_UID = re.compile(rb"\bUID (\d+)")
CHUNK = 200  # UIDs per FETCH/STORE/MOVE command


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """What an `imaps://` URL names: host, port, user, folder and the `cafile=` trust file."""

    host: str
    port: int
    user: str
    folder: str
    cafile: str | None

    @property
    def where(self) -> str:
        return f"imaps://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_imap_url(url: str) -> ImapSettings:
    """Parse `imaps://user@host[:port]/FOLDER[?cafile=PATH]`; raise MailboxError saying what is
    wrong (another scheme, no user, no folder, a password in the URL, an unknown parameter)."""
    parts = urlsplit(url)
    if parts.scheme != "imaps":
        raise MailboxError(
            f"{url!r}: give an imaps://user@host[:port]/FOLDER URL (IMAP over TLS only)"
        )
    if parts.password is not None:
        raise MailboxError(
            f"the IMAP URL holds a password: remove it and set {PASSWORD_VARIABLE} instead"
        )
    try:
        port = parts.port or 993
    except ValueError:
        raise MailboxError(f"{url!r}: the port must be a number") from None
    if not parts.hostname or not parts.username:
        raise MailboxError(f"{url!r}: give the user and host: imaps://user@host/FOLDER")
    folder = unquote(parts.path.lstrip("/"))
    if not folder:
        raise MailboxError(f"{url!r}: name the folder to read: imaps://user@host/FOLDER")
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(params) - {"cafile"})
    if unknown:
        raise MailboxError(f"{url!r}: unknown parameter {unknown[0]!r} (known: cafile)")
    cafile = params.get("cafile", [None])[-1] or None
    return ImapSettings(parts.hostname, port, unquote(parts.username), folder, cafile)


class ImapMailbox:
    """One logged-in IMAP session on one folder (read-only with `readonly=True`)."""

    def __init__(self, settings: ImapSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        env = os.environ if environ is None else environ
        password = env.get(PASSWORD_VARIABLE)
        if not password:
            raise MailboxError(f"set {PASSWORD_VARIABLE} to the password of {settings.where}")
        self._password = password
        self._imap: imaplib.IMAP4_SSL | None = None
        self.can_move = False

    def open(self, *, readonly: bool) -> None:
        s = self.settings
        try:
            context = client_tls_context(s.cafile)
        except TransportConfigError as exc:
            raise MailboxError(str(exc)) from None
        try:
            imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=context, timeout=30)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"{s.where}: the server's certificate is not trusted ({exc.verify_message}); "
                "give its CA with ?cafile=PATH"
            ) from None
        except (OSError, ssl.SSLError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"{s.where}: cannot connect: {exc}") from None
        self._imap = imap
        try:
            imap.login(s.user, self._password)
        except imaplib.IMAP4.error:
            self.close()
            raise MailboxError(f"{s.where}: login refused for {s.user}") from None
        status, detail = imap.select(_quote(s.folder), readonly=readonly)
        if status != "OK":
            self.close()
            raise MailboxError(f"{s.where}: cannot open folder {s.folder!r}: {_text(detail)}")
        self.can_move = "MOVE" in imap.capabilities

    def unprocessed(self) -> list[bytes]:
        """UIDs of the messages not yet flagged processed (nor deleted)."""
        data = self._command("uid", "SEARCH", "NOT", "KEYWORD", PROCESSED_KEYWORD, "NOT", "DELETED")
        return _UIDS.findall(b" ".join(d for d in data if isinstance(d, bytes)))

    def messages(self, uids: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """(uid, RFC 5322 bytes) per UID, read with BODY.PEEK[] (no \\Seen set), CHUNK UIDs
        per command."""
        for start in range(0, len(uids), CHUNK):
            ids = b",".join(uids[start : start + CHUNK]).decode()
            for item in self._command("uid", "FETCH", ids, "(UID BODY.PEEK[])"):
                if isinstance(item, tuple) and len(item) == 2:
                    match = _FETCHED_UID.search(item[0])
                    if match is not None:
                        yield match.group(1), item[1]

    def mark_processed(self, uids: list[bytes], *, move_to: str | None, delete: bool) -> None:
        """Flag (\\Seen + keyword), then move or delete, the processed UIDs (CHUNK per command:
        servers limit the length of a command line)."""
        for start in range(0, len(uids), CHUNK):
            ids = b",".join(uids[start : start + CHUNK]).decode()
            self._command("uid", "STORE", ids, "+FLAGS.SILENT", f"(\\Seen {PROCESSED_KEYWORD})")
            if move_to and self.can_move:
                self._command("uid", "MOVE", ids, _quote(move_to))
                continue
            if move_to:
                self._command("uid", "COPY", ids, _quote(move_to))
            if move_to or delete:
                self._command("uid", "STORE", ids, "+FLAGS.SILENT", "(\\Deleted)")
        if (move_to and not self.can_move) or delete:
            self._command("expunge")

    def check_folder(self, name: str) -> None:
        """Raise MailboxError unless folder `name` exists (before anything is moved there)."""
        assert self._imap is not None
        status, data = self._imap.list('""', _quote(name))
        if status != "OK" or not [d for d in data if d]:
            raise MailboxError(f"{self.settings.where}: no folder {name!r} to move messages to")

    def close(self) -> None:
        if self._imap is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self._imap.logout()
            self._imap = None

    def _command(self, name: str, *args: str) -> list:
        assert self._imap is not None
        try:
            status, data = getattr(self._imap, name)(*args)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"{self.settings.where}: {name} {args[:1]} failed: {exc}") from None
        if status != "OK":
            raise MailboxError(f"{self.settings.where}: {name} {args[:1]} refused: {_text(data)}")
        return list(data)


def _quote(name: str) -> str:
    """A mailbox name (as people read it, any Unicode) as an IMAP quoted string of its
    modified UTF-7 form (RFC 3501 5.1.3), the only form SELECT/LIST/COPY/MOVE accept."""
    encoded = mailbox_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_utf7(name: str) -> str:
    """`name` in IMAP modified UTF-7 (RFC 3501 5.1.3): printable ASCII as is but `&` as `&-`;
    every other run as `&` + base64 of its UTF-16BE, with `,` for `/` and no padding, + `-`.
    `Verarbeität` -> `Verarbeit&AOQ-t`."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            packed = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + packed.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    flush()
    return "".join(out)


def _text(data: object) -> str:
    if isinstance(data, list):
        return " ".join(_text(d) for d in data if d)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)
