"""MessageTemplate: an issue's MIME message built once, filled per recipient.

Per issue: every fixed header line, the boundaries and the quoted-printable encoding of every
literal piece of the text and HTML parts are prepared as bytes. Per recipient: the placeholder
values are evaluated once, the few per-recipient header lines are encoded, each distinct slot value
is quoted-printable encoded once, and the message is a `b"".join` of those pieces (see
`newsletter.mail.mime` for why independently encoded QP segments can be concatenated). No MJML,
premailer or `email.message.EmailMessage` runs per recipient.

Layout (CRLF everywhere; DKIM-Signature prepended when a signer is set):

    From / To / Subject / Date / Message-ID / [Reply-To] / List-Id / List-Unsubscribe /
    List-Unsubscribe-Post / MIME-Version / Content-Type: multipart/alternative
    text/plain part (quoted-printable), then text/html part (quoted-printable): the last part is
    the one clients prefer (RFC 2046).

The same builder makes transactional mail (`transactional=True`, see `newsletter.transactional`):
no List-Id / List-Unsubscribe pair (the reader is not on a list yet), `Auto-Submitted:
auto-generated` (RFC 3834) instead, and otherwise the same headers, encoders, checks and DKIM.

A recipient whose values cannot make a valid message (CR/LF in the name, a non-ASCII local part,
an over-long unsubscribe URL) raises `MessageError`; transports turn that into a "failed" result.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Protocol

from newsletter.errors import MessageError
from newsletter.mail.mime import (
    addr_spec,
    address_header,
    check_header_text,
    header_line,
    phrase,
    provider_display_name,
    qp_segment,
    unstructured,
)
from newsletter.placeholders import Recipient
from newsletter.render.fill import Fill, Slot
from newsletter.tokens import verp_address
from newsletter.transports.base import DotSafeBytes, MessageParts, OutgoingMessage

if TYPE_CHECKING:
    from email.headerregistry import Address

    from newsletter.config import Config
    from newsletter.mail.dkim import DkimSigner

TEST_PREFIX = "[TEST] "
_FEEDBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ONE_CLICK = "List-Unsubscribe=One-Click"
AUTO_SUBMITTED = "auto-generated"  # RFC 3834: no vacation replies to a machine-made message
_PART_HEADERS = (
    'Content-Type: text/{subtype}; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)

# A compiled body: literal QP bytes, or a slot to fill per recipient.
_Piece = bytes | Slot


class MailContent(Protocol):
    """What a message is built from: a `CompiledIssue`, or a transactional mail's content."""

    @property
    def subject(self) -> Fill: ...
    @property
    def text(self) -> Fill: ...
    @property
    def html(self) -> Fill: ...
    def values_for(self, recipient: Recipient, unsubscribe_url: str) -> dict[str, str]: ...


class QpBody:
    """A `Fill` compiled to quoted-printable segments; `render(values)` is a join."""

    __slots__ = ("pieces",)

    def __init__(self, fill: Fill) -> None:
        pieces: list[_Piece] = []
        for piece in fill.pieces:
            if isinstance(piece, Slot):
                pieces.append(piece)
            elif pieces and isinstance(pieces[-1], bytes) and pieces[-1].endswith(b"\r\n"):
                # Merge with the previous literal: both are complete segments already.
                pieces[-1] = pieces[-1] + qp_segment(piece)
            else:
                pieces.append(qp_segment(piece))
        self.pieces: tuple[_Piece, ...] = tuple(p for p in pieces if p != b"")

    def render(self, values: Mapping[str, str], cache: dict[Slot, bytes]) -> bytes:
        out: list[bytes] = []
        append = out.append
        for piece in self.pieces:
            if piece.__class__ is bytes:
                append(piece)  # type: ignore[arg-type]
                continue
            encoded = cache.get(piece)  # type: ignore[arg-type]
            if encoded is None:
                value = piece.apply(values[piece.name])  # type: ignore[union-attr]
                encoded = cache[piece] = qp_segment(value)  # type: ignore[index]
            append(encoded)
        return b"".join(out)


