"""Sending an issue to a list: prepare (check, compile, count), confirm, run, report.

`Campaign.prepare` does everything that can fail without side effects (the issue fails check,
a bad transport URL, an empty list) and says how many people a run would mail; `Campaign.run`
opens the transports (an unreachable server or refused login stops it here, before anyone is
marked sent), snapshots the list on first run, and hands over to the runner.
"""

from __future__ import annotations

import itertools
import shlex
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from newsletter import db
from newsletter.bounces.guard import PREFIX as GUARD_PREFIX
from newsletter.bounces.guard import Guard
from newsletter.campaign.connections import close_transports, open_connections
from newsletter.campaign.lease import COORDINATOR, DEFAULT_LEASE, WORKER, Crew, wait_for_stragglers
from newsletter.campaign.lease import migrate as migrate_crew
from newsletter.campaign.ledger import CampaignRow, Ledger, Outcome, WorkItem, campaign_key
from newsletter.campaign.messages import SubscriberList, SubscriberMessages
from newsletter.campaign.progress import Progress, Tally
from newsletter.campaign.ratelimit import Rate, RateLimiter
from newsletter.campaign.reports import DryRunReport, Pacing, SendReport, plural
from newsletter.campaign.retry import RetryPolicy
from newsletter.campaign.runner import Runner, RunOptions, RunResult
from newsletter.campaign.settings import (
    TransportChoice,
    TransportSpec,
    choose_transport,
    run_concurrency,
    run_rate,
)
from newsletter.campaign.sharedpace import SharedRateLimiter
from newsletter.campaign.workers import ClaimingLedger, join_campaign, require_crew
from newsletter.config import Config, find_config
from newsletter.db import connect
from newsletter.errors import CampaignError, CampaignPaused
from newsletter.imagestore import keep_issue_images
from newsletter.issue import Issue, welcome_slug
from newsletter.mail.dkim import DkimSigner
from newsletter.mail.message import MessageTemplate, Verp, feedback_id
from newsletter.render.compiled import CompiledIssue
from newsletter.subscribers.segment import Segment, parse_segment, resolve_segment
from newsletter.subscribers.segmentsql import SegmentQuery, compile_segment
from newsletter.transports import transport_from_url
from newsletter.transports.base import Transport

DEFAULT_LIST = "default"


