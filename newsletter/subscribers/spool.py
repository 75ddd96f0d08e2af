"""Unsubscribes that could not wait: a durable spool beside the database.

An import is one transaction and holds SQLite's write lock until it ends (about 2 s per
100,000 rows here). A one-click unsubscribe arriving meanwhile waits for the busy timeout; if
the lock outlasts it, the request is appended (fsynced) to `<database>.unsubscribe-spool`
and answered 200 as usual: an unsubscribe is never lost and never an error for the mail
provider. The spool is applied by the next `SubscriberStore.open` (every CLI command and every
send opens one) and by the web app before each unsubscribe.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.subscribers.store import SubscriberStore

_lock = threading.Lock()
DRAIN_BUSY_MS = 200  # a drain never waits long for a lock: the spool keeps until next time


def spool_path(database: Path) -> Path:
    return database.with_name(database.name + ".unsubscribe-spool")


def spool_unsubscribe(database: Path, subscriber_id: int, how: str) -> None:
    """Record an unsubscribe durably, to be applied when the database is free."""
    line = json.dumps({"id": subscriber_id, "how": how}) + "\n"
    with _lock, open(spool_path(database), "a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())


def drain(store: SubscriberStore, database: Path) -> int:
    """Apply spooled unsubscribes (idempotent); the number applied. Never raises for a busy
    database: the spool then stays for the next attempt."""
    path = spool_path(database)
    if not path.exists():
        return 0
    with _lock:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return 0
        entries = []
        for text in lines:
            try:
                item = json.loads(text)
                entries.append((int(item["id"]), str(item["how"])))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash: nothing usable in it
        timeout = store.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        store.conn.execute(f"PRAGMA busy_timeout = {DRAIN_BUSY_MS}")
        try:
            with store.transaction():
                for subscriber_id, how in entries:
                    store.unsubscribe(subscriber_id, how)
        except sqlite3.OperationalError:
            return 0
        finally:
            store.conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        path.unlink()
        return len(entries)
