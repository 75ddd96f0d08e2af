"""What every command shares: lazy configuration loading, `--db`, and the one error mapping."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.config import Config, load_config
from newsletter.db import PostgresDatabase, exists, not_set_up, parse_database
from newsletter.errors import NewsletterError
from newsletter.transports import redact_secrets

F = TypeVar("F", bound=Callable[..., Any])


class AppContext:
    def __init__(self, config_path: Path | None = None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def app(ctx: click.Context | None = None) -> AppContext:
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(AppContext)
    if obj is None:  # a command invoked outside the group (tests calling it directly)
        obj = ctx.ensure_object(AppContext)
    return obj


db_option = click.option(
    "--db",
    "db",
    metavar="PATH|URL",
    help="The database: an SQLite file or postgresql://user@host[:port]/dbname (default:"
    " `database:` in newsletter.yaml, NEWSLETTER_DB, newsletter.db).",
)


def single(ctx: click.Context, param: click.Parameter, values: tuple[Any, ...]) -> Any:
    """Callback of an option declared `multiple=True` that takes one value: a repeat (`--list
    a --list b`, which click would silently read as b) is a usage error naming both."""
    if len(values) > 1:
        shown = " ".join(f"{param.opts[0]} {v}" for v in values)
        raise click.BadParameter(f"given {len(values)} times ({shown}); give it once")
    return values[0] if values else None


def config_with_db(db: str | Path | None, *, existing: bool = False) -> Config:
    """The configuration, with `--db` (when given) as its database.

    `existing`: the command only reads (or changes what is already there), so a database that
    does not exist is a NewsletterError, never a new empty file (a typo'd --db would otherwise
    show nothing, or let `archive` remove every page)."""
    config = app().config
    if db:
        config = dataclasses.replace(config, database=parse_database(db))
    if existing and not exists(config.database):
        where = "--db" if db else "`database:` in newsletter.yaml, NEWSLETTER_DB or newsletter.db"
        if isinstance(config.database, PostgresDatabase):  # reachable: exists() connected
            raise NewsletterError(not_set_up(config.database, f"(from {where})"))
        raise NewsletterError(
            f"no database at {config.database} (from {where}): nothing to read there; "
            "check the path (nothing was written)"
        )
    return config


def reports_errors(fn: F) -> F:
    """The one mapping from our exceptions to click's clean `Error: ...` and exit status 1.

    NewsletterError: its message, secrets masked. sqlite3.Error (a locked, read-only or damaged
    database): one line saying so; every write is a transaction, so what was recorded before
    stays recorded and the same command can simply be run again.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NewsletterError as exc:
            # Messages may repeat what the user typed, which may be a secret pasted in the wrong
            # place: mask the values of the secret environment variables.
            raise click.ClickException(redact_secrets(str(exc))) from None
        except sqlite3.Error as exc:
            raise click.ClickException(
                f"database error: {exc}; nothing recorded is lost, run the same command again "
                "once the database is usable"
            ) from None

    return wrapper  # type: ignore[return-value]
