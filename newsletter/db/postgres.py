"""The PostgreSQL side of the connection contract (newsletter.db): psycopg 3 over a pool.

`PostgresConnection` offers what the components use of `sqlite3.Connection`: execute and
executemany with `?` (or `?N`) placeholders, rows indexed by position or column name,
`total_changes`, `in_transaction`, explicit BEGIN/COMMIT/ROLLBACK, close. The translation is
lexical and cached per statement text: placeholders become psycopg's `%s` (literal `%` doubled),
and `BEGIN IMMEDIATE` becomes `BEGIN` plus `pg_advisory_xact_lock(WRITE_LOCK)`, so that writing
transactions run one at a time across every process, as SQLite runs them.

Each process keeps one psycopg_pool.ConnectionPool per database; `close()` returns the
connection to it. Values: Python booleans are sent as integers (the schema stores 0/1, as in
SQLite) and NUMERIC results (SUM, AVG) come back as int or float, never Decimal.
"""

from __future__ import annotations

import atexit
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from newsletter.db import PostgresDatabase

# Taken by every `BEGIN IMMEDIATE` transaction: one writer at a time, as in SQLite. The number
# is arbitrary but fixed ("nl" in ASCII, then 1).
WRITE_LOCK = 0x6E6C0001
POOL_SIZE = 20  # connections per process and database; `serve` holds one per request

_pools: dict[tuple[str, str | None], ConnectionPool] = {}
_pools_lock = threading.Lock()


class PostgresError(sqlite3.Error):
    """A PostgreSQL error raised through the contract (see newsletter.db)."""


class PostgresIntegrityError(sqlite3.IntegrityError):
    """A constraint (unique, foreign key, check, not null) refused a write."""


class PostgresOperationalError(sqlite3.OperationalError):
    """The server could not be reached, a lock was not granted in time, or it gave up."""


class _BoolAsInt(Dumper):
    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    def load(self, data: Any) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class Row(tuple):  # type: ignore[type-arg]
    """A result row like sqlite3.Row: `row[0]`, `row["email"]`, `row.keys()`."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}
    _names: ClassVar[tuple[str, ...]] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                key = self._index[key.lower()]
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    index = {name.lower(): i for i, name in reversed(list(enumerate(names)))}
    index.update({name: i for i, name in reversed(list(enumerate(names)))})
    return type("Row", (Row,), {"__slots__": (), "_index": index, "_names": names})


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    if cursor.description is None:
        return tuple
    return _row_class(tuple(column.name for column in cursor.description))


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """`sql` in the contract's spelling -> (psycopg's spelling, parameter order).

    The order is None when the parameters are taken as given, else the index of the given
    parameter each `%s` takes (`?2 ... ?1 ... ?2` -> (1, 0, 1)). Text inside quotes is left
    alone but for `%`, which psycopg reads everywhere once parameters are passed."""
    out: list[str] = []
    order: list[int] = []
    numbered = False
    quote = ""
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == quote:
                quote = ""
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?":
            j = i + 1
            while j < len(sql) and sql[j].isdigit():
                j += 1
            if j > i + 1:
                numbered = True
                order.append(int(sql[i + 1 : j]) - 1)
                i = j
                out.append("%s")
                continue
            order.append(len(order))
            out.append("%s")
        else:
            out.append(ch)
        i += 1
    return "".join(out), (tuple(order) if numbered else None)


def _wrap(exc: psycopg.Error) -> sqlite3.Error:
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return PostgresIntegrityError(message)
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.LockNotAvailable):
        return PostgresOperationalError(message)
    return PostgresError(message)


class PostgresConnection:
    """One pooled psycopg connection behind the sqlite3-shaped contract (newsletter.db)."""

    engine = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], pool: ConnectionPool | None) -> None:
        self._conn = conn
        self._pool = pool
        self._lock = threading.RLock()
        self.total_changes = 0

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection, for PostgreSQL-only statements (COPY, SKIP LOCKED)."""
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | None = ()) -> psycopg.Cursor[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                if sql.strip().upper() == "BEGIN IMMEDIATE":
                    cur.execute("BEGIN")
                    try:
                        cur.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
                    except psycopg.Error:
                        # Not granted (lock_timeout): no transaction is left open, as when
                        # SQLite's BEGIN IMMEDIATE finds the database busy.
                        cur.execute("ROLLBACK")
                        raise
                    return cur
                if not params and "?" not in sql:
                    cur.execute(sql.encode())  # no placeholders: `%` is only a character
                else:
                    text, order = translate(sql)
                    values = list(params or ())
                    if order is not None:
                        values = [values[i] for i in order]
                    cur.execute(text.encode(), values)
            except psycopg.Error as exc:
                raise _wrap(exc) from exc
            self._count(cur)
            return cur

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        text, order = translate(sql)
        rows = [list(p) if order is None else [p[i] for i in order] for p in seq]
        with self._lock:
            cur = self._conn.cursor()
            if not rows:
                return cur
            try:
                cur.executemany(text.encode(), rows)
            except psycopg.Error as exc:
                raise _wrap(exc) from exc
            self._count(cur)
            return cur

    def _count(self, cur: psycopg.Cursor[Any]) -> None:
        status = cur.statusmessage or ""
        if status.startswith(("INSERT", "UPDATE", "DELETE")) and cur.rowcount > 0:
            self.total_changes += cur.rowcount

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def close(self) -> None:
        """Give the connection back to the pool (what was not committed is rolled back)."""
        with self._lock:
            if self._conn is None:  # type: ignore[comparison-overlap]
                return
            conn, self._conn = self._conn, None  # type: ignore[assignment]
            try:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            if self._pool is not None:
                self._pool.putconn(conn)
            else:
                conn.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_conn", None) is not None:
                self.close()
        except Exception:
            pass

    def migrate(self, component: str, steps: Sequence[str | Callable[[Any], None]]) -> int:
        """Apply `component`'s PostgreSQL steps not yet applied (see newsletter.db.migrate)."""
        # Up to date (every open after the first): no write lock, so opening a store never
        # waits behind a long writer (an import), as on SQLite.
        if self.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]:
            done = self.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?",
                (component,),
            ).fetchone()
            if int(done[0]) >= len(steps):
                return int(done[0])
        self.execute("BEGIN IMMEDIATE")
        try:
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL,"
                " applied_at TEXT NOT NULL DEFAULT"
                " (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')),"
                " PRIMARY KEY (component, version))"
            )
            row = self.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?",
                (component,),
            ).fetchone()
            current = int(row[0])
            for version, step in enumerate(steps, start=1):
                if version <= current:
                    continue
                if callable(step):
                    step(self)
                else:
                    self.execute(step)
                self.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                    (component, version),
                )
                current = version
            self.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        return current


