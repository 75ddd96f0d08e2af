"""Tags on subscribers (table `subscriber_tags`): `subscribers tag` / `untag`, and reading them
for `show`, export and segments. Writes go through the store's transaction (see store.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.errors import SubscriberError
from newsletter.subscribers.model import check_tag, now

if TYPE_CHECKING:
    from newsletter.subscribers.store import SubscriberStore

_CHUNK = 500  # ids per IN (...) query


@dataclass(frozen=True)
class TagChange:
    """What `tag`/`untag` did: the tag as stored, the addresses changed and those already so."""

    tag: str
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


def tag_subscribers(store: SubscriberStore, emails: Iterable[str], tag: str) -> TagChange:
    """Give every address the tag (one transaction; an unknown address changes nothing)."""
    return _change(store, emails, tag, add=True)


def untag_subscribers(store: SubscriberStore, emails: Iterable[str], tag: str) -> TagChange:
    """Take the tag from every address (one transaction; an unknown address changes nothing)."""
    return _change(store, emails, tag, add=False)


def _change(store: SubscriberStore, emails: Iterable[str], tag: str, *, add: bool) -> TagChange:
    name = check_tag(tag)
    people = []
    for email in emails:
        found = store.get(email)
        if found is None:
            raise SubscriberError(f"no subscriber {email.strip()}; nothing was changed")
        people.append(found)
    changed, unchanged = [], []
    with store.transaction() as conn:
        stamp = now()
        for sub in {p.id: p for p in people}.values():
            if add:
                cur = conn.execute(
                    "INSERT INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (sub.id, name),
                )
            else:
                cur = conn.execute(
                    "DELETE FROM subscriber_tags WHERE subscriber_id = ? AND tag = ?",
                    (sub.id, name),
                )
            if cur.rowcount:
                conn.execute("UPDATE subscribers SET updated_at = ? WHERE id = ?", (stamp, sub.id))
                changed.append(sub.email)
            else:
                unchanged.append(sub.email)
    return TagChange(name, tuple(changed), tuple(unchanged))


def tags_of(store: SubscriberStore, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Each id -> its tags, sorted (ids without tags map to ())."""
    out: dict[int, list[str]] = {i: [] for i in ids}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        with store.reading() as conn:
            for sid, name in conn.execute(
                f"SELECT subscriber_id, tag FROM subscriber_tags WHERE subscriber_id IN ({marks})",
                chunk,
            ):
                out[int(sid)].append(str(name))
    return {i: tuple(sorted(names)) for i, names in out.items()}


def add_tags(store: SubscriberStore, pairs: Iterable[tuple[int, str]]) -> int:
    """Insert (subscriber id, stored tag) pairs inside the caller's transaction (an import);
    returns how many were new."""
    before = store.conn.total_changes
    store.conn.executemany(
        "INSERT INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING",
        pairs,
    )
    return store.conn.total_changes - before