@dataclass
class Campaign:
    """One issue to one list; `prepare` first, then `run` (or `dry_run`)."""

    config: Config
    issue: Issue
    compiled: CompiledIssue  # compiled once, by the check
    issue_path: Path
    list_name: str
    transport_choice: TransportChoice
    include_new: bool
    store: SubscriberList
    ledger: Ledger
    existing: CampaignRow | None
    pending: int  # how many a run would try to mail now
    new_members: int  # joined since the snapshot (included only with include_new)
    segment: Segment | None = None  # who of the list; None: the whole list
    segment_query: SegmentQuery | None = None  # the segment as SQL over the store
    segment_note: str | None = None  # a bare resume kept the campaign's stored segment
    retry_rows: list[int] = field(default_factory=list)  # failed rows `run` puts back to due
    _template: MessageTemplate | None = field(default=None, repr=False)

    # -- preparing -------------------------------------------------------------------------
    @classmethod
    def prepare(
        cls,
        config: Config,
        issue_path: str | Path,
        *,
        list_name: str | None = None,
        transport: TransportSpec = None,
        include_new: bool = False,
        environ: Mapping[str, str] | None = None,
        store: SubscriberList | None = None,
        switch_transport: bool = False,
        segment: str | None = None,
        retry_failed: bool = False,
    ) -> Campaign:
        """Check the issue, choose the transport (a resume keeps the campaign's own unless
        `switch_transport`), count who a run would mail; CampaignError when it cannot start.

        `segment`: a name under `segments:` in newsletter.yaml or an expression (see
        newsletter.subscribers.segment); one issue, list and segment make one campaign, and a
        resume without `segment` keeps the campaign's stored one.
        `retry_failed`: the readers who failed permanently (not bounced, not skipped, still
        subscribed) are counted in, and `run` puts them back to due first (after a fix)."""
        checked = checked_issue(config, issue_path, list_name)
        _refuse_welcome(config, checked.issue.slug, list_name)
        chosen = resolve_segment(segment, config.segments) if segment is not None else None
        if store is None:
            from newsletter.subscribers import SubscriberStore

            store = SubscriberStore.for_config(config)
        ledger = Ledger(connect(config.database))
        name = list_name or DEFAULT_LIST
        try:
            who = _audience(ledger, store, checked.issue.slug, name, chosen, include_new)
            choice = choose_transport(
                config, transport, who.existing, switch=switch_transport, environ=environ
            )
        except BaseException:
            ledger.close()
            raise
        retry_rows: list[int] = []
        if retry_failed and who.existing is not None:
            retry_rows = _still_subscribed(store, ledger.failed_rows(who.existing.id))
        if who.existing is None and who.pending == 0:
            ledger.close()
            raise _nobody(store, name, who)
        return cls(
            config=config,
            issue=checked.issue,
            compiled=checked.compiled,
            issue_path=Path(issue_path),
            list_name=name,
            transport_choice=choice,
            include_new=include_new,
            store=store,
            ledger=ledger,
            existing=who.existing,
            pending=who.pending + len(retry_rows),
            new_members=who.new_members,
            segment=who.segment,
            segment_query=who.query,
            segment_note=who.note,
            retry_rows=retry_rows,
        )

    @property
    def audience(self) -> str:
        """'list weekly' or 'list weekly, segment oslo-pros (...)', for questions and reports."""
        if self.segment is None:
            return f"list {self.list_name}"
        return f"list {self.list_name}, segment {self.segment.label}"

    @property
    def subject(self) -> str:
        """The subject as written (it may hold {{ placeholders }})."""
        return self.issue.subject

    @property
    def sample_subject(self) -> str:
        """The subject as a sample reader ("Sample Reader", reader@example.com) gets it."""
        from newsletter.placeholders import SAMPLE_RECIPIENT

        return self.compiled.subject.render(self.compiled.values_for(SAMPLE_RECIPIENT, ""))

    def subject_shown(self) -> str:
        """'Subject' for questions and reports: personalised ones as the sample reader sees
        them, marked as such."""
        sample = self.sample_subject
        if sample == self.subject:
            return f"'{sample}'"
        return f"'{sample}' (as Sample Reader sees it)"

    @property
    def transport_factory(self) -> Callable[[], Transport]:
        return self.transport_choice.factory

    @property
    def transport_description(self) -> str:
        return self.transport_choice.description

    def question(self) -> str:
        """What to ask before sending."""
        resuming = ""
        if self.existing is not None:
            sent = self.ledger.counts(self.existing.id).sent
            resuming = f" (resuming: {sent} already sent)"
        via = f" via {self.transport_description}"
        if self.transport_choice.switching_from:
            via = (
                f", switching this campaign's transport from "
                f"{self.transport_choice.switching_from} to "
                f"{self.transport_choice.url or self.transport_description}"
            )
        retrying = ""
        if self.retry_rows:
            retrying = (
                f", putting back {plural(len(self.retry_rows), 'reader')} whose delivery failed"
            )
        return (
            f"Send {self.subject_shown()} to {plural(self.pending, 'subscriber')} of "
            f"{self.audience}{via}{resuming}{retrying}?"
        )

    def nothing_left(self) -> str:
        """What to tell a user who resumes a campaign with nobody left to send to."""
        if self.existing is None:
            return f"Nothing to send: {self.audience} has no active subscribers."
        c = self.ledger.counts(self.existing.id)
        text = (
            f"Nothing left to send: '{self.issue.slug}' to {self.audience} was handled "
            f"for all {c.total} recipients ({c.sent} sent, {c.failed} failed, "
            f"{c.bounced} bounced, {c.skipped} skipped)."
        )
        if c.failed:
            failed_rows = self.ledger.failed_rows(self.existing.id)
            retryable = len(_still_subscribed(self.store, failed_rows))
            if retryable:
                text += (
                    f"\n{plural(retryable, 'reader')} failed (see `newsletter status "
                    f"{self.issue.slug} --recipients failed`); once the cause is fixed, send to "
                    f"them with: {self.resume_hint} --retry-failed"
                )
        return text

    @property
    def resume_hint(self) -> str:
        """The command that resumes this campaign as it was sent: the transport, rate and
        concurrency are stored in the ledger, so only the configuration, issue and list are
        named (quoted for a POSIX shell)."""
        words = ["newsletter"]
        if self.config.path is not None and find_config() != self.config.path.resolve():
            words += ["--config", str(self.config.path)]
        words += ["send", str(self.issue_path), "--list", self.list_name]
        if self.segment is not None:
            words += ["--segment", self.segment.name or self.segment.canonical]
        return shlex.join(words)

    def template(self) -> MessageTemplate:
        """The issue's MIME template, built once per campaign from the check's compiled issue."""
        if self._template is None:
            bounces = self.config.bounces
            verp = None
            if bounces.verp_local and bounces.verp_domain:
                verp = Verp(self._secret(), bounces.verp_local, bounces.verp_domain)
            self._template = MessageTemplate(
                self.compiled,
                self.config,
                campaign_key=self.campaign_key,
                dkim=dkim_signer(self.config),
                verp=verp,
                feedback_id=feedback_id(self.issue.slug, self.list_name, self.config),
            )
        return self._template

    @property
    def campaign_key(self) -> str:
        """What Message-IDs derive from: stable per campaign (a resend after a crash keeps its
        Message-ID); a segment's campaign differs from the whole list's."""
        segment = self.segment.canonical if self.segment is not None else None
        return campaign_key(self.issue.slug, self.list_name, segment)

    def _secret(self) -> bytes:
        from newsletter.tokens import secret_key

        return secret_key(self.config, self.store.conn)

    def messages(self) -> SubscriberMessages:
        return SubscriberMessages(
            self.compiled, self.template(), self.store, self.config, self._secret()
        )

    # -- sending ---------------------------------------------------------------------------
    def run(
        self,
        *,
        rate: Rate | str | None = None,
        concurrency: int | None = None,
        progress: Progress | None = None,
        retry: RetryPolicy | None = None,
        max_failures_in_a_row: int = 50,
        stop: threading.Event | None = None,
        handle_sigint: bool = False,
        guard_confirmed: bool = False,
        worker: bool = False,
        lease: float = DEFAULT_LEASE,
    ) -> SendReport:
        """Send to everyone due; `stop` (or Ctrl-C with `handle_sigint`) ends it cleanly.

        On PostgreSQL the run drains the campaign with a crew (newsletter.campaign.workers):
        `worker` joins the run of the coordinating `send` on another process or machine instead
        of starting one (CampaignError on SQLite, or when no coordinator shows up); `lease`:
        seconds without this process's heartbeat after which the others take its rows over.

        `rate` and `concurrency` default to the campaign's stored ones (else unlimited, 4).
        A campaign the reputation guard paused (`guard_reason`) is resumed only with
        `guard_confirmed` (the user answered the question; the guard then stays quiet for this
        run); otherwise CampaignError. The guard may pause it again: CampaignPaused.
        """
        if worker:
            self._join()
        elif self.guard_reason and not guard_confirmed:
            raise CampaignError(
                f"this campaign was paused by the {self.guard_reason}; resume it only after "
                "confirming (answer the question, or pass --yes)"
            )
        concurrency = run_concurrency(concurrency, self.existing)
        run_limit = run_rate(rate, self.existing)
        options = RunOptions(
            concurrency=concurrency,
            retry=retry or RetryPolicy(),
            max_failures_in_a_row=max_failures_in_a_row,
        )
        source = self.messages()  # reads the DKIM key: a bad one stops us before sending
        # The images the messages name must answer for as long as the mail is kept.
        keep_issue_images(self.store.conn, self.issue)
        progress = progress or Progress()
        stop = stop or threading.Event()
        # Opened before the campaign is created or anyone claimed: a permanent refusal, or every
        # connection refused for too long, stops here with nothing recorded.
        connections = open_connections(self.transport_factory, concurrency, options.retry, stop)
        transports = connections.opened + connections.waiting
        limiter = RateLimiter(run_limit)
        try:
            joined = self.existing if worker else None  # `_join` found it
            campaign = joined if joined is not None else self._start_campaign()
            shared = db.is_postgresql(self.ledger.conn)
            if shared:
                limiter = SharedRateLimiter(run_limit, self.config.database, campaign.id)
            source.campaign_id = campaign.id
            if not guard_confirmed:
                options = replace(options, guard=self._guard(campaign.id))
            if self.retry_rows and not worker:
                self.ledger.requeue_failed(campaign.id, self.retry_rows)
                self.retry_rows = []
            if not worker:
                self._snapshot_if_public()
            runner = Runner(
                self.ledger,
                campaign.id,
                source,
                connections.opened,
                limiter,
                options,
                progress,
                stop,
                waiting=connections.waiting,
                connections=connections.stats,
            )
            if not shared:
                result = self._run(campaign.id, runner, handle_sigint, run_limit, concurrency)
            else:
                result = self._run_crew(
                    campaign.id, runner, handle_sigint, run_limit, concurrency, worker, lease
                )
        finally:
            close_transports(transports)
            if isinstance(limiter, SharedRateLimiter):
                limiter.close()
        return SendReport(
            campaign=self.ledger.get(campaign.id),
            tally=result.tally,
            counts=result.counts,
            elapsed=result.elapsed,
            interrupted=result.interrupted,
            resume_hint=self.resume_hint,
            connections=result.connections,
            dropped_links=dict(source.dropped_links),
            pacing=Pacing(
                limiter.throttles, limiter.request_rate(), limiter.ceiling, limiter.gave_up_after
            ),
            stopped_because=result.stopped_because,
        )

    def _run(
        self,
        campaign_id: int,
        runner: Runner,
        handle_sigint: bool,
        rate: Rate | None,
        concurrency: int,
    ) -> RunResult:
        self.ledger.begin_run(
            campaign_id,
            self.transport_description,
            transport_url=self.transport_choice.url,
            rate=str(rate) if rate is not None else None,
            concurrency=concurrency,
        )
        try:
            counts = self.ledger.counts(campaign_id)
            runner.progress.start(counts.remaining, f"'{self.subject}' to {self.audience}")
            with _sigint_stops(runner.stop, runner.progress, enabled=handle_sigint):
                try:
                    return runner.run()
                except CampaignPaused as exc:
                    raise CampaignPaused(f"{exc}; run: {self.resume_hint}") from None
        finally:
            self.ledger.end_run(campaign_id)

    def _join(self) -> None:
        """A worker: wait for the coordinating send's run (CampaignError on SQLite, or when
        none starts), then send as it does: its transport URL and its rate."""
        require_crew(self.ledger.conn)
        segment = self.segment.canonical if self.segment is not None else None
        joined = join_campaign(self.ledger, self.issue.slug, self.list_name, segment)
        if self.transport_choice.url is not None:  # not a transport given in Python
            if not joined.transport_url:
                # Falling back to this process's own transport (the outbox by default) would
                # record readers as sent who never reached the coordinator's relay.
                raise CampaignError(
                    f"the coordinating send of '{self.issue.slug}' did not record its transport "
                    "URL (it was given a transport object in Python), so a worker cannot send "
                    "as it does: let that process send alone"
                )
            self.transport_choice = choose_transport(self.config, joined.transport_url, joined)
        self.existing = joined

    def _run_crew(
        self,
        campaign_id: int,
        runner: Runner,
        handle_sigint: bool,
        rate: Rate | None,
        concurrency: int,
        worker: bool,
        lease: float,
    ) -> RunResult:
        """`_run` on PostgreSQL: this process joins the campaign's crew (the coordinator after
        taking the campaign over, a worker as it is) and claims its rows under its lease."""
        crew = self._enlist(campaign_id, runner.stop, rate, concurrency, worker, lease)
        claims = ClaimingLedger(self.ledger, crew)
        runner.ledger = claims
        if isinstance(runner.limiter, SharedRateLimiter):
            runner.limiter.holds_lease = crew.holds_lease
        why = "finished"
        try:
            counts = self.ledger.counts(campaign_id)
            label = f"'{self.subject}' to {self.audience}"
            runner.progress.start(counts.remaining, label + (" (worker)" if worker else ""))
            with _sigint_stops(runner.stop, runner.progress, enabled=handle_sigint):
                try:
                    result = runner.run()
                except CampaignPaused as exc:
                    why = f"paused: {exc}"
                    raise CampaignPaused(f"{exc}; run: {self.resume_hint}") from None
            _forget(result.tally, claims.lost)
            why = crew.reason or ("interrupted" if result.interrupted else "finished")
            if crew.reason is not None:
                if crew.reason.startswith("the campaign was paused") and not worker:
                    why = crew.reason
                    raise CampaignPaused(f"{crew.reason}; run: {self.resume_hint}")
                # Stopped by the crew (the coordinator ended, the campaign is done): not
                # interrupted by the user.
                result = replace(result, interrupted=False, stopped_because=crew.reason)
            return result
        except BaseException as exc:
            if why == "finished":
                why = f"stopped: {type(exc).__name__}"
            raise
        finally:
            claims.hand_back(campaign_id)
            crew.leave(why)
            if not worker:
                self.ledger.end_run(campaign_id)

    def _enlist(
        self,
        campaign_id: int,
        stop: threading.Event,
        rate: Rate | None,
        concurrency: int,
        worker: bool,
        lease: float,
    ) -> Crew:
        """The coordinator takes the campaign over (after stragglers of an earlier run let go
        of their readers), then each process joins the crew."""
        if not worker:
            migrate_crew(self.ledger.conn)
            wait_for_stragglers(self.ledger.conn, campaign_id)
            self.ledger.begin_run(
                campaign_id,
                self.transport_description,
                transport_url=self.transport_choice.url,
                rate=str(rate) if rate is not None else None,
                concurrency=concurrency,
            )
        role = WORKER if worker else COORDINATOR
        try:
            return Crew(self.config.database, campaign_id, role, stop, lease=lease)
        except BaseException:
            if not worker:
                self.ledger.end_run(campaign_id)
            raise

    @property
    def guard_reason(self) -> str | None:
        """Why the reputation guard paused this campaign (`reputation guard: ...`), if it did
        and nobody resumed it since."""
        row = self.existing
        if row is None or row.state != "paused" or not row.state_reason:
            return None
        return row.state_reason if row.state_reason.startswith(GUARD_PREFIX) else None

    def _guard(self, campaign_id: int) -> Callable[[int, int], str | None]:
        from newsletter.bounces import records

        records.migrate(self.store.conn)
        counts = self.ledger.counts(campaign_id)
        guard = Guard(
            self.store.conn, campaign_id, self.config.bounces, counts.sent + counts.bounced
        )
        return guard.check

    def _start_campaign(self) -> CampaignRow:
        # The snapshot: the segment is evaluated now, and the ledger rows are who it is; only
        # include_new evaluates it again.
        members = self.store.iter_member_ids(
            self.list_name, status="active", segment=self.segment_query
        )
        if self.existing is None:
            canonical = self.segment.canonical if self.segment is not None else None
            try:
                campaign, added = self.ledger.create(
                    self.issue.slug,
                    self.list_name,
                    self.subject,
                    members,
                    segment=canonical,
                    segment_name=self.segment.name if self.segment is not None else None,
                )
            except sqlite3.IntegrityError:  # another process created it since `prepare`
                campaign = self.ledger.find(self.issue.slug, self.list_name, canonical)
                added = 1
            if campaign is None or added == 0:
                raise CampaignError(f"nobody to send to: {self.audience} has no active subscribers")
            self.existing = campaign
            return campaign
        if self.include_new:
            self.ledger.add_new_members(self.existing.id, members)
        return self.existing

    def _snapshot_if_public(self) -> None:
        """A send to a public list publishes the issue: keep the web version it is sent with
        (see newsletter.publishing); a private list's send publishes nothing."""
        from newsletter import publishing

        if self.list_name in self.config.public_lists:
            publishing.snapshot_for_send(self.store.conn, self.compiled, self.list_name)

    def dry_run(self) -> DryRunReport:
        """Build every personalised message a run would send; send and record nothing."""
        started = time.monotonic()
        source = self.messages()
        if self.existing is None:
            ids: Iterator[int] = iter(
                self.store.iter_member_ids(
                    self.list_name, status="active", segment=self.segment_query
                )
            )
        else:
            ids = self.ledger.iter_pending_subscribers(self.existing.id)
            if self.retry_rows:  # --retry-failed: the failed readers a run would put back
                back = set(self.retry_rows)
                failed_ids = self.ledger.failed_rows(self.existing.id)
                ids = itertools.chain(ids, [sid for row, sid in failed_ids if row in back])
        count = size = skipped = 0
        failed: list[str] = []  # "email: why", for the summary
        for chunk in _chunked(ids, 500):
            items = [WorkItem(i, sid, "due", 0, 0) for i, sid in enumerate(chunk)]
            messages, outcomes = source.build(items)
            for message in messages:
                count += 1
                size += len(message.data)
            broken = []
            for outcome in outcomes:
                if outcome.status == "skipped":
                    skipped += 1
                else:
                    broken.append((chunk[outcome.row_id], outcome.reply))
            if broken:
                people = self.store.get_many([sid for sid, _ in broken])
                for sid, reply in broken:
                    who = people.get(sid)
                    failed.append(f"{who.email if who else f'subscriber {sid}'}: {reply}")
        return DryRunReport(count, size, skipped, failed, time.monotonic() - started)

    def close(self) -> None:
        self.ledger.close()
        self.store.close()


