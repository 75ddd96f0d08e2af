"""`newsletter bounces import` and `newsletter bounces fetch`: read a bounce mailbox."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.common import config_with_db, db_option, reports_errors

if TYPE_CHECKING:
    from newsletter.bounces.mailbox import MailboxReport


@click.group("bounces")
def bounces() -> None:
    """Read bounce mail (DSNs, ARF complaints, unsubscribe mail) and apply it to subscribers.

    Hard bounces mark the subscriber bounced, soft bounces count towards `bounces.soft_limit`
    within `bounces.soft_days`, complaints unsubscribe (reason: complained); auto-replies are
    ignored. Importing the same mail twice changes nothing the second time.
    """


def _print(report: MailboxReport) -> None:
    for line in report.lines:
        click.echo(line)
    click.echo(report.summary())


@bounces.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@db_option
@reports_errors
def import_command(paths: tuple[Path, ...], dry_run: bool, db: Path | None) -> None:
    """Read PATHS (.eml files, mbox files, Maildir folders, in any mix) and apply them.

    One line per message (who, what, why, and what it did), then a summary. Every path is
    read before anything is applied: a missing or unreadable path changes nothing.
    """
    from newsletter.bounces.mailbox import import_mail

    _print(import_mail(config_with_db(db, existing=True), list(paths), dry_run=dry_run))


@bounces.command("fetch")
@click.argument("url")
@click.option(
    "--move-to",
    metavar="FOLDER",
    help="Move processed messages (flagged as well) to FOLDER, which must exist; non-ASCII "
    "names are sent in IMAP modified UTF-7.",
)
@click.option(
    "--delete",
    is_flag=True,
    help="Delete processed messages (never without this; never mail left for a person).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show what would change; change nothing, on the server too."
)
@db_option
@reports_errors
def fetch_command(
    url: str, move_to: str | None, delete: bool, dry_run: bool, db: Path | None
) -> None:
    """Read new messages of an IMAP folder, URL `imaps://user@host[:port]/FOLDER`.

    The password comes from NEWSLETTER_IMAP_PASSWORD. The server's certificate is verified
    against the system's trust store, or only against `?cafile=PATH` (a PEM file). Processed
    messages are flagged \\Seen and NewsletterProcessed (skipped by the next fetch), or moved
    with --move-to, or deleted with --delete. Only messages acted on (an event applied or
    already recorded, an auto-reply) are processed: the rest stay unread for a person.
    """
    from newsletter.bounces.mailbox import fetch_mail

    _print(
        fetch_mail(
            config_with_db(db, existing=True), url, dry_run=dry_run, move_to=move_to, delete=delete
        )
    )


commands: list[click.Command] = [bounces]
