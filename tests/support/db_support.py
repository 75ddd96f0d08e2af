"""The whole database as text, on either engine: equal dumps mean nothing changed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from newsletter import db


def dump(database: str | Path) -> list[str]:
    """Every row of every table: SQLite's `iterdump`; for PostgreSQL every table of the
    public schema, each row as text, rows in a fixed order (ORDER BY every column)."""
    target = db.parse_database(database)
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()
    pg = db.connect(target)
    try:
        tables = [
            str(r[0])
            for r in pg.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        out = []
        for table in tables:
            rows = pg.execute(f'SELECT * FROM "{table}"').fetchall()
            columns = len(rows[0]) if rows else 0
            order = ", ".join(str(i) for i in range(1, columns + 1))
            if rows:
                rows = pg.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
            out.append(f"TABLE {table}")
            out.extend(f"{table} {tuple(row)!r}" for row in rows)
        return out
    finally:
        pg.close()


def use_database(project: Path, database: str) -> Path:
    """Point the project's newsletter.yaml at `database` (an SQLite path or a URL); the
    project."""
    config = project / "newsletter.yaml"
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f"database: {json.dumps(database)}\n")
    return project
