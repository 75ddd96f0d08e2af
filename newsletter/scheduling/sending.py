"""Scheduled sends: `send --at` records one after every check a send runs; `serve` and
`send-due` fire the due ones through the same Campaign a `send` uses.

    scheduled = schedule_send(config, "issues/x.yaml", "2026-12-02 07:00", tz="Europe/Berlin",
                              options={"list_name": "default", "rate": "20/s"})
    results = run_due(config, echo=print)          # what `send-due` and serve's task call

The options are stored as one JSON value: `rate` and `concurrency` go to `Campaign.run`, every
other key (list_name, transport, include_new, switch_transport, and any option `send` gains
later) to `Campaign.prepare`, so a new send option replays without a schema change. The
transport is stored as the URL the check resolved (without secrets: they come from the
environment of the process that fires it).

At fire time the issue is checked again (it may have changed since): a file that now fails
`check`, a list left empty, or a setup doctor refuses marks the schedule `failed` with the
reason and sends nothing. A schedule fired late (nothing was running at its time) says how
late. Stopped midway (serve shut down), it is handed back and the next run resumes the
campaign.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter import (
    clock,
    db,
)
from newsletter.campaign.campaign import Campaign
from newsletter.config import Config
from newsletter.db import connect
from newsletter.doctor import check_before_send
from newsletter.errors import (
    CampaignError,
    NewsletterError,
    ScheduleError,
    TransportConnectError,
)
from newsletter.scheduling.store import DONE, FAILED, ScheduleRow, ScheduleStore
from newsletter.scheduling.times import (
    default_zone,
    how_late,
    resolve_time,
    show_local,
    show_utc,
)

RUN_OPTIONS = ("rate", "concurrency")  # Campaign.run's; every other option is prepare's
PAST_GRACE = dt.timedelta(minutes=1)  # "now" typed a few seconds late is still fine
LATE_AFTER = dt.timedelta(minutes=1)  # fired later than this: say how late
LEASE = dt.timedelta(minutes=2)  # a claimer that stops renewing loses the schedule after this
RETRY_DELAY = dt.timedelta(minutes=5)  # the transport unreachable at fire time: try again then
MAX_ATTEMPTS = 12  # ...for about an hour, then the schedule fails with the last reason

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Scheduled:
    """What `schedule_send` recorded, with what to tell the person."""

    schedule: ScheduleRow
    subject: str  # as the sample reader sees it, marked when personalised
    audience: str  # "list weekly" or "list weekly, segment oslo-pros (...)"
    recipients: int
    notes: tuple[str, ...]  # doctor's warnings, an ambiguous time's choice

    def summary(self) -> str:
        s = self.schedule
        people = f"{self.recipients} subscriber{'s' if self.recipients != 1 else ''}"
        return (
            f"Scheduled {self.subject} to {people} of {self.audience} for "
            f"{show_local(s.due_at, s.zone, seconds=True)}, {show_utc(s.due_at, seconds=True)}. "
            "`newsletter serve` sends it when due (or `newsletter send-due` from cron); "
            "`newsletter schedule` lists schedules."
        )


def schedule_send(
    config: Config,
    issue_path: str | Path,
    at: str,
    *,
    tz: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Scheduled:
    """Check everything `send` checks (the issue, the list, the transport, doctor's checks
    against that transport) and record the send for `at` (wall-clock time in `tz`, else
    `timezone:`, else the machine's zone). ScheduleError for an unreadable, past or
    nonexistent time, an unknown zone, or an open schedule for the same issue and list;
    CampaignError / SetupRefused as `send` raises them. Nothing is recorded on error."""
    zone = tz or default_zone(config.timezone)
    when = resolve_time(at, zone, zone_given=tz is not None)
    now = clock.now()
    if when.at < now - PAST_GRACE:
        raise ScheduleError(
            f"{show_local(when.at, zone)} is in the past (it is now {show_local(now, zone)}); "
            "to send now, leave out --at"
        )
    opts = {k: v for k, v in (options or {}).items() if v is not None and v is not False}
    prepare = {k: v for k, v in opts.items() if k not in RUN_OPTIONS}
    campaign = Campaign.prepare(config, issue_path, **prepare)
    try:
        used = campaign.transport_choice.url
        if used is None:
            raise ScheduleError("a schedule needs a transport URL, not a transport object")
        findings = check_before_send(config, used, real=True)
        if campaign.pending == 0:
            raise ScheduleError(campaign.nothing_left())
        opts.update(list_name=campaign.list_name, transport=used)
        row = _record(config, campaign, Path(issue_path), when.at, zone, opts, now)
        notes = [f.format() for f in findings] + ([when.note] if when.note else [])
        return Scheduled(
            row, campaign.subject_shown(), campaign.audience, campaign.pending, tuple(notes)
        )
    finally:
        campaign.close()


def _record(
    config: Config,
    campaign: Campaign,
    issue_path: Path,
    at: dt.datetime,
    zone: str,
    options: Mapping[str, Any],
    now: dt.datetime,
) -> ScheduleRow:
    slug, list_name = campaign.issue.slug, campaign.list_name
    store = ScheduleStore(connect(config.database))
    try:
        row = store.add(
            issue_slug=slug,
            issue_path=str(issue_path.resolve()),
            list_name=list_name,
            due_at=at,
            zone=zone,
            options=options,
            now=now,
        )
        if row is None:
            other = store.open_for(slug, list_name)[0]
            raise ScheduleError(
                f"'{slug}' to list {list_name} is already scheduled for "
                f"{show_local(other.due_at, other.zone)}; cancel it first with "
                f"`newsletter schedule cancel {slug} --list {list_name}`"
            )
        return row
    finally:
        store.close()


def list_schedules(config: Config) -> list[ScheduleRow]:
    """Every schedule, by due time (finished and cancelled ones too); none, and no database
    created, when the database does not exist."""
    if not db.exists(config.database):
        return []
    store = ScheduleStore(connect(config.database))
    try:
        return store.all()
    finally:
        store.close()


def cancel_schedule(config: Config, issue: str, list_name: str | None = None) -> ScheduleRow:
    """Cancel the open schedule of `issue` (a slug or an issue file) [to `list_name`].
    ScheduleError when there is none, several (name the list), or it is being sent now."""
    from newsletter.issue import slugify

    slug = slugify(Path(issue).stem) if issue.endswith((".yaml", ".yml")) else issue
    if not db.exists(config.database):
        raise ScheduleError(f"no scheduled send of '{slug}': no database at {config.database}")
    store = ScheduleStore(connect(config.database))
    try:
        found = store.open_for(slug, list_name)
        where = f" to list {list_name}" if list_name else ""
        if not found:
            raise ScheduleError(f"no scheduled send of '{slug}'{where} (see `newsletter schedule`)")
        if len(found) > 1:
            lists = ", ".join(s.list_name for s in found)
            raise ScheduleError(f"'{slug}' is scheduled for several lists ({lists}): add --list")
        schedule = found[0]
        if not store.cancel(schedule.id, clock.now()):
            raise ScheduleError(
                f"'{slug}' to list {schedule.list_name} is being sent right now; stop that "
                "process (Ctrl-C) and cancel again, or let it finish"
            )
        return store.get(schedule.id)
    finally:
        store.close()


@dataclass(frozen=True)
class Fired:
    """One schedule this process fired: its final state and what to tell."""

    schedule: ScheduleRow
    state: str  # done, failed, or scheduled (handed back: stopped midway)
    message: str


def run_due(
    config: Config,
    *,
    echo: Echo = lambda line: None,
    stop: threading.Event | None = None,
    owner: str | None = None,
) -> list[Fired]:
    """Fire every due schedule this process can claim (see newsletter.scheduling.store), one
    after the other; `stop` ends a send after the messages in flight and hands it back."""
    owner = owner or process_owner()
    stop = stop or threading.Event()
    store = ScheduleStore(connect(config.database))
    fired: list[Fired] = []
    try:
        for schedule in store.claimable(clock.now()):
            if stop.is_set():
                break
            now = clock.now()
            if not store.claim(schedule.id, owner, now, LEASE):
                continue  # another process was faster
            fired.append(_fire(config, store, schedule, owner, now, echo, stop))
    finally:
        store.close()
    return fired


def seconds_until_due(config: Config) -> float | None:
    """Seconds until the next open schedule is due (0 when one is), None when there is none."""
    store = ScheduleStore(connect(config.database))
    try:
        due = store.next_due()
    finally:
        store.close()
    return None if due is None else max(0.0, (due - clock.now()).total_seconds())


def process_owner() -> str:
    """Who holds a lease: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _fire(
    config: Config,
    store: ScheduleStore,
    schedule: ScheduleRow,
    owner: str,
    now: dt.datetime,
    echo: Echo,
    stop: threading.Event,
) -> Fired:
    what = f"'{schedule.issue_slug}' to list {schedule.list_name}"
    due = show_local(schedule.due_at, schedule.zone)
    late = now - schedule.due_at
    if late > LATE_AFTER:
        echo(f"Scheduled send of {what} was due {due}: sending now, {how_late(late)} late.")
    else:
        echo(f"Scheduled send of {what} (due {due}): sending now.")
    renewer = _LeaseRenewer(config, schedule.id, owner, stop)
    renewer.start()
    outcome: tuple[str, str | None] | NewsletterError | None
    try:
        outcome = _send(config, schedule, stop, echo)
    except NewsletterError as exc:
        outcome = exc
    finally:
        renewer.finish()
    return _settle(store, schedule, owner, outcome, echo)


def _settle(
    store: ScheduleStore,
    schedule: ScheduleRow,
    owner: str,
    outcome: tuple[str, str | None] | NewsletterError | None,
    echo: Echo,
) -> Fired:
    """Record how a fired schedule ended: done (with a note when some recipients failed),
    failed (the reason; an unreachable transport only after MAX_ATTEMPTS tries, RETRY_DELAY
    apart), or handed back (stopped midway: the next run resumes the campaign)."""
    what = f"Scheduled send of '{schedule.issue_slug}' to list {schedule.list_name}"
    if isinstance(outcome, TransportConnectError) and schedule.attempts + 1 < MAX_ATTEMPTS:
        retry = clock.now() + RETRY_DELAY
        message = f"{outcome} (trying again from {show_local(retry, schedule.zone)})"
        store.release(schedule.id, owner, message, next_try=retry)
        echo(f"{what} could not start: {message}")
        return Fired(store.get(schedule.id), "scheduled", message)
    if isinstance(outcome, NewsletterError):
        store.finish(schedule.id, owner, FAILED, str(outcome), clock.now())
        echo(f"{what} failed, nothing more sent: {outcome}")
        return Fired(store.get(schedule.id), FAILED, str(outcome))
    if outcome is None:
        store.release(schedule.id, owner)
        message = f"{what} stopped; it resumes at the next run."
        echo(message)
        return Fired(store.get(schedule.id), "scheduled", message)
    summary, problem = outcome
    store.finish(schedule.id, owner, DONE, problem, clock.now())
    echo(summary)
    return Fired(store.get(schedule.id), DONE, summary)


def _send(
    config: Config, schedule: ScheduleRow, stop: threading.Event, echo: Echo
) -> tuple[str, str | None] | None:
    """What `newsletter send` does, with the stored options: (summary, problem or None), or
    None when stopped midway. Raises what `send` raises (the issue now fails check...)."""
    options = dict(schedule.options)
    run = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    campaign = Campaign.prepare(config, schedule.issue_path, **options)
    try:
        if campaign.existing is not None and campaign.ledger.is_being_sent(campaign.existing.id):
            raise CampaignError("this campaign is being sent right now by another process")
        for finding in check_before_send(config, campaign.transport_choice.url, real=True):
            echo(finding.format())
        if campaign.pending == 0:
            return campaign.nothing_left(), None
        report = campaign.run(stop=stop, **run)
    finally:
        campaign.close()
    if report.interrupted:
        return None
    problem = None if report.ok else report.summary().splitlines()[0]
    return report.summary(), problem


class _LeaseRenewer(threading.Thread):
    """Renews the lease every quarter of its length; a lease lost (taken over after this
    process stalled) stops the send, so two processes never send one schedule at once."""

    def __init__(self, config: Config, schedule_id: int, owner: str, stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"lease-{schedule_id}")
        self.config, self.schedule_id, self.owner, self.stop = config, schedule_id, owner, stop
        self._done = threading.Event()

    def run(self) -> None:
        store = ScheduleStore(connect(self.config.database))
        try:
            while not self._done.wait(LEASE.total_seconds() / 4):
                if not store.renew(self.schedule_id, self.owner, clock.now() + LEASE):
                    self.stop.set()
                    return
        finally:
            store.close()

    def finish(self) -> None:
        self._done.set()
        self.join()
