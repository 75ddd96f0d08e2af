"""Transactional mail (the double opt-in confirmation) takes the issues' path (#9.5): the theme's
templates, the same builder and encoders, DKIM, the configured transport, a retry when deferred.

Delivered through a real aiosmtpd server and through the outbox, parsed back as a client would.
"""

from __future__ import annotations

import email
import email.policy
import sqlite3
from pathlib import Path

import pytest
from dkim_support import verify, write_key
from message_support import assert_wire_format
from smtp_servers import SmtpServer, fault

from newsletter.campaign.retry import RetryPolicy
from newsletter.config import Config, load_config
from newsletter.errors import RenderError
from newsletter.mail.dkim import DkimSigner
from newsletter.subscribers import Subscriber, SubscriberStore
from newsletter.transactional import CONFIRM, send_confirmation, send_transactional

URL = "https://news.example.org/confirm/TOKEN123"


def _config(project: Path, extra: str = "") -> Config:
    with (project / "newsletter.yaml").open("a") as f:
        f.write(extra)
    return load_config(project / "newsletter.yaml")


def _subscriber(config: Config, email_address: str = "jo@bücher.example", **kw) -> Subscriber:
    with SubscriberStore.for_config(config) as store:
        return store.add(email_address, name=kw.pop("name", "Jo Ünal"), **kw)


def _parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def _bodies(msg: email.message.EmailMessage) -> tuple[str, str]:
    """The decoded text and HTML parts, line ends as the template wrote them (LF)."""
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_confirmation_over_smtp_is_dkim_signed_and_ascii_on_the_wire(project, kind) -> None:
    key = write_key(project / "dkim.pem", kind)
    with SmtpServer() as server:
        config = _config(
            project,
            f"reply_to: Editors <editors@example.org>\ntransport: {server.url()}\n"
            f"dkim:\n  domain: example.org\n  selector: s1\n  private_key: {key.name}\n",
        )
        jo = _subscriber(config)
        result = send_confirmation(config, jo, URL)
        assert result.status == "sent", result
        [delivered] = server.wait_for(1)
    # The envelope and To carry the IDNA domain: no raw UTF-8 in RCPT TO, no SMTPUTF8 needed.
    assert delivered.rcpt_tos == ["jo@xn--bcher-kva.example"]
    assert delivered.mail_from == "news@example.org"
    assert_wire_format(delivered.data)
    assert delivered.data.startswith(b"DKIM-Signature:")
    assert verify(delivered.data, DkimSigner.from_config(config.dkim))  # type: ignore[arg-type]
    msg = _parse(delivered.data)
    assert msg["To"].addresses[0].display_name == "Jo Ünal"
    assert msg["To"].addresses[0].addr_spec == "jo@xn--bcher-kva.example"
    assert msg["Subject"] == "Confirm your subscription to Test Letter"
    assert msg["Reply-To"].addresses[0].addr_spec == "editors@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"] is None  # nobody is on a list before confirming
    assert msg["Message-ID"].endswith("@example.org>")
    text, html = _bodies(msg)
    assert "Hello Jo Ünal," in text and URL in text and "valid for 7 days" in text
    assert f'href="{URL}"' in html and "Confirm my subscription" in html
    assert "1 Test Street, Testville" in text and "1 Test Street, Testville" in html


def test_confirmation_through_the_outbox_is_the_exact_wire_message(project: Path) -> None:
    config = _config(project, "transport: outbox:./mail-out\n")
    jo = _subscriber(config, "ada@example.com", name=None)
    result = send_confirmation(config, jo, URL)
    assert result.status == "sent"
    [path] = (project / "mail-out").glob("*.eml")
    data = path.read_bytes()
    assert_wire_format(data)
    msg = _parse(data)
    assert path.name == msg["Message-ID"].strip("<>") + ".eml"
    assert str(msg["To"]) == "ada@example.com"
    text, _html = _bodies(msg)
    assert text.startswith("Hello,\n") and URL in text
    # A second confirmation is a new message (its own Message-ID), not an overwrite.
    send_confirmation(config, jo, URL)
    assert len(list((project / "mail-out").glob("*.eml"))) == 2


