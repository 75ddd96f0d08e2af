"""Header and body injection (#14.1), tested as a kind: every path that writes mail x every header
built from a stranger's data x hostile values.

A stranger controls a subscriber's name, custom fields and address (the public sign-up form, an
imported CSV). Those reach To (name and address) and Subject (placeholders in an issue, a themed
confirmation subject). RFC 2047 encoded-words in them (B or Q, any charset) must stay text: the
delivered bytes have exactly our header lines, one To recipient, an unchanged MIME body, and a
mail client (Python's `email` parser, policy.default, plus an RFC 2047 decoder) shows the literal
characters. Raw CR/LF never reaches a header: refused at intake, and a message is never built.
"""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from message_support import to_display_name
from provider_servers import MailgunServer, PostmarkServer, ResendServer, SendGridServer

from newsletter.campaign import send_issue, send_test
from newsletter.config import Config, load_config
from newsletter.errors import SubscriberError
from newsletter.issue import load_issue
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import Recipient
from newsletter.render.compile import compile_issue
from newsletter.subscribers import SubscriberStore
from newsletter.transactional import send_confirmation


def b_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


# Values a stranger can type: no control characters, yet each decodes into structure.
HOSTILE = {
    # The issue's example: "Hi", CR LF, a Bcc header, a blank line, an HTML body.
    "b-crlf-bcc-body": b_word("Hi\r\nBcc: a@evil.example\r\n\r\n<h1>Account locked</h1>"),
    "q-crlf-bcc-body": "=?utf-8?q?Hi=0D=0ABcc:_a@evil.example=0D=0A=0D=0A<h1>Locked</h1>?=",
    "q-lf-only": "=?UTF-8?Q?Hi=0ACc:_b@evil.example?=",
    "b-angle-comma-at": b_word('Eve <a@evil.example>, "b" <b@evil.example>'),
    "q-angle-comma-quote-at": "=?utf-8?q?x=3Ca=40evil.example=3E=2C_=22b=22_b=40evil.example?=",
    "latin1-q-address-list": "=?iso-8859-1?q?a=40evil.example=2C_b=40evil.example?=",
    "word-among-text": f"Ann {b_word('x@evil.example, y@evil.example')} Lee",
    "two-adjacent-words": b_word("Hi\r\n") + " " + b_word("Bcc: a@evil.example"),
}
# Markup or header text that must never appear decoded anywhere in the delivered message.
DECODED_PAYLOADS = ("<h1>Account locked</h1>", "<h1>Locked</h1>", "Bcc: a@evil.example")
ISSUE_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "Feedback-ID", "List-Unsubscribe",
    "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
]  # fmt: skip
CONFIRM_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
    "Content-Type",
]  # fmt: skip
ADDRESS = "ann@example.com"


@pytest.fixture
def setup(project: Path) -> tuple[Config, Path]:
    """Placeholders with the name and a field in the issue's subject and intro, and a themed
    confirmation subject with both, so every header carrying stranger data is exercised."""
    issue = next((project / "issues").glob("*.yaml"))
    text = issue.read_text(encoding="utf-8")
    text = text.replace(
        "subject: Microsoft and OpenAI reset the partnership for its next phase",
        'subject: \'For {{ subscriber.name | default("you") }} of '
        '{{ subscriber.fields.city | default("here") }}\'',
    )
    issue.write_text(text, encoding="utf-8")
    (project / "theme" / "mail").mkdir(parents=True)
    (project / "theme" / "mail" / "confirm_subject.txt").write_text(
        "Confirm {{ newsletter.name }}, {{ subscriber.name }} of {{ subscriber.fields.city }}\n"
    )
    with (project / "newsletter.yaml").open("a") as f:
        f.write("templates: theme\ntransport: outbox:./outbox\n")
    return load_config(project / "newsletter.yaml"), issue


def _issue_campaign(config: Config, issue: Path) -> None:
    report = send_issue(config, issue, transport="outbox:./outbox")
    assert report.ok, report


def _test_copy(config: Config, issue: Path) -> None:
    send_test(config, issue, ADDRESS, transport="outbox:./outbox")


def _confirmation(config: Config, issue: Path) -> None:
    with SubscriberStore.for_config(config) as store:
        subscriber = store.get(ADDRESS)
    result = send_confirmation(config, subscriber, f"{config.base_url}/confirm/TOKEN")
    assert result.status == "sent", result


PATHS: dict[str, tuple[Callable[[Config, Path], None], list[str]]] = {
    "issue campaign": (_issue_campaign, ISSUE_HEADERS),
    "send --test copy": (_test_copy, ISSUE_HEADERS),
    "confirmation": (_confirmation, CONFIRM_HEADERS),
}


def _delivered(config: Config) -> bytes:
    [path] = sorted((config.root / "outbox").glob("*.eml"))
    return path.read_bytes()


def _header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")  # every header byte is ASCII
    names = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            continue  # a folded continuation
        name, colon, _ = line.partition(":")
        assert colon and name and " " not in name, f"not a header line: {line!r}"
        names.append(name)
    return names


