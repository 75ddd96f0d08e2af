"""Commands of the storage area: `newsletter db migrate` and `newsletter db check`."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import config_with_db, db_option, reports_errors
from newsletter.errors import NewsletterError


@click.group("db")
def db_group() -> None:
    """Move the store between engines and check it (SQLite file or PostgreSQL)."""


@db_group.command("migrate")
@click.argument("target", metavar="POSTGRESQL_URL")
@click.option(
    "--db",
    "source",
    metavar="PATH",
    help="The SQLite database to copy (default: `database:` in newsletter.yaml, NEWSLETTER_DB,"
    " newsletter.db).",
)
@reports_errors
def migrate(target: str, source: str | None) -> None:
    """Copy the SQLite database into PostgreSQL at POSTGRESQL_URL and verify the copy.

    POSTGRESQL_URL is postgresql://user@host[:port]/dbname (the password from
    NEWSLETTER_DB_PASSWORD, PGPASSWORD or ~/.pgpass, never in the URL). Every table is copied
    (subscribers, lists, history, tokens' secret, campaigns and their ledger, schedules,
    snapshots, images, bounce events, webhook nonces...), all in one transaction, in key order;
    identity sequences are moved past the highest id. Then each table is verified: row counts and
    a SHA-256 over the rows in key order must be equal on both sides; a table of tables, rows
    and checksum OK is printed. Safe to run again: only missing rows are copied; a row that
    PostgreSQL holds differently under the same key stops the copy, naming table and key:
    nothing is overwritten and no table is changed. Exits 1 when a table differs.
    """
    from newsletter import db
    from newsletter.dbtools.copy import copy_to_postgresql

    database = db.parse_database(target)
    if not isinstance(database, db.PostgresDatabase):
        raise NewsletterError(
            f"{target}: not a postgresql:// URL; db migrate copies into PostgreSQL"
            " (postgresql://user@host[:port]/dbname)"
        )
    config = config_with_db(source, existing=True)
    if not isinstance(config.database, Path):
        raise NewsletterError(
            f"the database to copy ({config.database}) is not an SQLite file; name it with --db"
        )
    report = copy_to_postgresql(config.database, database)
    click.echo(report.format())
    if not report.ok:
        raise SystemExit(1)


@db_group.command("check")
@db_option
@click.option(
    "--repair",
    is_flag=True,
    help="First rewrite what the code derives and the database only caches (PostgreSQL's"
    " nl_char_map) where it differs; never touches data.",
)
@reports_errors
def check(db: str | None, repair: bool) -> None:
    """Report integrity problems of the database (either engine); read-only.

    On SQLite, `PRAGMA integrity_check` (damaged pages and indexes) and `foreign_key_check`;
    on both engines, the project's own rules: every reference leads to a row (memberships,
    history, tags, bounce events; the ledger's and welcome requests' subscriber ids were handed
    out, an erased subscriber's rows staying by design), a finished campaign has no recipient
    left to send, each component's schema version is this version's, and on PostgreSQL
    nl_char_map (the case folding and digits segments read) is what the code derives. Prints
    each problem as `TABLE: what` and exits 1, or prints "no problems". Read-only, but with
    --repair.
    """
    from newsletter.dbtools.check import check_database, repair_derived

    config = config_with_db(db, existing=True)
    if repair:
        for done in repair_derived(config.database):
            click.echo(done)
    problems = check_database(config.database)
    for problem in problems:
        click.echo(problem.format())
    if problems:
        click.echo(f"{len(problems)} problem(s) in {config.database}", err=True)
        raise SystemExit(1)
    click.echo(f"no problems in {config.database}")


commands = [db_group]
