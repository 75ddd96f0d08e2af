"""Provider webhooks: `POST /webhooks/<provider>` on `newsletter serve`.

One module per provider (`sendgrid`, `mailgun`, `postmark`, `ses` over `sns`, `resend`), each
verifying the provider's documented signature and normalising its documented payloads to
FeedbackEvents (see `base` for the contract); `receive` is the one path every request takes:
verify, refuse a replayed one-time token, normalise, apply the events through the bounce policy
(idempotent by (source, event_id): a replayed event counts once), remember the token.

    receive(config, store, provider, request, secret=None, now=None) -> Received(status, message)
    providers_from_environ(environ) -> {name: Provider}   (a provider whose secret is unset
                                                            is absent: its route is off)
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.bounces.policy import apply_to_store
from newsletter.bounces.webhooks import mailgun, nonces, postmark, resend, sendgrid, ses
from newsletter.bounces.webhooks.base import (
    Provider,
    WebhookPayloadError,
    WebhookRefused,
    WebhookRequest,
)

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.subscribers import SubscriberStore

__all__ = [
    "PROVIDERS",
    "VARIABLES",
    "Provider",
    "Received",
    "WebhookRequest",
    "prepare",
    "providers_from_environ",
    "receive",
]

log = logging.getLogger("newsletter.serve")

PROVIDERS: dict[str, Callable[[Mapping[str, str]], Provider | None]] = {
    "sendgrid": sendgrid.from_environ,
    "mailgun": mailgun.from_environ,
    "postmark": postmark.from_environ,
    "ses": ses.from_environ,
    "resend": resend.from_environ,
}
# The environment variables that turn each route on (all of them must be set).
VARIABLES: dict[str, tuple[str, ...]] = {
    "sendgrid": (sendgrid.SECRET_VARIABLE,),
    "mailgun": (mailgun.SECRET_VARIABLE,),
    "postmark": (postmark.USER_VARIABLE, postmark.SECRET_VARIABLE),
    "ses": (ses.SECRET_VARIABLE,),
    "resend": (resend.SECRET_VARIABLE,),
}
prepare = nonces.prepare


@dataclass(frozen=True)
class Received:
    """The answer to one webhook request: HTTP status and a short plain-text message."""

    status: int
    message: str


def providers_from_environ(environ: Mapping[str, str]) -> dict[str, Provider]:
    """The providers whose secrets are set; ConfigError for a secret that cannot be used."""
    found = {name: make(environ) for name, make in PROVIDERS.items()}
    return {name: provider for name, provider in found.items() if provider is not None}


def receive(
    config: Config,
    store: SubscriberStore,
    provider: Provider,
    request: WebhookRequest,
    *,
    secret: bytes | None = None,
    now: float | None = None,
) -> Received:
    """Verify `request`, then apply its events. 401 (nothing changed) unless it is proven to
    come from the provider; 200 for a replay (nothing changed again); 400 for a verified body
    that is not the provider's documented shape. `store` is writable; the events are applied
    by the bounce policy (newsletter.bounces.policy, `secret` the project's token secret);
    `now` is Unix seconds. sqlite3.OperationalError (a busy database) propagates: nothing was
    applied, the provider retries."""
    now = time.time() if now is None else now
    conn = store.conn
    name = provider.name
    try:
        nonce = provider.verify(request, now)
    except WebhookRefused as exc:
        log.warning("webhook %s refused (401): %s", name, exc)
        return Received(401, f"{provider.proof} missing or invalid\n")
    if nonce is not None and nonces.seen(conn, name, nonce):
        log.info("webhook %s: token seen before, a replay: nothing done", name)
        return Received(200, "already received\n")
    try:
        batch = provider.events(request)
    except WebhookPayloadError as exc:
        log.warning("webhook %s: verified body not understood (400): %s", name, exc)
        return Received(400, f"{exc}\n")
    except WebhookRefused as exc:
        log.warning("webhook %s refused (401): %s", name, exc)
        return Received(401, "refused\n")
    report = apply_to_store(store, config, batch.events, secret=secret) if batch.events else None
    if nonce is not None:
        nonces.remember(conn, name, nonce, now)
    # Server logs travel (journald, log services): who is masked, `subscribers show` has it.
    for outcome in report.outcomes if report is not None else ():
        log.info("webhook %s: %s", name, mask_addresses(outcome.format()))  # what, why
    ignored = ", ".join(f"{kind} x{n}" for kind, n in sorted(batch.ignored.items()))
    log.info(
        "webhook %s: %s%s%s",
        name,
        report.summary() if report is not None else "0 events",
        f"; ignored: {ignored}" if ignored else "",
        f"; {batch.done}" if batch.done else "",
    )
    return Received(200, "ok\n")


_ADDRESS = re.compile(r"([^\s<>@\"'(),;:\[\]])[^\s<>@\"'(),;:\[\]]*@([^\s<>@\"'(),;\[\]]+)")


def mask_addresses(text: str) -> str:
    """`text` with every address cut to its first character and domain: `b***@example.com`
    (enough to see which provider's mailboxes bounce, not whose)."""
    return _ADDRESS.sub(r"\1***@\2", text)
