"""The store's one connection contract, over two engines: an SQLite file (the embedded default)
or a PostgreSQL database shared by several machines (`database: postgresql://...`).

Every component (subscribers, campaigns, ...) owns its tables, writes its queries once in the
SQL both engines accept (`?` placeholders, `INSERT ... ON CONFLICT`, `RETURNING`), and talks to
a `Connection`: `sqlite3.Connection` itself, or `newsletter.db.postgres.PostgresConnection`,
which has the same methods (execute, executemany, total_changes, in_transaction, close) and
rows that index by position and by column name like `sqlite3.Row`. Where the engines really
differ (JSON, claiming rows with SKIP LOCKED, integrity checks) a component asks
`is_postgresql(conn)`.

Transactions are explicit on both: `BEGIN IMMEDIATE` (one writer at a time, SQLite's rule) is,
on PostgreSQL, `BEGIN` plus a transaction-scoped advisory lock that every such transaction
takes, so read-then-write steps (a sign-up, a confirmation, an unsubscribe) land once however
many processes or machines run them; plain `BEGIN` takes no lock.

Errors: the DB-API exception tree of the `sqlite3` module is the contract's (`db.Error`,
`db.IntegrityError`, `db.OperationalError`); the PostgreSQL connection raises subclasses of
those classes, with psycopg's message.

Migrations: each component lists its steps per engine (`migrate(conn, component, sqlite_steps,
postgresql_steps)`), versioned separately in one `schema_migrations` table per database.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from newsletter.db.sqlite import Migration, rebuild_table
from newsletter.db.sqlite import connect as _connect_sqlite
from newsletter.db.sqlite import migrate as _migrate_sqlite
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.db.postgres import PostgresConnection

Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
OperationalError = sqlite3.OperationalError
Connection: TypeAlias = "sqlite3.Connection | PostgresConnection"

POSTGRES_SCHEMES = ("postgresql", "postgres")

__all__ = [
    "Connection",
    "Database",
    "Error",
    "IntegrityError",
    "Migration",
    "OperationalError",
    "PostgresDatabase",
    "connect",
    "describe",
    "exists",
    "has_table",
    "is_postgresql",
    "migrate",
    "parse_database",
    "rebuild_table",
]


@dataclass(frozen=True)
class PostgresDatabase:
    """A PostgreSQL database named by a libpq URL without a password
    (`postgresql://user@host[:port]/dbname[?sslmode=...]`).

    The password comes from NEWSLETTER_DB_PASSWORD, else from libpq's own PGPASSWORD or
    ~/.pgpass (libpq reads those itself): never from newsletter.yaml or a log line."""

    url: str

    def __str__(self) -> str:
        return self.url

    def conninfo(self) -> dict[str, Any]:
        """Keyword arguments for psycopg.connect: the URL, plus the password when set."""
        out: dict[str, Any] = {"conninfo": self.url}
        password = os.environ.get("NEWSLETTER_DB_PASSWORD")
        if password:
            out["password"] = password
        return out


Database: TypeAlias = "Path | PostgresDatabase"


def parse_database(value: str | Path, root: Path | None = None) -> Database:
    """`database:` / NEWSLETTER_DB / --db as given: a postgresql:// URL, or a file path
    (relative to `root`, the configuration's folder, when given).

    Raises ConfigError for a URL carrying a password or naming no host or database."""
    text = str(value).strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in POSTGRES_SCHEMES:
        path = Path(text).expanduser()
        return (root / path if root and not path.is_absolute() else path).resolve()
    parts = urlsplit(text)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    if any(k.lower() == "password" for k, _ in query):
        masked = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in query], safe="*"
        )
        raise ConfigError(
            f"database: {urlunsplit(parts._replace(query=masked))}: the URL carries a password; "
            "remove it and set NEWSLETTER_DB_PASSWORD (or PGPASSWORD, or ~/.pgpass) instead, "
            "so that it is never in newsletter.yaml, a shell history or a log"
        )
    if parts.password is not None:
        shown = urlunsplit(parts._replace(netloc=_netloc(parts, "***")))
        raise ConfigError(
            f"database: {shown}: the URL carries a password; remove it and set "
            "NEWSLETTER_DB_PASSWORD (or PGPASSWORD, or ~/.pgpass) instead, so that it is "
            "never in newsletter.yaml, a shell history or a log"
        )
    if not parts.path.strip("/"):
        raise ConfigError(
            f"database: {text}: no database name; expected postgresql://user@host[:port]/dbname"
        )
    return PostgresDatabase(urlunsplit(parts._replace(scheme="postgresql")))


def _netloc(parts: Any, password: str) -> str:
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}:{password}@{host}{port}"


def describe(database: Database) -> str:
    """How to name the database in a message (a path, or the URL, which has no password)."""
    return str(database)


def not_set_up(database: Database, where: str = "") -> str:
    """The message for a database that is there but holds no newsletter tables yet (an empty
    PostgreSQL database, an empty SQLite file); `where`: whence its name came, as "(from ...)"."""
    return (
        f"{describe(database)}{' ' + where if where else ''} holds no newsletter tables yet:"
        " nothing to read there; run a command that writes (such as `newsletter subscribers"
        " add`) or `newsletter db migrate` to fill it (nothing was written)"
    )


def exists(database: Database) -> bool:
    """Whether there is something to read: the SQLite file exists, or the PostgreSQL
    database has been set up by this tool (its schema_migrations table exists).

    Raises OperationalError when the PostgreSQL server cannot be reached."""
    if isinstance(database, PostgresDatabase):
        conn = connect(database)
        try:
            return has_table(conn, "schema_migrations")
        finally:
            conn.close()
    return database.is_file()


def connect(database: Database | str, *, timeout: float = 30.0) -> Connection:
    """A connection to the database, created if needed: an SQLite file (private, WAL) or a
    connection from the process's pool for that PostgreSQL database.

    `timeout`: seconds to wait for a lock (SQLite's busy timeout; PostgreSQL's lock_timeout).
    Raises OperationalError (with the engine's message) when it cannot be opened."""
    if isinstance(database, str):
        database = parse_database(database)
    if isinstance(database, PostgresDatabase):
        from newsletter.db.postgres import connect as connect_postgres

        return connect_postgres(database, timeout=timeout)
    return _connect_sqlite(database, timeout=timeout)


def is_postgresql(conn: object) -> bool:
    """Whether `conn` talks to PostgreSQL (for the few queries the engines spell apart)."""
    return getattr(conn, "engine", "sqlite") == "postgresql"


def migrate(
    conn: Connection,
    component: str,
    migrations: Sequence[Migration],
    postgresql: Sequence[str | Callable[[Any], None]] | None = None,
) -> int:
    """Apply `component`'s migrations not yet applied, each in its own transaction (taking
    the write lock, so two processes starting at once apply each step once); return the
    schema version. `migrations` are SQLite's steps, `postgresql` PostgreSQL's: two version
    sequences, each complete for its engine."""
    if is_postgresql(conn):
        if postgresql is None:
            raise ConfigError(f"the {component} tables have no PostgreSQL schema")
        return conn.migrate(component, postgresql)  # type: ignore[union-attr]
    return _migrate_sqlite(conn, component, migrations)  # type: ignore[arg-type]


def has_table(conn: Connection, name: str) -> bool:
    """Whether table `name` exists (read-only: for readers that must work on a database no
    component has set up yet, such as serve's first request)."""
    if is_postgresql(conn):
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
        row = conn.execute(sql + " AND table_name = ?", (name,)).fetchone()
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        row = conn.execute(sql, (name,)).fetchone()
    return row is not None
