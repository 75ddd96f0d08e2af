"""`newsletter status ISSUE --recipients [STATE]`: who got the issue, who did not, and why.

One line per recipient of a campaign: email, state, attempts, last reply, time. As a text
table, as CSV (RFC 4180 through the `csv` module, cells that a spreadsheet would run as a
formula neutralised as OWASP's CSV-injection guidance says) or as JSON for tools.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import TextIO

from newsletter import db
from newsletter.campaign.ledger import STATUSES, CampaignRow, Ledger
from newsletter.campaign.status import issue_slug
from newsletter.config import Config
from newsletter.db import connect
from newsletter.errors import CampaignError
from newsletter.subscribers.segment import SegmentError, parse_segment

# What users call the states; "unknown" is a row in flight when a run stopped (the ledger's
# "inflight"): its fate is unknown until the next run retries it.
STATE_NAMES = {s: ("unknown" if s == "inflight" else s) for s in STATUSES}
STATES = ("all", *STATE_NAMES.values())
COLUMNS = ("email", "state", "attempts", "last_reply", "time")
# OWASP "CSV Injection": a cell starting with one of these may run as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RecipientStatus:
    email: str  # "(erased)" when the subscriber was removed since
    state: str  # due, sent, deferred, failed, bounced, skipped, unknown
    attempts: int
    last_reply: str
    time: str  # ISO 8601 UTC of the send, else of the last change; "" when never tried


def recipient_statuses(
    config: Config,
    issue: str,
    *,
    list_name: str | None = None,
    state: str = "all",
    segment: str | None = None,
) -> tuple[CampaignRow, Iterator[RecipientStatus]]:
    """The campaign of `issue` (a file or slug) on `list_name` and its recipients in `state`.

    CampaignError when there is no such campaign, or several lists and none chosen. `segment`
    (a segment's name or expression) picks among the campaigns of one list.
    The rows are streamed: close nothing, read them to the end.
    """
    if state not in STATES:
        raise CampaignError(f"unknown state {state!r}; expected one of: {', '.join(STATES)}")
    slug = issue_slug(issue)
    if not db.exists(config.database):
        raise CampaignError(f"no campaign for {issue} yet")
    ledger = Ledger(connect(config.database))
    campaigns = ledger.for_issue(slug)
    try:
        campaigns = campaigns_of_segment(campaigns, issue, segment)
        campaign = _one(campaigns, issue, list_name)
    except BaseException:
        ledger.close()
        raise
    wanted = None if state == "all" else next(k for k, v in STATE_NAMES.items() if v == state)
    return campaign, _rows(config, ledger, campaign.id, wanted)


def campaigns_of_segment(
    campaigns: list[CampaignRow], issue: str, segment: str | None
) -> list[CampaignRow]:
    """The campaigns of one segment (given by name or expression); all without one."""
    if segment is None:
        return campaigns
    try:
        canonical = parse_segment(segment).canonical
    except SegmentError:
        canonical = None  # a name, not an expression
    wanted = {segment.strip(), canonical} - {None}
    found = [c for c in campaigns if c.segment is not None and wanted & {c.segment, c.segment_name}]
    if not found:
        raise CampaignError(f"no campaign for {issue} to segment {segment.strip()!r}")
    return found


def _one(campaigns: list[CampaignRow], issue: str, list_name: str | None) -> CampaignRow:
    lists = sorted({c.list_name for c in campaigns})
    if list_name is not None:
        campaigns = [c for c in campaigns if c.list_name == list_name]
        if not campaigns:
            sent_to = f"; it was sent to: {', '.join(lists)}" if lists else ""
            raise CampaignError(f"no campaign for {issue} on list {list_name!r}{sent_to}")
    if not campaigns:
        raise CampaignError(f"no campaign for {issue} yet")
    if len({c.list_name for c in campaigns}) > 1:
        raise CampaignError(
            f"{issue} was sent to several lists ({', '.join(lists)}): choose one with --list"
        )
    if len(campaigns) > 1:  # one list, several segments: the whole list's unless one is named
        whole = [c for c in campaigns if c.segment is None]
        if whole:
            return whole[0]
        names = ", ".join(str(c.segment_name or c.segment) for c in campaigns)
        raise CampaignError(
            f"{issue} went to several segments of list {campaigns[0].list_name} ({names}): "
            "choose one with --segment"
        )
    return campaigns[0]


def _rows(
    config: Config, ledger: Ledger, campaign_id: int, status: str | None
) -> Iterator[RecipientStatus]:
    from newsletter.subscribers import SubscriberStore

    store = SubscriberStore.for_config(config)
    try:
        rows = ledger.iter_recipients(campaign_id, status)
        while chunk := list(islice(rows, 500)):
            people = store.get_many([r.subscriber_id for r in chunk])
            for r in chunk:
                who = people.get(r.subscriber_id)
                yield RecipientStatus(
                    who.email if who is not None else "(erased)",
                    STATE_NAMES[r.status],
                    r.attempts,
                    r.reply,
                    r.time,
                )
    finally:
        store.close()
        ledger.close()


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @, tab or CR gets a
    leading apostrophe (OWASP CSV Injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def write_csv(out: TextIO, recipients: Iterable[RecipientStatus]) -> int:
    """Header plus one row per recipient; returns the number of rows."""
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for r in recipients:
        writer.writerow(
            [spreadsheet_safe(str(getattr(r, c))) for c in COLUMNS],
        )
        count += 1
    return count


def write_json(out: TextIO, campaign: CampaignRow, recipients: Iterable[RecipientStatus]) -> int:
    """`{"issue", "list", "segment", "recipients": [{email, state, attempts, last_reply,
    time}]}`; `segment` is the campaign's segment expression, null for the whole list."""
    people = [asdict(r) for r in recipients]
    json.dump(
        {
            "issue": campaign.issue_slug,
            "list": campaign.list_name,
            "segment": campaign.segment,
            "recipients": people,
        },
        out,
        ensure_ascii=False,
        indent=1,
    )
    out.write("\n")
    return len(people)


def write_table(out: TextIO, recipients: Iterable[RecipientStatus]) -> int:
    """For people: email, state, attempts, time, last reply (cut to one line)."""
    out.write(f"{'email':<40} {'state':<8} {'try':>3}  {'time':<20}  last reply\n")
    count = 0
    for r in recipients:
        reply = " ".join(r.last_reply.split())[:120]
        out.write(f"{r.email:<40} {r.state:<8} {r.attempts:>3}  {r.time or '-':<20}  {reply}\n")
        count += 1
    return count