@dataclass(frozen=True)
class _Audience:
    """Who a send of (issue, list, segment) reaches: the campaign it resumes (if any), its
    segment (given, or the stored one of a bare resume) as SQL, and how many a run would mail."""

    existing: CampaignRow | None
    segment: Segment | None
    query: SegmentQuery | None
    note: str | None  # a bare resume kept the stored segment
    pending: int
    new_members: int


def _audience(
    ledger: Ledger,
    store: SubscriberList,
    slug: str,
    name: str,
    chosen: Segment | None,
    include_new: bool,
) -> _Audience:
    existing = find_campaign(ledger, slug, name, chosen, include_new)
    note = None
    if existing is not None and existing.segment is not None and chosen is None:
        chosen = parse_segment(existing.segment, name=existing.segment_name)
        note = f"Resuming the campaign to {existing.audience} as before."
    # A new campaign's fields are checked (a typo would match nobody); a resume keeps the
    # segment it was started with, even if a field it names is gone since.
    fields = store.field_names() if existing is None and chosen is not None else None
    query = compile_segment(chosen, fields) if chosen is not None else None
    new_members = 0
    if existing is None and not ledger.for_list(slug, name):
        pending = store.count(name, "active", segment=query)
    elif existing is None:  # another campaign of the issue and list may have some of them
        pending = ledger.count_unreached(slug, name, store.iter_member_ids(name, segment=query))
    else:
        new_members = ledger.count_new(existing.id, store.iter_member_ids(name, segment=query))
        pending = ledger.counts(existing.id).remaining + (new_members if include_new else 0)
    return _Audience(existing, chosen, query, note, pending, new_members)


