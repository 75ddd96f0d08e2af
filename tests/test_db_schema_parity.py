"""After `ensure_schema` on each engine, both hold the same schema: every table, column (by
type family), primary key, index name, unique constraint and foreign key of SQLite exists on
PostgreSQL, and nothing more (but PostgreSQL's support tables for its SQL functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter import db
from newsletter.dbtools.components import COMPONENTS, ensure_schema, recorded_versions
from newsletter.dbtools.schema import Table, read_schema


def schema_of(database: str | Path) -> tuple[dict[str, Table], dict[str, int]]:
    conn = db.connect(database)
    try:
        ensure_schema(conn)
        ensure_schema(conn)  # a second time changes nothing
        return read_schema(conn), recorded_versions(conn)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def schemas(tmp_path_factory, postgres_server) -> tuple[dict[str, Table], dict[str, Table]]:
    lite, _ = schema_of(tmp_path_factory.mktemp("parity") / "newsletter.db")
    pg, _ = schema_of(str(postgres_server.create_database()))
    return lite, pg


def test_both_engines_have_the_same_tables(schemas):
    lite, pg = schemas
    assert sorted(pg) == sorted(lite)


def test_every_column_has_the_same_type_family(schemas):
    lite, pg = schemas
    for name in lite.keys() & pg.keys():
        assert pg[name].columns == lite[name].columns, name


@pytest.mark.parametrize("what", ["primary_key", "indexes", "uniques", "foreign_keys"])
def test_keys_indexes_and_constraints_match(schemas, what):
    lite, pg = schemas
    differ = {
        name: (getattr(lite[name], what), getattr(pg[name], what))
        for name in lite.keys() & pg.keys()
        if _comparable(getattr(lite[name], what)) != _comparable(getattr(pg[name], what))
    }
    assert differ == {}


def _comparable(value: object) -> object:
    if isinstance(value, tuple) and value and hasattr(value[0], "parent"):
        return sorted((fk.columns, fk.parent, fk.parent_columns) for fk in value)
    return value


def test_every_component_is_migrated_on_both(tmp_path, postgres_url):
    _, versions = schema_of(tmp_path / "newsletter.db")
    assert set(versions) == {c.name for c in COMPONENTS if c.sqlite is not None}
    _, versions = schema_of(postgres_url)
    assert set(versions) == {c.name for c in COMPONENTS}
