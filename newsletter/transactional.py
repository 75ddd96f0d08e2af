"""Transactional mail: one message to one subscriber, outside any campaign.

The double opt-in confirmation (and any later one, such as a welcome mail) goes through the path
every issue takes: its text comes from the theme, it is built by `message.MessageTemplate` (the
same header encoders and checks of `newsletter.mail.mime`, the same DKIM signer), and it is sent by
the configured transport (`transport_from_url`), tried again on a deferred result.

    send_transactional(config, "confirm", subscriber, {"confirm_url": url}) -> DeliveryResult
    send_confirmation(config, subscriber, url)                               # the same

A transactional mail named NAME is three theme templates: `mail/NAME_subject.txt` (one line),
`mail/NAME.txt` (the plain-text part) and `mail/NAME.html` (the HTML part, autoescaped). A
translation for the configured `language` goes in `mail/<language>/` (e.g. `mail/de/confirm.txt`,
or `mail/pt-BR/` then `mail/pt/`); the config's `templates:` folder overrides any of them file by
file, like the rest of the theme. Templates see `newsletter` (`name`, `language`, `base_url`,
`postal_address` lines), `subscriber` (`email`, `name` or None, `fields`), `brand` (the `theme:`
branding) and the caller's context (`confirm_url`, `valid_days` and `lists`, the list names the
link confirms, for "confirm").
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, TemplateNotFound

from newsletter.errors import MessageError, RenderError
from newsletter.mail.mime import check_header_text
from newsletter.render.fill import Fill
from newsletter.transports.base import DeliveryResult, OutgoingMessage

if TYPE_CHECKING:
    from newsletter.campaign.retry import RetryPolicy
    from newsletter.config import Config
    from newsletter.placeholders import Recipient
    from newsletter.subscribers.model import Subscriber
    from newsletter.transports.base import Transport

CONFIRM = "confirm"
MAIL_FOLDER = "mail"


@dataclass(frozen=True)
class TransactionalContent:
    """One rendered transactional mail, in the shape `MessageTemplate` builds from: Fills
    without per-recipient slots (the templates were rendered for this one subscriber)."""

    subject: Fill
    text: Fill
    html: Fill

    def values_for(self, recipient: Recipient, unsubscribe_url: str) -> dict[str, str]:
        return {}


def render_transactional(
    config: Config, template: str, subscriber: Subscriber, context: Mapping[str, Any]
) -> TransactionalContent:
    """Render the theme's `mail/<template>` subject, text and HTML for `subscriber`.

    RenderError (template file and line) when a template is missing or fails, or when the
    subject is not one line of text.
    """
    from newsletter.render import theme
    from newsletter.render.compile import NewsletterView

    env = theme.environment(config)
    values = {
        "newsletter": NewsletterView(
            name=config.name,
            language=config.language,
            base_url=config.base_url,
            postal_address=tuple((config.postal_address or "").splitlines()),
        ),
        "subscriber": {
            "email": subscriber.email,
            "name": subscriber.name or None,
            "fields": dict(subscriber.fields),
        },
        "brand": config.brand,
        **context,
    }

    def render(filename: str) -> tuple[str, str]:
        name = _localised(env, config.language, filename)
        return name, theme.render(env, name, values)

    subject_name, subject = render(f"{template}_subject.txt")
    _, text = render(f"{template}.txt")
    _, html = render(f"{template}.html")
    subject = subject.strip()
    try:
        check_header_text(subject, "the subject")
    except MessageError as exc:  # say which template made it
        where = _template_file(env, subject_name)
        raise RenderError(f"{where}: {exc}; it must be one line") from None
    if not subject:
        raise RenderError(f"{_template_file(env, subject_name)}: the subject is empty")
    return TransactionalContent(
        subject=Fill((subject,)),
        text=Fill((text,)),
        html=Fill((html,)),
    )


def transactional_message(
    config: Config, template: str, subscriber: Subscriber, context: Mapping[str, Any]
) -> OutgoingMessage:
    """The complete message (DKIM-signed with `config.dkim`) for one subscriber.

    MessageError when the subscriber's name or address cannot go in a header (see
    `newsletter.mail.mime`); RenderError for template problems.
    """
    from newsletter.mail.message import MessageTemplate

    content = render_transactional(config, template, subscriber, context)
    mail = MessageTemplate(
        content,
        config,
        campaign_key=f"{template}/{secrets.token_hex(16)}",  # a new Message-ID per mail
        dkim=_dkim_signer(config),
        transactional=True,
    )
    return mail.outgoing(subscriber.id, subscriber.recipient(), "", subscriber.id)


def send_transactional(
    config: Config,
    template: str,
    subscriber: Subscriber,
    context: Mapping[str, Any],
    *,
    transport: Callable[[], Transport] | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Build and send one transactional mail; retried (backoff with jitter, or the server's
    Retry-After) while the transport answers "deferred", up to `retry.attempts_per_run` tries.

    Returns the last DeliveryResult ("failed" with the reason for a name or address that cannot
    go in a header). Raises RenderError for the templates, TransportError when the transport
    cannot work at all (bad URL, refused login, unreachable server).
    """
    from newsletter.campaign.retry import RetryPolicy
    from newsletter.transports import transport_from_url

    try:
        message = transactional_message(config, template, subscriber, context)
    except MessageError as exc:
        return DeliveryResult("failed", reply=f"not sent: {exc}")
    policy = retry or RetryPolicy(attempts_per_run=3, base_delay=1.0, max_wait=60.0)
    opened = transport() if transport is not None else transport_from_url(config.transport, config)
    with opened:
        attempt = 1
        while True:
            result = opened.send([message])[0]
            if result.status != "deferred" or not policy.retry_in_run(attempt, result.retry_after):
                return result
            sleep(policy.delay(attempt, result.retry_after))
            attempt += 1


def send_confirmation(
    config: Config, subscriber: Subscriber, url: str, lists: Sequence[str] = ()
) -> DeliveryResult:
    """The double opt-in mail with the confirm link `url` for the list names `lists` (see
    `send_transactional`).

    Nothing a stranger typed into the form goes in it: the greeting and the To display name use
    the subscriber's name only once the owner confirmed one (an active or former subscriber),
    never that of a pending record or of the sign-up being confirmed."""
    from newsletter.subscribers.model import PENDING
    from newsletter.tokens import CONFIRM_MAX_AGE

    if subscriber.status == PENDING and subscriber.name:
        subscriber = dataclasses.replace(subscriber, name=None)
    context = {
        "confirm_url": url,
        "valid_days": CONFIRM_MAX_AGE // 86400,
        "lists": list(lists),
    }
    return send_transactional(config, CONFIRM, subscriber, context)


def _localised(env: Environment, language: str, filename: str) -> str:
    """The template name for `language`: mail/<tag>/file, mail/<primary>/file, mail/file."""
    tags = [language]
    if "-" in language:
        tags.append(language.split("-", 1)[0])
    assert env.loader is not None
    for tag in tags:
        name = f"{MAIL_FOLDER}/{tag}/{filename}"
        try:
            env.loader.get_source(env, name)
        except TemplateNotFound:
            continue
        return name
    return f"{MAIL_FOLDER}/{filename}"


def _template_file(env: Environment, name: str) -> str:
    assert env.loader is not None
    from newsletter.render.theme import display_path

    _source, filename, _uptodate = env.loader.get_source(env, name)
    return display_path(filename or name)


def _dkim_signer(config: Config) -> Any:
    if config.dkim is None:
        return None
    from newsletter.mail.dkim import DkimSigner

    return DkimSigner.from_config(config.dkim)
