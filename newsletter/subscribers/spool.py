"""Unsubscribes that could not wait: a durable spool, applied once the database is free.

An import is one transaction and holds SQLite's write lock until it ends (about 2 s per
100,000 rows here). A one-click unsubscribe arriving meanwhile waits for the busy timeout; if
the lock outlasts it, the request is appended (fsynced) to `<database>.unsubscribe-spool`
and answered 200 as usual: an unsubscribe is never lost and never an error for the mail
provider. The spool is applied by the next `SubscriberStore.open` (every CLI command and every
send opens one) and by the web app before each unsubscribe.

On PostgreSQL (several `serve` instances, several machines) a file on one of them would be
applied only by that one: the spool is the `unsubscribe_spool` table instead, in the database
they share. Appending to it is a plain INSERT, which does not take the write lock that a long
import holds (newsletter.db), so it never waits; whichever process opens a store next, on any
machine, applies and deletes the rows in one write transaction.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import db
from newsletter.errors import SubscriberError
from newsletter.private import open_private

if TYPE_CHECKING:
    from newsletter.subscribers.store import SubscriberStore

_lock = threading.Lock()
DRAIN_BUSY_MS = 200  # a drain never waits long for a lock: the spool keeps until next time


def spool_path(database: Path) -> Path:
    return database.with_name(database.name + ".unsubscribe-spool")


def spool_unsubscribe(
    database: db.Database, subscriber_id: int, how: str, store: SubscriberStore | None = None
) -> None:
    """Record an unsubscribe durably, to be applied when the database is free. On PostgreSQL
    through `store`'s connection when given (outside a transaction), else a pooled one."""
    if isinstance(database, db.PostgresDatabase):
        conn = store.conn if store is not None else db.connect(database)
        try:  # autocommit: committed (durable) when execute returns, no write lock taken
            conn.execute(
                "INSERT INTO unsubscribe_spool (subscriber_id, how) VALUES (?, ?)",
                (subscriber_id, how),
            )
        finally:
            if store is None:
                conn.close()
        return
    line = json.dumps({"id": subscriber_id, "how": how}) + "\n"
    path = spool_path(database)
    with _lock:
        while True:
            # Private like the database beside it (newsletter.private).
            fd = open_private(path, os.O_WRONLY | os.O_APPEND)
            out = os.fdopen(fd, "a", encoding="utf-8")
            try:
                fcntl.flock(out, fcntl.LOCK_EX)
                # A drain may have renamed the file between open and lock: write to the new one.
                if path.exists() and os.path.samestat(os.fstat(out.fileno()), path.stat()):
                    out.write(line)
                    out.flush()
                    os.fsync(out.fileno())
                    return
            finally:
                out.close()


def drain(store: SubscriberStore, database: db.Database) -> int:
    """Apply spooled unsubscribes (idempotent); the number applied. Never raises for a busy
    database: the spool then stays for the next attempt.

    SQLite: the spool file stays locked (flock) from reading until it is removed after the
    commit, so a writer never appends to a file being dropped and a crash never loses an entry.
    PostgreSQL: the rows are deleted and applied in one write transaction.
    """
    if isinstance(database, db.PostgresDatabase):
        return _drain_table(store)
    path = spool_path(database)
    if not path.exists():
        return 0
    # Never wait for a locked database while holding the spool's locks: every unsubscribe being
    # spooled meanwhile would wait behind us. Nor queue behind another thread's drain.
    if _write_locked(store) or not _lock.acquire(blocking=False):
        return 0
    try:
        try:
            # Undecodable bytes (a damaged file) become U+FFFD: that line is skipped, the
            # others are still applied.
            spool = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0
        except OSError as exc:  # e.g. a folder in its place: unsubscribes cannot be kept
            raise SubscriberError(
                f"{path}: cannot read the unsubscribe spool: {exc.strerror or exc}; it must be "
                "a file (or absent)"
            ) from None
        try:
            fcntl.flock(spool, fcntl.LOCK_EX)
            if not path.exists() or not os.path.samestat(os.fstat(spool.fileno()), path.stat()):
                return 0  # another process drained it meanwhile
            entries = _parse(spool.read())
            if not _apply(store, entries):
                return 0
            path.unlink()
            return len(entries)
        finally:
            spool.close()
    finally:
        _lock.release()


def _drain_table(store: SubscriberStore) -> int:
    conn = store.conn
    if (
        conn.in_transaction
        or not conn.execute("SELECT EXISTS (SELECT 1 FROM unsubscribe_spool)").fetchone()[0]
    ):
        return 0
    try:  # never wait for the lock (a long import): the rows keep until next time
        with store.waiting_at_most(0.001), store.transaction():
            entries = conn.execute(
                "DELETE FROM unsubscribe_spool RETURNING subscriber_id, how"
            ).fetchall()
            for subscriber_id, how in entries:
                store.unsubscribe(int(subscriber_id), str(how))
    except db.OperationalError:
        return 0  # busy: the rows stay for the next attempt
    return len(entries)


def _write_locked(store: SubscriberStore) -> bool:
    """True if another connection holds the database's write lock right now (no waiting)."""
    conn = store.conn
    if conn.in_transaction:
        return False  # our own transaction: _apply joins it
    timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return True
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return False


def _apply(store: SubscriberStore, entries: list[tuple[int, str]]) -> bool:
    try:
        with store.waiting_at_most(DRAIN_BUSY_MS / 1000), store.transaction():
            for subscriber_id, how in entries:
                store.unsubscribe(subscriber_id, how)
    except sqlite3.OperationalError:
        return False
    return True


def _parse(text: str) -> list[tuple[int, str]]:
    entries = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
            subscriber_id = int(item["id"])
            if not 0 < subscriber_id < 2**63:  # what SQLite can hold
                continue
            entries.append((subscriber_id, str(item["how"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash: nothing usable in it
    return entries
