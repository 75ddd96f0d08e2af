"""The double opt-in email: one message, built with EmailMessage and sent through the configured
transport (it is not the bulk path, so clarity beats speed here)."""

from __future__ import annotations

import html
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from email_validator import EmailNotValidError, validate_email

from newsletter.transports import transport_from_url
from newsletter.transports.base import DeliveryResult, MessageParts, OutgoingMessage

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.subscribers.model import Subscriber


def confirmation_message(config: Config, subscriber: Subscriber, url: str) -> OutgoingMessage:
    """The confirmation email for `subscriber` with the confirm link `url`."""
    subject = f"Confirm your subscription to {config.name}"
    text, body_html = _bodies(config, subscriber, url)
    recipient = _ascii_address(subscriber.email)
    message_id = make_msgid(domain=config.sender_domain)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = config.sender
    msg["To"] = _to_header(subscriber.name, recipient)
    if config.reply_to is not None:
        msg["Reply-To"] = config.reply_to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(body_html, subtype="html")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative copies it into the part; it belongs on top
    data = msg.as_bytes()
    headers = {"Message-ID": message_id, "Auto-Submitted": "auto-generated"}
    if config.reply_to is not None:
        headers["Reply-To"] = str(config.reply_to)
    parts = MessageParts(
        from_header=str(config.sender),
        to_email=recipient,
        to_name=subscriber.name,
        subject=subject,
        text=text,
        html=body_html,
        headers=headers,
    )
    return OutgoingMessage(
        key=subscriber.id,
        envelope_from=config.sender.addr_spec,
        recipient=recipient,
        message_id=message_id.strip("<>"),
        build_data=lambda: data,
        build_parts=lambda: parts,
    )


def send_confirmation(config: Config, subscriber: Subscriber, url: str) -> DeliveryResult:
    """Send the confirmation through `config.transport`; TransportError if it cannot work."""
    message = confirmation_message(config, subscriber, url)
    with transport_from_url(config.transport, config) as transport:
        return transport.send([message])[0]


def _bodies(config: Config, subscriber: Subscriber, url: str) -> tuple[str, str]:
    hello = f"Hello {subscriber.name}," if subscriber.name else "Hello,"
    footer = config.name + (f"\n{config.postal_address}" if config.postal_address else "")
    text = (
        f"{hello}\n\n"
        f"please confirm that you want to receive {config.name} at {subscriber.email}:\n\n"
        f"{url}\n\n"
        "The link is valid for 7 days. If you did not ask for this, ignore this email: you "
        "will not hear from us again.\n\n"
        f"-- \n{footer}\n"
    )
    e = html.escape
    body_html = (
        '<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">'
        f"<p>{e(hello)}</p>"
        f"<p>please confirm that you want to receive {e(config.name)} at "
        f"{e(subscriber.email)}:</p>"
        f'<p><a href="{e(url)}" style="display:inline-block;padding:10px 18px;'
        'background:#1a56db;color:#fff;text-decoration:none;border-radius:4px">'
        "Confirm my subscription</a></p>"
        f'<p style="font-size:13px;color:#555">Or open this link: {e(url)}</p>'
        "<p>The link is valid for 7 days. If you did not ask for this, ignore this email: "
        "you will not hear from us again.</p>"
        f'<p style="font-size:12px;color:#777">{e(footer).replace(chr(10), "<br>")}</p>'
        "</body></html>"
    )
    return text, body_html


def _ascii_address(email: str) -> str:
    """The address with an IDNA (xn--) domain, for headers and the SMTP envelope."""
    try:
        return validate_email(email, check_deliverability=False).ascii_email or email
    except EmailNotValidError:
        return email


def _to_header(name: str | None, email: str) -> Address | str:
    local, _, domain = email.rpartition("@")
    try:
        return Address(display_name=name or "", username=local, domain=domain)
    except (ValueError, IndexError):
        return email
