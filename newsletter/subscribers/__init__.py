"""The subscriber store and everything that fills or reads it.

    from newsletter.subscribers import SubscriberStore, Subscriber

    store = SubscriberStore.open("newsletter.db")      # or SubscriberStore.for_config(config)
    store.add("ada@example.com", name="Ada", lists=["default"], fields={"city": "London"})
    for subscriber_id in store.iter_member_ids("default"):   # streamed, status "active"
        ...
    store.get_many(ids)                                  # batched lookups for sending
    store.unsubscribe(subscriber_id, how="one-click")    # idempotent

Modules: `model` (Subscriber and validation rules), `address` (email normalisation), `schema`
(tables), `store` (all SQL but bulk import), `bulk` (bulk import SQL), `csvfile`, `importer`,
`exporter`, `spool` (unsubscribes that arrive while a long import holds the database). The
store builds and sends no mail: the confirmation email is `newsletter.transactional`.
"""

from newsletter.subscribers.address import (
    InvalidEmail,
    email_key,
    normalize_email,
    normalize_lookup,
)
from newsletter.subscribers.exporter import export_csv
from newsletter.subscribers.importer import ImportReport, import_csv
from newsletter.subscribers.model import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    DEFAULT_LIST,
    PENDING,
    STATUSES,
    UNSUBSCRIBED,
    Event,
    Subscriber,
)
from newsletter.subscribers.store import SubscriberStore

__all__ = [
    "ACTIVE",
    "BOUNCED",
    "COMPLAINED",
    "DEFAULT_LIST",
    "PENDING",
    "STATUSES",
    "UNSUBSCRIBED",
    "Event",
    "ImportReport",
    "InvalidEmail",
    "Subscriber",
    "SubscriberStore",
    "email_key",
    "export_csv",
    "import_csv",
    "normalize_email",
    "normalize_lookup",
]
