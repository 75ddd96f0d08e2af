"""`newsletter db check`: what is wrong in a database, on either engine.

- SQLite's own checks: `PRAGMA integrity_check` (pages, indexes, NOT NULL and CHECK
  constraints) and `PRAGMA foreign_key_check` (declared references).
- The project's invariants, on both engines: every declared reference (read from the catalogue,
  newsletter.dbtools.schema) and the references the schema does not declare (a ledger row's
  subscriber, a welcome request's subscriber) lead to a row; a finished campaign has no row
  left to send; each component's schema version is the code's (neither behind nor ahead).
- On PostgreSQL, nl_char_map (the case folding and digits the SQL functions of segments and
  case-insensitive matching read) holds exactly what the code derives
  (newsletter.subscribers.schema.char_map()); a row missing or changed silently changes answers.

Read-only: nothing is migrated or repaired (an SQLite file is opened with mode=ro), but for
`repair_derived`, which rewrites only what the code derives (nl_char_map), never data.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from newsletter import db
from newsletter.dbtools.components import COMPONENTS, recorded_versions
from newsletter.dbtools.schema import ForeignKey, Table, read_schema
from newsletter.errors import NewsletterError
from newsletter.subscribers.schema import char_map, next_subscriber_id, rebuild_char_map

# References the schema does not declare: table, column, parent. The ledger and the welcome
# requests outlive an erased subscriber on purpose (the campaign's counts, "(erased)" in
# `status --recipients`, never a second welcome), so a subscriber id is wrong there only when it
# was never handed out (at or past subscribers.schema.next_subscriber_id): a row deleted without
# erasure, whose id the next subscriber would inherit along with these rows.
UNDECLARED: tuple[tuple[str, str, str], ...] = (
    ("campaign_recipients", "subscriber_id", "subscribers"),
    ("welcome_requests", "subscriber_id", "subscribers"),
    ("feedback_events", "campaign_id", "campaigns"),
    ("feedback_events", "row_id", "campaign_recipients"),
)
OPEN_STATUSES = ("due", "inflight", "deferred")
SHOWN = 5  # example keys named per problem


@dataclass(frozen=True)
class Problem:
    """One problem: `where` is a table (or "database", "schema"), `message` says what."""

    where: str
    message: str

    def format(self) -> str:
        return f"{self.where}: {self.message}"


def check_database(database: db.Database) -> list[Problem]:
    """Every problem found in `database` ([] when none). Raises NewsletterError when there is
    no such database or it holds no newsletter tables yet (an empty SQLite file or PostgreSQL
    database alike), db.Error when it cannot be read at all."""
    if not db.exists(database):
        if isinstance(database, db.PostgresDatabase):  # reachable, but not set up
            raise NewsletterError(db.not_set_up(database))
        raise NewsletterError(f"{db.describe(database)}: no such database")
    if isinstance(database, Path):
        conn: db.Connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    else:
        conn = db.connect(database)
    try:
        problems = _sqlite_checks(conn) if isinstance(database, Path) else []
        if problems and problems[0].where == "database":
            return problems  # a damaged file: reading tables could fail or mislead
        if not db.has_table(conn, "schema_migrations"):  # the same answer on both engines
            raise NewsletterError(db.not_set_up(database))
        tables = read_schema(conn)
        # SQLite's foreign_key_check has reported the declared references already.
        problems += _references(conn, tables, declared=not isinstance(database, Path))
        problems += _finished_campaigns(conn, tables)
        problems += _versions(conn)
        problems += _char_map(conn)
        return problems
    finally:
        conn.close()


def _sqlite_checks(conn: db.Connection) -> list[Problem]:
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:  # the header or the schema page itself is damaged
        return [Problem("database", f"integrity_check failed: {exc}")]
    if rows != ["ok"]:
        return [Problem("database", f"integrity_check: {row}") for row in rows]
    found: dict[tuple[str, str], list[str]] = {}
    for table, rowid, parent, _fk in conn.execute("PRAGMA foreign_key_check").fetchall():
        # A WITHOUT ROWID table's rows have no rowid to name.
        found.setdefault((str(table), str(parent)), []).append("" if rowid is None else str(rowid))
    problems = []
    for (table, parent), ids in sorted(found.items()):
        named = [i for i in ids if i]
        where = f" (rowid {_some(named)})" if named else ""
        problems.append(Problem(table, f"{len(ids)} row(s) reference missing {parent} rows{where}"))
    return problems


def _references(conn: db.Connection, tables: dict[str, Table], *, declared: bool) -> list[Problem]:
    refs = [(name, fk) for name, t in tables.items() for fk in t.foreign_keys if declared]
    refs += [
        (table, ForeignKey((column,), parent, ()))
        for table, column, parent in UNDECLARED
        if table in tables and parent in tables and column in tables[table].columns
    ]
    unused = next_subscriber_id(conn) if "subscriber_settings" in tables else None
    problems = []
    for name, fk in refs:
        erasable = unused is not None and (name, *fk.columns, fk.parent) in UNDECLARED
        parent = tables.get(fk.parent)
        target = fk.parent_columns or (parent.primary_key if parent else ())
        if parent is None or len(target) != len(fk.columns):
            problems.append(Problem(name, f"references table {fk.parent}, which does not exist"))
            continue
        on = " AND ".join(f'p."{p}" = c."{c}"' for c, p in zip(fk.columns, target, strict=True))
        present = " AND ".join(f'c."{c}" IS NOT NULL' for c in fk.columns)
        if erasable:
            present += f' AND c."{fk.columns[0]}" >= {int(unused)}'
        key = ", ".join(f'c."{c}"' for c in (tables[name].primary_key or fk.columns))
        rows = conn.execute(
            f'SELECT {key} FROM "{name}" c WHERE {present} AND NOT EXISTS'
            f' (SELECT 1 FROM "{fk.parent}" p WHERE {on}) ORDER BY {key}'
        ).fetchall()
        if rows:
            cols = ", ".join(fk.columns)
            keys = [", ".join(str(v) for v in r) for r in rows]
            never = " (an id never handed out, not an erasure)" if erasable else ""
            problems.append(
                Problem(
                    name,
                    f"{len(rows)} row(s) whose {cols} points to no {fk.parent} row{never}"
                    f" (key {_some(keys)})",
                )
            )
    return problems


def _finished_campaigns(conn: db.Connection, tables: dict[str, Table]) -> list[Problem]:
    if "campaigns" not in tables or "campaign_recipients" not in tables:
        return []
    marks = ", ".join("?" * len(OPEN_STATUSES))
    rows = conn.execute(
        "SELECT c.id, c.issue_slug, c.list_name, COUNT(r.id) FROM campaigns c"
        " JOIN campaign_recipients r ON r.campaign_id = c.id"
        f" WHERE c.state = 'done' AND r.status IN ({marks})"
        " GROUP BY c.id, c.issue_slug, c.list_name ORDER BY c.id",
        OPEN_STATUSES,
    ).fetchall()
    return [
        Problem(
            "campaigns",
            f"campaign {r[0]} ({r[1]} to {r[2]}) is done but {r[3]} recipient row(s) are still"
            " due, in flight or deferred",
        )
        for r in rows
    ]


def _versions(conn: db.Connection) -> list[Problem]:
    recorded = recorded_versions(conn)
    problems = []
    for component in COMPONENTS:
        if component.name not in recorded:
            continue  # never used in this database: created on first use
        steps = component.steps(conn)
        want = len(steps) if steps is not None else 0
        have = recorded[component.name]
        if have < want:
            problems.append(
                Problem(
                    "schema",
                    f"{component.name} is at version {have}, this version of newsletter at "
                    f"{want}: any command that writes to the database brings it up to date",
                )
            )
        elif have > want:
            problems.append(
                Problem(
                    "schema",
                    f"{component.name} is at version {have}, newer than this version of "
                    f"newsletter knows ({want}): upgrade newsletter",
                )
            )
    return problems


def _char_map_difference(conn: db.Connection) -> tuple[int, int, int] | None:
    """(rows missing, rows different, rows extra) of PostgreSQL's nl_char_map against
    char_map(); None where there is no such table (SQLite, or before the subscribers schema)."""
    if not db.is_postgresql(conn) or not db.has_table(conn, "nl_char_map"):
        return None
    held = {
        str(r[0]): (r[1], r[2])
        for r in conn.execute("SELECT ch, folded, number_char FROM nl_char_map").fetchall()
    }
    want = {ch: (folded, number) for ch, folded, number in char_map()}
    missing = sum(1 for ch in want if ch not in held)
    different = sum(1 for ch, v in want.items() if ch in held and held[ch] != v)
    extra = sum(1 for ch in held if ch not in want)
    return missing, different, extra


def _char_map(conn: db.Connection) -> list[Problem]:
    found = _char_map_difference(conn)
    if found is None or found == (0, 0, 0):
        return []
    missing, different, extra = found
    return [
        Problem(
            "nl_char_map",
            f"{missing} row(s) missing, {different} different, {extra} extra of the"
            f" {len(char_map())} the code derives (case folding and digits for segments and"
            " case-insensitive matching, whose answers change): rebuild it with"
            " `newsletter db check --repair`",
        )
    ]


def repair_derived(database: db.Database) -> list[str]:
    """Rewrite what the code derives and the database only caches (PostgreSQL's nl_char_map)
    where it differs; return what was rewritten, as sentences ([] when nothing differed).
    Never touches data. Raises NewsletterError when there is no such database, db.Error from
    the engine."""
    if not db.exists(database) or not isinstance(database, db.PostgresDatabase):
        return []
    conn = db.connect(database)
    try:
        found = _char_map_difference(conn)
        if found is None or found == (0, 0, 0):
            return []
        rebuild_char_map(conn)
        return [f"nl_char_map: rebuilt ({len(char_map())} rows)"]
    finally:
        conn.close()


def _some(items: list[str]) -> str:
    more = f", ... {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more
