"""Progress of a send: a one-line bar on a terminal, plain log lines otherwise.

The runner calls `update` after every recorded batch; output is throttled here so a fast run
does not spend its time printing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Tally:
    """What this run has done so far."""

    sent: int = 0
    deferred: int = 0  # results, counting retries
    put_back: int = 0  # throttled results: due again, not an attempt (counting repeats)
    failed: int = 0
    bounced: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.bounced + self.skipped


class Progress:
    """Silent base: the library default when nobody is watching."""

    def start(self, total: int, label: str) -> None:
        pass

    def update(self, tally: Tally) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self, tally: Tally) -> None:
        pass


class StreamProgress(Progress):
    """Bar when `stream` is a terminal, log lines every `log_every` seconds when it is not."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        log_every: float = 5.0,
        width: int = 24,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every = log_every if not self.tty else 0.1
        self.width = width
        self.total = 0
        self.label = ""
        self._started = 0.0
        self._last = 0.0
        self._line = 0

    def start(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self._started = self._last = time.monotonic()
        if not self.tty:
            self._write(f"sending {label}: {total} to go\n")

    def update(self, tally: Tally) -> None:
        now = time.monotonic()
        if now - self._last < self.log_every:
            return
        self._last = now
        self._emit(tally, now)

    def note(self, message: str) -> None:
        if self.tty and self._line:
            self._write("\r" + " " * self._line + "\r")
            self._line = 0
        self._write(message.rstrip("\n") + "\n")

    def finish(self, tally: Tally) -> None:
        self._emit(tally, time.monotonic())
        if self.tty:
            self._write("\n")
            self._line = 0

    def _emit(self, tally: Tally, now: float) -> None:
        elapsed = max(now - self._started, 1e-6)
        rate = tally.done / elapsed
        left = max(self.total - tally.done, 0)
        eta = _duration(left / rate) if rate > 0 and left else "-"
        # The same words as the summary: bounced apart from failed; deferred counts the
        # deferral replies of this run (a recipient retried twice counts twice); a throttled
        # reader is not deferred but put back (README: throttling is not failure).
        throttled = f"{tally.put_back} put back (throttled), " if tally.put_back else ""
        fields = (
            f"{tally.sent} sent, {tally.failed} failed, {tally.bounced} bounced, "
            f"{tally.deferred} deferral{'s' if tally.deferred != 1 else ''}, {throttled}"
            f"{rate:.0f}/s, ETA {eta}"
        )
        if self.tty:
            share = min(tally.done / self.total, 1.0) if self.total else 1.0
            filled = int(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"[{bar}] {tally.done}/{self.total} {fields}"
            pad = max(self._line - len(line), 0)
            self._write("\r" + line + " " * pad)
            self._line = len(line)
        else:
            self._write(f"{tally.done}/{self.total} done: {fields}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
