"""Sending an issue to a list: prepare (check, compile, count), confirm, run, report.

`Campaign.prepare` does everything that can fail without side effects (the issue fails check,
a bad transport URL, an empty list) and says how many people a run would mail; `Campaign.run`
opens the transports (an unreachable server or refused login stops it here, before anyone is
marked sent), snapshots the list on first run, and hands over to the runner.
"""

from __future__ import annotations

import shlex
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.campaign.connections import close_transports, open_connections
from newsletter.campaign.ledger import CampaignRow, Ledger, WorkItem
from newsletter.campaign.messages import SubscriberList, SubscriberMessages
from newsletter.campaign.progress import Progress
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
from newsletter.config import Config, find_config
from newsletter.db import connect
from newsletter.errors import CampaignError, CampaignPaused
from newsletter.imagestore import keep_issue_images
from newsletter.issue import Issue
from newsletter.mail.dkim import DkimSigner
from newsletter.mail.message import MessageTemplate
from newsletter.render.compiled import CompiledIssue
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
        retry_failed: bool = False,
    ) -> Campaign:
        """Check the issue, choose the transport (a resume keeps the campaign's own unless
        `switch_transport`), count who a run would mail; CampaignError when it cannot start.

        `retry_failed`: the readers who failed permanently (not bounced, not skipped, still
        subscribed) are counted in, and `run` puts them back to due first (after a fix)."""
        checked = checked_issue(config, issue_path)
        if store is None:
            from newsletter.subscribers import SubscriberStore

            store = SubscriberStore.for_config(config)
        ledger = Ledger(connect(config.database))
        name = list_name or DEFAULT_LIST
        existing = ledger.find(checked.issue.slug, name)
        new_members = 0
        retry_rows: list[int] = []
        if existing is None:
            pending = store.count(name, "active")
        else:
            new_members = ledger.count_new(existing.id, store.iter_member_ids(name))
            pending = ledger.counts(existing.id).remaining + (new_members if include_new else 0)
            if retry_failed:
                retry_rows = _still_subscribed(store, ledger.failed_rows(existing.id))
                pending += len(retry_rows)
        try:
            choice = choose_transport(
                config, transport, existing, switch=switch_transport, environ=environ
            )
        except BaseException:
            ledger.close()
            raise
        if existing is None and pending == 0:
            raise CampaignError(
                f"nobody to send to: list '{name}' has no active subscribers "
                "(add some with `newsletter subscribers add` or `import`)"
            )
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
            existing=existing,
            pending=pending,
            new_members=new_members,
            retry_rows=retry_rows,
        )

    @property
    def subject(self) -> str:
        return self.issue.subject

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
            f"Send '{self.subject}' to {plural(self.pending, 'subscriber')} of list "
            f"{self.list_name}{via}{resuming}{retrying}?"
        )

    def nothing_left(self) -> str:
        """What to tell a user who resumes a campaign with nobody left to send to."""
        if self.existing is None:
            return f"Nothing to send: list '{self.list_name}' has no active subscribers."
        c = self.ledger.counts(self.existing.id)
        text = (
            f"Nothing left to send: '{self.issue.slug}' on list {self.list_name} was handled "
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
        return shlex.join(words)

    def template(self) -> MessageTemplate:
        """The issue's MIME template, built once per campaign from the check's compiled issue."""
        if self._template is None:
            self._template = MessageTemplate(
                self.compiled,
                self.config,
                campaign_key=f"{self.issue.slug}/{self.list_name}",
                dkim=dkim_signer(self.config),
            )
        return self._template

    def messages(self) -> SubscriberMessages:
        from newsletter.tokens import secret_key

        secret = secret_key(self.config, self.store.conn)
        return SubscriberMessages(self.compiled, self.template(), self.store, self.config, secret)

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
    ) -> SendReport:
        """Send to everyone due; `stop` (or Ctrl-C with `handle_sigint`) ends it cleanly.

        `rate` and `concurrency` default to the campaign's stored ones (else unlimited, 4).
        """
        concurrency = run_concurrency(concurrency, self.existing)
        run_limit = run_rate(rate, self.existing)
        options = RunOptions(
            concurrency=concurrency,
            retry=retry or RetryPolicy(),
            max_failures_in_a_row=max_failures_in_a_row,
        )
        limiter = RateLimiter(run_limit)
        source = self.messages()  # reads the DKIM key: a bad one stops us before sending
        # The images the messages name must answer for as long as the mail is kept.
        keep_issue_images(self.store.conn, self.issue)
        progress = progress or Progress()
        stop = stop or threading.Event()
        # Opened before the campaign is created or anyone claimed: a permanent refusal, or every
        # connection refused for too long, stops here with nothing recorded.
        connections = open_connections(self.transport_factory, concurrency, options.retry, stop)
        transports = connections.opened + connections.waiting
        try:
            campaign = self._start_campaign()
            if self.retry_rows:
                self.ledger.requeue_failed(campaign.id, self.retry_rows)
                self.retry_rows = []
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
            result = self._run(campaign.id, runner, handle_sigint, run_limit, concurrency)
        finally:
            close_transports(transports)
        return SendReport(
            campaign=self.ledger.get(campaign.id),
            tally=result.tally,
            counts=result.counts,
            elapsed=result.elapsed,
            interrupted=result.interrupted,
            resume_hint=self.resume_hint,
            connections=result.connections,
            dropped_links=dict(source.dropped_links),
            pacing=Pacing(limiter.throttles, limiter.request_rate(), limiter.ceiling),
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
            runner.progress.start(counts.remaining, f"'{self.subject}' to list {self.list_name}")
            with _sigint_stops(runner.stop, runner.progress, enabled=handle_sigint):
                try:
                    return runner.run()
                except CampaignPaused as exc:
                    raise CampaignPaused(f"{exc}; run: {self.resume_hint}") from None
        finally:
            self.ledger.end_run(campaign_id)

    def _start_campaign(self) -> CampaignRow:
        members = self.store.iter_member_ids(self.list_name, status="active")
        if self.existing is None:
            try:
                campaign, added = self.ledger.create(
                    self.issue.slug, self.list_name, self.subject, members
                )
            except sqlite3.IntegrityError:  # another process created it since `prepare`
                campaign = self.ledger.find(self.issue.slug, self.list_name)
                added = 1
            if campaign is None or added == 0:
                raise CampaignError(
                    f"nobody to send to: list '{self.list_name}' has no active subscribers"
                )
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
            publishing.snapshot_for_send(
                self.store.conn, self.issue.slug, self.list_name, self.compiled.web_html
            )

    def dry_run(self) -> DryRunReport:
        """Build every personalised message a run would send; send and record nothing."""
        started = time.monotonic()
        source = self.messages()
        if self.existing is None:
            ids: Iterator[int] = iter(self.store.iter_member_ids(self.list_name, status="active"))
        else:
            ids = self.ledger.iter_pending_subscribers(self.existing.id)
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


def checked_issue(config: Config, issue_path: str | Path) -> CheckedIssue:
    """The issue and its compiled form, if it passes `newsletter check` (parsed and compiled
    once, by the check); CampaignError listing the errors if not."""
    from newsletter.lint import inspect_issue

    path = Path(issue_path)
    if not path.is_file():
        raise CampaignError(f"{path}: issue file not found")
    check = inspect_issue(path, config)
    if check.errors:
        raise CampaignError(
            f"{path} fails `newsletter check`, so it will not be sent:\n"
            + "\n".join(d.format() for d in check.errors)
        )
    if check.issue is None or check.compiled is None:  # no error, yet nothing to send
        raise CampaignError(f"{path} is not a valid issue")
    return CheckedIssue(check.issue, check.compiled)


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
) -> SendReport:
    """Send (or resume sending) an issue to a list, without asking; see `Campaign`."""
    campaign = Campaign.prepare(
        config,
        issue_path,
        list_name=list_name,
        transport=transport,
        include_new=include_new,
        environ=environ,
        switch_transport=switch_transport,
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
