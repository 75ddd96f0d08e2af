"""What a database holds, read from the engine's own catalogue (SQLite's PRAGMAs,
PostgreSQL's pg_catalog): tables, columns with their type family, primary keys, named indexes,
unique constraints and foreign keys, in one engine-neutral shape.

`db migrate` discovers the tables to copy from it (never a hand list that goes stale), `db check`
the references to follow, and the schema-parity test compares both engines with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from newsletter import db
from newsletter.dbtools.components import POSTGRESQL_ONLY

# Tables of the engines themselves and of the migration bookkeeping (whose versions count each
# engine's own steps, so they differ by design).
INTERNAL = frozenset({"schema_migrations"})


@dataclass(frozen=True)
class ForeignKey:
    """`columns` of the table reference `parent` (`parent_columns`, its primary key if empty)."""

    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """One table. `columns`: name -> type family ("integer", "real", "text", "blob", or the
    engine's own type name for anything else), in declaration order; `primary_key` in key order
    (empty: none); `indexes`: names of the indexes created by name (CREATE [UNIQUE] INDEX);
    `uniques`: the column tuples of every unique constraint or unique index but the primary
    key ("<expr>" for an expression)."""

    name: str
    columns: dict[str, str]
    primary_key: tuple[str, ...]
    indexes: frozenset[str]
    uniques: frozenset[tuple[str, ...]]
    foreign_keys: tuple[ForeignKey, ...]
    identity: str | None = None  # the column PostgreSQL numbers itself (an IDENTITY column)


def read_schema(conn: db.Connection) -> dict[str, Table]:
    """Every table of the database but `INTERNAL` and the engine's own, by name; on PostgreSQL
    without what only PostgreSQL has (components.POSTGRESQL_ONLY: tables, indexes, columns)."""
    if not db.is_postgresql(conn):
        tables = _sqlite(conn)
        return {name: t for name, t in sorted(tables.items()) if name not in INTERNAL}
    out = {}
    for name, t in sorted(_postgresql(conn).items()):
        if name in INTERNAL or name in POSTGRESQL_ONLY:
            continue
        columns = {c: f for c, f in t.columns.items() if f"{name}.{c}" not in POSTGRESQL_ONLY}
        out[name] = replace(t, columns=columns, indexes=t.indexes - POSTGRESQL_ONLY)
    return out


def dependency_order(tables: dict[str, Table]) -> list[str]:
    """Table names, each after the tables it references (parents first; a cycle keeps the
    remaining tables in name order)."""
    done: list[str] = []
    left = sorted(tables)
    while left:
        ready = [
            n
            for n in left
            if all(fk.parent not in left or fk.parent == n for fk in tables[n].foreign_keys)
        ]
        nxt = ready or left[:1]
        done += nxt
        left = [n for n in left if n not in nxt]
    return done


def sqlite_family(declared: str) -> str:
    """SQLite's type affinity of a declared column type (sqlite.org/datatype3.html, 3.1)."""
    upper = declared.upper()
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not upper or "BLOB" in upper:
        return "blob"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


_PG_FAMILIES = {
    "bigint": "integer",
    "integer": "integer",
    "smallint": "integer",
    "boolean": "integer",
    "double precision": "real",
    "real": "real",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "bytea": "blob",
}


def _sqlite(conn: db.Connection) -> dict[str, Table]:
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    out: dict[str, Table] = {}
    for name in names:
        info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        columns = {str(r[1]): sqlite_family(str(r[2] or "")) for r in info}
        pk = tuple(str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        indexes: set[str] = set()
        uniques: set[tuple[str, ...]] = set()
        for _seq, index, unique, origin, _partial in conn.execute(
            f'PRAGMA index_list("{name}")'
        ).fetchall():
            if origin == "c":
                indexes.add(str(index))
            if unique and origin != "pk":
                cols = conn.execute(f'PRAGMA index_xinfo("{index}")').fetchall()
                uniques.add(
                    tuple(str(c[2]) if c[2] is not None else "<expr>" for c in cols if c[5])
                )
        fks: dict[int, list[tuple[str, str, str | None]]] = {}
        for row in conn.execute(f'PRAGMA foreign_key_list("{name}")').fetchall():
            fks.setdefault(int(row[0]), []).append((str(row[3]), str(row[2]), row[4]))
        keys = tuple(
            ForeignKey(
                tuple(c for c, _, _ in parts),
                parts[0][1],
                tuple(str(p) for _, _, p in parts if p is not None),
            )
            for _, parts in sorted(fks.items())
        )
        out[name] = Table(name, columns, pk, frozenset(indexes), frozenset(uniques), keys)
    return out


_PG_COLUMNS = """
SELECT table_name, column_name, data_type, is_identity FROM information_schema.columns
WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position
"""
_PG_INDEXES = """
SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary,
    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid AND c.conrelid = t.oid
            AND c.contype IN ('p', 'u')),
    ARRAY(SELECT COALESCE(a.attname::text, '<expr>')
          FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
          LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
          ORDER BY k.n)
FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace s ON s.oid = t.relnamespace WHERE s.nspname = current_schema()
"""
_PG_FOREIGN_KEYS = """
SELECT t.relname, p.relname,
    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n),
    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class p ON p.oid = c.confrelid
JOIN pg_namespace s ON s.oid = t.relnamespace
WHERE c.contype = 'f' AND s.nspname = current_schema() ORDER BY t.relname, c.conname
"""


def _postgresql(conn: db.Connection) -> dict[str, Table]:
    columns: dict[str, dict[str, str]] = {}
    identity: dict[str, str] = {}
    for table, column, kind, is_identity in conn.execute(_PG_COLUMNS).fetchall():
        columns.setdefault(table, {})[column] = _PG_FAMILIES.get(kind, kind)
        if is_identity == "YES":
            identity[table] = column
    pks: dict[str, tuple[str, ...]] = {}
    indexes: dict[str, set[str]] = {}
    uniques: dict[str, set[tuple[str, ...]]] = {}
    for table, index, unique, primary, constraint, cols in conn.execute(_PG_INDEXES).fetchall():
        if primary:
            pks[table] = tuple(cols)
            continue
        if not constraint:
            indexes.setdefault(table, set()).add(index)
        if unique:
            uniques.setdefault(table, set()).add(tuple(cols))
    fks: dict[str, list[ForeignKey]] = {}
    for table, parent, cols, parent_cols in conn.execute(_PG_FOREIGN_KEYS).fetchall():
        fks.setdefault(table, []).append(ForeignKey(tuple(cols), parent, tuple(parent_cols)))
    return {
        name: Table(
            name,
            cols,
            pks.get(name, ()),
            frozenset(indexes.get(name, ())),
            frozenset(uniques.get(name, ())),
            tuple(fks.get(name, ())),
            identity.get(name),
        )
        for name, cols in columns.items()
    }