def test_a_theme_override_and_a_translation_show_in_the_delivered_bytes(project: Path) -> None:
    (project / "theme" / "mail" / "de").mkdir(parents=True)
    (project / "theme" / "mail" / "confirm.html").write_text(
        '<p>Bitte bestätigen, {{ subscriber.name }}: <a href="{{ confirm_url }}">Ja</a></p>\n'
    )
    (project / "theme" / "mail" / "de" / "confirm.txt").write_text(
        "Hallo {{ subscriber.name }}, bitte bestätigen: {{ confirm_url }}\n"
        "Gültig {{ valid_days }} Tage.\n"
    )
    (project / "theme" / "mail" / "de" / "confirm_subject.txt").write_text(
        "Anmeldung bei {{ newsletter.name }} bestätigen\n"
    )
    config = _config(project, "templates: theme\nlanguage: de-AT\ntransport: outbox:./out\n")
    send_confirmation(config, _subscriber(config, name="Jörg <b>"), URL)
    [path] = (project / "out").glob("*.eml")
    msg = _parse(path.read_bytes())
    assert msg["Subject"] == "Anmeldung bei Test Letter bestätigen"  # mail/de/ for de-AT
    text, html = _bodies(msg)
    assert text == f"Hallo Jörg <b>, bitte bestätigen: {URL}\nGültig 7 Tage.\n"
    assert html == f'<p>Bitte bestätigen, Jörg &lt;b&gt;: <a href="{URL}">Ja</a></p>\n'


@pytest.mark.parametrize(
    ("file", "source", "expected"),
    [
        (
            "confirm.txt",
            "Hello\n\n{{ confirm_url }\n",
            r"theme/mail/confirm\.txt:3: template syntax",
        ),
        (
            "confirm.html",
            "<p>\n{{ subscriber.nmae.x }}</p>\n",
            r"theme/mail/confirm\.html:2: template",
        ),
        ("confirm_subject.txt", "Two\nlines\n", r"theme/mail/confirm_subject\.txt: .*one line"),
        ("confirm_subject.txt", "{# nothing #}\n", r"theme/mail/confirm_subject\.txt: .*empty"),
    ],
)
def test_template_errors_name_file_and_line_and_send_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, file: str, source: str, expected: str
) -> None:
    monkeypatch.chdir(project)
    (project / "theme" / "mail").mkdir(parents=True)
    (project / "theme" / "mail" / file).write_text(source)
    config = _config(project, "templates: theme\ntransport: outbox:./out\n")
    with pytest.raises(RenderError, match=expected):
        send_confirmation(config, _subscriber(config), URL)
    assert not (project / "out").exists()


def test_a_deferred_confirmation_is_tried_again_with_the_same_message_id(project: Path) -> None:
    with SmtpServer(faults=[fault("451", "jo@*", times=2)]) as server:
        config = _config(project, f"transport: {server.url()}\n")
        jo = _subscriber(config, "jo@example.com")
        fast = RetryPolicy(attempts_per_run=3, base_delay=0.01)
        result = send_transactional(
            config, CONFIRM, jo, {"confirm_url": URL, "valid_days": 7}, retry=fast
        )
        assert result.status == "sent", result
        assert server.attempts["jo@example.com"] == 3
        [delivered] = server.wait_for(1)
    assert URL in _bodies(delivered.parsed())[0]


def test_a_confirmation_still_deferred_after_every_try_says_so(project: Path) -> None:
    with SmtpServer(faults=[fault("451", "jo@*")]) as server:
        config = _config(project, f"transport: {server.url()}\n")
        jo = _subscriber(config, "jo@example.com")
        fast = RetryPolicy(attempts_per_run=2, base_delay=0.01)
        result = send_transactional(
            config, CONFIRM, jo, {"confirm_url": URL, "valid_days": 7}, retry=fast
        )
        assert result.status == "deferred" and result.reply.startswith("451")
        assert server.attempts["jo@example.com"] == 2
        assert server.messages == []


def test_an_older_row_with_a_non_ascii_local_part_fails_with_the_reason(project: Path) -> None:
    with SmtpServer() as server:
        config = _config(project, f"transport: {server.url()}\n")
        jo = _subscriber(config, "jo@example.com")
        with sqlite3.connect(config.database) as conn:  # stored by a version without the rule
            conn.execute("UPDATE subscribers SET email = 'jörg@example.com' WHERE id = ?", (jo.id,))
        with SubscriberStore.for_config(config) as store:
            jorg = store.get_by_id(jo.id)
        result = send_confirmation(config, jorg, URL)
        assert result.status == "failed"
        assert "non-ASCII local part" in result.reply and "SMTPUTF8" in result.reply
        assert server.attempts == {}
