"""CSV export: the columns import reads back (email, name, status, lists, created_at, fields)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from newsletter.subscribers.csvfile import refuse_to_replace, write_csv, write_csv_atomic
from newsletter.subscribers.model import Subscriber, format_lists
from newsletter.subscribers.store import SubscriberStore

BASE_COLUMNS = ["email", "name", "status", "lists", "created_at"]


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
    field_names = store.field_names(list_name, status)
    header = BASE_COLUMNS + field_names
    rows = _rows(store.iter_subscribers(list_name, status), field_names)
    if isinstance(out, str | Path):
        return write_csv_atomic(Path(out), header, rows)
    return write_csv(out, header, rows)


def _rows(subscribers: Iterator[Subscriber], field_names: list[str]) -> Iterator[list[str]]:
    for sub in subscribers:
        yield [
            sub.email,
            sub.name or "",
            sub.status,
            format_lists(sub.lists),
            sub.created_at,
            *(sub.fields.get(name, "") for name in field_names),
        ]