# The ledger's list name for the welcome campaign (one per welcome issue, filled on confirmation).
WELCOME_LIST = "(welcome)"


def _refuse_welcome(config: Config, slug: str, list_name: str | None) -> None:
    """The welcome issue goes to each new subscriber on confirmation, never to a list: people
    on the list had it already (a test copy with `send --test` is fine)."""
    if slug == welcome_slug(config.welcome) and list_name != WELCOME_LIST:
        raise CampaignError(
            f"'{slug}' is the welcome issue: it goes to each subscriber once when they confirm "
            "(or `subscribers add --welcome`), never to a list, and is never scheduled; "
            "`send --test` mails you a copy"
        )


def _nobody(store: SubscriberList, name: str, who: _Audience) -> CampaignError:
    label = f"list '{name}'" + (f" in segment {who.segment.label}" if who.segment else "")
    if store.count(name, "active", segment=who.query):
        return CampaignError(
            f"nobody to send to: every active subscriber of {label} has this issue from "
            "another campaign of it already (see `newsletter status`)"
        )
    return CampaignError(
        f"nobody to send to: {label} has no active subscribers "
        "(add some with `newsletter subscribers add` or `import`)"
    )


def find_campaign(
    ledger: Ledger, slug: str, list_name: str, segment: Segment | None, include_new: bool = False
) -> CampaignRow | None:
    """The campaign a send of (issue, list, segment) resumes, if any.

    With a segment: the campaign of that segment; a named segment whose definition changed
    since its campaign started is refused (the campaign keeps the people it started with).
    Without one: the whole-list campaign, else the one unfinished segment campaign (a bare
    resume keeps the segment, as it keeps the transport; with `include_new`, a resume by
    definition, finished ones count too); several must be told apart with --segment."""
    if segment is not None:
        found = ledger.find(slug, list_name, segment.canonical)
        if found is None and segment.name is not None:
            for other in ledger.for_list(slug, list_name):
                if other.segment_name == segment.name:
                    raise CampaignError(
                        f"the campaign of '{slug}' to list {list_name}, segment "
                        f"{segment.name}, was started with {other.segment}; {segment.where} "
                        f"now says {segment.canonical}. A resume keeps the segment a campaign "
                        f"started with: give it with --segment '{other.segment}', or name the "
                        "new definition differently to start another campaign"
                    )
        return found
    whole = ledger.find(slug, list_name, None)
    if whole is not None:
        return whole
    segments = [c for c in ledger.for_list(slug, list_name) if c.segment is not None]
    if not include_new:  # a finished segment's campaign leaves the whole list to start
        segments = [c for c in segments if ledger.counts(c.id).remaining > 0]
    if len(segments) > 1:
        names = "; ".join(f"--segment '{c.segment_name or c.segment}'" for c in segments)
        state = "" if include_new else "unfinished "
        raise CampaignError(
            f"'{slug}' has {len(segments)} {state}campaigns to segments of list "
            f"{list_name}: resume one of them with {names}"
        )
    return segments[0] if segments else None