def _configure(timeout: float) -> Callable[[psycopg.Connection[Any]], None]:
    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = True
        conn.row_factory = _row_factory
        conn.adapters.register_dumper(bool, _BoolAsInt)
        conn.adapters.register_loader("numeric", _NumericAsNumber)
        conn.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        conn.execute("SET TIME ZONE 'UTC'")

    return configure


def _pool(database: PostgresDatabase, timeout: float) -> ConnectionPool:
    info = database.conninfo()
    key = (database.url, info.get("password"))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            # Connect once directly first: a wrong host, user or password is reported at
            # once with libpq's own words, where the pool would retry quietly until its timeout.
            try:
                psycopg.connect(**info, connect_timeout=10).close()
            except psycopg.Error as exc:
                raise PostgresOperationalError(
                    f"cannot connect to {database.url}: {str(exc).strip()}"
                ) from exc
            kwargs = {k: v for k, v in info.items() if k != "conninfo"}
            pool = ConnectionPool(
                info["conninfo"],
                kwargs=kwargs,
                min_size=1,
                max_size=POOL_SIZE,
                open=True,
                configure=_configure(timeout),
                timeout=max(timeout, 5.0),
                name=f"newsletter:{database.url}",
            )
            _pools[key] = pool
        return pool


def connect(database: PostgresDatabase, *, timeout: float = 30.0) -> PostgresConnection:
    """A connection from this process's pool for `database` (see the module docstring).

    Raises PostgresOperationalError (an sqlite3.OperationalError) when the server cannot be
    reached or refuses the login, or no connection is free within the timeout."""
    pool = _pool(database, timeout)
    wait = max(timeout, 2.0)  # for a free connection (a lock's timeout may be 0: no wait)
    try:
        conn = pool.getconn(timeout=wait)
    except PoolTimeout as exc:
        raise PostgresOperationalError(
            f"database busy: no free connection to {database.url} within {wait:g} s"
        ) from exc
    return PostgresConnection(conn, pool)


def close_pool(database: PostgresDatabase) -> None:
    """Close this process's pools for `database` and their idle connections (a caller done
    with that database for good, such as a test's throwaway one); a later `connect` opens anew."""
    with _pools_lock:
        for key in [k for k in _pools if k[0] == database.url]:
            _pools.pop(key).close(timeout=1.0)


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close(timeout=1.0)
        _pools.clear()