class _DateCache:
    """RFC 5322 Date for "now", formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text = formatdate(second, usegmt=True)
            self._second = second
        return self._text


class MessageTemplate:
    """Build once per issue (and campaign); then `bytes_for` / `outgoing` per recipient."""

    def __init__(
        self,
        compiled: MailContent,
        config: Config,
        *,
        campaign_key: str,
        dkim: DkimSigner | None = None,
        test: bool = False,
        transactional: bool = False,
        verp: Verp | None = None,
        feedback_id: str | None = None,
    ) -> None:
        self.compiled = compiled
        self.config = config
        self.campaign_key = campaign_key
        self.dkim = dkim
        self.test = test
        self.transactional = transactional
        self.envelope_from = addr_spec(config.sender.addr_spec)
        # VERP: the envelope sender names the ledger row (`outgoing`'s key), see tokens.verp_token
        self.verp = None if transactional else verp
        self._domain = config.sender_domain
        self._prefix = TEST_PREFIX if test else ""
        self._dates = _DateCache()
        self._from_value = _address_value("From", config.sender)
        self._reply_to_value = (
            _address_value("Reply-To", config.reply_to) if config.reply_to else None
        )
        self._list_id_value = _list_id(config)
        # "=" never appears unencoded in quoted-printable, so this boundary cannot occur in a body.
        digest = hashlib.sha256(f"boundary\0{campaign_key}".encode()).hexdigest()[:24]
        self.boundary = f"=_nl{digest}"
        self._text = QpBody(compiled.text)
        self._html = QpBody(compiled.html)
        self._from_line = f"From: {self._from_value}\r\n".encode("ascii")
        middle = [
            ("Auto-Submitted", f"Auto-Submitted: {AUTO_SUBMITTED}\r\n".encode("ascii"))
            if transactional
            else ("List-Id", f"List-Id: {self._list_id_value}\r\n".encode("ascii"))
        ]
        if self._reply_to_value:
            middle.insert(0, ("Reply-To", f"Reply-To: {self._reply_to_value}\r\n".encode("ascii")))
        self.feedback_id = None if transactional or not feedback_id else feedback_id
        if self.feedback_id:
            # Fixed per campaign: among the DKIM-signed fields, as Gmail's feedback loop needs.
            line = header_line("Feedback-ID", _check_feedback_id(self.feedback_id))
            middle.append(("Feedback-ID", line.encode("ascii")))
        self._middle = b"".join(line for _, line in middle)
        tail = (
            []
            if transactional
            else [
                ("List-Unsubscribe-Post", f"List-Unsubscribe-Post: {ONE_CLICK}\r\n".encode("ascii"))
            ]
        )
        tail += [
            ("MIME-Version", b"MIME-Version: 1.0\r\n"),
            (
                "Content-Type",
                f'Content-Type: multipart/alternative;\r\n boundary="{self.boundary}"\r\n'.encode(
                    "ascii"
                ),
            ),
        ]
        self._tail_headers = b"".join(line for _, line in tail) + b"\r\n"
        self._body_start = (
            f"--{self.boundary}\r\n" + _PART_HEADERS.format(subtype="plain")
        ).encode("ascii")
        self._between = (
            f"\r\n--{self.boundary}\r\n" + _PART_HEADERS.format(subtype="html")
        ).encode("ascii")
        self._end = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        # DKIM: the fixed fields are canonicalised once here; None marks the per-recipient ones
        # (passed to the prepared signer in this order: To, Subject, Date, Message-ID,
        # List-Unsubscribe, as `_head` returns them; a transactional mail has no
        # List-Unsubscribe).
        self._variable_fields = 4 if transactional else 5
        unsubscribe = [] if transactional else [("List-Unsubscribe", None)]
        self._signing = (
            dkim.prepare(
                [
                    ("From", self._from_line),
                    *((name, None) for name in ("To", "Subject", "Date", "Message-ID")),
                    *middle,
                    *unsubscribe,
                    *tail,
                ]
            )
            if dkim is not None
            else None
        )

    # --- identifiers ----------------------------------------------------------------------

    def message_id(self, subscriber_key: str | int) -> str:
        """Deterministic per campaign and subscriber (a resend carries the same id); no <>."""
        return f"{message_id_digest(self.campaign_key, subscriber_key)}@{self._domain}"

    # --- per recipient --------------------------------------------------------------------

    def bytes_for(
        self,
        recipient: Recipient,
        *,
        unsubscribe_url: str,
        message_id: str,
        date: str | None = None,
    ) -> bytes:
        """The complete RFC 5322 message (CRLF line ends, DKIM-signed when configured)."""
        values = self.compiled.values_for(recipient, unsubscribe_url)
        head = self._head(recipient, values, unsubscribe_url, message_id, date)
        return self._assemble(head, values)

    def outgoing(
        self,
        key: int,
        recipient: Recipient,
        unsubscribe_url: str,
        subscriber_key: str | int,
        values: Mapping[str, str] | None = None,
    ) -> OutgoingMessage:
        """A lazily built message for a transport. Header values are validated here (raising
        MessageError) so a bad recipient is known before anything reaches a transport.
        `values`: the recipient's `values_for`, when the caller has them already."""
        message_id = self.message_id(subscriber_key)
        if values is None:
            values = self.compiled.values_for(recipient, unsubscribe_url)
        head = self._head(recipient, values, unsubscribe_url, message_id, None)

        def build_data() -> bytes:
            return self._assemble(head, values)

        def build_parts() -> MessageParts:
            return self._parts(recipient, values, unsubscribe_url, message_id)

        verp = self.verp
        return OutgoingMessage(
            key=key,
            envelope_from=self.envelope_from
            if verp is None
            else verp_address(verp.secret, key, verp.local, verp.domain),
            recipient=addr_spec(recipient.email),
            message_id=message_id,
            build_data=build_data,
            build_parts=build_parts,
            header_from=None if verp is None else self.envelope_from,
        )

    def subject_for(self, values: Mapping[str, str]) -> str:
        return check_header_text(self._prefix + self.compiled.subject.render(values), "Subject")

    # --- assembly -------------------------------------------------------------------------

    def _head(
        self,
        recipient: Recipient,
        values: Mapping[str, str],
        unsubscribe_url: str,
        message_id: str,
        date: str | None,
    ) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """The per-recipient header lines, validated and encoded: To, Subject, Date, Message-ID,
        List-Unsubscribe (each with its CRLF; b"" for a transactional mail)."""
        unsubscribe = (
            b""
            if self.transactional
            else header_line("List-Unsubscribe", f"<{_check_url(unsubscribe_url)}>").encode()
        )
        return (
            address_header("To", recipient.name, recipient.email).encode("ascii"),
            unstructured("Subject", self.subject_for(values)).encode("ascii"),
            header_line("Date", date or self._dates.now()).encode("ascii"),
            header_line("Message-ID", f"<{_check_message_id(message_id)}>").encode("ascii"),
            unsubscribe,
        )

    def _assemble(self, head: tuple[bytes, ...], values: Mapping[str, str]) -> bytes:
        cache: dict[Slot, bytes] = {}
        to, subject, date, message_id, unsubscribe = head
        body = (
            self._body_start,
            self._text.render(values, cache),
            self._between,
            self._html.render(values, cache),
            self._end,
        )
        # The DKIM-Signature header (its continuation lines start with TAB) goes first.
        signature = (
            b""
            if self._signing is None
            else self._signing.sign(head[: self._variable_fields], body)
        )
        return DotSafeBytes(
            b"".join(
                (
                    signature,
                    self._from_line,
                    to,
                    subject,
                    date,
                    message_id,
                    self._middle,
                    unsubscribe,
                    self._tail_headers,
                    *body,
                )
            )
        )

    def _parts(
        self,
        recipient: Recipient,
        values: Mapping[str, str],
        unsubscribe_url: str,
        message_id: str,
    ) -> MessageParts:
        headers = {"Message-ID": f"<{message_id}>"}
        if self.transactional:
            headers["Auto-Submitted"] = AUTO_SUBMITTED
        else:
            headers["List-Id"] = self._list_id_value
            headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = ONE_CLICK
        if self._reply_to_value:
            headers["Reply-To"] = self._reply_to_value
        if self.feedback_id:
            headers["Feedback-ID"] = self.feedback_id
        return MessageParts(
            from_header=self._from_value,
            to_email=addr_spec(recipient.email),
            to_name=provider_display_name(recipient.name) if recipient.name else None,
            subject=self.subject_for(values).strip(" \t"),
            text=self.compiled.text.render(values),
            html=self.compiled.html.render(values),
            headers=headers,
        )


