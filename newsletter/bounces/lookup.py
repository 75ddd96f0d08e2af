"""Which ledger row and subscriber an event is about, in the issue's order:
subscriber_id (proven by the source), the VERP token (signed ledger row id), the ledger key
(the row id we gave a provider as custom data), our Message-ID (derived again from the ledger,
see `records`), and last the recipient address.

The ledger key and the Message-ID are not signed (a provider echoes them; another database
sharing the provider account has rows with the same ids), so in a provider's event a row they
name is taken only when it fits: when the event names a recipient, the row's subscriber has that
address (compared as the store compares addresses, case-insensitively, the domain in its IDNA
A-label form), and the row's campaign was not sent through another provider. Otherwise the next
clue decides. Mail read from our own bounce mailbox keeps the Message-ID as is: a DSN's
Final-Recipient may be the address a reader forwards to.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter import db
from newsletter.bounces import records
from newsletter.bounces.events import FeedbackEvent
from newsletter.campaign.ledger import CampaignRow, Ledger, campaign_key
from newsletter.errors import TokenError
from newsletter.idn import ascii_domain
from newsletter.mail.message import message_id_digest
from newsletter.subscribers.store import SubscriberStore

# Event sources that are API providers: their events only fit rows sent through them (or
# through a transport that says nothing, such as SMTP or the outbox).
_PROVIDERS = frozenset({"sendgrid", "mailgun", "postmark", "ses", "resend"})


@dataclass(frozen=True)
class Match:
    subscriber_id: int | None = None
    email: str | None = None
    status: str | None = None  # the subscriber's status before this event
    campaign_id: int | None = None
    campaign: str | None = None  # "issue-slug/list" for people
    row_id: int | None = None


class Resolver:
    """Finds the `Match` of events against one database (campaigns cached per run)."""

    def __init__(self, conn: db.Connection, secret: bytes, *, index: bool = True) -> None:
        self.conn = conn
        self.secret = secret
        self.index = index  # a dry run derives Message-IDs but writes no index
        self.ledger = _ledger(conn)
        self._campaigns: dict[int, CampaignRow] = {}
        self._digests: dict[str, int] | None = None  # dry run only: an in-memory index
        self._indexed = False  # rows are indexed at most once per run

    def resolve(self, event: FeedbackEvent, store: SubscriberStore) -> Match:
        row = self._row(event, store)
        campaign_id, row_subscriber, row_id = row if row else (None, None, None)
        subscriber = None
        if event.subscriber_id is not None:
            subscriber = store.get_by_id(event.subscriber_id)
            if row_subscriber != event.subscriber_id:  # the proven subscriber wins
                campaign_id = row_id = None
        elif row_subscriber is not None:
            subscriber = store.get_by_id(row_subscriber)
        elif event.recipient:
            subscriber = store.get(event.recipient)
        if subscriber is None:
            return Match(campaign_id=campaign_id, row_id=row_id, campaign=self._name(campaign_id))
        return Match(
            subscriber.id,
            subscriber.email,
            subscriber.status,
            campaign_id,
            self._name(campaign_id),
            row_id,
        )

    def _row(self, event: FeedbackEvent, store: SubscriberStore) -> tuple[int, int, int] | None:
        """(campaign id, subscriber id, row id) from the token, the ledger key or the
        Message-ID, the first that names an existing row (the unsigned two: one that fits)."""
        row_id = self._verp(event.verp_token)
        if row_id is not None and (found := self.ledger.recipient_row(row_id)):
            return found[0], found[1], row_id
        # Lazily: the Message-ID index is built only when the ledger key did not decide.
        unsigned = (
            event.ledger_key,
            lambda: self._by_message_id(event.message_id) if event.message_id else None,
        )
        for clue in unsigned:
            row_id = clue() if callable(clue) else clue
            found = self.ledger.recipient_row(row_id) if row_id is not None else None
            if row_id is not None and found and self._fits(event, found, store):
                return found[0], found[1], row_id
        return None

    def _fits(self, event: FeedbackEvent, row: tuple[int, int], store: SubscriberStore) -> bool:
        """Whether an unsigned clue's row (campaign id, subscriber id) can be the event's."""
        campaign_id, subscriber_id = row
        if event.source not in _PROVIDERS:
            # Mail came to our own bounce mailbox; a DSN's Final-Recipient may be where the
            # reader forwards to, and the Message-ID is what maps it then.
            return True
        url = self._campaign(campaign_id).transport_url or ""
        scheme = url.partition(":")[0].lower()
        if scheme in _PROVIDERS and scheme != event.source:
            return False
        if not event.recipient:
            return True
        subscriber = store.get_by_id(subscriber_id)
        return subscriber is not None and _address_key(subscriber.email) == _address_key(
            event.recipient
        )

    def _verp(self, token: str | None) -> int | None:
        from newsletter.tokens import read_verp_token

        if not token:
            return None
        try:
            return read_verp_token(self.secret, token)
        except TokenError:
            return None  # forged or damaged: the next clue decides

    def _by_message_id(self, message_id: str) -> int | None:
        digest = message_id.strip().strip("<>").partition("@")[0].lower()
        if len(digest) != 32:
            return None  # not one of ours
        found = self._lookup(digest)
        if found is None and not self._indexed:
            self._indexed = True
            self._index_new_rows()
            found = self._lookup(digest)
        return found

    def _lookup(self, digest: str) -> int | None:
        if self._digests is not None:
            return self._digests.get(digest)
        return records.message_row(self.conn, digest)

    def _index_new_rows(self) -> None:
        """Derive the Message-IDs of ledger rows not yet indexed (once per campaign and run)."""
        done = records.indexed_up_to(self.conn)
        for campaign in self.ledger.all_campaigns():
            after = done.get(campaign.id, 0)
            key = campaign_key(campaign.issue_slug, campaign.list_name, campaign.segment)
            pairs = (
                (message_id_digest(key, sid), rid)
                for rid, sid in self.ledger.iter_row_keys(campaign.id, after)
            )
            if self.index:
                records.add_message_ids(self.conn, campaign.id, pairs)
            else:
                if self._digests is None:
                    self._digests = {}
                self._digests.update(pairs)

    def _name(self, campaign_id: int | None) -> str | None:
        if campaign_id is None:
            return None
        campaign = self._campaign(campaign_id)
        return f"{campaign.issue_slug}/{campaign.list_name}"

    def _campaign(self, campaign_id: int) -> CampaignRow:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            campaign = self._campaigns[campaign_id] = self.ledger.get(campaign_id)
        return campaign


def _address_key(address: str) -> str:
    """An address as the store compares it (case-insensitively), the domain as A-labels, so
    `ann@BÜCHER.example` and `Ann@xn--bcher-kva.example` are one address."""
    local, _, domain = address.strip().rpartition("@")
    try:
        domain = ascii_domain(domain)
    except UnicodeError:
        domain = domain.lower()
    return f"{local.lower()}@{domain}"


def _ledger(conn: db.Connection) -> Ledger:
    # The ledger shares the store's connection (one database file); it is never closed here.
    return Ledger(conn)
