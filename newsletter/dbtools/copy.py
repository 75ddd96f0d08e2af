"""`newsletter db migrate`: copy an SQLite database into PostgreSQL, then prove the copy.

Every table the components create (read from the SQLite catalogue, newsletter.dbtools.schema)
is copied in dependency order (a table after those it references), rows in primary-key order, in
batches, all tables in ONE PostgreSQL transaction: a failure in any table (a conflict, an error,
Ctrl-C) leaves every table as it was, never a half-moved newsletter (one table's schedules
pointing at another newsletter's subscribers). A row already in PostgreSQL under the same key is
left alone when it is equal, and stops the copy (naming table and key) when it differs: a rerun
copies only what is missing, never overwrites. Identity sequences are moved past the highest id
once every table is copied (setval is not undone by a rollback), so new rows do not collide.

Verification, per table: the row count and a SHA-256 over the rows in key order, each row as one
canonical text (its values by the column's type family), computed on each side from what that
side holds. SQLite is read in one transaction, a snapshot, so the copy and the sums agree even
while another process writes to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter import db
from newsletter.dbtools.components import ensure_schema
from newsletter.dbtools.schema import Table, dependency_order, read_schema
from newsletter.errors import NewsletterError

BATCH = 1000  # rows per read and per INSERT batch


class CopyConflict(NewsletterError):
    """PostgreSQL holds a row that differs from SQLite's under the same key."""


@dataclass(frozen=True)
class TableCopy:
    """One table's outcome: rows copied now, rows on each side, and whether the checksums
    (SHA-256 hex over the canonical rows, see the module docstring) agree."""

    table: str
    copied: int
    sqlite_rows: int
    postgresql_rows: int
    sqlite_sum: str
    postgresql_sum: str

    @property
    def ok(self) -> bool:
        return self.sqlite_rows == self.postgresql_rows and self.sqlite_sum == self.postgresql_sum


@dataclass(frozen=True)
class CopyReport:
    source: Path
    target: db.PostgresDatabase
    tables: tuple[TableCopy, ...]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def format(self) -> str:
        """A table: table, rows copied now, rows in SQLite / PostgreSQL, checksum OK or DIFFERS."""
        head = ("table", "copied", "sqlite", "postgresql", "checksum")
        rows = [
            (t.table, str(t.copied), str(t.sqlite_rows), str(t.postgresql_rows), _verdict(t))
            for t in self.tables
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]
        ]
        bad = [t.table for t in self.tables if not t.ok]
        lines.append(
            f"{len(self.tables)} tables verified: rows and checksums equal."
            if not bad
            else f"{len(bad)} of {len(self.tables)} tables differ: {', '.join(bad)}"
        )
        return "\n".join(lines)


def _verdict(table: TableCopy) -> str:
    return "OK" if table.ok else "DIFFERS"


def copy_to_postgresql(source: Path, target: db.PostgresDatabase) -> CopyReport:
    """Copy the SQLite database `source` into `target` and verify it (see the module docstring).

    Both schemas are brought up to date first (newsletter.dbtools.components.ensure_schema).
    Raises NewsletterError when `source` is no SQLite database or `target` not PostgreSQL,
    CopyConflict for a row that differs under the same key, db.Error from either engine (the
    whole copy is rolled back: PostgreSQL's tables hold what they held before)."""
    if not isinstance(target, db.PostgresDatabase):
        raise NewsletterError(
            f"{target}: not a postgresql:// URL; db migrate copies into PostgreSQL"
        )
    _refuse_non_sqlite(source)
    lite = db.connect(source)
    pg = db.connect(target)
    try:
        ensure_schema(lite)
        before = set(read_schema(pg))
        ensure_schema(pg)
        tables = read_schema(lite)
        theirs = read_schema(pg)
        _refuse_schema_mismatch(tables, theirs, target)
        # Rows a migration wrote into a table it created just now (a per-database salt) are
        # not data: SQLite's rows replace them.
        seeded = {name for name in tables if name not in before}
        lite.execute("BEGIN")  # one snapshot for the copy and the checksums
        try:
            results = _copy_all(lite, pg, tables, theirs, seeded)
        finally:
            lite.execute("ROLLBACK")
    finally:
        pg.close()
        lite.close()
    return CopyReport(source, target, tuple(results))


