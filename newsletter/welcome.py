"""The welcome mail: one issue sent once to each subscriber when they confirm (serve's confirm
route) or are added with `subscribers add --welcome`.

The welcome issue is `welcome:` in newsletter.yaml (a file) or else `issues/_welcome.yaml`. It
is an issue like any other (checked, compiled once, personalised, DKIM-signed, List-Unsubscribe)
and goes out through the campaign ledger: one long-lived campaign of that issue to the
pseudo-list `(welcome)` (not a valid list name, so no real list collides), to which each
subscriber owed a welcome is added. Being owed a welcome is recorded first, at once and durably
(table `welcome_requests`, one row per subscriber: never twice to one person, whatever becomes
of the welcome file), so a confirmation never waits on the relay and a failed welcome never
undoes it: it stays owed, and the next run sends it (serve retries every
`WELCOME_RETRY_SECONDS`, `newsletter send-due` runs it too). A request is bound to the welcome
issue that first takes it, so renaming the file does not welcome anyone again. Nothing is owed
while no welcome issue is configured: turning the welcome on later does not mail everyone who
confirmed before. `newsletter status <welcome slug>` shows the welcome campaign.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from newsletter.campaign.campaign import WELCOME_LIST, Campaign
from newsletter.campaign.ledger import Ledger
from newsletter.campaign.reports import SendReport
from newsletter.config import Config
from newsletter.db import Connection, migrate
from newsletter.doctor import check_before_send
from newsletter.errors import NewsletterError, SubscriberError
from newsletter.issue import slugify
from newsletter.placeholders import Recipient
from newsletter.subscribers import ACTIVE, SubscriberStore
from newsletter.subscribers.model import Subscriber, now

WELCOME_RETRY_SECONDS = 300  # serve sends welcomes still owed (a relay down) this often

MIGRATIONS = [
    """
    CREATE TABLE welcome_requests (
        subscriber_id INTEGER PRIMARY KEY,
        requested_at TEXT NOT NULL,
        detail TEXT NOT NULL,
        issue_slug TEXT
    );
    CREATE INDEX welcome_requests_issue ON welcome_requests (issue_slug);
    """,
]
POSTGRESQL_MIGRATIONS = [
    """
    CREATE TABLE welcome_requests (
        subscriber_id BIGINT PRIMARY KEY,
        requested_at TEXT NOT NULL,
        detail TEXT NOT NULL,
        issue_slug TEXT
    );
    CREATE INDEX welcome_requests_issue ON welcome_requests (issue_slug);
    """,
]

_running = threading.Lock()  # one welcome run at a time in a process (the ledger: per database)


def prepare(conn: Connection) -> None:
    """Create the welcome table now (serve at start-up: a confirmation then only inserts)."""
    migrate(conn, "welcome", MIGRATIONS, POSTGRESQL_MIGRATIONS)


def request_welcome(conn: Connection, config: Config, subscriber_id: int, detail: str) -> bool:
    """Record that `subscriber_id` is owed the welcome; False when no welcome issue is
    configured or they were owed (or sent) one already. One small write: no mail is sent here."""
    if config.welcome is None:
        return False
    migrate(conn, "welcome", MIGRATIONS, POSTGRESQL_MIGRATIONS)
    cur = conn.execute(
        "INSERT INTO welcome_requests (subscriber_id, requested_at, detail) VALUES (?, ?, ?)"
        " ON CONFLICT (subscriber_id) DO NOTHING",
        (subscriber_id, now(), detail),
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class WelcomeRun:
    """What one run of the welcome campaign did (None from `send_welcomes`: nothing owed)."""

    report: SendReport

    def summary(self) -> str:
        return f"Welcome mail: {self.report.summary()}"


def send_welcomes(config: Config, *, stop: threading.Event | None = None) -> WelcomeRun | None:
    """Send the welcome to everyone owed it and not yet mailed (deferred ones again); None when
    nobody is, or no welcome issue is configured. Raises what a send raises (the welcome issue
    fails check, doctor refuses the setup, the transport is unreachable): the welcomes stay
    owed for the next run."""
    if config.welcome is None:
        return None
    with _running:
        store = SubscriberStore.for_config(config)
        slug = slugify(config.welcome.stem)
        try:
            owed = _Owed(store, slug)
            if not owed.anything_to_send():
                store.close()
                return None
        except BaseException:
            store.close()
            raise
        # Always the transport configured now: a long-lived campaign must not stay on the
        # one its first run used (what a resumed issue campaign does).
        campaign = Campaign.prepare(
            config,
            config.welcome,
            list_name=WELCOME_LIST,
            transport=config.transport,
            switch_transport=True,
            include_new=True,
            store=owed,
        )
        try:
            check_before_send(config, campaign.transport_choice.url, real=True)
            return WelcomeRun(campaign.run(stop=stop))
        finally:
            campaign.close()


def welcome_subscriber(config: Config, subscriber: Subscriber, detail: str) -> tuple[bool, str]:
    """`subscribers add --welcome`: owe `subscriber` the welcome and send what is owed now;
    (False when it could not go out now, what happened for people). SubscriberError when no
    welcome issue is configured."""
    if config.welcome is None:
        raise SubscriberError(
            "no welcome issue: create issues/_welcome.yaml or name one with `welcome:` in "
            "newsletter.yaml"
        )
    with SubscriberStore.for_config(config) as store:
        new = request_welcome(store.conn, config, subscriber.id, detail)
    if not new:
        return True, f"{subscriber.email} was welcomed already (or is owed it): not sent again."
    if subscriber.status != ACTIVE:
        return True, f"{subscriber.email} is {subscriber.status}: welcomed once they confirm."
    try:
        run = send_welcomes(config)
    except NewsletterError as exc:
        return False, (
            f"Welcome mail not sent yet: {exc}\nIt stays owed: `newsletter send-due` (or a "
            "running `newsletter serve`) sends it."
        )
    if run is None:
        return True, "Welcome mail: nothing to send."
    return run.report.ok, run.summary()


class _Owed:
    """The subscriber list the welcome campaign is sent to: those owed the welcome of the
    issue `slug` (requests not yet bound to a welcome issue are bound to this one)."""

    def __init__(self, store: SubscriberStore, slug: str) -> None:
        self.store = store
        self.conn = store.conn
        self.slug = slug
        migrate(self.conn, "welcome", MIGRATIONS, POSTGRESQL_MIGRATIONS)
        self.conn.execute(
            "UPDATE welcome_requests SET issue_slug = ? WHERE issue_slug IS NULL", (slug,)
        )

    def anything_to_send(self) -> bool:
        ids = list(self.iter_member_ids(WELCOME_LIST))
        ledger = Ledger(self.conn)
        campaign = ledger.find(self.slug, WELCOME_LIST)
        if campaign is None:
            return bool(ids)
        return ledger.counts(campaign.id).remaining > 0 or ledger.count_new(campaign.id, ids) > 0

    def get_many(self, ids: Sequence[int]) -> Mapping[int, Subscriber]:
        return self.store.get_many(ids)

    def recipients_for(self, ids: Sequence[int]) -> Mapping[int, tuple[str, Recipient]]:
        return self.store.recipients_for(ids)

    def mark_bounced(self, subscriber_id: int, reply: str) -> bool:
        return self.store.mark_bounced(subscriber_id, reply)

    # The welcome goes to everyone owed it: never to a segment (`segment` is always None).
    def count(
        self, list_name: str | None = None, status: str | None = None, segment: object = None
    ) -> int:
        return sum(1 for _ in self.iter_member_ids(WELCOME_LIST, status or ACTIVE))

    def iter_member_ids(
        self, list_name: str, status: str = ACTIVE, segment: object = None
    ) -> Iterator[int]:
        rows = self.conn.execute(
            "SELECT subscriber_id FROM welcome_requests WHERE issue_slug = ?"
            " ORDER BY subscriber_id",
            (self.slug,),
        ).fetchall()
        ids = [int(r[0]) for r in rows]
        for start in range(0, len(ids), 500):
            people = self.store.get_many(ids[start : start + 500])
            yield from (
                i for i in ids[start : start + 500] if i in people and people[i].status == status
            )

    def close(self) -> None:
        self.store.close()