def checked_issue(
    config: Config, issue_path: str | Path, list_name: str | None = None
) -> CheckedIssue:
    """The issue and its compiled form, if it passes `newsletter check` (parsed and compiled
    once, by the check); CampaignError listing the errors if not. `list_name`: the list the
    mail goes to (None: the default list); see `has_web_version`."""
    from newsletter.lint import inspect_issue

    path = Path(issue_path)
    if not path.is_file():
        raise CampaignError(f"{path}: issue file not found")
    web_version = has_web_version(config, path, list_name or DEFAULT_LIST)
    check = inspect_issue(path, config, web_version=web_version)
    if check.errors:
        raise CampaignError(
            f"{path} fails `newsletter check`, so it will not be sent:\n"
            + "\n".join(d.format() for d in check.errors)
        )
    if check.issue is None or check.compiled is None:  # no error, yet nothing to send
        raise CampaignError(f"{path} is not a valid issue")
    return CheckedIssue(check.issue, check.compiled)


def has_web_version(config: Config, issue_path: Path, list_name: str) -> bool:
    """Whether a mail of the issue to `list_name` may link to its web version: a send to a
    public list publishes it; to a private list, only an issue published already has one
    (`newsletter publish`). Reads the database only if it exists."""
    from newsletter.issue import slugify
    from newsletter.publishing import is_published

    if list_name in config.public_lists:
        return True
    if not db.exists(config.database):
        return False
    conn = connect(config.database)
    try:
        return is_published(conn, slugify(issue_path.stem))
    finally:
        conn.close()


