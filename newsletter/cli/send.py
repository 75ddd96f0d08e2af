"""Commands of the send area: send (to a list, a test copy or a dry run) and status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.campaign import Campaign, StreamProgress, campaign_status, parse_rate, send_test
from newsletter.campaign.lease import DEFAULT_LEASE
from newsletter.campaign.ratelimit import Rate
from newsletter.campaign.recipients import (
    STATES,
    recipient_statuses,
    write_csv,
    write_json,
    write_table,
)
from newsletter.campaign.settings import UNLIMITED
from newsletter.cli.common import app, reports_errors, single
from newsletter.doctor import check_before_send
from newsletter.errors import NewsletterError

F = TypeVar("F", bound=Callable[..., Any])


def _issue_file(config: Any, issue: Path) -> Path:
    """ISSUE as given, or the file in `issues/` whose slug it is (as `status` and `publish`
    take a slug too)."""
    if issue.exists() or issue.suffix in (".yaml", ".yml") or len(issue.parts) > 1:
        return issue
    from newsletter.publishing import issue_path

    return issue_path(config, str(issue)) or issue


def _show_findings(findings: list[Any]) -> None:
    for finding in findings:
        click.echo(finding.format(), err=True)


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> Rate | str | None:
    if value is None:
        return None  # not given: the campaign's stored rate when resuming
    if value.strip().lower() == UNLIMITED:
        return UNLIMITED
    try:
        return parse_rate(value)
    except NewsletterError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--list",
    "list_name",
    metavar="L",
    multiple=True,
    callback=single,
    help="Subscriber list (default: default).",
)
@click.option(
    "--segment",
    metavar="EXPR",
    multiple=True,
    callback=single,
    help='Only the list\'s subscribers matching EXPR, e.g. \'fields.city == "Oslo" and "pro" in '
    'tags and joined_after("2026-01-01")\', or the name of one under `segments:` in '
    "newsletter.yaml (see README, Segments). One issue, list and segment are one campaign; "
    "a resume without --segment keeps the campaign's own.",
)
@click.option(
    "--transport",
    metavar="URL",
    help="outbox:PATH, console:, smtp://[user@]host[:port]?tls=starttls|none, smtps://host, "
    "sendgrid:, mailgun:DOMAIN?region=eu, postmark:?stream=broadcast, ses:REGION, resend: "
    "(default: when resuming, the transport the campaign was started with; else `transport:` "
    "in newsletter.yaml / NEWSLETTER_TRANSPORT). Secrets come from the "
    "environment: NEWSLETTER_SMTP_PASSWORD, SENDGRID_API_KEY, MAILGUN_API_KEY, "
    "POSTMARK_SERVER_TOKEN, RESEND_API_KEY, AWS credentials.",
)
@click.option(
    "--switch-transport",
    is_flag=True,
    help="When resuming, send the rest through --transport (or the configured transport) "
    "instead of the one the campaign was started with. Without it such a change is refused; "
    "--yes alone never switches.",
)
@click.option(
    "--rate",
    metavar="N/UNIT",
    callback=_rate,
    help="At most N messages, and N requests (an API batch is one), per s, m or h across all "
    "connections, e.g. 20/s or 50000/h; the provider's own limit also applies "
    "(default: when resuming, the campaign's last rate; else no limit; `none`: no limit).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Messages sent in parallel (SMTP: connections; default: when resuming, the "
    "campaign's last value; else 4). A relay refusing connections with 4xx is retried; the "
    "summary says when a lower value would do.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--include-new",
    is_flag=True,
    help="When resuming, also send to subscribers who joined the list (or came to match the "
    "campaign's segment, evaluated again) since the first run.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Put the campaign's readers whose delivery failed (not bounced, not skipped, still "
    "subscribed) back to due and send to them, after fixing the cause; says how many and "
    "asks first (unless --yes).",
)
@click.option(
    "--test",
    "test_addresses",
    metavar="ADDR",
    multiple=True,
    help="Send one [TEST] copy to ADDR only (repeat for several addresses); nothing recorded. "
    "The copy is the one --list L would get (a private list's mail of an unpublished issue "
    "has no 'View in browser' link).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Build every message, send nothing, report; exit status 1 if any could not be built.",
)
@click.option(
    "--at",
    metavar="TIME",
    help="Do not send now: check everything, then schedule the send for TIME, e.g. "
    '"2026-12-02 07:00" (a date alone is refused; seconds, 07:00:30, are kept; see '
    "`newsletter schedule`; `serve` or `send-due` sends it).",
)
@click.option(
    "--tz",
    metavar="ZONE",
    help="IANA time zone of --at, e.g. Europe/Berlin (default: `timezone:` in newsletter.yaml, "
    "else this machine's zone).",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Help a running send: join the campaign that `newsletter send ISSUE` (same --list "
    "and --segment) is sending on another process or machine, and drain it together, under "
    "its rate (PostgreSQL only: `database: postgresql://...`). Waits up to a minute for the "
    "coordinating send to start; stops, saying why, when it is paused, stopped or done.",
)
@click.option(
    "--lease",
    type=click.FloatRange(1.0, 3600.0),
    default=DEFAULT_LEASE,
    show_default=True,
    metavar="SECONDS",
    help="PostgreSQL: how long this process may go without a heartbeat before the other "
    "workers take its claimed readers over (resent with the same Message-ID).",
)
@reports_errors
def send(
    issue: Path,
    list_name: str | None,
    segment: str | None,
    transport: str | None,
    switch_transport: bool,
    rate: Rate | str | None,
    concurrency: int | None,
    yes: bool,
    include_new: bool,
    retry_failed: bool,
    test_addresses: tuple[str, ...],
    dry_run: bool,
    at: str | None,
    tz: str | None,
    worker: bool,
    lease: float,
) -> None:
    """Send ISSUE (a file, or the slug of one in issues/) to a subscriber list (running it
    again resumes).

    Runs `newsletter doctor`'s checks first: when the transport delivers off this machine (an
    SMTP host that is not loopback, an email API), a setup that would reach readers broken (an
    example From, links to 127.0.0.1, the placeholder postal address...) is refused with every
    error listed; otherwise, and for --test and --dry-run, they are printed as warnings.
    Refuses an issue that fails `newsletter check`, asks before sending (unless --yes), shows
    progress, and exits with status 1 when anyone failed permanently or is still deferred.
    A provider's throttle (429, SMTP 451 4.7.x rate) slows the run down and costs no attempt;
    a refusal of the sender or the account pauses the run with the provider's words, readers
    still due.
    The first run stores the transport, rate and concurrency: a bare `newsletter send ISSUE`
    resumes with them. Ctrl-C stops after the messages in flight and prints the command that
    resumes. The reputation guard pauses a campaign whose hard bounces or complaints pass the
    `bounces:` limits; resuming it asks first (--yes confirms; without a terminal and --yes it
    is refused).
    """
    config = app().config
    issue = _issue_file(config, issue)
    if worker:
        _refuse_with_worker(
            at=at,
            test=test_addresses,
            dry_run=dry_run,
            rate=rate,
            include_new=include_new,
            retry_failed=retry_failed,
            switch_transport=switch_transport,
            transport=transport,
        )
    if at is not None or tz is not None:
        if at is None:
            raise click.UsageError("--tz goes with --at")
        if test_addresses or dry_run:
            raise click.UsageError("--at schedules a real send: leave out --test and --dry-run")
        options = {
            "list_name": list_name,
            "segment": segment,
            "transport": transport,
            "switch_transport": switch_transport,
            "include_new": include_new,
            "retry_failed": retry_failed,
            "rate": str(rate) if rate is not None else None,
            "concurrency": concurrency,
        }
        _schedule(config, issue, at, tz, options)
        return
    if test_addresses:
        _show_findings(check_before_send(config, transport, real=False))
        # One copy per address: addresses are compared case-insensitively, as the store does.
        unique: dict[str, str] = {}
        for address in test_addresses:
            unique.setdefault(address.strip().lower(), address.strip())
        report = send_test(
            config, issue, list(unique.values()), transport=transport, list_name=list_name
        )
        click.echo(report.summary())
        if not report.ok:
            raise SystemExit(1)
        return
    campaign = Campaign.prepare(
        config,
        issue,
        list_name=list_name,
        transport=transport,
        include_new=include_new,
        switch_transport=switch_transport,
        segment=segment,
        retry_failed=retry_failed,
    )
    try:
        if campaign.segment_note:
            click.echo(campaign.segment_note, err=True)
        if campaign.transport_choice.note:
            click.echo(campaign.transport_choice.note, err=True)
        # doctor's checks against the transport this run really uses (a resume: the stored
        # one); raises SetupRefused for a broken setup sent off this machine.
        used = campaign.transport_choice.url or transport
        _show_findings(check_before_send(config, used, real=not dry_run))
        if dry_run:
            dry = campaign.dry_run()
            click.echo(dry.summary())
            if not dry.ok:
                raise SystemExit(1)
            return
        if campaign.new_members and not include_new:
            click.echo(
                f"{campaign.new_members} subscriber{'s' if campaign.new_members != 1 else ''} "
                f"joined {campaign.audience} since this campaign started; add "
                "--include-new to send to them too.",
                err=True,
            )
        if retry_failed and not campaign.retry_rows:
            click.echo(
                "No failed readers to put back (none failed, or they are no longer subscribed).",
                err=True,
            )
        if campaign.pending == 0 and not worker:
            click.echo(campaign.nothing_left())
            return
        guard_confirmed = False if worker else _confirm_guard(campaign.guard_reason, yes)
        if not yes and not worker:
            click.confirm(campaign.question(), abort=True)
        report = campaign.run(
            rate=rate,
            concurrency=concurrency,
            progress=StreamProgress(sys.stderr),
            handle_sigint=True,
            guard_confirmed=guard_confirmed,
            worker=worker,
            lease=lease,
        )
    finally:
        campaign.close()
    click.echo(report.summary())
    if report.interrupted:
        raise SystemExit(130)
    if worker and report.stopped_because:  # the crew ended: this worker's own share counts
        if report.tally.failed + report.tally.bounced:
            raise SystemExit(1)
        return
    if not report.ok:
        raise SystemExit(1)


def _refuse_with_worker(**given: Any) -> None:
    """A worker sends the coordinator's campaign as the coordinator set it up: options that
    start, change or rehearse a campaign belong to the coordinating `send`."""
    names = {
        "at": "--at",
        "test": "--test",
        "dry_run": "--dry-run",
        "rate": "--rate",
        "include_new": "--include-new",
        "retry_failed": "--retry-failed",
        "switch_transport": "--switch-transport",
        "transport": "--transport",
    }
    used = [names[k] for k, v in given.items() if v]
    if used:
        raise click.UsageError(
            f"--worker takes the campaign's transport and rate from the coordinating send: "
            f"leave out {', '.join(used)} (give them to the coordinating `newsletter send`)"
        )


def _schedule(config: Any, issue: Path, at: str, tz: str | None, options: dict[str, Any]) -> None:
    from newsletter.scheduling import schedule_send

    scheduled = schedule_send(config, issue, at, tz=tz, options=options)
    for note in scheduled.notes:
        click.echo(note, err=True)
    click.echo(scheduled.summary())


def _confirm_guard(reason: str | None, yes: bool) -> bool:
    """A campaign the reputation guard paused resumes only when the user says so: --yes, or
    an answer at a terminal (a script without --yes is refused, never resumed silently)."""
    if reason is None:
        return False
    if yes:
        click.echo(f"Resuming a campaign paused by the {reason} (--yes).", err=True)
        return True
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"this campaign was paused by the {reason}. Resuming needs your confirmation: "
            "run the command at a terminal to answer, or add --yes"
        )
    click.confirm(
        f"This campaign was paused by the {reason}.\nResume it anyway?", abort=True, err=True
    )
    return True


@click.command()
@click.argument("issue")
@click.option(
    "--recipients",
    "state",
    is_flag=False,
    flag_value="all",
    default=None,
    type=click.Choice(STATES),
    metavar="[STATE]",
    help="List each recipient (email, state, attempts, last reply, time), or only those in "
    f"STATE: {', '.join(STATES)}.",
)
@click.option(
    "--list",
    "list_name",
    metavar="L",
    help="Only the campaign(s) to list L (with --recipients: needed when the issue went to "
    "several).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "csv", "json"]),
    default="text",
    show_default=True,
    help="With --recipients: csv (spreadsheet-safe) or json for tools.",
)
@click.option(
    "--segment",
    metavar="EXPR",
    help="Only the campaign of this segment (its name or expression), when the "
    "issue went to segments of the list.",
)
@reports_errors
def status(
    issue: str, state: str | None, list_name: str | None, fmt: str, segment: str | None
) -> None:
    """Show each campaign of ISSUE (a file or its slug): due, sent, deferred, failed, bounced,
    unknown (in flight when a run died) and skipped, then hard bounces and complaints with
    their rates (what the reputation guard judges); with --recipients, who and why."""
    if state is not None:
        campaign, rows = recipient_statuses(
            app().config, issue, list_name=list_name, state=state, segment=segment
        )
        out = sys.stdout
        if fmt == "json":
            count = write_json(out, campaign, rows)
        elif fmt == "csv":
            count = write_csv(out, rows)
        else:
            count = write_table(out, rows)
        if fmt == "text":
            click.echo(
                f"{count} recipient{'s' if count != 1 else ''} of '{campaign.issue_slug}' on "
                f"{campaign.audience}" + ("" if state == "all" else f" in state {state}"),
                err=True,
            )
        return
    if fmt != "text":
        raise click.UsageError("--format goes with --recipients")
    found = campaign_status(app().config, issue, list_name=list_name, segment=segment)
    if not found:
        click.echo(f"No campaign for {issue} yet.")
        return
    for entry in found:
        click.echo(entry.format())


commands: list[click.Command] = [send, status]
