"""SQLite, the embedded engine of the connection contract (newsletter.db): connections and
per-component schema migrations.

Each component (subscribers, campaigns, ...) owns its tables and an ordered list of migrations;
`migrate` applies the ones not yet recorded, each in its own transaction. WAL mode lets the web
endpoints read and write while a send or an import runs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from newsletter.private import create_private_file, make_private_dirs

Migration = str | Callable[[sqlite3.Connection], None]


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Open (creating if needed) the database with the settings every component relies on.

    A new database file (and any folder made for it) is private: 0600 (0700), whatever the
    umask; SQLite gives its -wal and -shm files the same mode (see newsletter.private)."""
    if str(path) != ":memory:":
        make_private_dirs(Path(path).parent)
        create_private_file(Path(path))
    conn = sqlite3.connect(
        str(path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component TEXT NOT NULL, version INTEGER NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
        " PRIMARY KEY (component, version))"
    )
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Apply the migrations of `component` not yet applied; return the schema version."""
    row = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?", (component,)
    ).fetchone()
    current = int(row[0])
    for version, step in enumerate(migrations, start=1):
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                (component, version),
            ).fetchone()
            if not done:
                if callable(step):
                    step(conn)
                else:
                    for statement in _statements(step):
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                    (component, version),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def rebuild_table(conn: sqlite3.Connection, table: str, edit: Callable[[str], str]) -> None:
    """Re-create `table` from its stored `CREATE TABLE` text changed by `edit` (SQLite's way to
    drop a constraint), keeping every row, index and the tables that reference it.

    Runs inside a migration's transaction, where `PRAGMA foreign_keys = OFF` has no effect: so
    the referencing tables are rebuilt too, children first (dropping the parent while they still
    pointed at it would cascade-delete their rows), and theirs in turn, each copied whole under a
    temporary name."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    parents = {
        name: {fk[2] for fk in conn.execute(f'PRAGMA foreign_key_list("{name}")')} for name in names
    }
    order = [table]  # the table, then whatever references it, directly or through another
    while more := [n for n in names if n not in order and parents[n] & set(order)]:
        order += more
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({','.join('?' * len(order))})",
            order,
        )
    ]
    refs = [(re.compile(rf'REFERENCES\s+"?{re.escape(n)}"?\s*\('), n) for n in order]
    for name in order:
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()[0]
        if name == table:
            sql = edit(sql)
        sql = re.sub(
            rf'^CREATE TABLE\s+"?{re.escape(name)}"?', f'CREATE TABLE "{name}_rebuilt"', sql
        )
        for ref, parent in refs:
            sql = ref.sub(f'REFERENCES "{parent}_rebuilt" (', sql)
        conn.execute(sql)
        conn.execute(f'INSERT INTO "{name}_rebuilt" SELECT * FROM "{name}"')
    for name in reversed(order):
        conn.execute(f'DROP TABLE "{name}"')
    for name in order:  # renaming the parent renames the children's REFERENCES with it
        conn.execute(f'ALTER TABLE "{name}_rebuilt" RENAME TO "{name}"')
    for sql in indexes:
        conn.execute(sql)