@dataclass(frozen=True)
class CheckedIssue:
    """An issue that passed `check`, with the compiled form the check made of it."""

    issue: Issue
    compiled: CompiledIssue


def transport_spec(
    config: Config, transport: TransportSpec, environ: Mapping[str, str] | None = None
) -> tuple[Callable[[], Transport], str]:
    """A factory of (unopened) transports and their description; a bad URL fails here."""
    if callable(transport):
        probe = transport()
        return transport, probe.describe()
    url = transport or config.transport
    probe = transport_from_url(url, config, environ)
    return (lambda: transport_from_url(url, config, environ)), probe.describe()


def dkim_signer(config: Config) -> DkimSigner | None:
    """The configured DKIM signer (its key read and checked now), or None without `dkim:`."""
    if config.dkim is None:
        return None

    return DkimSigner.from_config(config.dkim)


def send_issue(
    config: Config,
    issue_path: str | Path,
    *,
    list_name: str | None = None,
    transport: TransportSpec = None,
    include_new: bool = False,
    rate: Rate | str | None = None,
    concurrency: int | None = None,
    progress: Progress | None = None,
    retry: RetryPolicy | None = None,
    max_failures_in_a_row: int = 50,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
    switch_transport: bool = False,
    segment: str | None = None,
) -> SendReport:
    """Send (or resume sending) an issue to a list (or a segment of it: a name under
    `segments:` or an expression), without asking; see `Campaign`."""
    campaign = Campaign.prepare(
        config,
        issue_path,
        list_name=list_name,
        transport=transport,
        include_new=include_new,
        environ=environ,
        switch_transport=switch_transport,
        segment=segment,
    )
    try:
        return campaign.run(
            rate=rate,
            concurrency=concurrency,
            progress=progress,
            retry=retry,
            max_failures_in_a_row=max_failures_in_a_row,
            stop=stop,
        )
    finally:
        campaign.close()


