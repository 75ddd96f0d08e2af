"""Byte-level MIME encoders for the per-recipient hot path.

Python's `email` package costs milliseconds per message (see shared/reference/email.md), so the
message template assembles bytes itself. These helpers produce exactly what RFC 5322 / 2045 / 2047
require: CRLF line ends, header lines well under 998 octets, quoted-printable lines of at most 76
characters, RFC 2047 encoded-words (UTF-8, base64) for non-ASCII display names and subjects.

A text part is quoted-printable or base64, whichever is smaller for the issue (as Python's email
package chooses): QP keeps Latin text readable and small, but triples CJK text (every UTF-8 byte
becomes "=XX"), where base64 costs 4/3. Base64 cannot be spliced from independently encoded
pieces (padding would sit mid-body), so a base64 part is encoded whole per recipient (one
b64encode).

Quoted-printable is written in independent *segments*: every segment starts at column 0 and ends
either with a hard line break or with a soft line break (`=` CRLF). Soft breaks decode to nothing,
so segments can be encoded once per issue (the literal template text) or per recipient (a slot
value) and simply concatenated: no line ever crosses a segment boundary.
"""

from __future__ import annotations

import base64
import re

from newsletter.errors import MessageError
from newsletter.idn import ascii_domain

CRLF = "\r\n"
QP_MAX = 75  # characters before the soft-break "=" (76 with it)

# Quoted-printable token for each byte: printable ASCII except "=" stays literal, space and tab
# stay literal except at the end of a hard line (handled separately), everything else is =XX.
_QP_TOKEN = [f"={b:02X}" for b in range(256)]
for _b in range(33, 127):
    if _b != 61:
        _QP_TOKEN[_b] = chr(_b)
