"""MessageTemplate: what the recipient's mail client decodes from the bytes we produce.

Every message is parsed with Python's email package (policy.default, an independent decoder) and
its headers and both parts are compared with the values we meant to send.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import html
import re
from pathlib import Path

import pytest
from message_support import (
    TRICKY_RECIPIENTS,
    assert_wire_format,
    compiled_issue,
    content,
    expected_name,
    parse,
    to_display_name,
)

from newsletter.errors import MessageError
from newsletter.mail.message import MessageTemplate, QpBody
from newsletter.mail.mime import qp_segment
from newsletter.placeholders import Recipient
from newsletter.render.fill import Fill, Slot, marker
from newsletter.transports.base import DotSafeBytes


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    compiled, config = compiled_issue(project)
    return MessageTemplate(compiled, config, campaign_key="issue-1/list-main")  # type: ignore[arg-type]


def test_every_header_and_both_parts_decode_to_the_intended_values(
    template: MessageTemplate,
) -> None:
    compiled = template.compiled
    for i, r in enumerate(TRICKY_RECIPIENTS):
        url = f"https://news.example.org/unsubscribe/tok{i}_" + "A" * 40
        mid = template.message_id(i)
        data = template.bytes_for(r, unsubscribe_url=url, message_id=mid)
        assert_wire_format(data)  # includes: no line starts with a dot...
        assert isinstance(data, DotSafeBytes)  # ...which is why SMTP may skip dot-stuffing
        msg = parse(data)
        assert not msg.defects, (r, msg.defects)
        rendered = compiled.render_for(r, url)
        assert msg["Subject"] == rendered.subject.strip()
        assert msg["Subject"] == f"News for {expected_name(r)}".strip()
        to = msg["To"].addresses[0]
        assert to_display_name(data) == (r.name or "").strip()
        expect_domain = r.email.split("@")[1].encode("idna").decode()
        assert to.addr_spec == r.email.split("@")[0] + "@" + expect_domain
        assert msg["From"].addresses[0].addr_spec == "news@example.org"
        assert msg["From"].addresses[0].display_name == "Test Letter"
        assert msg["Message-ID"] == f"<{mid}>"
        assert msg["MIME-Version"] == "1.0"
        assert msg["List-Unsubscribe"] == f"<{url}>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"] == "Test Letter <test-letter.example.org>"
        assert msg["Date"].datetime is not None
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        want_text = rendered.text.replace("\r\n", "\n").replace("\r", "\n")
        want_html = rendered.html.replace("\r\n", "\n").replace("\r", "\n")
        assert content(parts[0]) == want_text
        assert content(parts[1]) == want_html
        assert f"Hello <b>{html.escape(expected_name(r))}</b>!" in content(parts[1])
        assert f'href="{url}"' in content(parts[1])
        assert f"Unsubscribe: {url}" in content(parts[0])
        assert r.email in content(parts[0])


def test_names_in_html_are_escaped_and_in_text_verbatim(template: MessageTemplate) -> None:
    r = Recipient("x@example.com", "<b>Bold</b> & <script>alert(1)</script>")
    msg = parse(template.bytes_for(r, unsubscribe_url="https://e.x/u/1", message_id="a@b.c"))
    text, body = (content(p) for p in msg.iter_parts())
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "Hello <b>Bold</b> & <script>alert(1)</script>!" in text


def test_non_ascii_headers_are_rfc2047_encoded(template: MessageTemplate) -> None:
    r = Recipient("zoe@example.com", "Zoë 🎉")
    data = template.bytes_for(r, unsubscribe_url="https://e.x/u/1", message_id="a@b.c")
    head = data.split(b"\r\n\r\n")[0]
    assert b"=?utf-8?b?" in head
    msg = parse(data)
    assert msg["Subject"] == "News for Zoë 🎉"
    assert str(msg["To"]) == "Zoë 🎉 <zoe@example.com>"


def test_long_unsubscribe_url_stays_verbatim_on_one_line(template: MessageTemplate) -> None:
    url = "https://news.example.org/unsubscribe/" + "Zz0-_" * 150  # 787 characters
    data = template.bytes_for(
        Recipient("a@example.com", "A"), unsubscribe_url=url, message_id="a@b.c"
    )
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in data
    assert parse(data)["List-Unsubscribe"] == f"<{url}>"
    too_long = "https://e.x/" + "a" * 1000
    with pytest.raises(MessageError, match="too long"):
        template.bytes_for(
            Recipient("a@example.com", "A"), unsubscribe_url=too_long, message_id="a@b.c"
        )


@pytest.mark.parametrize(
    "recipient",
    [
        Recipient("a@example.com", "Evil\r\nBcc: victim@example.com"),
        Recipient("a@example.com", "Evil\nname"),
        Recipient("a@example.com\r\nBcc: x@example.com", "A"),
        Recipient("a@example.com", "nul\x00name"),
        Recipient("jöhn@example.com", "non-ASCII local part"),
        Recipient("not-an-address", "A"),
    ],
)
def test_values_that_would_break_headers_are_rejected(
    template: MessageTemplate, recipient: Recipient
) -> None:
    with pytest.raises(MessageError):
        template.bytes_for(recipient, unsubscribe_url="https://e.x/u/1", message_id="a@b.c")
    with pytest.raises(MessageError):
        template.outgoing(1, recipient, "https://e.x/u/1", 1)


def test_crlf_in_personalised_subject_or_url_is_rejected(project: Path) -> None:
    compiled, config = compiled_issue(project, subject=f"Hi {marker(3)}")
    t = MessageTemplate(compiled, config, campaign_key="k")  # type: ignore[arg-type]
    bad = Recipient("a@example.com", "A", {"company": "Acme\r\nBcc: x@example.com"})
    with pytest.raises(MessageError, match="Subject"):
        t.bytes_for(bad, unsubscribe_url="https://e.x/u/1", message_id="a@b.c")
    with pytest.raises(MessageError):
        t.bytes_for(
            Recipient("a@example.com"),
            unsubscribe_url="https://e.x/u/1\r\nBcc: x@y.z",
            message_id="a@b.c",
        )


def test_long_ascii_and_non_ascii_subjects_fold_and_decode_exactly(project: Path) -> None:
    words = " ".join(f"word{i}" for i in range(150))
    for subject in (
        words,
        "Ünïcode " * 80,
        "x" * 1200,  # one unbreakable word longer than a header line
        "a  double  spaced   subject with\ttab",
        "=?utf-8?b?SGVsbG8=?= literal encoded-word lookalike",
    ):
        compiled, config = compiled_issue(project, subject=subject + f" {marker(0)}")
        t = MessageTemplate(compiled, config, campaign_key="k")  # type: ignore[arg-type]
        data = t.bytes_for(
            Recipient("a@example.com", "Ann"), unsubscribe_url="https://e.x/u", message_id="a@b.c"
        )
        assert_wire_format(data)
        head = data.split(b"\r\n\r\n")[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n")), subject[:20]
        assert parse(data)["Subject"] == (subject + " Ann").strip()


def test_test_sends_are_prefixed(project: Path) -> None:
    compiled, config = compiled_issue(project)
    t = MessageTemplate(compiled, config, campaign_key="k", test=True)  # type: ignore[arg-type]
    msg = parse(
        t.bytes_for(
            Recipient("a@example.com", "Ann"), unsubscribe_url="https://e.x/u", message_id="a@b.c"
        )
    )
    assert msg["Subject"] == "[TEST] News for Ann"


def test_reply_to_and_non_ascii_sender_name(project: Path) -> None:
    (project / "newsletter.yaml").write_text(
        "name: Brève Lettre\nfrom: Brève Lettre <news@example.org>\n"
        "reply_to: '\"Editors, Inc.\" <editors@example.org>'\nbase_url: https://news.example.org\n",
        encoding="utf-8",
    )
    compiled, config = compiled_issue(project)
    t = MessageTemplate(compiled, config, campaign_key="k")  # type: ignore[arg-type]
    data = t.bytes_for(
        Recipient("a@example.com"), unsubscribe_url="https://e.x/u", message_id="a@b.c"
    )
    assert_wire_format(data)
    msg = parse(data)
    assert str(msg["From"]) == "Brève Lettre <news@example.org>"
    assert msg["Reply-To"].addresses[0].display_name == "Editors, Inc."
    assert msg["Reply-To"].addresses[0].addr_spec == "editors@example.org"
    assert msg["List-Id"] == "Brève Lettre <br-ve-lettre.example.org>"


def test_message_id_is_deterministic_per_campaign_and_subscriber(
    project: Path, template: MessageTemplate
) -> None:
    compiled, config = compiled_issue(project)
    same = MessageTemplate(compiled, config, campaign_key="issue-1/list-main")  # type: ignore[arg-type]
    other = MessageTemplate(compiled, config, campaign_key="issue-2/list-main")  # type: ignore[arg-type]
    assert template.message_id(7) == same.message_id(7) == same.message_id("7")
    assert template.message_id(7) != template.message_id(8)
    assert template.message_id(7) != other.message_id(7)
    assert re.fullmatch(r"[0-9a-f]{32}@example\.org", template.message_id(7))
    ids = {template.message_id(i) for i in range(10000)}
    assert len(ids) == 10000


def test_outgoing_is_lazy_and_matches_bytes_for(template: MessageTemplate) -> None:
    r = Recipient("ann@example.com", "Ann")
    url = "https://e.x/u/ann"
    out = template.outgoing(42, r, url, subscriber_key=5)
    assert out.key == 42
    assert out.recipient == "ann@example.com"
    assert out.envelope_from == "news@example.org"
    assert out.message_id == template.message_id(5)
    assert "data" not in out.__dict__ and "parts" not in out.__dict__
    date = email.message_from_bytes(out.data)["Date"]
    expected = template.bytes_for(r, unsubscribe_url=url, message_id=out.message_id, date=date)
    assert out.data == expected
    parts = out.parts
    assert parts.subject == "News for Ann"
    assert parts.to_email == "ann@example.com" and parts.to_name == "Ann"
    assert parts.html == template.compiled.html.render(template.compiled.values_for(r, url))
    assert parts.headers["List-Unsubscribe"] == f"<{url}>"
    assert parts.headers["Message-ID"] == f"<{out.message_id}>"
    assert parts.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parts.from_header == "Test Letter <news@example.org>"


def test_resend_is_byte_identical_for_the_same_date(template: MessageTemplate) -> None:
    r = Recipient("ann@example.com", "Ann")
    kw = {"unsubscribe_url": "https://e.x/u", "message_id": template.message_id(1)}
    date = "Wed, 25 Nov 2026 01:00:00 GMT"
    assert template.bytes_for(r, date=date, **kw) == template.bytes_for(r, date=date, **kw)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "a\n",
        "\n\n",
        " ",
        "trailing \n",
        "x" * 75,
        "x" * 76,
        "x" * 151 + " \n",
        "é" * 100,
        "." * 200,
        "=" * 100 + "\n.",
        "a\r\nb\rc",
        "\t\t\n \n",
    ],
)
def test_qp_segments_decode_exactly_and_concatenate(text: str) -> None:
    encoded = qp_segment(text)
    for line in encoded.split(b"\r\n"):
        assert len(line) <= 76
        assert not line.startswith(b".")
    joined = b"".join(qp_segment(t) for t in (text, "mid", text, ""))
    import quopri

    want = text.replace("\r\n", "\n").replace("\r", "\n")
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode() == want
    assert quopri.decodestring(joined.replace(b"\r\n", b"\n")).decode() == want + "mid" + want


def test_qp_body_encodes_each_slot_value_once(template: MessageTemplate) -> None:
    body = QpBody(Fill.from_marked(f"{marker(0)} and {marker(0)}", ["x"], "html"))
    cache: dict[Slot, bytes] = {}
    out = body.render({"x": "<é>"}, cache)
    assert list(cache) == [Slot("x", "html")]
    import quopri

    assert quopri.decodestring(out.replace(b"\r\n", b"\n")).decode() == "&lt;é&gt; and &lt;é&gt;"


def test_qp_segments_survive_random_text() -> None:
    import quopri
    import random

    rng = random.Random(5)
    alphabet = "ab =.\t\n\r-é€😀" + "x" * 10
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        encoded = qp_segment(text)
        for line in encoded.split(b"\r\n"):
            assert len(line) <= 76, line
            assert not line.startswith(b"."), line
            assert not line.endswith((b" ", b"\t")), line
        want = text.replace("\r\n", "\n").replace("\r", "\n")
        assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode() == want


LIST_ID_NAMES = [
    "A",
    "List",
    "x" * 62,
    "x" * 63,
    "x" * 64,
    "The " + "Very " * 30 + "Long Letter",
    "Brève " * 20,
    "Новости недели " * 6,
    "新闻通讯" * 20,
    "ニュースレター",
    "🦆" * 40,
    "a-" * 50,
]


@pytest.mark.parametrize("name", LIST_ID_NAMES, ids=lambda n: f"{len(n)}-chars")
def test_list_id_keeps_every_label_within_63_octets(project: Path, name: str) -> None:
    """RFC 2919: the list-id is a domain name; RFC 1035 caps each label at 63 octets."""
    (project / "newsletter.yaml").write_text(
        f"name: '{name}'\nfrom: news@example.org\nbase_url: https://news.example.org\n",
        encoding="utf-8",
    )
    compiled, config = compiled_issue(project)
    t = MessageTemplate(compiled, config, campaign_key="k")  # type: ignore[arg-type]
    data = t.bytes_for(
        Recipient("a@example.com"), unsubscribe_url="https://e.x/u", message_id="a@b.c"
    )
    assert_wire_format(data)
    value = str(parse(data)["List-Id"])
    match = re.fullmatch(r"(.*?) ?<([^<>]+)>", value, re.S)
    assert match, value
    assert match.group(1) == name.strip()  # the phrase still shows the whole name
    list_id = match.group(2)
    assert list_id.isascii() and list_id.endswith(".example.org")
    labels = list_id.split(".")
    assert all(1 <= len(label.encode()) <= 63 for label in labels), labels
    assert all(re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", label) for label in labels), labels


def test_long_names_sharing_a_prefix_get_different_list_ids(project: Path) -> None:
    ids = set()
    for suffix in ("Monday edition", "Friday edition"):
        (project / "newsletter.yaml").write_text(
            f"name: '{'Weekly ' * 12}{suffix}'\nfrom: news@example.org\n"
            "base_url: https://news.example.org\n",
            encoding="utf-8",
        )
        compiled, config = compiled_issue(project)
        t = MessageTemplate(compiled, config, campaign_key="k")  # type: ignore[arg-type]
        data = t.bytes_for(
            Recipient("a@example.com"), unsubscribe_url="https://e.x/u", message_id="a@b.c"
        )
        ids.add(re.search(r"<([^<>]+)>", str(parse(data)["List-Id"])).group(1))  # type: ignore[union-attr]
    assert len(ids) == 2
