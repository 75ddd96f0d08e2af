"""`newsletter subscribers ...`: the subscriber store from the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.cli.common import app, config_with_db, db_option, reports_errors, single
from newsletter.errors import SubscriberError
from newsletter.subscribers import STATUSES, Subscriber, SubscriberStore, normalize_lookup

F = TypeVar("F", bound=Callable[..., Any])

list_option = click.option(
    "--list", "list_name", metavar="LIST", multiple=True, callback=single, help="Only this list."
)
status_option = click.option(
    "--status", type=click.Choice(STATUSES), help="Only subscribers with this status."
)


def _open(db: Path | None, *, create: bool = False) -> SubscriberStore:
    """The store; only `add` and `import` may create the database (`create`): every other
    command reads or changes subscribers already there, so a typo'd --db is an error."""
    return SubscriberStore.for_config(config_with_db(db, existing=not create))


def _require(store: SubscriberStore, email: str) -> Subscriber:
    normalize_lookup(email)  # a clear "not a valid address" before "not found"
    subscriber = store.get(email)
    if subscriber is None:
        raise SubscriberError(f"no subscriber {email.strip()}")
    return subscriber


def _parse_fields(values: tuple[str, ...]) -> dict[str, str]:
    fields = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--field")
        fields[key.strip()] = value
    return fields


@click.group("subscribers")
def subscribers() -> None:
    """Manage subscribers: add, import, export, list, tag, unsubscribe, erase."""


@subscribers.command("add")
@click.argument("email")
@click.option(
    "--name",
    multiple=True,
    callback=single,
    help="Display name (used in To: and {{ subscriber.name }}).",
)
@click.option(
    "--list",
    "list_names",
    multiple=True,
    metavar="LIST",
    help="List to join (default: default); repeat to join several.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="KEY=VALUE",
    help="A personalisation field ({{ subscriber.fields.KEY }}); repeatable.",
)
@click.option(
    "--status",
    type=click.Choice(["active", "pending"]),
    default="active",
    show_default=True,
    help="Status of a new subscriber (an existing one keeps theirs).",
)
@click.option(
    "--welcome",
    is_flag=True,
    help="Also send the welcome issue (issues/_welcome.yaml or `welcome:`), once per person: "
    "now if active, when they confirm if pending.",
)
@db_option
@reports_errors
def add(
    email: str,
    name: str | None,
    list_names: tuple[str, ...],
    fields: tuple[str, ...],
    status: str,
    welcome: bool,
    db: Path | None,
) -> None:
    """Add EMAIL (or add an existing subscriber to a list and update name/fields)."""
    if welcome and config_with_db(db).welcome is None:
        raise click.UsageError(
            "--welcome: no welcome issue; create issues/_welcome.yaml or name one with "
            "`welcome:` in newsletter.yaml"
        )
    with _open(db, create=True) as store:
        before = store.get(email)
        sub = store.add(
            email,
            name=name,
            lists=list(dict.fromkeys(list_names)) or ["default"],
            fields=_parse_fields(fields),
            status=status,
        )
    verb = "updated" if before else "added"
    click.echo(f"{verb} {sub.email} ({sub.status}; lists: {', '.join(sub.lists)})")
    if welcome:
        from newsletter.welcome import welcome_subscriber

        ok, message = welcome_subscriber(config_with_db(db), sub, "subscribers add --welcome")
        click.echo(message, err=not ok)
        if not ok:
            sys.exit(1)


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--list", "list_name", metavar="LIST", help="Add every row to this list.")
@click.option(
    "--status",
    type=click.Choice(["active", "pending"]),
    default="active",
    show_default=True,
    help="Status of new subscribers without a `status` column value.",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows (default: FILE.rejects.csv beside FILE).",
)
@db_option
@reports_errors
def import_(
    file: Path, list_name: str | None, status: str, rejects: Path | None, db: Path | None
) -> None:
    """Import subscribers from a CSV file with a header row naming `email` (and optionally
    `name`, `status`, `lists`, `created_at`; other columns become fields).

    UTF-8 with or without BOM, comma or semicolon. One transaction: all or nothing. Existing
    subscribers are updated; unsubscribed, bounced, complained or erased addresses are never
    re-activated.
    """
    from newsletter.subscribers import import_csv

    with _open(db, create=True) as store:
        report = import_csv(store, file, list_name=list_name, status=status, rejects_path=rejects)
    click.echo(report.summary())


