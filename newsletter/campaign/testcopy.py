"""`newsletter send ISSUE --test ADDR`: one copy, subject prefixed [TEST], nothing recorded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.campaign.send import TransportSpec, checked_issue, dkim_signer, transport_spec
from newsletter.config import Config
from newsletter.errors import CampaignError


@dataclass(frozen=True)
class TestSendReport:
    address: str
    subject: str
    transport: str
    reply: str
    message_id: str

    def summary(self) -> str:
        return (
            f"Test message '{self.subject}' sent to {self.address} via {self.transport} "
            f"({self.reply or 'accepted'})."
        )


def send_test(
    config: Config,
    issue_path: str | Path,
    address: str,
    *,
    transport: TransportSpec = None,
    environ: Mapping[str, str] | None = None,
) -> TestSendReport:
    """One copy to `address`, subject prefixed [TEST]; no campaign, nothing recorded."""
    from newsletter.message import MessageTemplate
    from newsletter.render import compile_issue
    from newsletter.subscribers.address import normalize_email

    issue = checked_issue(config, issue_path)
    factory, description = transport_spec(config, transport, environ)
    email = normalize_email(address)
    compiled = compile_issue(issue, config)
    template = MessageTemplate(
        compiled,
        config,
        campaign_key=f"{issue.slug}/test/{time.time_ns()}",
        dkim=dkim_signer(config),
        test=True,
    )
    recipient = _test_recipient(config, email)
    # A test copy has no subscriber behind it: its unsubscribe link points at the page but
    # carries no valid token, so clicking it changes nothing.
    url = f"{config.base_url}/unsubscribe/test"
    message = template.outgoing(0, recipient, url, email)
    with factory() as opened:
        result = opened.send([message])[0]
    if result.status != "sent":
        raise CampaignError(f"the test message to {email} was not accepted: {result.reply}")
    subject = template.subject_for(compiled.values_for(recipient, url))
    return TestSendReport(email, subject, description, result.reply, message.message_id)


def _test_recipient(config: Config, email: str) -> Any:
    """The subscriber with that address, if any (to see their personalisation), else the bare
    address (placeholders show their defaults)."""
    from newsletter.render.placeholders import Recipient
    from newsletter.subscribers import SubscriberStore

    with SubscriberStore.for_config(config) as store:
        subscriber = store.get(email)
    return subscriber.recipient() if subscriber is not None else Recipient(email)
