"""CSV export: the columns import reads back (email, name, status, lists, created_at, tags,
fields). `lists` and `tags` hold names separated by '|', sorted; neither may contain '|', so a
cell never needs more than CSV's own quoting."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TextIO

from newsletter.subscribers.csvfile import refuse_to_replace, write_csv, write_csv_atomic
from newsletter.subscribers.model import Subscriber, format_lists, format_tags
from newsletter.subscribers.store import SubscriberStore
from newsletter.subscribers.tags import tags_of

BASE_COLUMNS = ["email", "name", "status", "lists", "created_at", "tags"]
_PAGE = 1000


def export_csv(
    store: SubscriberStore,
    out: str | Path | TextIO,
    *,
    list_name: str | None = None,
    status: str | None = None,
) -> int:
    """Write subscribers (streamed) as CSV to a path (atomically) or an open text stream.

    Returns the number of subscribers written.
    """
    if isinstance(out, str | Path):
        refuse_to_replace(Path(out), store.conn, BASE_COLUMNS[0])
    columns: dict[str, list[str]] = {}  # one column per field, spellings compared ignoring case
    for name in store.field_names(list_name, status):
        columns.setdefault(name.lower(), []).append(name)
    spellings = list(columns.values())
    header = BASE_COLUMNS + [names[0] for names in spellings]
    rows = _rows(_with_tags(store, store.iter_subscribers(list_name, status)), spellings)
    if isinstance(out, str | Path):
        return write_csv_atomic(Path(out), header, rows)
    return write_csv(out, header, rows)


def _with_tags(
    store: SubscriberStore, subscribers: Iterator[Subscriber]
) -> Iterator[tuple[Subscriber, str]]:
    """Each subscriber with its `tags` cell, read a page at a time."""
    while page := list(islice(subscribers, _PAGE)):
        tags = tags_of(store, [sub.id for sub in page])
        for sub in page:
            yield sub, format_tags(tags[sub.id])


def _rows(
    subscribers: Iterator[tuple[Subscriber, str]], spellings: list[list[str]]
) -> Iterator[list[str]]:
    """Rows in header order. A database from before field names were merged by case may hold
    `City` and `city`: they share one column (import would refuse two), first value found."""
    field_names = [names[0] for names in spellings]
    if any(len(names) > 1 for names in spellings):
        yield from _merged_rows(subscribers, spellings)
        return
    for sub, tags in subscribers:
        yield [
            sub.email,
            sub.name or "",
            sub.status,
            format_lists(sub.lists),
            sub.created_at,
            tags,
            *(sub.fields.get(name, "") for name in field_names),
        ]


def _merged_rows(
    subscribers: Iterator[tuple[Subscriber, str]], spellings: list[list[str]]
) -> Iterator[list[str]]:
    for sub, tags in subscribers:
        yield [
            sub.email,
            sub.name or "",
            sub.status,
            format_lists(sub.lists),
            sub.created_at,
            tags,
            *(next((v for n in names if (v := sub.fields.get(n))), "") for names in spellings),
        ]