def _copy_all(
    lite: db.Connection,
    pg: db.Connection,
    tables: dict[str, Table],
    theirs: dict[str, Table],
    seeded: set[str],
) -> list[TableCopy]:
    """Copy and verify every table in one PostgreSQL transaction, committed only when every
    table was copied (a verification that differs is reported, the copy kept)."""
    order = dependency_order(tables)
    pg.execute("BEGIN")
    try:
        copied = {
            name: _copy_table(lite, pg, tables[name], theirs[name], seeded=name in seeded)
            for name in order
        }
        for name in order:
            _reset_identity(pg, theirs[name])
        results = [_verify(lite, pg, tables[n], theirs[n], copied[n]) for n in order]
        pg.execute("COMMIT")
    except BaseException:
        pg.rollback()
        raise
    return results


def _refuse_non_sqlite(source: Path) -> None:
    if not source.is_file():
        raise NewsletterError(f"{source}: no such SQLite database")
    with source.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise NewsletterError(f"{source}: not an SQLite database")


def _refuse_schema_mismatch(
    ours: dict[str, Table], theirs: dict[str, Table], target: db.PostgresDatabase
) -> None:
    for name, table in ours.items():
        other = theirs.get(name)
        missing = [c for c in table.columns if other is None or c not in other.columns]
        if missing:
            what = "table" if other is None else f"column(s) {', '.join(missing)} of"
            raise NewsletterError(
                f"{target} has no {what} {name}: its schema does not match this version's; "
                "nothing of that table was copied"
            )


def _key(table: Table) -> tuple[str, ...]:
    return table.primary_key or tuple(table.columns)


def _order_by(table: Table, postgresql: bool) -> str:
    # Text keys in byte order on both sides: SQLite's BINARY collation, PostgreSQL's "C".
    if not postgresql:
        return ", ".join(f'"{c}"' for c in _key(table))
    return ", ".join(
        f'"{c}"' + (' COLLATE "C"' if table.columns[c] == "text" else "") + " NULLS FIRST"
        for c in _key(table)
    )


def _select(table: Table, postgresql: bool) -> str:
    cols = ", ".join(f'"{c}"' for c in table.columns)
    return f'SELECT {cols} FROM "{table.name}" ORDER BY {_order_by(table, postgresql)}'


def _rows(conn: db.Connection, table: Table, postgresql: bool) -> Iterator[Sequence[Any]]:
    cur = conn.execute(_select(table, postgresql))
    while batch := cur.fetchmany(BATCH):
        yield from batch


def _canonical(families: Sequence[str], row: Sequence[Any]) -> tuple[Any, ...]:
    """A row's values as one engine-neutral tuple: by the column's type family, so SQLite's
    1 in a REAL column equals PostgreSQL's 1.0, and a memoryview equals bytes."""
    out: list[Any] = []
    for family, value in zip(families, row, strict=True):
        if value is None:
            out.append(None)
        elif family == "integer" and isinstance(value, int | float) and value == int(value):
            out.append(int(value))
        elif family == "real" and isinstance(value, int | float):
            out.append(float(value))
        elif family == "blob" and isinstance(value, bytes | bytearray | memoryview):
            out.append(bytes(value))
        else:
            out.append(value)
    return tuple(out)


def _text(row: tuple[Any, ...]) -> bytes:
    parts = []
    for value in row:
        if value is None:
            parts.append("n")
        elif isinstance(value, bytes):
            parts.append("b" + value.hex())
        elif isinstance(value, float):
            parts.append("r" + repr(value))
        elif isinstance(value, int):
            parts.append("i" + str(value))
        else:
            parts.append("t" + str(value).replace("\\", "\\\\").replace("\t", "\\t"))
    return ("\t".join(parts) + "\n").encode()