@subscribers.command("export")
@list_option
@status_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file to write (default: standard output).",
)
@db_option
@reports_errors
def export(list_name: str | None, status: str | None, output: Path | None, db: Path | None) -> None:
    """Export subscribers as CSV (the format `import` reads back)."""
    from newsletter.subscribers import export_csv

    with _open(db) as store:
        if output is None:
            export_csv(store, sys.stdout, list_name=list_name, status=status)
            return
        try:
            count = export_csv(store, output, list_name=list_name, status=status)
        except OSError as exc:
            raise SubscriberError(f"{output}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"exported {count} subscribers to {output}", err=True)


@subscribers.command("list")
@list_option
@status_option
@click.option(
    "--segment",
    metavar="EXPR",
    multiple=True,
    callback=single,
    help='Only subscribers matching EXPR, e.g. \'fields.city == "Oslo" and "pro" in tags\', '
    "or the name of one under `segments:` in newsletter.yaml (README: Segments).",
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=50, show_default=True, help="0 shows all."
)
@db_option
@reports_errors
def list_(
    list_name: str | None, status: str | None, segment: str | None, limit: int, db: Path | None
) -> None:
    """Show subscribers as a table, and how many match (with --segment: who a send to that
    segment would consider; `send` mails the active ones)."""
    from newsletter.subscribers.segmentsql import segment_query

    widths = (32, 22, 12, 20, 20)
    header = ("EMAIL", "NAME", "STATUS", "LISTS", "CREATED")
    with _open(db) as store:
        query = None
        if segment is not None:
            _, query = segment_query(store, segment, app().config.segments)
        total = store.count(list_name, status, query)
        click.echo(_table_row(header, widths))  # after opening: an error is then the only line
        for shown, sub in enumerate(store.iter_subscribers(list_name, status, query)):
            if limit and shown >= limit:
                break
            cells = (sub.email, sub.name or "", sub.status, ",".join(sub.lists), sub.created_at)
            click.echo(_table_row(cells, widths))
    if limit and total > limit:
        click.echo(f"... {total - limit} more (--limit 0 shows all)")
    matching = " matching the segment" if segment is not None else ""
    click.echo(f"{total} subscriber{'s' if total != 1 else ''}{matching}")


@subscribers.command("tag")
@click.argument("emails", metavar="EMAIL... TAG", nargs=-1, required=True)
@db_option
@reports_errors
def tag(emails: tuple[str, ...], db: Path | None) -> None:
    """Give each EMAIL the tag TAG (the last argument), for segments such as '"pro" in tags'.

    Tags are letters, digits, '.', '_' and '-' (compared ignoring case). All addresses must
    exist, or nothing changes."""
    from newsletter.subscribers.tags import tag_subscribers

    people, name = _tag_arguments(emails)
    with _open(db) as store:
        change = tag_subscribers(store, people, name)
    _tag_report(change, "tagged", "already had")


@subscribers.command("untag")
@click.argument("emails", metavar="EMAIL... TAG", nargs=-1, required=True)
@db_option
@reports_errors
def untag(emails: tuple[str, ...], db: Path | None) -> None:
    """Take the tag TAG (the last argument) from each EMAIL. All addresses must exist, or
    nothing changes."""
    from newsletter.subscribers.tags import untag_subscribers

    people, name = _tag_arguments(emails)
    with _open(db) as store:
        change = untag_subscribers(store, people, name)
    _tag_report(change, "untagged", "did not have")


def _tag_arguments(words: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    if len(words) < 2:
        raise click.UsageError("give one or more addresses and then the tag: EMAIL... TAG")
    return words[:-1], words[-1]


def _tag_report(change: Any, verb: str, unchanged: str) -> None:
    if change.changed:
        click.echo(f"{verb} {len(change.changed)} ({', '.join(change.changed)}): {change.tag}")
    if change.unchanged:
        people = ", ".join(change.unchanged)
        click.echo(f"{len(change.unchanged)} {unchanged} {change.tag}: {people}")


@subscribers.command("show")
@click.argument("email")
@db_option
@reports_errors
def show(email: str, db: Path | None) -> None:
    """Show one subscriber: data, lists, tags, fields and their history: consent, and every
    bounce, complaint, provider unsubscribe and delivery report with its source, status,
    campaign and reason."""
    from newsletter.subscribers.tags import tags_of

    with _open(db) as store:
        sub = _require(store, email)
        events = store.events(sub.id)
        tags = tags_of(store, [sub.id])[sub.id]
    click.echo(f"email:    {sub.email}")
    click.echo(f"name:     {sub.name or '-'}")
    click.echo(f"status:   {sub.status}")
    click.echo(f"lists:    {', '.join(sub.lists) or '-'}")
    click.echo(f"tags:     {', '.join(tags) or '-'}")
    click.echo(f"created:  {sub.created_at}")
    click.echo(f"updated:  {sub.updated_at}")
    for key, value in sorted(sub.fields.items()):
        click.echo(f"field:    {key} = {value}")
    click.echo("history:")
    for event in events:
        click.echo(f"  {event.at}  {event.kind}" + (f"  ({event.detail})" if event.detail else ""))


@subscribers.command("unsubscribe")
@click.argument("email")
@db_option
@reports_errors
def unsubscribe(email: str, db: Path | None) -> None:
    """Unsubscribe EMAIL (it stays in the database as proof, but gets no more issues)."""
    with _open(db) as store:
        sub = _require(store, email)
        changed = store.unsubscribe(sub.id, how="cli")
    click.echo(f"unsubscribed {sub.email}" if changed else f"{sub.email} is already {sub.status}")


@subscribers.command("remove")
@click.argument("email")
@db_option
@reports_errors
def remove(email: str, db: Path | None) -> None:
    """Erase EMAIL and all personal data about it (GDPR erasure).

    A salted hash of the address is kept so an import cannot silently add it back.
    """
    with _open(db) as store:
        erased = store.erase(email)
    address = normalize_lookup(email)
    if erased:
        click.echo(f"erased {address}; imports will not add it back")
    else:
        click.echo(f"no subscriber {address}; recorded it so imports will not add it")


@subscribers.command("count")
@list_option
@db_option
@reports_errors
def count(list_name: str | None, db: Path | None) -> None:
    """Count subscribers, by status."""
    with _open(db) as store:
        by_status = store.count_by_status(list_name)
    total = sum(by_status.values())
    click.echo(f"{total} subscriber{'s' if total != 1 else ''}" + _in(list_name))
    for status in STATUSES:
        if by_status.get(status):
            click.echo(f"  {status}: {by_status[status]}")


def _in(list_name: str | None) -> str:
    return f" in list {list_name}" if list_name else ""


def _table_row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    out = []
    for cell, width in zip(cells, widths, strict=True):
        text = cell if len(cell) <= width else cell[: width - 1] + "…"
        out.append(text.ljust(width))
    return "  ".join(out).rstrip()


commands: list[click.Command] = [subscribers]
