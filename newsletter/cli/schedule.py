"""Commands of scheduled sends: `schedule` (list), `schedule cancel`, `send-due` (for cron)."""

from __future__ import annotations

import sys

import click

from newsletter.cli.common import app, reports_errors


@click.group("schedule", invoke_without_command=True)
@click.pass_context
@reports_errors
def schedule(ctx: click.Context) -> None:
    """List scheduled sends (`newsletter send ISSUE --at TIME` makes one): issue, list and
    segment, when in its zone and in UTC, state (scheduled, running, done, failed, cancelled),
    and the last error in full below it."""
    if ctx.invoked_subcommand is not None:
        return
    from newsletter.scheduling import list_schedules, show_local, show_utc

    rows = list_schedules(app().config)
    if not rows:
        click.echo("No scheduled sends.")
        return
    for row in rows:
        segment = row.options.get("segment")
        audience = f"list {row.list_name}" + (f", segment {segment}" if segment else "")
        click.echo(
            f"{row.issue_slug}  {audience}  {show_local(row.due_at, row.zone, seconds=True)}  "
            f"{show_utc(row.due_at, seconds=True)}  {row.state}"
        )
        if row.last_error:  # every line: "fails check:" alone says nothing
            click.echo("\n".join(f"    {line}" for line in row.last_error.splitlines()))


@schedule.command("cancel")
@click.argument("issue")
@click.option("--list", "list_name", metavar="L", help="The list (needed when several).")
@reports_errors
def cancel(issue: str, list_name: str | None) -> None:
    """Cancel the scheduled send of ISSUE (a slug or an issue file) before it fires."""
    from newsletter.scheduling import cancel_schedule, show_local

    row = cancel_schedule(app().config, issue, list_name)
    click.echo(
        f"Cancelled: '{row.issue_slug}' to list {row.list_name}, due "
        f"{show_local(row.due_at, row.zone)}."
    )


@click.command("send-due")
@reports_errors
def send_due() -> None:
    """Send every scheduled send that is due (and the welcome mails still owed), once, then
    exit: for cron, e.g. `* * * * * cd /path/to/project && newsletter send-due`. A schedule
    missed while nothing ran is sent now, with a line saying how late. Several processes at
    once (two crons, a `serve`) still send each schedule once. Exits 1 when one failed."""
    from newsletter.errors import NewsletterError
    from newsletter.scheduling import run_due
    from newsletter.welcome import send_welcomes

    config = app().config
    fired = run_due(config, echo=lambda line: click.echo(line, err=True))
    failed = any(f.state == "failed" for f in fired)
    try:
        welcomed = send_welcomes(config)
    except NewsletterError as exc:  # the schedules above went anyway
        click.echo(f"Welcome mail not sent yet (still owed, tried again next run): {exc}", err=True)
        welcomed, failed = None, True
    if welcomed is not None:
        click.echo(welcomed.summary(), err=True)
        failed = failed or not welcomed.report.ok
    elif not fired and not failed:
        click.echo("Nothing due.", err=True)
    if failed:
        sys.exit(1)


commands: list[click.Command] = [schedule, send_due]