def _rfc2047(value: str) -> str:
    return str(email.header.make_header(email.header.decode_header(value)))


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("path", list(PATHS))
def test_encoded_words_from_strangers_stay_text(setup, path: str, value: str) -> None:
    config, issue = setup
    with SubscriberStore.for_config(config) as store:
        store.add(ADDRESS, name=value, fields={"city": value})
    deliver, expected_headers = PATHS[path]
    deliver(config, issue)
    data = _delivered(config)

    # The raw bytes: exactly our header lines, once each; nothing a stranger added.
    assert _header_names(data) == expected_headers
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nbcc:" not in head.lower() and b"\r\ncc:" not in head.lower()

    # What a mail client decodes: one recipient, the name and subject as the literal text.
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert not msg.defects
    [to] = msg.get_all("To")
    assert [a.addr_spec for a in to.addresses] == [ADDRESS]
    assert to_display_name(data) == value
    subject = _rfc2047(email.message_from_bytes(data)["Subject"])
    assert f"{value} of {value}" in subject
    assert msg.get_all("Subject") == [msg["Subject"]]

    # The body: the same two parts, the name shown as text (escaped in HTML), no decoded markup.
    parts = [(p.get_content_type(), p.get_content()) for p in msg.walk() if not p.is_multipart()]
    assert [kind for kind, _ in parts] == ["text/plain", "text/html"]
    text, html = parts[0][1], parts[1][1]
    if path != "send --test copy":  # the test copy is addressed to the bare address's defaults
        assert value in text
    for payload in DECODED_PAYLOADS:  # the literal value may hold them (Q encoding is readable)
        assert payload not in text.replace(value, "") and payload not in html


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_encoded_words_in_an_address_are_refused_at_intake(project: Path, value: str) -> None:
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        with pytest.raises(SubscriberError, match="encoded-word"):
            store.add(f"{value.replace(' ', '')}@example.com")
        assert store.count() == 0


RAW = {
    "crlf-bcc": "Hi\r\nBcc: a@evil.example",
    "lf": "Hi\nCc: b@evil.example",
    "cr": "Hi\rX: y",
    "nul": "Hi\x00there",
    "line-separator": "Hi\u2028Bcc: a@evil.example",
}


@pytest.mark.parametrize("value", list(RAW.values()), ids=list(RAW))
def test_raw_line_breaks_are_refused_at_intake(project: Path, value: str) -> None:
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        with pytest.raises(SubscriberError, match="line break or a control character"):
            store.add(ADDRESS, name=value)
        assert store.count() == 0


@pytest.mark.parametrize("value", list(RAW.values()), ids=list(RAW))
@pytest.mark.parametrize("where", ["name", "field in the subject", "address"])
def test_raw_line_breaks_never_make_a_message(project: Path, where: str, value: str) -> None:
    """Values stored by an older version, or typed through the Python API: the message builder
    refuses them (a 'failed' result for that recipient), whatever header they would reach."""
    from newsletter.errors import MessageError

    config = load_config(project / "newsletter.yaml")
    issue = load_issue(next((project / "issues").glob("*.yaml")))
    issue_subject = "{{ subscriber.fields.city | default('x') }}"
    issue = type(issue)(**{**issue.__dict__, "subject": issue_subject})
    template = MessageTemplate(compile_issue(issue, config), config, campaign_key="c")
    recipient = {
        "name": Recipient(ADDRESS, value),
        "field in the subject": Recipient(ADDRESS, "Ann", {"city": value}),
        "address": Recipient(f"ann{value}@example.com", "Ann"),
    }[where]
    with pytest.raises(MessageError, match=r"line break or control character|invalid email"):
        template.outgoing(1, recipient, "https://news.example.org/unsubscribe/t", 1)


def test_an_older_row_with_an_encoded_word_address_fails_at_send_with_the_reason(setup) -> None:
    config, issue = setup
    with SubscriberStore.for_config(config) as store:
        ann = store.add(ADDRESS, name="Ann")
    hostile = HOSTILE["b-crlf-bcc-body"] + "@example.com"
    with sqlite3.connect(config.database) as conn:  # as an older version could have stored it
        conn.execute("UPDATE subscribers SET email = ? WHERE id = ?", (hostile, ann.id))
    report = send_issue(config, issue, transport="outbox:./outbox")
    assert report.tally.failed == 1
    assert not list((config.root / "outbox").glob("*.eml"))
    with sqlite3.connect(config.database) as conn:
        [(status, reply)] = conn.execute("SELECT status, reply FROM campaign_recipients")
    assert status == "failed" and "encoded-word" in reply


API_PROVIDERS = {
    "sendgrid": (lambda: SendGridServer(KEY), "sendgrid:", "SENDGRID_API_KEY"),
    "mailgun": (lambda: MailgunServer(KEY, "news.example.org"), "mailgun:news.example.org",
                "MAILGUN_API_KEY"),
    "postmark": (lambda: PostmarkServer(KEY), "postmark:", "POSTMARK_SERVER_TOKEN"),
    "resend": (lambda: ResendServer(KEY), "resend:", "RESEND_API_KEY"),
}  # fmt: skip
KEY = "test-key-never-shown"


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("provider", list(API_PROVIDERS))
def test_email_apis_get_encoded_word_names_as_text(setup, provider: str, value: str) -> None:
    """The APIs build To themselves from our name: what they deliver has one recipient and the
    literal name (the stand-ins build the header as the provider documents)."""
    config, issue = setup
    with SubscriberStore.for_config(config) as store:
        store.add(ADDRESS, name=value, fields={"city": "Paris"})
    make, url, variable = API_PROVIDERS[provider]
    with make() as server:
        report = send_issue(
            config, issue, transport=f"{url}?endpoint={server.url}", environ={variable: KEY}
        )
        assert report.ok and server.violations == []
        [delivered] = server.delivered
    to = email.policy.default.header_factory("To", delivered.to_header)
    assert [a.addr_spec for a in to.addresses] == [ADDRESS]
    raw_name = delivered.to_header.rsplit(" <", 1)[0]
    assert _rfc2047(raw_name.strip('"')) == value
