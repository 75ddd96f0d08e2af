"""What one recipient gets from a snapshot: subject, preheader, both parts, the mail headers.

The headers come from the real `MessageTemplate` (the bytes a transport would send, DKIM aside),
parsed back the way a mail client decodes them.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import format_datetime

from newsletter import db
from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.lint import CLIP_BYTES, SIZE_WARN_BYTES
from newsletter.placeholders import SAMPLE_RECIPIENT, Recipient
from newsletter.render.compiled import CompiledIssue

# Sent messages carry a signed per-subscriber token; the preview shows a token of the same shape
# that no server accepts (no subscriber has id 0, and the MAC is wrong), so clicking
# "Unsubscribe" in the preview can never unsubscribe anyone.
PREVIEW_TOKEN = "0.preview-not-a-real-token"
SAMPLE_KEY = "sample"


@dataclass(frozen=True)
class Choice:
    """An entry of the "Preview as" picker."""

    key: str  # "sample" or the subscriber's email address
    label: str
    recipient: Recipient

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "label": self.label}


SAMPLE = Choice(SAMPLE_KEY, f"Sample reader ({SAMPLE_RECIPIENT.email})", SAMPLE_RECIPIENT)


@dataclass(frozen=True)
class EmailView:
    subject: str
    preheader: str
    html: str
    text: str
    headers: list[tuple[str, str]]
    sender: str
    sender_name: str
    to: str
    date: str

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "preheader": self.preheader,
            "text": self.text,
            "headers": self.headers,
            "from": self.sender,
            "from_name": self.sender_name,
            "to": self.to,
            "date": self.date,
            "html_bytes": len(self.html.encode()),
            "clip_bytes": CLIP_BYTES,
            "warn_bytes": SIZE_WARN_BYTES,
        }


def unsubscribe_url(config: Config) -> str:
    return f"{config.base_url}/unsubscribe/{PREVIEW_TOKEN}"


def render_email(compiled: CompiledIssue, recipient: Recipient) -> EmailView:
    """The email `recipient` would receive. Raises NewsletterError for values that cannot make
    a valid message (a line break in a subscriber's name, say)."""
    config = compiled.config
    url = unsubscribe_url(config)
    rendered = compiled.render_for(recipient, url)
    headers = message_headers(compiled, recipient, url)
    when = compiled.issue.date
    return EmailView(
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        headers=headers,
        sender=str(config.sender),
        sender_name=config.sender.display_name or config.sender.addr_spec,
        to=_to(recipient),
        date=f"{when:%b} {when.day}",
    )


def message_headers(
    compiled: CompiledIssue, recipient: Recipient, url: str
) -> list[tuple[str, str]]:
    from newsletter.mail.message import MessageTemplate

    template = MessageTemplate(
        compiled, compiled.config, campaign_key=f"preview:{compiled.issue.slug}"
    )
    moment = dt.datetime.combine(compiled.issue.date, dt.time(8, 0), dt.UTC)
    data = template.bytes_for(
        recipient,
        unsubscribe_url=url,
        message_id=template.message_id(recipient.email),
        date=format_datetime(moment),
    )
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    message = BytesHeaderParser(policy=default_policy).parsebytes(head)
    shown = [(name, str(value)) for name, value in message.items()]
    dkim = compiled.config.dkim
    if dkim is not None:
        shown.insert(
            0,
            ("DKIM-Signature", f"added when sending: d={dkim.domain}; s={dkim.selector}"),
        )
    return shown


def _to(recipient: Recipient) -> str:
    return f"{recipient.name} <{recipient.email}>" if recipient.name else recipient.email


def find_choice(config: Config | None, key: str) -> Choice:
    """The picker entry for `key`; the sample reader when the subscriber is unknown."""
    if key == SAMPLE_KEY or config is None:
        return SAMPLE
    subscriber = _store_get(config, key)
    if subscriber is None:
        return SAMPLE
    return _choice(subscriber)


def list_choices(config: Config | None, query: str = "", limit: int = 200) -> list[Choice]:
    """The sample reader, then up to `limit` subscribers (if the database exists): the first
    ones, or with `query` those of the whole list whose address or name contains it."""
    if config is None or not db.exists(config.database):
        return [SAMPLE]
    try:
        subscribers = _store_list(config, query.strip(), limit)
    except NewsletterError:
        return [SAMPLE]
    return [SAMPLE, *(_choice(s) for s in subscribers)]


def _choice(subscriber: object) -> Choice:
    recipient: Recipient = subscriber.recipient()  # type: ignore[attr-defined]
    status = getattr(subscriber, "status", "")
    label = f"{recipient.name} <{recipient.email}>" if recipient.name else recipient.email
    if status and status != "active":
        label += f" · {status}"
    return Choice(recipient.email, label, recipient)


def _store_get(config: Config, email: str) -> object | None:
    if not db.exists(config.database):
        return None  # never create a database just to preview
    from newsletter.subscribers.store import SubscriberStore

    try:
        with SubscriberStore.open(config.database) as store:
            return store.get(email)
    except NewsletterError:
        return None


def _store_list(config: Config, query: str, limit: int) -> list[object]:
    from newsletter.subscribers.store import SubscriberStore

    with SubscriberStore.open(config.database) as store:
        if query:
            return list(store.search(query, limit))
        return list(itertools.islice(store.iter_subscribers(), limit))