@dataclass(frozen=True, slots=True)
class Verp:
    """What a VERP envelope sender is made of: `local+<token>@domain` (bounces: address)."""

    secret: bytes
    local: str
    domain: str


def feedback_id(issue_slug: str, list_name: str, config: Config) -> str:
    """Gmail's Feedback-ID `<campaign>:<list>:<newsletter>:<sender-id>`: the issue slug, the
    list, the newsletter's list-id label and `bounces.feedback_id` (default: the sender
    domain). ':' separates the fields, so each keeps only letters, digits, '.', '_', '-'."""
    sender = config.bounces.feedback_id or config.sender_domain
    newsletter = config.list_id_token.rpartition("." + config.sender_domain)[0]
    fields = (issue_slug, list_name, newsletter or "newsletter", sender)
    return ":".join(_FEEDBACK_UNSAFE.sub("-", f)[:64].strip("-") or "x" for f in fields)


def message_id_digest(campaign_key: str, subscriber_key: str | int) -> str:
    """The part of a campaign Message-ID before the @: 32 hex digits of SHA-256 over campaign
    key and subscriber (bounce mapping derives it again from the ledger, see bounces.lookup)."""
    return hashlib.sha256(f"{campaign_key}\0{subscriber_key}".encode()).hexdigest()[:32]


def _address_value(header: str, address: Address) -> str:
    """`Name <addr>` header value (encoded, possibly folded) for a configured address."""
    line = address_header(header, address.display_name, address.addr_spec)
    return line[len(header) + 2 : -2]


def _list_id(config: Config) -> str:
    """RFC 2919 List-Id: the list name as an encoded phrase, then <list-id> (see
    `Config.list_id_token`)."""
    shown = phrase(config.name)
    return f"{shown} <{config.list_id_token}>" if shown else f"<{config.list_id_token}>"


def _check_message_id(message_id: str) -> str:
    check_header_text(message_id, "Message-ID")
    if "@" not in message_id or any(c in message_id for c in "<> \t") or not message_id.isascii():
        raise MessageError(f"invalid Message-ID {message_id!r}: expected id@domain")
    return message_id


def _check_feedback_id(value: str) -> str:
    check_header_text(value, "Feedback-ID")
    if not value.isascii() or any(c.isspace() for c in value) or len(value) > 300:
        raise MessageError(f"invalid Feedback-ID {value!r}: expected a:b:c:sender-id")
    return value


def _check_url(url: str) -> str:
    check_header_text(url, "unsubscribe URL")
    if not url.isascii() or any(c in url for c in " <>\"'"):
        raise MessageError(f"unsubscribe URL {url!r} must be ASCII without spaces or <>")
    return url
