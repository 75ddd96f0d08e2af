"""`newsletter db migrate postgresql://...`: an SQLite database used for real (subscribers,
lists, tags, a sent campaign and its ledger, a bounce, a published snapshot, the tokens' secret)
is copied into a real PostgreSQL server, verified, and can be copied again safely."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from newsletter import db
from newsletter.dbtools.schema import read_schema
from tests.support import bounce_mail as mail
from tests.support.bounce_project import SentIssue, send_example
from tests.support.cli_support import run

READERS = ["ann@example.com", "bob@example.net", "cy@example.org"]


@pytest.fixture
def sent(project: Path) -> SentIssue:
    """A project whose SQLite database holds a bit of everything."""
    sent = send_example(project, READERS, "lists:\n  default: {public: true}\n")
    bounce = project / "bounce.eml"
    bounce.write_bytes(
        mail.postfix_dsn(READERS[0], sent.token(READERS[0]), sent.message_id(READERS[0]))
    )
    return sent


def rows_of(database: str | Path, table: str, columns: str = "*") -> list[tuple[object, ...]]:
    """Every row of `table`, as plain tuples, sorted in Python (the engines collate apart)."""
    conn = db.connect(database)
    try:
        rows = [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
            for r in conn.execute(f"SELECT {columns} FROM {table}").fetchall()
        ]
    finally:
        conn.close()
    return sorted(rows, key=repr)


def prepare(project: Path, runner) -> None:
    for args in (
        ("bounces", "import", "bounce.eml"),
        ("subscribers", "tag", "bob@example.net", "vip"),
        ("subscribers", "add", "dee@example.com", "--list", "other"),
        ("subscribers", "remove", "cy@example.org"),
    ):
        code, out = run(runner, project, *args)
        assert code == 0, out


def test_every_table_is_copied_and_verified(sent, project, runner, postgres_url):
    prepare(project, runner)
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 0, out
    sqlite_db = project / "newsletter.db"
    conn = db.connect(sqlite_db)
    try:
        tables = read_schema(conn)
    finally:
        conn.close()
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert set(lines) == set(tables)  # discovered from the schema, not a hand list
    assert all(cols[-1] == "OK" for cols in lines.values()), out
    assert "tables verified: rows and checksums equal" in out
    for name, table in tables.items():  # SQLite's columns (PostgreSQL may have more)
        columns = ", ".join(table.columns)
        assert rows_of(postgres_url, name, columns) == rows_of(sqlite_db, name, columns), name
    # something of each kind really was there to copy
    for table in (
        "subscribers",
        "subscriber_memberships",
        "subscriber_events",
        "subscriber_tags",
        "campaigns",
        "campaign_recipients",
        "feedback_events",
        "token_secrets",
        "issue_snapshots",
    ):
        assert int(lines[table][2]) > 0, (table, out)


def test_the_copy_is_usable_and_numbers_new_rows_past_the_copied_ones(
    sent, project, runner, postgres_url
):
    prepare(project, runner)
    assert run(runner, project, "db", "migrate", postgres_url)[0] == 0
    code, out = run(runner, project, "subscribers", "add", "eve@example.com", "--db", postgres_url)
    assert code == 0, out
    ids = {r[1]: r[0] for r in rows_of(postgres_url, "subscribers")}
    new = ids.pop("eve@example.com")
    assert new > max(ids.values())
    code, out = run(runner, project, "subscribers", "list", "--db", postgres_url)
    assert code == 0 and "bob@example.net" in out and "eve@example.com" in out


def test_a_second_run_copies_only_what_is_missing(sent, project, runner, postgres_url):
    prepare(project, runner)
    assert run(runner, project, "db", "migrate", postgres_url)[0] == 0
    code, out = run(runner, project, "subscribers", "add", "fay@example.com")
    assert code == 0, out
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 0, out
    copied = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[1:-1]}
    assert copied["subscribers"] == 1
    assert copied["campaign_recipients"] == 0 and copied["token_secrets"] == 0
    assert "fay@example.com" in {r[1] for r in rows_of(postgres_url, "subscribers")}


def test_a_row_that_differs_stops_the_copy_and_is_named(sent, project, runner, postgres_url):
    assert run(runner, project, "db", "migrate", postgres_url)[0] == 0
    conn = db.connect(postgres_url)
    try:
        conn.execute("UPDATE subscribers SET name = 'Someone Else' WHERE email = ?", (READERS[1],))
        [(sid,)] = conn.execute(
            "SELECT id FROM subscribers WHERE email = ?", (READERS[1],)
        ).fetchall()
    finally:
        conn.close()
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 1
    assert f"table subscribers, key id={sid}" in out and "different row" in out
    assert "Someone Else" in {r[3] for r in rows_of(postgres_url, "subscribers")}  # kept


def test_each_table_is_copied_whole_or_not_at_all(project, runner, postgres_url):
    """1,500 subscribers: the copy's second batch meets a differing row; the first batch's
    missing rows, already inserted, are rolled back with it."""
    csv = project / "people.csv"
    csv.write_text("email\n" + "".join(f"p{i:04d}@example.com\n" for i in range(1500)))
    assert run(runner, project, "subscribers", "import", "people.csv")[0] == 0
    assert run(runner, project, "db", "migrate", postgres_url)[0] == 0
    conn = db.connect(postgres_url)
    try:
        conn.execute("DELETE FROM subscribers WHERE email < 'p0010'")  # 10 rows now missing
        conn.execute("UPDATE subscribers SET name = 'X' WHERE email = 'p1200@example.com'")
    finally:
        conn.close()
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 1 and "table subscribers" in out
    assert len(rows_of(postgres_url, "subscribers")) == 1490


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("other.db", "not a postgresql:// URL"),
        ("mysql://u@localhost/news", "not a postgresql:// URL"),
        ("postgresql://u:secret@localhost/news", "carries a password"),
    ],
)
def test_a_target_that_is_not_postgresql_is_refused(project, runner, target, message):
    assert run(runner, project, "subscribers", "add", "ann@example.com")[0] == 0
    code, out = run(runner, project, "db", "migrate", target)
    assert code == 1 and message in out
    assert not (project / "other.db").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no database at"),
        (lambda p: p.write_text("not a database\n"), "not an SQLite database"),
    ],
)
def test_a_source_that_is_not_an_sqlite_database_is_refused(
    project, runner, postgres_url, make, message
):
    source = project / "old.db"
    make(source)
    code, out = run(runner, project, "db", "migrate", postgres_url, "--db", str(source))
    assert code == 1 and message in out
    conn = db.connect(postgres_url)
    try:
        assert not db.has_table(conn, "subscribers")  # nothing written
    finally:
        conn.close()


def test_a_postgresql_source_is_refused(project, runner, postgres_url):
    code, out = run(runner, project, "subscribers", "add", "ann@example.com", "--db", postgres_url)
    assert code == 0, out
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write(f"database: {postgres_url}\n")
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 1 and "not an SQLite file; name it with --db" in out


def test_the_sqlite_database_is_read_as_one_snapshot(sent, project, runner, postgres_url):
    """A writer holding SQLite's write lock does not block a rerun, which reads what was
    committed."""
    assert run(runner, project, "db", "migrate", postgres_url)[0] == 0
    writer = sqlite3.connect(project / "newsletter.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE subscribers SET name = 'during' WHERE id = 1")
        code, out = run(runner, project, "db", "migrate", postgres_url)
        assert code == 0 and "DIFFERS" not in out, out
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert "during" not in {r[3] for r in rows_of(postgres_url, "subscribers")}


def test_rows_only_postgresql_holds_fail_the_verification(sent, project, runner, postgres_url):
    """PostgreSQL used in between (a sign-up there): the rerun copies nothing over it and says
    which table no longer matches."""
    assert run(runner, project, "db", "migrate", postgres_url)[0] == 0
    code, out = run(runner, project, "subscribers", "add", "gus@example.com", "--db", postgres_url)
    assert code == 0, out
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("subscribers ")]
    assert line.split()[2:] == ["3", "4", "DIFFERS"]
    assert "tables differ: subscribers, subscriber_memberships" in out  # gus and his list


def test_a_conflict_in_any_table_leaves_every_table_as_it_was(sent, project, runner, postgres_url):
    """PostgreSQL already used by another newsletter: its list differs from SQLite's under the
    same key. Tables copied before that one in dependency order (campaigns, snapshots...) are
    rolled back with it, so nothing of the SQLite newsletter is left half-moved."""
    prepare(project, runner)
    code, out = run(
        runner, project, "subscribers", "add", "other@example.com", "--db", postgres_url
    )
    assert code == 0, out
    conn = db.connect(postgres_url)
    try:
        before = {name: rows_of(postgres_url, name) for name in read_schema(conn)}
    finally:
        conn.close()
    code, out = run(runner, project, "db", "migrate", postgres_url)
    assert code == 1 and "PostgreSQL already holds a different row" in out, out
    conn = db.connect(postgres_url)
    try:
        after = read_schema(conn)
    finally:
        conn.close()
    for name in after:
        assert rows_of(postgres_url, name) == before.get(name, []), name
    for table in ("campaigns", "campaign_recipients", "issue_snapshots", "feedback_events"):
        assert before.get(table, []) == [] and table in after  # there was something to roll back
    assert "nothing was copied" in out
