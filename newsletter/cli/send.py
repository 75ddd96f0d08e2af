"""Commands of the send area: send (to a list, a test copy or a dry run) and status."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.campaign import Campaign, StreamProgress, campaign_status, parse_rate, send_test
from newsletter.campaign.ratelimit import Rate
from newsletter.cli.common import app, reports_errors
from newsletter.doctor import check_before_send
from newsletter.errors import NewsletterError

F = TypeVar("F", bound=Callable[..., Any])


def _database_errors(fn: F) -> F:
    """A locked, read-only or damaged database is one clear line, not a traceback. What was
    recorded before stays recorded: the same command resumes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise click.ClickException(
                f"database error: {exc} ({app().config.database}); nothing recorded is lost, "
                "run the same command again once the database is usable"
            ) from None

    return wrapper  # type: ignore[return-value]


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> Rate | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except NewsletterError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", metavar="L", help="Subscriber list (default: default).")
@click.option(
    "--transport",
    metavar="URL",
    help="outbox:PATH, console:, smtp://[user@]host[:port]?tls=starttls|none, smtps://host, "
    "sendgrid:, mailgun:DOMAIN?region=eu, postmark:?stream=broadcast, ses:REGION, resend: "
    "(default: `transport:` in newsletter.yaml / NEWSLETTER_TRANSPORT). Secrets come from the "
    "environment: NEWSLETTER_SMTP_PASSWORD, SENDGRID_API_KEY, MAILGUN_API_KEY, "
    "POSTMARK_SERVER_TOKEN, RESEND_API_KEY, AWS credentials.",
)
@click.option(
    "--rate",
    metavar="N/UNIT",
    callback=_rate,
    help="At most N messages per s, m or h across all connections, e.g. 20/s or 50000/h.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Messages sent in parallel (SMTP: connections).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--include-new",
    is_flag=True,
    help="When resuming, also send to subscribers who joined the list since the first run.",
)
@click.option("--test", "test_address", metavar="ADDR", help="Send one [TEST] copy to ADDR only.")
@click.option("--dry-run", is_flag=True, help="Build every message, send nothing, report.")
@reports_errors
@_database_errors
def send(
    issue: Path,
    list_name: str | None,
    transport: str | None,
    rate: Rate | None,
    concurrency: int,
    yes: bool,
    include_new: bool,
    test_address: str | None,
    dry_run: bool,
) -> None:
    """Send ISSUE to a subscriber list (running it again resumes).

    Runs `newsletter doctor`'s checks first: when the transport delivers off this machine (an
    SMTP host that is not loopback, an email API), a setup that would reach readers broken (an
    example From, links to 127.0.0.1, the placeholder postal address...) is refused with every
    error listed; otherwise, and for --test and --dry-run, they are printed as warnings.
    Refuses an issue that fails `newsletter check`, asks before sending (unless --yes), shows
    progress, and exits with status 1 when anyone failed permanently or is still deferred.
    Ctrl-C stops after the messages in flight; the same command resumes.
    """
    config = app().config
    # doctor's checks; raises SetupRefused for a broken setup sent off this machine.
    for finding in check_before_send(config, transport, real=not (test_address or dry_run)):
        click.echo(finding.format(), err=True)
    if test_address:
        click.echo(send_test(config, issue, test_address, transport=transport).summary())
        return
    campaign = Campaign.prepare(
        config, issue, list_name=list_name, transport=transport, include_new=include_new
    )
    try:
        if dry_run:
            click.echo(campaign.dry_run().summary())
            return
        if campaign.new_members and not include_new:
            click.echo(
                f"{campaign.new_members} subscriber{'s' if campaign.new_members != 1 else ''} "
                f"joined list {campaign.list_name} since this campaign started; add "
                "--include-new to send to them too.",
                err=True,
            )
        if campaign.pending == 0:
            click.echo(campaign.nothing_left())
            return
        if not yes:
            click.confirm(campaign.question(), abort=True)
        report = campaign.run(
            rate=rate,
            concurrency=concurrency,
            progress=StreamProgress(sys.stderr),
            handle_sigint=True,
        )
    finally:
        campaign.close()
    click.echo(report.summary())
    if report.interrupted:
        raise SystemExit(130)
    if not report.ok:
        raise SystemExit(1)


@click.command()
@click.argument("issue")
@reports_errors
@_database_errors
def status(issue: str) -> None:
    """Show each campaign of ISSUE (a file or its slug): due, sent, deferred, failed, bounced,
    unknown (in flight when a run died) and skipped."""
    found = campaign_status(app().config, issue)
    if not found:
        click.echo(f"No campaign for {issue} yet.")
        return
    for entry in found:
        click.echo(entry.format())


commands: list[click.Command] = [send, status]
