"""Who gets which message: ledger rows -> subscribers -> personalised OutgoingMessages.

Per claimed chunk: one `get_many` for the subscribers, then per recipient an unsubscribe URL
and `MessageTemplate.outgoing` (the bytes themselves are built lazily, in the worker that sends
them). Subscribers who unsubscribed, bounced or were erased since the snapshot are skipped here,
at send time, so a resumed campaign never mails them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from newsletter.campaign.ledger import Outcome, WorkItem
from newsletter.errors import NewsletterError
from newsletter.transports.base import OutgoingMessage

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.message import MessageTemplate


class SubscriberMessages:
    """The runner's MessageSource backed by the subscriber store and the issue's template."""

    def __init__(self, template: MessageTemplate, store: Any, config: Config, secret: Any) -> None:
        from newsletter.tokens import unsubscribe_url

        self.template = template
        self.store = store
        self.config = config
        self.secret = secret
        self._unsubscribe_url = unsubscribe_url

    def build(self, items: Sequence[WorkItem]) -> tuple[list[OutgoingMessage], list[Outcome]]:
        subscribers = self.store.get_many([it.subscriber_id for it in items])
        messages: list[OutgoingMessage] = []
        outcomes: list[Outcome] = []
        for item in items:
            subscriber = subscribers.get(item.subscriber_id)
            if subscriber is None:
                outcomes.append(_skip(item, "skipped: the subscriber was erased"))
                continue
            if subscriber.status != "active":
                outcomes.append(_skip(item, f"skipped: the subscriber is {subscriber.status}"))
                continue
            try:
                url = self._unsubscribe_url(self.config, subscriber.id, self.secret)
                messages.append(
                    self.template.outgoing(item.row_id, subscriber.recipient(), url, subscriber.id)
                )
            except (NewsletterError, ValueError) as exc:
                outcomes.append(Outcome(item.row_id, "failed", f"message not built: {exc}"))
        return messages, outcomes

    def bounced(self, subscriber_id: int, reply: str) -> None:
        self.store.mark_bounced(subscriber_id, reply)


def _skip(item: WorkItem, reason: str) -> Outcome:
    return Outcome(item.row_id, "skipped", reason, counts_attempt=False)
