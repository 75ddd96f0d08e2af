"""Who gets which message: ledger rows -> subscribers -> personalised OutgoingMessages.

Per chunk of due rows: one `get_many` for the subscribers; per recipient a job that the worker
runs right before sending: an unsubscribe URL and `MessageTemplate.outgoing` (whose bytes are
built lazily, as the transport reads them). Subscribers who unsubscribed, bounced or were
erased since the snapshot are skipped here, shortly before their turn, so a resumed campaign
never mails them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

from newsletter.campaign.ledger import Outcome, WorkItem
from newsletter.campaign.runner import Job
from newsletter.errors import NewsletterError
from newsletter.transports.base import OutgoingMessage

if TYPE_CHECKING:
    import sqlite3

    from newsletter.config import Config
    from newsletter.mail.message import MessageTemplate
    from newsletter.render.compiled import CompiledIssue
    from newsletter.subscribers.model import Subscriber


class Subscribers(Protocol):
    """What the send path reads and writes of the subscriber store (`SubscriberStore` is one)."""

    def get_many(self, ids: Sequence[int]) -> Mapping[int, Subscriber]:
        """The subscribers with these ids (the erased ones are missing), in a few queries."""
        ...

    def mark_bounced(self, subscriber_id: int, reply: str) -> bool:
        """A permanent delivery failure: record the server's reply, stop mailing them."""
        ...


class SubscriberList(Subscribers, Protocol):
    """What a campaign needs of the store besides the send path: the list and its database."""

    conn: sqlite3.Connection  # the token secret is kept in the same database

    def count(self, list_name: str | None = None, status: str | None = None) -> int: ...

    def iter_member_ids(self, list_name: str, status: str = ...) -> Iterator[int]:
        """Ids of a list's members with `status`, ascending, streamed."""
        ...

    def close(self) -> None: ...


class SubscriberMessages:
    """The runner's MessageSource backed by the subscriber store and the issue's template."""

    def __init__(
        self,
        compiled: CompiledIssue,
        template: MessageTemplate,
        store: Subscribers,
        config: Config,
        secret: bytes,
    ) -> None:
        from newsletter.tokens import unsubscribe_url

        self.compiled = compiled
        self.template = template
        self.store = store
        self.config = config
        self.secret = secret
        self._unsubscribe_url = unsubscribe_url
        # Subscriber id -> their values a link or image URL refused (the link went out as text).
        self.dropped_links: dict[int, list[str]] = {}
        # Set once the campaign exists: a 5xx then goes through the bounce policy with it.
        self.campaign_id: int | None = None

    def prepare(self, items: Sequence[WorkItem]) -> tuple[list[Job], list[Outcome]]:
        """One `get_many` for the chunk; jobs for the active subscribers, skips for the rest."""
        subscribers = self.store.get_many([it.subscriber_id for it in items])
        jobs: list[Job] = []
        outcomes: list[Outcome] = []
        for item in items:
            subscriber = subscribers.get(item.subscriber_id)
            if subscriber is None:
                outcomes.append(_skip(item, "skipped: the subscriber was erased"))
            elif subscriber.status != "active":
                outcomes.append(_skip(item, f"skipped: the subscriber is {subscriber.status}"))
            else:
                jobs.append((item, partial(self._message, item.row_id, subscriber)))
        return jobs, outcomes

    def build(self, items: Sequence[WorkItem]) -> tuple[list[OutgoingMessage], list[Outcome]]:
        """Every message at once (dry runs): built ones, and outcomes for the others."""
        jobs, outcomes = self.prepare(items)
        messages: list[OutgoingMessage] = []
        for item, make in jobs:
            try:
                messages.append(make())
            except (NewsletterError, ValueError) as exc:
                outcomes.append(Outcome(item.row_id, "failed", f"message not built: {exc}"))
        return messages, outcomes

    def _message(self, row_id: int, subscriber: Subscriber) -> OutgoingMessage:
        url = self._unsubscribe_url(self.config, subscriber.id, self.secret)
        recipient = subscriber.recipient()
        values = self.compiled.values_for(recipient, url)  # evaluated once, for both uses
        dropped = self.compiled.dropped_urls(values)
        if dropped:
            self.dropped_links[subscriber.id] = dropped
        return self.template.outgoing(row_id, recipient, url, subscriber.id, values)

    def bounced(self, subscriber_id: int, reply: str) -> None:
        """A 5xx during sending: a hard bounce (source `smtp`) through the one bounce policy,
        so it is in the subscriber's history and the campaign's bounce rate like a DSN."""
        from newsletter.bounces.policy import apply_send_bounce
        from newsletter.subscribers.store import SubscriberStore

        if self.campaign_id is None or not isinstance(self.store, SubscriberStore):
            self.store.mark_bounced(subscriber_id, reply)
            return
        apply_send_bounce(
            self.store,
            self.config,
            self.secret,
            campaign_id=self.campaign_id,
            subscriber_id=subscriber_id,
            message_id=self.template.message_id(subscriber_id),
            reply=reply,
        )


def _skip(item: WorkItem, reason: str) -> Outcome:
    return Outcome(item.row_id, "skipped", reason, counts_attempt=False)
