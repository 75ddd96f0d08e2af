"""`newsletter send ISSUE --test ADDR [--test ADDR2...]`: one [TEST] copy each, nothing recorded."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.campaign.campaign import TransportSpec, checked_issue, dkim_signer, transport_spec
from newsletter.config import Config
from newsletter.errors import CampaignError


@dataclass(frozen=True)
class TestCopy:
    """What happened to one test copy."""

    address: str  # normalised
    subject: str  # as this recipient sees it, "[TEST] ..."
    status: str  # the transport's result: sent, deferred, failed, bounced
    reply: str
    message_id: str

    @property
    def ok(self) -> bool:
        return self.status == "sent"


@dataclass(frozen=True)
class TestSendReport:
    copies: list[TestCopy]  # one per address, in the order given
    transport: str

    @property
    def ok(self) -> bool:
        """Every copy was accepted by the transport."""
        return all(c.ok for c in self.copies)

    @property
    def subject(self) -> str:
        return self.copies[0].subject

    @property
    def address(self) -> str:
        return self.copies[0].address

    def summary(self) -> str:
        """One line per copy, naming its address and what the transport said."""
        lines = []
        for c in self.copies:
            if c.ok:
                lines.append(
                    f"Test message '{c.subject}' sent to {c.address} via {self.transport} "
                    f"({c.reply or 'accepted'})."
                )
            else:
                lines.append(
                    f"Test message to {c.address} was NOT accepted via {self.transport} "
                    f"({c.status}: {c.reply})."
                )
        return "\n".join(lines)


def send_test(
    config: Config,
    issue_path: str | Path,
    addresses: str | Sequence[str],
    *,
    transport: TransportSpec = None,
    environ: Mapping[str, str] | None = None,
    list_name: str | None = None,
) -> TestSendReport:
    """One copy to each address (subject prefixed [TEST]) over one opened transport; no
    campaign, nothing recorded. A bad address is refused (SubscriberError) before anything is
    sent; a copy the transport does not accept is reported in the result (`ok` False).
    `list_name`: the copy is the mail that list would get (see `has_web_version`)."""
    from newsletter.mail.message import MessageTemplate, feedback_id
    from newsletter.subscribers.address import normalize_email

    wanted = [addresses] if isinstance(addresses, str) else list(addresses)
    if not wanted:
        raise CampaignError("no test address given")
    emails = list(dict.fromkeys(normalize_email(a) for a in wanted))
    checked = checked_issue(config, issue_path, list_name)
    issue, compiled = checked.issue, checked.compiled
    factory, description = transport_spec(config, transport, environ)
    template = MessageTemplate(
        compiled,
        config,
        campaign_key=f"{issue.slug}/test/{time.time_ns()}",
        dkim=dkim_signer(config),
        test=True,
        # As the readers' copies (Gmail's spam reports of it count under list `test`); no
        # VERP: a test copy has no ledger row.
        feedback_id=feedback_id(issue.slug, "test", config),
    )
    # A test copy has no subscriber behind it: its unsubscribe link points at the page but
    # carries no valid token, so clicking it changes nothing.
    url = f"{config.base_url}/unsubscribe/test"
    outgoing = []
    for key, email in enumerate(emails):
        recipient = _test_recipient(config, email)
        subject = template.subject_for(compiled.values_for(recipient, url))
        outgoing.append((template.outgoing(key, recipient, url, email), subject))
    with factory() as opened:
        results = []
        for message, _ in outgoing:  # one at a time: SMTP takes one message per call
            results += opened.send([message])
    copies = [
        TestCopy(email, subject, result.status, result.reply, message.message_id)
        for email, (message, subject), result in zip(emails, outgoing, results, strict=True)
    ]
    return TestSendReport(copies, description)


def _test_recipient(config: Config, email: str) -> Any:
    """The subscriber with that address, if any (to see their personalisation), else the bare
    address (placeholders show their defaults)."""
    from newsletter.placeholders import Recipient
    from newsletter.subscribers import SubscriberStore

    with SubscriberStore.for_config(config) as store:
        subscriber = store.get(email)
    return subscriber.recipient() if subscriber is not None else Recipient(email)
