"""`newsletter db check` on either engine: a database used for real has no problems; one damaged
on purpose (a dangling row of each kind, a finished campaign with rows left, a schema version
behind or ahead of the code, a corrupted SQLite page) has each reported, with exit status 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from newsletter import db
from tests.support.cli_support import run

SLUG = "2026-11-25-microsoft-openai-partnership"


@pytest.fixture
def used(project: Path, runner, database: str) -> str:
    """The project's database (either engine) after three sign-ups, a tag, a send and an
    erasure."""
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(f"transport: outbox:./outbox\ndatabase: {database}\n")
    for args in (
        ("subscribers", "add", "ann@example.com"),
        ("subscribers", "add", "bob@example.net"),
        ("subscribers", "tag", "bob@example.net", "vip"),
        ("subscribers", "add", "cy@example.org"),
        ("send", f"issues/{SLUG}.yaml", "--yes"),
        ("subscribers", "remove", "cy@example.org"),  # erased: its ledger row stays, rightly
    ):
        code, out = run(runner, project, *args)
        assert code == 0, out
    return database


def damage(database: str, *statements: str) -> None:
    """Write what the code never would: around the foreign keys (SQLite: a bare connection,
    which does not enforce them; PostgreSQL: triggers off for this session)."""
    if "://" not in database:
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            for sql in statements:
                conn.execute(sql)
        finally:
            conn.close()
        return
    pg = db.connect(database)
    try:
        pg.execute("SET session_replication_role = replica")
        for sql in statements:
            pg.execute(sql)
    finally:
        pg.execute("RESET session_replication_role")
        pg.close()


def test_a_database_used_for_real_has_no_problems(used, project, runner):
    code, out = run(runner, project, "db", "check")
    assert code == 0, out
    assert "no problems" in out


@pytest.mark.parametrize(
    ("statements", "reported"),
    [
        pytest.param(
            [
                "INSERT INTO campaign_recipients (campaign_id, subscriber_id, status)"
                " SELECT id, 999, 'sent' FROM campaigns"
            ],
            ["campaign_recipients: 1 row(s) whose subscriber_id points to no subscribers row"],
            id="ledger-row-without-subscriber",
        ),
        pytest.param(
            [
                "INSERT INTO subscriber_memberships (list_id, subscriber_id)"
                " SELECT 999, id FROM subscribers WHERE email = 'ann@example.com'"
            ],
            ["subscriber_memberships: 1 row(s)", "subscriber_lists"],
            id="membership-of-no-list",
        ),
        pytest.param(
            ["DELETE FROM subscribers WHERE email = 'bob@example.net'"],
            ["subscriber_tags: 1 row(s)", "subscribers row"],
            id="subscriber-deleted-under-its-rows",
        ),
        pytest.param(
            [
                "UPDATE campaigns SET state = 'done'",
                "UPDATE campaign_recipients SET status = 'due' WHERE subscriber_id ="
                " (SELECT id FROM subscribers WHERE email = 'ann@example.com')",
            ],
            ["is done but 1 recipient row(s) are still due"],
            id="finished-campaign-with-rows-left",
        ),
        pytest.param(
            [
                "DELETE FROM schema_migrations WHERE component = 'subscribers' AND version ="
                " (SELECT MAX(version) FROM schema_migrations WHERE component = 'subscribers')"
            ],
            ["schema: subscribers is at version"],
            id="schema-behind",
        ),
        pytest.param(
            ["INSERT INTO schema_migrations (component, version) VALUES ('bounces', 99)"],
            ["schema: bounces is at version 99, newer than this version of newsletter"],
            id="schema-ahead",
        ),
    ],
)
def test_each_kind_of_damage_is_reported(used, project, runner, statements, reported):
    damage(used, *statements)
    code, out = run(runner, project, "db", "check")
    assert code == 1, out
    for text in reported:
        assert text in out, out
    assert "no problems" not in out


def test_a_corrupted_sqlite_page_is_reported(project, runner, tmp_path):
    path = tmp_path / "newsletter.db"
    rows = "".join(f"p{i:04d}@example.com\n" for i in range(2000))
    (project / "people.csv").write_text("email\n" + rows)
    assert run(runner, project, "subscribers", "import", "people.csv", "--db", str(path))[0] == 0
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size, pages = (
        conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count")
    )
    conn.close()
    assert pages > 10
    with path.open("r+b") as f:  # a page in the middle: an index or table b-tree page
        f.seek(page_size * (pages // 2) + 8)
        f.write(b"\xff" * (page_size - 16))
    code, out = run(runner, project, "db", "check", "--db", str(path))
    assert code == 1, out
    assert "database: integrity_check" in out


@pytest.mark.parametrize("target", ["missing.db", "postgresql://nobody@127.0.0.1:1/none"])
def test_a_database_that_is_not_there_is_refused(project, runner, target):
    code, out = run(runner, project, "db", "check", "--db", target)
    assert code == 1
    assert "no database at" in out or "cannot connect" in out
    assert not (project / "missing.db").exists()


SEGMENT = '"READER 12 Ñ" in name'


def matches(project: Path, runner, database: str) -> str:
    code, out = run(runner, project, "subscribers", "list", "--segment", SEGMENT, "--db", database)
    assert code == 0, out
    return out


@pytest.mark.parametrize(
    ("statement", "reported"),
    [
        pytest.param(
            "DELETE FROM nl_char_map WHERE ch IN (SELECT ch FROM nl_char_map"
            " WHERE ch <> 'ñ' ORDER BY ch COLLATE \"C\" LIMIT 49) OR ch = 'Ñ'",
            "50 row(s) missing, 0 different, 0 extra",
            id="rows-deleted",
        ),
        pytest.param(
            "UPDATE nl_char_map SET folded = 'n' WHERE ch = 'Ñ'",
            "0 row(s) missing, 1 different, 0 extra",
            id="row-changed",
        ),
        pytest.param(
            "INSERT INTO nl_char_map (ch, folded) VALUES ('ñ', 'n')",
            "0 row(s) missing, 0 different, 1 extra",
            id="row-added",
        ),
    ],
)
def test_a_damaged_char_map_is_reported_and_repaired(
    project, runner, postgres_url, statement, reported
):
    """PostgreSQL's nl_char_map (Python's case folding, for the SQL functions of segments) is
    compared with what the code derives; --repair rebuilds it and the answers come back."""
    code, out = run(
        runner,
        project,
        "subscribers",
        "add",
        "ann@example.com",
        "--name",
        "Reader 12 Ñ",
        "--db",
        postgres_url,
    )
    assert code == 0, out
    good = matches(project, runner, postgres_url)
    assert "ann@example.com" in good
    damage(postgres_url, statement)
    code, out = run(runner, project, "db", "check", "--db", postgres_url)
    assert code == 1, out
    assert f"nl_char_map: {reported}" in out and "db check --repair" in out, out
    if "1 extra" not in reported:  # an extra row of a character no name holds changes nothing
        assert "ann@example.com" not in matches(project, runner, postgres_url)  # answers changed
    code, out = run(runner, project, "db", "check", "--repair", "--db", postgres_url)
    assert code == 0, out
    assert "nl_char_map: rebuilt" in out and "no problems" in out
    assert matches(project, runner, postgres_url) == good


def assert_not_set_up(code: int, out: str) -> None:
    assert code == 1, out
    assert "holds no newsletter tables yet" in out and "db migrate" in out, out
    assert "check the path" not in out and "no problems" not in out


def test_an_empty_database_has_no_newsletter_tables_yet(project, runner, database):
    """An empty PostgreSQL database and an empty SQLite file: the same answer from db check,
    and nothing written."""
    if "://" not in database:
        Path(database).touch()
    assert_not_set_up(*run(runner, project, "db", "check", "--db", database))
    if "://" not in database:
        assert Path(database).stat().st_size == 0
        return
    conn = db.connect(database)
    try:
        assert not db.has_table(conn, "schema_migrations")
    finally:
        conn.close()


def test_reading_an_empty_postgresql_database_says_what_to_do(project, runner, postgres_url):
    assert_not_set_up(*run(runner, project, "subscribers", "count", "--db", postgres_url))
