"""Transport URLs -> Transport instances.

`outbox:./outbox`, `console:`, `smtp://user@host:587?tls=starttls`, `smtps://host`,
`sendgrid:`, `mailgun:DOMAIN?region=eu`, `postmark:?stream=broadcast`, `ses:REGION`, `resend:`.
Each transport class has `from_url(url, config, environ)`; the registry maps a scheme to it by
import path so a provider's SDK is only imported when that provider is used.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from newsletter.errors import TransportConfigError

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.transports.base import Transport

SCHEMES: dict[str, str] = {
    "outbox": "newsletter.transports.outbox:OutboxTransport",
    "console": "newsletter.transports.console:ConsoleTransport",
    "smtp": "newsletter.transports.smtp:SmtpTransport",
    "smtps": "newsletter.transports.smtp:SmtpTransport",
    "sendgrid": "newsletter.transports.sendgrid:SendGridTransport",
    "mailgun": "newsletter.transports.mailgun:MailgunTransport",
    "postmark": "newsletter.transports.postmark:PostmarkTransport",
    "ses": "newsletter.transports.ses:SesTransport",
    "resend": "newsletter.transports.resend:ResendTransport",
}


# Environment variables holding secrets: their values must never reach any output.
SECRET_VARIABLES = (
    "NEWSLETTER_SMTP_PASSWORD",
    "NEWSLETTER_IMAP_PASSWORD",
    "NEWSLETTER_DB_PASSWORD",
    "PGPASSWORD",
    "NEWSLETTER_SECRET_KEY",
    "SENDGRID_API_KEY",
    "MAILGUN_API_KEY",
    "POSTMARK_SERVER_TOKEN",
    "RESEND_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def redact_secrets(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with the value of every secret variable set in the environment masked.

    The last line of defence for messages that repeat what the user typed (a key pasted into a
    transport URL or another setting); values shorter than 4 characters are left alone so a
    toy password does not mangle every message.
    """
    env = os.environ if environ is None else environ
    for name in SECRET_VARIABLES:
        value = (env.get(name) or "").strip()
        if len(value) >= 4 and value in text:
            text = text.replace(value, f"[{name}]")
    return text


_SECRET_PARAM = re.compile(r"pass|secret|key|token|auth|sig|credential", re.I)


def url_without_secrets(url: str, environ: Mapping[str, str] | None = None) -> str:
    """The transport URL as it may be stored and shown: a userinfo password and any
    secret-looking query parameter (password, key, token, secret, auth, signature...) removed,
    the values of secret environment variables masked. Unchanged when there is nothing to strip.

    Our transports refuse secrets in URLs already; this keeps a stored campaign safe anyway.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", "@", 1)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return redact_secrets(url, environ)
    kept = [(k, v) for k, v in query if not _SECRET_PARAM.search(k)]
    if netloc != parts.netloc or len(kept) != len(query):
        qs = "&".join(f"{k}={v}" for k, v in kept)  # readable: no percent-encoding of paths
        url = urlunsplit((parts.scheme, netloc, parts.path, qs, parts.fragment))
    return redact_secrets(url, environ)


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def transport_from_url(
    url: str, config: Config, environ: Mapping[str, str] | None = None
) -> Transport:
    scheme = scheme_of(url)
    target = SCHEMES.get(scheme)
    if target is None:
        known = ", ".join(f"{s}:" for s in SCHEMES)
        raise TransportConfigError(
            f"unknown transport {url!r}; expected a URL starting with one of: {known}"
        )
    return transport_class(scheme).from_url(url, config, os.environ if environ is None else environ)


def transport_class(scheme: str) -> type[Transport]:
    """The class registered for a scheme (imported on first use)."""
    module_name, class_name = SCHEMES[scheme].split(":")
    return getattr(importlib.import_module(module_name), class_name)
