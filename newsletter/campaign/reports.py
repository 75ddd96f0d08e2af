"""What a run or a dry run of a campaign did, as values and as the lines the CLI prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from newsletter.campaign.connections import ConnectionStats
from newsletter.campaign.ledger import CampaignRow, Counts
from newsletter.campaign.progress import Tally


def plural(n: int, word: str) -> str:
    """'1 message', '2 messages' (English regular plurals only)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Pacing:
    """How the run kept to the provider's limit."""

    throttles: int = 0  # throttle replies (429, SES Throttling, SMTP 421/451 rate) this run
    settled: float | None = None  # requests per second at the end (None: never limited)
    published: float | None = None  # the provider's own limit, when it said
    gave_up_after: float | None = None  # seconds throttled with nothing accepted, then stopped

    def summary(self) -> str | None:
        published = f" (the provider's limit: {self.published:g}/s)" if self.published else ""
        if self.throttles:
            settled = f"{self.settled:.1f} requests/s" if self.settled else "no limit"
            stopped = (
                f" The provider accepted nothing for {self.gave_up_after:g} s of throttling, so "
                "the run stopped trying: the readers it put back are tried again by the next "
                "`send` (a daily quota or a suspended account looks like this: check the "
                "provider's console)."
                if self.gave_up_after is not None
                else ""
            )
            return (
                f"The provider throttled {plural(self.throttles, 'request')} (put back, not "
                f"counted as attempts); the pace settled at {settled}{published}.{stopped}"
            )
        if self.published:
            return (
                f"Paced to the provider's limit of {self.published:g} requests/s; never throttled."
            )
        return None


@dataclass(frozen=True)
class SendReport:
    campaign: CampaignRow
    tally: Tally  # this run
    counts: Counts  # the whole campaign afterwards
    elapsed: float
    interrupted: bool
    resume_hint: str
    connections: ConnectionStats | None = None
    dropped_links: Mapping[int, list[str]] = field(default_factory=dict)  # subscriber -> values
    pacing: Pacing = field(default_factory=Pacing)
    stopped_because: str | None = None  # a `send --worker` stopped by its crew: why

    @property
    def ok(self) -> bool:
        """Nothing failed permanently in this run and nobody is left waiting."""
        return (
            not self.interrupted
            and self.tally.failed + self.tally.bounced == 0
            and self.counts.remaining == 0
        )

    def summary(self) -> str:
        t, c = self.tally, self.counts
        rate = t.done / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"{t.sent} sent, {t.failed} failed, {t.bounced} bounced, {t.skipped} skipped "
            f"in {self.elapsed:.1f}s ({rate:.0f}/s)."
        ]
        lines.append(
            f"Campaign '{self.campaign.issue_slug}' to {self.campaign.audience}: "
            f"{c.sent} sent, {c.deferred} deferred, {c.failed} failed, {c.bounced} bounced, "
            f"{c.due + c.inflight} not yet sent."
        )
        refused = self.connections.summary() if self.connections else None
        if refused:
            lines.append(refused)
        paced = self.pacing.summary()
        if paced:
            lines.append(paced)
        if self.dropped_links:
            lines.append(dropped_links_warning(self.dropped_links))
        if self.stopped_because:
            lines.append(f"This worker stopped: {self.stopped_because}.")
        if self.interrupted:
            lines.append(f"Stopped. To resume, run: {self.resume_hint}")
        elif c.deferred:
            lines.append(
                f"{c.deferred} still deferred (the server asked to try later); "
                f"to retry them, run later: {self.resume_hint}"
            )
        return "\n".join(lines)


def dropped_links_warning(dropped: Mapping[int, list[str]]) -> str:
    """One line: how many recipients had a link dropped, with a few of the refused values."""
    values = list(dict.fromkeys(v for found in dropped.values() for v in found))
    shown = ", ".join(repr(v[:60]) for v in values[:3]) + (", ..." if len(values) > 3 else "")
    return (
        f"{len(dropped)} recipient{'s' if len(dropped) != 1 else ''} had a link dropped: {shown} "
        "(not an http, https or mailto URL; the link went out as plain text)"
    )


@dataclass(frozen=True)
class DryRunReport:
    messages: int
    bytes: int
    skipped: int
    failed: list[str]  # recipients whose message could not be built, with why
    elapsed: float

    def summary(self) -> str:
        average = self.bytes / self.messages / 1024 if self.messages else 0.0
        text = (
            f"Dry run: built {plural(self.messages, 'message')}, {self.bytes / 1e6:.1f} MB "
            f"(average {average:.1f} KB) in {self.elapsed:.1f}s; nothing was sent."
        )
        if self.skipped:
            text += f"\n{plural(self.skipped, 'subscriber')} would be skipped (no longer active)."
        if self.failed:
            text += (
                f"\n{plural(len(self.failed), 'message')} could not be built"
                " (fix these subscribers' data, or the issue's placeholders):\n"
            )
            text += "\n".join(f"  {f}" for f in self.failed[:20])
            if len(self.failed) > 20:
                text += f"\n  ... and {len(self.failed) - 20:,} more"
        return text

    @property
    def ok(self) -> bool:
        """Every message a run would send could be built."""
        return not self.failed
