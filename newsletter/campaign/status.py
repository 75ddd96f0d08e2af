"""`newsletter status`: where each campaign of an issue stands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter import db
from newsletter.bounces import records
from newsletter.bounces.guard import Rates, campaign_rates
from newsletter.campaign.lease import WorkerShare, shares
from newsletter.campaign.ledger import CampaignRow, Counts, Ledger
from newsletter.config import Config
from newsletter.db import connect
from newsletter.errors import CampaignError, IssueInvalid
from newsletter.issue import load_issue, slugify


@dataclass(frozen=True)
class CampaignStatus:
    campaign: CampaignRow
    counts: Counts
    sending_now: bool
    last_change: str = ""
    rates: Rates | None = None  # bounces and complaints reported so far
    workers: tuple[WorkerShare, ...] = ()  # PostgreSQL: each worker's share, alive or not

    def format(self) -> str:
        c, row = self.counts, self.campaign
        state = row.state
        if self.sending_now:
            state = "sending now"
        elif row.state == "sending" and self.counts.due + self.counts.inflight == 0:
            state = "waiting to retry the deferred (send again to retry them)"
        elif row.state == "sending":
            state = "stopped before the end (send again to resume)"
        # Rows in flight while no sender runs were in flight when it died: their fate is unknown
        # until the next run retries them (with the same Message-ID).
        inflight_label = "in flight" if self.sending_now else "unknown"
        lines = [
            f"{row.issue_slug} -> {row.audience}: {state}"
            + (f" ({row.state_reason})" if row.state_reason else ""),
            f"  due {c.due}, sent {c.sent}, deferred {c.deferred}, failed {c.failed}, "
            f"bounced {c.bounced}, {inflight_label} {c.inflight}, skipped {c.skipped} "
            f"(of {c.total})",
            f"  started {row.created_at}, last change {self.last_change or row.updated_at}, "
            f"runs {row.runs}, "
            f"via {row.transport_url or row.transport or '-'}, rate {row.rate or 'unlimited'}"
            + (f", concurrency {row.concurrency}" if row.concurrency else ""),
        ]
        if self.rates is not None:
            lines.append(self.rates.format())
        if self.workers:
            lines.append(f"  workers ({len(self.workers)}):")
            lines += [share.format() for share in self.workers]
        return "\n".join(lines)


def issue_slug(issue: str | Path) -> str:
    """An issue file's slug, or the argument itself when it is already a slug."""
    path = Path(issue)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise CampaignError(f"{path}: issue file not found")
        try:
            return load_issue(path).slug
        except IssueInvalid:
            return slugify(path.stem)
    if not str(issue).strip():
        raise CampaignError("no issue given: name an issue file or its slug")
    return str(issue)


def campaign_status(
    config: Config,
    issue: str | Path,
    *,
    list_name: str | None = None,
    segment: str | None = None,
) -> list[CampaignStatus]:
    """The campaigns of `issue` (a file or slug), only those to `list_name` and of `segment`
    (its name or expression) when given; CampaignError when a filter matches none."""
    from newsletter.campaign.recipients import campaigns_of_segment

    slug = issue_slug(issue)
    if not db.exists(config.database):  # nothing was ever sent: do not create a database to say so
        return []
    with Ledger(connect(config.database)) as ledger:
        records.migrate(ledger.conn)
        out = []
        rows = ledger.for_issue(slug)
        if rows and list_name is not None:
            rows = [r for r in rows if r.list_name == list_name]
            if not rows:
                raise CampaignError(f"no campaign for {issue} to list {list_name}")
        if rows:
            rows = campaigns_of_segment(rows, str(issue), segment)
        for row in rows:
            counts = ledger.counts(row.id)
            out.append(
                CampaignStatus(
                    row,
                    counts,
                    ledger.is_being_sent(row.id),
                    ledger.last_change(row.id),
                    campaign_rates(ledger.conn, row.id, counts.sent + counts.bounced),
                    tuple(shares(ledger.conn, row.id)),
                )
            )
        return out