@contextmanager
def _sigint_stops(stop: threading.Event, progress: Progress, *, enabled: bool) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM, as a service manager sends): finish what is in flight, then
    stop. A second one stops at once (rows in flight are then "unknown" and retried with the
    same Message-ID on resume)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        progress.note("Stopping after the messages in flight (Ctrl-C again to stop at once)...")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _still_subscribed(store: SubscriberList, rows: list[tuple[int, int]]) -> list[int]:
    """The row ids whose subscriber is still active (an unsubscribed or bounced reader is not
    put back: the send would skip them anyway)."""
    active: list[int] = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        people = store.get_many([sid for _, sid in chunk])
        active += [row for row, sid in chunk if sid in people and people[sid].status == "active"]
    return active


def _chunked(it: Iterator[int], size: int) -> Iterator[list[int]]:
    while True:
        chunk = [x for _, x in zip(range(size), it, strict=False)]
        if not chunk:
            return
        yield chunk


def _forget(tally: Tally, lost: Sequence[Outcome]) -> None:
    """Results a worker got after its lease ran out were not written (the worker that took
    the rows over wrote its own): they are not this worker's share, in its summary either."""
    for outcome in lost:
        if outcome.status in ("sent", "failed", "bounced", "skipped"):
            setattr(tally, outcome.status, getattr(tally, outcome.status) - 1)