_QP_TOKEN[32] = " "
_QP_TOKEN[9] = "\t"
_QP_PLAIN = re.compile(r"[\x21-\x3c\x3e-\x7e \t]*")

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+( [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
ENCODED_WORD_START = "=?"  # RFC 2047: every encoded-word starts so; decoders look for it
_ENCODED_WORD_BYTES = 39  # 52 base64 chars: "=?utf-8?b?" + 52 + "?=" = 64 chars per word
_PHRASE_WORD_BYTES = 45  # 72-character words: "To: " + one word stays within 76
FOLD_AT = 78


# --- quoted-printable -------------------------------------------------------------------------


def qp_segment(text: str) -> bytes:
    """Encode `text` as a self-contained QP segment (see the module docstring).

    "" -> b"", "abc" -> b"abc=\\r\\n", "abc\\n" -> b"abc\\r\\n". Line ends in `text` (LF, CRLF or
    a bare CR) become hard CRLF breaks.
    """
    if not text:
        return b""
    if len(text) <= QP_MAX and text[0] != "." and _QP_PLAIN.fullmatch(text):
        return (text + "=\r\n").encode("ascii")  # the common case: a short plain value
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    out: list[str] = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if i == last:
            if line:
                out.append(_qp_line(line, hard=False))
                out.append("=\r\n")
        else:
            out.append(_qp_line(line, hard=True))
            out.append("\r\n")
    return "".join(out).encode("ascii")


def crlf_text(text: str) -> str:
    """Line ends as CRLF: the canonical form of a text part before base64 (RFC 2045 6.8)."""
    if "\n" not in text and "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def base64_body(text: str) -> bytes:
    """`text` (already CRLF, see `crlf_text`) as UTF-8 in base64 lines of 76 characters, each
    ending in CRLF (RFC 2045 6.8). One b64encode and a line split: about what QP costs per byte."""
    if not text:
        return b""
    # One b64encode, then CRLF every 76 characters: base64.encodebytes loops in Python per
    # 57-byte line, several times slower on a 100 KB part.
    encoded = base64.b64encode(text.encode("utf-8"))
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


def base64_size(octets: int) -> int:
    """Length of `base64_body` for `octets` bytes of content: 4 per 3, CRLF per 76 characters."""
    chars = -(-octets // 3) * 4
    return chars + 2 * -(-chars // 76)


def _qp_line(line: str, *, hard: bool) -> str:
    """One logical line, wrapped with soft breaks into pieces of at most QP_MAX characters.

    Escaping is a table lookup per byte; wrapping cuts the escaped text every QP_MAX characters,
    moving a cut back so it never splits an "=XX" triplet (a literal "=" is always escaped, so
    "=" only ever starts a triplet), and escapes a dot that would start a line.
    """
    if hard and line[-1:] in (" ", "\t"):
        # Whitespace at the end of an encoded line would be stripped in transit: escape it.
        escaped = _escape(line[:-1]) + ("=20" if line[-1] == " " else "=09")
    elif _QP_PLAIN.fullmatch(line):
        escaped = line
    else:
        escaped = _escape(line)
    if len(escaped) <= QP_MAX and not escaped.startswith("."):
        return escaped
    pieces: list[str] = []
    start, end = 0, len(escaped)
    while start < end:
        prefix = ""
        if escaped[start] == ".":
            prefix, start = "=2E", start + 1  # no line starts with a dot (dot-stuffing)
        cut = start + QP_MAX - len(prefix)
        if cut < end:
            if escaped[cut - 1] == "=":
                cut -= 1
            elif escaped[cut - 2] == "=":
                cut -= 2
        pieces.append(prefix + escaped[start:cut])
        start = cut
    return "=\r\n".join(pieces)


def _escape(text: str) -> str:
    return "".join(map(_QP_TOKEN.__getitem__, text.encode("utf-8")))


# --- headers ----------------------------------------------------------------------------------


def check_header_text(value: str, what: str) -> str:
    """Reject control characters (CR, LF, NUL...) that would break or inject header lines."""
    match = _CONTROL.search(value)
    if match:
        raise MessageError(f"{what} contains a line break or control character {match.group()!r}")
    return value


def encoded_words(text: str, max_bytes: int = _ENCODED_WORD_BYTES) -> list[str]:
    """RFC 2047 B-encoded UTF-8 words of at most `max_bytes` each, split between characters."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > max_bytes and chunk:
            words.append(_b_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append(_b_word("".join(chunk)))
    return words


def _b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def unstructured(name: str, value: str) -> str:
    """A complete unstructured header line (e.g. Subject) with CRLF, folded, encoded if needed.

    The value is text: one holding "=?" is encoded like non-ASCII text, so a client shows those
    characters literally and never decodes a stranger's encoded-word into header structure.
    MessageError for control characters (CR, LF, NUL...).
    """
    check_header_text(value, name)
    value = value.strip(" \t")
    prefix = f"{name}: "
    if value.isascii() and ENCODED_WORD_START not in value:
        folded = _fold_words(prefix, value)
        if folded is not None:
            return folded + CRLF
    return prefix + (CRLF + " ").join(encoded_words(value)) + CRLF


def _fold_words(prefix: str, value: str) -> str | None:
    """Fold printable ASCII at spaces; None when some word cannot fit a 998-octet line."""
    if len(prefix) + len(value) <= FOLD_AT:
        return prefix + value
    lines: list[str] = []
    line = prefix.rstrip(" ")
    for word in value.split(" "):
        # Fold before the space: unfolding (removing CRLF) restores the value exactly.
        if len(line) + 1 + len(word) > FOLD_AT and line.strip():
            lines.append(line)
            line = ""
        line += " " + word
        if len(line) > 900:
            return None
    lines.append(line)
    return CRLF.join(lines)


def addr_spec(email: str) -> str:
    """The ASCII address for headers and the envelope; IDNA for a non-ASCII domain."""
    check_header_text(email, "email address")
    if email.count("@") < 1:
        raise MessageError(f"invalid email address {email!r}")
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        raise MessageError(
            f"email address {email!r} has a non-ASCII local part, which needs SMTPUTF8 "
            "(RFC 6531), which this newsletter does not use; ask the subscriber for an ASCII "
            "address"
        )
    if ENCODED_WORD_START in local:
        # Mail programs decode "=?charset?b?...?=" even where RFC 2047 forbids it (inside an
        # address), which turns harmless text into CR LF and new headers.
        raise MessageError(
            f"email address {email!r} contains '=?', the start of an RFC 2047 encoded-word, "
            "which mail programs would decode into other characters"
        )
    if not _LOCAL_PART.fullmatch(local):
        raise MessageError(f"invalid email address {email!r}")
    if not domain.isascii():
        try:
            domain = ascii_domain(domain)  # IDNA 2008, as the sender's (newsletter.idn)
        except UnicodeError:  # idna.IDNAError is one
            raise MessageError(f"invalid domain in email address {email!r}") from None
    if not _DOMAIN.fullmatch(domain) or len(local) + len(domain) > 253:
        raise MessageError(f"invalid email address {email!r}")
    return f"{local}@{domain}"


def phrase(display_name: str) -> str:
    """An RFC 5322 display-name on one line: atoms, a quoted-string, or encoded-words.

    A name holding "=?" is encoded like non-ASCII text (some parsers decode encoded-words even
    inside a quoted-string), so it reaches the reader as the literal characters.

    Non-ASCII names become as few encoded-words as possible (one for names up to 45 UTF-8
    bytes): RFC 2047 decoders drop the space between adjacent encoded-words, but some parsers
    (Python's own phrase parser among them) keep it.
    """
    check_header_text(display_name, "display name")
    name = display_name.strip()
    if not name:
        return ""
    if name.isascii() and ENCODED_WORD_START not in name and max(map(len, name.split(" "))) < 800:
        if _ATEXT_PHRASE.fullmatch(name):
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(encoded_words(name, _PHRASE_WORD_BYTES))


def provider_display_name(display_name: str) -> str:
    """A display name for an email API that builds the To header itself (as JSON text).

    Plain names stay plain: the providers encode non-ASCII names themselves. A name holding
    encoded-word syntax ("=?") is handed over already encoded as text by `phrase`, so neither
    the provider nor the recipient's client can decode it into CR LF and new headers; a
    compliant provider passes encoded-words through, and the client shows the literal text.
    MessageError for control characters, as `phrase`.
    """
    check_header_text(display_name, "display name")
    if ENCODED_WORD_START in display_name:
        return phrase(display_name)
    return display_name


def address_header(name: str, display_name: str | None, email: str) -> str:
    """`To: Name <addr>` (or bare `addr`) as a complete CRLF-terminated line, folded at spaces."""
    addr = addr_spec(email)
    shown = phrase(display_name or "")
    if not shown:
        return f"{name}: {addr}{CRLF}"
    folded = _fold_words(f"{name}: ", f"{shown} <{addr}>")
    if folded is None:  # cannot happen for the phrases built above; be loud if it ever does
        raise MessageError(f"{name} header cannot be folded into lines of 998 characters")
    return folded + CRLF


def header_line(name: str, value: str) -> str:
    """A header whose value must stay verbatim (URLs, ids): never encoded, never folded."""
    check_header_text(value, name)
    if not value.isascii():
        raise MessageError(f"{name} must be ASCII, got {value!r}")
    line = f"{name}: {value}"
    if len(line) > 998:
        raise MessageError(f"{name} is too long for one header line ({len(line)} > 998)")
    return line + CRLF
