"""Helpers for tests that need real messages: a hand-built CompiledIssue and decoders.

`compiled_issue(project)` gives a CompiledIssue with per-recipient slots in the subject and in
both parts (the renderer is tested on its own); `parse`, `content`, `to_display_name` and
`assert_wire_format` check what a recipient's mail client would decode.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import html
from email.message import EmailMessage
from pathlib import Path

from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.placeholders import Expression, Recipient
from newsletter.render.compiled import CompiledIssue
from newsletter.render.fill import Fill, marker

EXAMPLE = Path(__file__).resolve().parents[2] / "issues"
NAME_EXPR = 'subscriber.name | default("there")'
SLOTS = ["expr:0", "unsubscribe_url", "email", "expr:1"]
TRICKY_LITERAL = (
    "Plain line\n"
    ".a line starting with a dot\n"
    ".\n"
    "From the start of a line\n"
    "trailing spaces   \n"
    "trailing tab\t\n"
    "equals = signs == and =?utf-8?q?not-a-word?=\n"
    + "x" * 75
    + "\n"
    + "y" * 76
    + "\n"
    + "z" * 77
    + "\n"
    + "w" * 3000
    + "\n"
    + ("é" * 200)
    + "\n"
    "emoji 🎉🚀 and CJK 日本語 and RTL עברית\n"
    "windows line\r\nold mac line\rend"
)


def compiled_issue(
    config_root: Path,
    *,
    subject: str = f"News for {marker(0)}",
    extra: str = "",
) -> tuple[CompiledIssue, object]:
    """A CompiledIssue built by hand (the renderer is tested elsewhere): slots in both parts."""
    config = load_config(config_root / "newsletter.yaml")
    issue = load_issue(next((config_root / "issues").glob("*.yaml")))
    text = (
        f"Hello {marker(0)}!\n\n{TRICKY_LITERAL}\n{extra}\n"
        f"Field: {marker(3)}\nSent to {marker(2)}\nUnsubscribe: {marker(1)}\n"
    )
    body_html = (
        '<!doctype html><html><body style="font-family:Arial;color:#333">'
        f"<p>Hello <b>{marker(0)}</b>!</p><pre>{html.escape(TRICKY_LITERAL)}</pre>{extra}"
        f"<p>{marker(3)}</p><p>Sent to {marker(2)}. "
        f'<a href="{marker(1)}" style="color:#00f">Unsubscribe</a></p>'
        + "<div>" * 10
        + "pad " * 3000
        + "</div>" * 10
        + "</body></html>"
    )
    compiled = CompiledIssue(
        issue=issue,
        config=config,
        subject=Fill.from_marked(subject, SLOTS, "text"),
        preheader=Fill(()),
        html=Fill.from_marked(body_html, SLOTS, "html"),
        text=Fill.from_marked(text, SLOTS, "text"),
        web_html="",
        expressions={
            "expr:0": Expression(NAME_EXPR),
            "expr:1": Expression("subscriber.fields.company"),
        },
    )
    return compiled, config


TRICKY_RECIPIENTS = [
    Recipient("plain@example.com", "Ada Lovelace"),
    Recipient("noname@example.com", None),
    Recipient("empty@example.com", ""),
    Recipient("quote@example.com", 'Ada "The Countess" Lovelace'),
    Recipient("comma@example.com", "Lovelace, Ada"),
    Recipient("backslash@example.com", "back\\slash (comment) <angle> @at; semi:"),
    Recipient("accent@example.com", "Zoë Ångström-Ñúñez"),
    Recipient("emoji@example.com", "🎉 Party 🚀 Person 👩‍👩‍👧"),
    Recipient("cjk@example.com", "山田 太郎"),
    Recipient("rtl@example.com", "שלום עליכם"),
    Recipient("long@example.com", "Bartholomew " * 40),
    Recipient("longaccent@example.com", "Émilie " * 60),
    Recipient("html@example.com", "<b>Bold</b> & <script>alert(1)</script>"),
    Recipient("encodedword@example.com", "=?utf-8?q?sneaky?="),
    Recipient("dots@example.com", "."),
    Recipient("spaces@example.com", "  padded   name  "),
    Recipient("fields@example.com", "F", {"company": "Acme = Ünïcode\nCo.  "}),
    Recipient("idn@bücher.example", "IDN Domain"),
    Recipient("first.last+tag@sub.example.co.uk", "Tagged"),
]


def expected_name(r: Recipient) -> str:
    return r.name if r.name else "there"


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def to_display_name(data: bytes) -> str:
    """The To display name as an RFC 2047 decoder sees it.

    Python's policy.default phrase parser keeps the space between adjacent encoded-words, which
    RFC 2047 section 6.2 (and Gmail, Outlook, Thunderbird) drop; for those names decode the raw
    header with email.header, which implements the RFC rule.
    """
    raw = email.message_from_bytes(data)["To"].replace("\r\n", "")
    if "?= =?" not in raw:
        return parse(data)["To"].addresses[0].display_name
    phrase = raw.rsplit(" <", 1)[0]
    return str(email.header.make_header(email.header.decode_header(phrase)))


def content(part: EmailMessage) -> str:
    """Decoded text of a part with line ends as the author wrote them (LF)."""
    return part.get_content().replace("\r\n", "\n")


def assert_wire_format(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF in message"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR in message"
    head, _, body = data.partition(b"\r\n\r\n")
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
        assert not line.startswith(b"."), line[:40]
    # Every body line is QP (the MIME headers of the parts and boundaries are short anyway).
    for line in body.split(b"\r\n"):
        assert len(line) <= 76, line
        assert line.isascii()
        assert not line.endswith((b" ", b"\t")), line
    for line in head.split(b"\r\n"):
        assert line.isascii()
