"""The reputation guard: a campaign that is hurting the sender pauses itself.

Past `guard_min_sent` messages taken by the server or provider (sent + bounced), a campaign whose
hard bounces and blocks (refusals about the sender or the message, 5.7.x: see
newsletter.enhancedstatus; they leave the subscriber as they are but hurt the sender all the
same) pass `guard_bounce_rate` of them, or whose complaints pass `guard_complaint_rate`
(Gmail and Yahoo require under 0.3%), is paused with the reason. Hard bounces and complaints
are counted per subscriber from `feedback_events`: a 5xx while sending (source `smtp`), DSNs and
ARF reports imported meanwhile, provider webhooks. `send` resumes a guard-paused campaign only
after the user answers the question (see `Campaign.guard_reason`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from newsletter import db
from newsletter.bounces import records
from newsletter.bouncesettings import BounceSettings

PREFIX = "reputation guard: "
REFRESH = 1.0  # seconds between reads of events that arrive from outside the run


@dataclass(frozen=True)
class Rates:
    """A campaign's bounce and complaint figures (`newsletter status`)."""

    attempted: int  # sent + bounced
    hard: int
    soft: int
    complaints: int
    unsubscribes: int
    delivered: int
    blocked: int = 0  # refused for the sender or the message (not counted in `hard`)

    @property
    def hard_rate(self) -> float:
        """Hard bounces and blocks per message taken: what the guard's bounce limit is about."""
        return (self.hard + self.blocked) / self.attempted if self.attempted else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.attempted if self.attempted else 0.0

    def format(self) -> str:
        return (
            f"  hard bounces {self.hard}{self.blocks_note()} ({percent(self.hard_rate)}), "
            f"complaints {self.complaints} ({percent(self.complaint_rate)}) of "
            f"{self.attempted} sent; soft bounces {self.soft}, provider unsubscribes "
            f"{self.unsubscribes}, deliveries reported {self.delivered}"
        )

    def blocks_note(self) -> str:
        return f" and blocks {self.blocked}" if self.blocked else ""


def campaign_rates(conn: db.Connection, campaign_id: int, attempted: int) -> Rates:
    counts = records.campaign_counts(conn, campaign_id)
    return Rates(
        attempted,
        counts.get("hard_bounce", 0),
        counts.get("soft_bounce", 0),
        counts.get("complaint", 0),
        counts.get("unsubscribe", 0),
        counts.get("delivered", 0),
        counts.get("blocked", 0),
    )


def verdict(rates: Rates, settings: BounceSettings) -> str | None:
    """The reason to pause, or None while the campaign is within the limits."""
    if rates.attempted < settings.guard_min_sent:
        return None
    if rates.hard_rate > settings.guard_bounce_rate:
        what = (
            f"hard bounces {rates.hard}{rates.blocks_note()} of {rates.attempted} sent "
            f"({percent(rates.hard_rate)})"
        )
        limit = settings.guard_bounce_rate
    elif rates.complaint_rate > settings.guard_complaint_rate:
        what = (
            f"complaints {rates.complaints} of {rates.attempted} sent "
            f"({percent(rates.complaint_rate)})"
        )
        limit = settings.guard_complaint_rate
    else:
        return None
    return (
        f"{PREFIX}{what} passed {percent(limit)}; check the list (old or bought addresses?) "
        "before sending more"
    )


class Guard:
    """`check(sent, bounced)` after each recorded batch (the runner's ledger thread)."""

    def __init__(
        self, conn: db.Connection, campaign_id: int, settings: BounceSettings, before: int
    ) -> None:
        self.conn = conn
        self.campaign_id = campaign_id
        self.settings = settings
        self.before = before  # sent + bounced by earlier runs
        self._read_at = 0.0
        self._bounced = -1
        self._rates: Rates | None = None

    def check(self, sent: int, bounced: int) -> str | None:
        attempted = self.before + sent + bounced
        if attempted < self.settings.guard_min_sent:
            return None
        now = time.monotonic()
        if self._rates is None or bounced != self._bounced or now - self._read_at >= REFRESH:
            self._rates = campaign_rates(self.conn, self.campaign_id, attempted)
            self._read_at, self._bounced = now, bounced
        rates = self._rates
        figures = Rates(attempted, rates.hard, 0, rates.complaints, 0, 0, rates.blocked)
        return verdict(figures, self.settings)


def percent(rate: float) -> str:
    text = f"{rate * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"
