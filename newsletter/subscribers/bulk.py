"""The SQLite side of an import: apply a chunk of validated rows with a handful of statements.

Called by `SubscriberStore.import_rows` inside the import's single transaction. Per chunk it
reads the existing subscribers and their lists with one IN (...) query each, then writes with
executemany: ~4 statements per 1,000 rows instead of ~4,000.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from newsletter.subscribers.model import ImportCounts, ImportRow, dump_fields, import_status

if TYPE_CHECKING:
    from newsletter.subscribers.store import SubscriberStore

_CHUNK = 900  # bound parameters per IN (...) query


class BulkImport:
    """State kept across the chunks of one import (list ids, next id, tombstone presence)."""

    def __init__(
        self,
        store: SubscriberStore,
        *,
        default_status: str,
        extra_lists: Sequence[str],
        source: str,
        stamp: str,
    ) -> None:
        self.store = store
        self.conn: sqlite3.Connection = store.conn
        self.default_status = default_status
        self.extra_lists = tuple(extra_lists)
        self.source = source
        self.stamp = stamp
        self.list_ids: dict[str, int] = {}
        self.any_tombstones = (
            self.conn.execute("SELECT 1 FROM subscriber_tombstones LIMIT 1").fetchone() is not None
        )
        self.next_id = _next_id(self.conn)

    def apply(self, rows: Sequence[ImportRow], counts: ImportCounts) -> None:
        for start in range(0, len(rows), _CHUNK):
            self._chunk(rows[start : start + _CHUNK], counts)

    def _chunk(self, rows: Sequence[ImportRow], counts: ImportCounts) -> None:
        existing = self._existing([r.key for r in rows])
        erased = self._erased([r.key for r in rows if r.key not in existing])
        inserts, updates, memberships, events = [], [], [], []
        for row in rows:
            wanted = self._lists(row)
            old = existing.get(row.key)
            if old is None:
                if row.key in erased:
                    counts.rejected.append(
                        (row.line, "this address was erased; it can only subscribe again itself")
                    )
                    continue
                sid = self.next_id
                self.next_id += 1
                inserts.append(
                    (
                        sid,
                        row.email,
                        row.key,
                        row.name,
                        row.status or self.default_status,
                        dump_fields(row.fields),
                        row.created_at or self.stamp,
                        self.stamp,
                    )
                )
                memberships.extend((lid, sid) for lid in wanted)
                events.append((sid, self.stamp, "imported", f"{self.source} line {row.line}"))
                counts.added += 1
                continue
            sid, name, status, fields_json, lists = old
            new_name = row.name or name
            new_status = import_status(status, row.status)
            fields = {**json.loads(fields_json), **row.fields} if row.fields else None
            new_fields = dump_fields(fields) if fields is not None else fields_json
            joined = [lid for lid in wanted if lid not in lists]
            same = new_name == name and new_status == status and new_fields == fields_json
            if same and not joined:
                counts.unchanged += 1
                continue
            updates.append((new_name, new_fields, new_status, self.stamp, sid))
            memberships.extend((lid, sid) for lid in joined)
            where = f"{self.source} line {row.line}"
            if new_status != status:
                events.append((sid, self.stamp, new_status, f"by import, {where}"))
            events.append((sid, self.stamp, "updated", f"by import, {where}"))
            counts.updated += 1
        self._write(inserts, updates, memberships, events)

    def _write(self, inserts: list, updates: list, memberships: list, events: list) -> None:
        conn = self.conn
        if inserts:
            conn.executemany(
                "INSERT INTO subscribers (id, email, email_key, name, status, fields,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
        if updates:
            conn.executemany(
                "UPDATE subscribers SET name = ?, fields = ?, status = ?, updated_at = ?"
                " WHERE id = ?",
                updates,
            )
        if memberships:
            conn.executemany(
                "INSERT OR IGNORE INTO subscriber_memberships (list_id, subscriber_id)"
                " VALUES (?, ?)",
                memberships,
            )
        if events:
            conn.executemany(
                "INSERT INTO subscriber_events (subscriber_id, at, kind, detail)"
                " VALUES (?, ?, ?, ?)",
                events,
            )

    def _lists(self, row: ImportRow) -> list[int]:
        names = set(row.lists) | set(self.extra_lists)
        missing = [n for n in names if n not in self.list_ids]
        if missing:
            self.list_ids.update(self.store.list_ids(missing))
        return [self.list_ids[n] for n in sorted(names)]

    def _existing(self, keys: list[str]) -> dict[str, tuple[int, str | None, str, str, set[int]]]:
        marks = ",".join("?" * len(keys))
        rows = self.conn.execute(
            "SELECT id, email_key, name, status, fields FROM subscribers"
            f" WHERE email_key IN ({marks})",
            keys,
        ).fetchall()
        if not rows:
            return {}
        ids = [r[0] for r in rows]
        lists: dict[int, set[int]] = {i: set() for i in ids}
        for sid, lid in self.conn.execute(
            "SELECT subscriber_id, list_id FROM subscriber_memberships"
            f" WHERE subscriber_id IN ({','.join('?' * len(ids))})",
            ids,
        ):
            lists[sid].add(lid)
        return {r[1]: (r[0], r[2], r[3], r[4], lists[r[0]]) for r in rows}

    def _erased(self, keys: list[str]) -> set[str]:
        if not self.any_tombstones or not keys:
            return set()
        by_hash = {self.store.email_hash(k): k for k in keys}
        marks = ",".join("?" * len(by_hash))
        found = self.conn.execute(
            f"SELECT email_hash FROM subscriber_tombstones WHERE email_hash IN ({marks})",
            list(by_hash),
        ).fetchall()
        return {by_hash[r[0]] for r in found}


def _next_id(conn: sqlite3.Connection) -> int:
    # Ids are assigned here, inside the write transaction, so memberships and events can be
    # inserted in bulk without a lookup per row. sqlite_sequence keeps AUTOINCREMENT's promise
    # (ids never reused) because explicit ids above it advance it.
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'").fetchone()
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers").fetchone()[0]
    return max(int(seq[0]) if seq else 0, int(top)) + 1