def _copy_table(
    lite: db.Connection,
    pg: db.Connection,
    table: Table,
    target: Table,
    *,
    seeded: bool,
) -> int:
    families = [target.columns[c] for c in table.columns]
    key = _key(table)
    at = [list(table.columns).index(c) for c in key]
    cols = ", ".join(f'"{c}"' for c in table.columns)
    insert = (
        f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join("?" * len(table.columns))})'
        f" ON CONFLICT DO NOTHING"
    )
    copied = 0
    seeds = _keys(pg, table, families, at) if seeded else set()
    batch: list[tuple[Any, ...]] = []
    for row in _rows(lite, table, postgresql=False):
        batch.append(_canonical(families, row))
        if len(batch) >= BATCH:
            copied += _copy_batch(pg, table, families, batch, at, insert, seeds)
            batch = []
    copied += _copy_batch(pg, table, families, batch, at, insert, seeds)
    return copied


def _copy_batch(
    pg: db.Connection,
    table: Table,
    families: list[str],
    batch: list[tuple[Any, ...]],
    at: list[int],
    insert: str,
    seeds: set[tuple[Any, ...]],
) -> int:
    """Insert the rows of `batch` PostgreSQL lacks (or holds as a migration's seed, replaced);
    CopyConflict for one it holds otherwise."""
    if not batch:
        return 0
    names = [list(table.columns)[i] for i in at]
    match = ", ".join(f'"{c}"' for c in names)
    one = "(" + ", ".join("?" * len(at)) + ")"
    cols = ", ".join(f'"{c}"' for c in table.columns)
    there: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for start in range(0, len(batch), 500):
        part = batch[start : start + 500]
        keys = [tuple(row[i] for i in at) for row in part]
        sql = (
            f'SELECT {cols} FROM "{table.name}" WHERE ({match}) IN ({", ".join([one] * len(keys))})'
        )
        for found in pg.execute(sql, [v for k in keys for v in k]).fetchall():
            row = _canonical(families, found)
            there[tuple(row[i] for i in at)] = row
    missing = []
    for row in batch:
        key = tuple(row[i] for i in at)
        held = there.get(key)
        if held is None:
            missing.append(row)
        elif held != row and key in seeds:
            where = " AND ".join(f'"{c}" = ?' for c in names)
            pg.execute(f'DELETE FROM "{table.name}" WHERE {where}', key)
            missing.append(row)
        elif held != row:
            shown = ", ".join(f"{c}={v!r}" for c, v in zip(names, key, strict=True))
            raise CopyConflict(
                f"table {table.name}, key {shown}: PostgreSQL already holds "
                "a different row; nothing was copied, no table changed (remove that row there, "
                "or copy into an empty database)"
            )
    pg.executemany(insert, missing)
    return len(missing)


def _keys(
    pg: db.Connection, table: Table, families: list[str], at: list[int]
) -> set[tuple[Any, ...]]:
    """The keys of the rows `table` holds now (its migration's seeds, when just created)."""
    cols = ", ".join(f'"{c}"' for c in table.columns)
    rows = pg.execute(f'SELECT {cols} FROM "{table.name}"').fetchall()
    return {tuple(_canonical(families, r)[i] for i in at) for r in rows}


def _reset_identity(pg: db.Connection, table: Table) -> None:
    """Move the table's identity sequence past the highest id copied (an empty table: to 1)."""
    if table.identity is None:
        return
    col = table.identity
    pg.execute(
        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{col}'),"
        f' COALESCE((SELECT MAX("{col}") FROM "{table.name}"), 0) + 1, false)'
    )


def _verify(
    lite: db.Connection, pg: db.Connection, table: Table, target: Table, copied: int
) -> TableCopy:
    families = [target.columns[c] for c in table.columns]
    sums = []
    for conn, postgresql in ((lite, False), (pg, True)):
        digest, count = hashlib.sha256(), 0
        for row in _rows(conn, table, postgresql):
            digest.update(_text(_canonical(families, row)))
            count += 1
        sums.append((count, digest.hexdigest()))
    (lite_rows, lite_sum), (pg_rows, pg_sum) = sums
    return TableCopy(table.name, copied, lite_rows, pg_rows, lite_sum, pg_sum)
