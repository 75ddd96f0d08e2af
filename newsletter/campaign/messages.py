"""Who gets which message: ledger rows -> subscribers -> personalised OutgoingMessages.

Per chunk of due rows: one `recipients_for` for the subscribers; per recipient a job that the worker
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

    from newsletter.bounces.policy import SendBounces
    from newsletter.config import Config
    from newsletter.mail.message import MessageTemplate
    from newsletter.placeholders import Recipient
    from newsletter.render.compiled import CompiledIssue
    from newsletter.subscribers.model import Subscriber
    from newsletter.subscribers.segmentsql import SegmentQuery


class Subscribers(Protocol):
    """What the send path reads and writes of the subscriber store (`SubscriberStore` is one)."""

    def get_many(self, ids: Sequence[int]) -> Mapping[int, Subscriber]:
        """The subscribers with these ids (the erased ones are missing), in a few queries."""
        ...

    def recipients_for(self, ids: Sequence[int]) -> Mapping[int, tuple[str, Recipient]]:
        """(status, Recipient) by id (the erased ones are missing): the send path's lookup."""
        ...

    def mark_bounced(self, subscriber_id: int, reply: str) -> bool:
        """A permanent delivery failure: record the server's reply, stop mailing them."""
        ...


class SubscriberList(Subscribers, Protocol):
    """What a campaign needs of the store besides the send path: the list and its database."""

    conn: sqlite3.Connection  # the token secret is kept in the same database

    def count(
        self,
        list_name: str | None = None,
        status: str | None = None,
        segment: SegmentQuery | None = None,
    ) -> int: ...

    def iter_member_ids(
        self, list_name: str, status: str = ..., segment: SegmentQuery | None = None
    ) -> Iterator[int]:
        """Ids of a list's members with `status` (and in `segment`), ascending, streamed."""
        ...

    def field_names(self) -> list[str]:
        """Every field name stored (a new segment's fields are checked against them)."""
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
        self._send_bounces: SendBounces | None = None

    def prepare(self, items: Sequence[WorkItem]) -> tuple[list[Job], list[Outcome]]:
        """One lookup for the chunk; jobs for the active subscribers, skips for the rest."""
        found = self.store.recipients_for([it.subscriber_id for it in items])
        jobs: list[Job] = []
        outcomes: list[Outcome] = []
        message = self._message
        for item in items:
            status, recipient = found.get(item.subscriber_id, _ERASED)
            if status == "active":
                jobs.append((item, partial(message, item.row_id, item.subscriber_id, recipient)))
            elif recipient is None:
                outcomes.append(_skip(item, "skipped: the subscriber was erased"))
            else:
                outcomes.append(_skip(item, f"skipped: the subscriber is {status}"))
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

    def _message(self, row_id: int, subscriber_id: int, recipient: Recipient) -> OutgoingMessage:
        url = self._unsubscribe_url(self.config, subscriber_id, self.secret)
        values = self.compiled.values_for(recipient, url)  # evaluated once, for both uses
        dropped = self.compiled.dropped_urls(values)
        if dropped:
            self.dropped_links[subscriber_id] = dropped
        return self.template.outgoing(row_id, recipient, url, subscriber_id, values)

    def bounced(self, subscriber_id: int, reply: str) -> None:
        """A 5xx during sending: a hard bounce (source `smtp`) through the one bounce policy,
        so it is in the subscriber's history and the campaign's bounce rate like a DSN."""
        from newsletter.bounces.policy import SendBounces
        from newsletter.subscribers.store import SubscriberStore

        if self.campaign_id is None or not isinstance(self.store, SubscriberStore):
            self.store.mark_bounced(subscriber_id, reply)
            return
        if self._send_bounces is None or self._send_bounces.campaign_id != self.campaign_id:
            self._send_bounces = SendBounces(self.store, self.config, self.secret, self.campaign_id)
        self._send_bounces.record(subscriber_id, self.template.message_id(subscriber_id), reply)


_ERASED: tuple[str, Recipient | None] = ("erased", None)


def _skip(item: WorkItem, reason: str) -> Outcome:
    return Outcome(item.row_id, "skipped", reason, counts_attempt=False)
