"""Which engines a test of the campaign area can run on in this checkout.

The campaign tests need the whole store on the engine under test (subscribers, tokens,
publishing, images, bounce records). Each component says it speaks PostgreSQL by listing
`POSTGRESQL_MIGRATIONS`; until every one the campaign uses does (the components are ported on
separate branches), the PostgreSQL case of a campaign test is skipped, naming what is missing.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

# Modules whose tables a send touches, and the name of their PostgreSQL schema list.
_COMPONENTS = {
    "newsletter.subscribers.schema": "POSTGRESQL_MIGRATIONS",
    "newsletter.tokens": "POSTGRESQL_MIGRATIONS",
    "newsletter.publishing": "POSTGRESQL_MIGRATIONS",
    "newsletter.imagestore": "POSTGRESQL_MIGRATIONS",
    "newsletter.bounces.records": "POSTGRESQL_MIGRATIONS",
}


def missing_postgresql() -> list[str]:
    """The store components a campaign uses that have no PostgreSQL schema here."""
    missing = []
    for module, name in _COMPONENTS.items():
        found = importlib.import_module(module)
        if not any(n.endswith(name) for n in vars(found)):
            missing.append(module)
    return missing


def engine(database: str) -> str:
    """`database` (the conftest fixture's value) for a campaign test: skips the PostgreSQL
    case while a component it needs has no PostgreSQL schema in this checkout."""
    if database.startswith("postgresql://"):
        missing = missing_postgresql()
        if missing:
            pytest.skip(f"no PostgreSQL schema yet in {', '.join(missing)}")
    return database


def use_database(project: Path, database: str) -> Path:
    """Point the project's newsletter.yaml at `database` (see `engine`); the project."""
    config = project / "newsletter.yaml"
    with config.open("a", encoding="utf-8") as out:
        out.write(f"database: {engine(database)}\n")
    return project
