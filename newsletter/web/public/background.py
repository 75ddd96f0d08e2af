"""serve's background task: fires due scheduled sends and sends owed welcome mails, in a
thread of its own, never inside a request (a confirmation page does not wait for a relay).

It wakes when the next schedule is due (at least every `POLL_SECONDS`, to see schedules other
processes add), when a confirmation owes a welcome (`wake`), and every
`WELCOME_RETRY_SECONDS` for welcomes still owed. At shutdown a send in progress stops after
the messages in flight and its schedule is handed back for the next start.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.scheduling import process_owner, run_due, seconds_until_due
from newsletter.welcome import WELCOME_RETRY_SECONDS, send_welcomes

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter.serve")
POLL_SECONDS = 30.0
JOIN_SECONDS = 30.0  # at shutdown, how long the messages in flight may take


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class BackgroundSender:
    """The thread; `start` at server start-up, `wake` after a confirmation, `stop` at exit."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.owner = process_owner()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._welcome_due = time.monotonic()  # owed welcomes are looked for at start too
        self._thread = threading.Thread(
            target=self._loop, name="newsletter-background", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A welcome is owed: send it now rather than at the next retry."""
        self._welcome_due = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_SECONDS)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._step("scheduled sends", self._schedules)
            if time.monotonic() >= self._welcome_due and not self._stop.is_set():
                self._welcome_due = time.monotonic() + WELCOME_RETRY_SECONDS
                self._step("welcome mail", self._welcomes)
            wait = min(POLL_SECONDS, self._welcome_due - time.monotonic())
            due = self._step("scheduled sends", lambda: seconds_until_due(self.config))
            if isinstance(due, float):
                wait = min(wait, due)
            self._wake.wait(max(0.2, wait))
            self._wake.clear()

    def _schedules(self) -> None:
        run_due(self.config, echo=_echo, stop=self._stop, owner=self.owner)

    def _welcomes(self) -> None:
        try:
            run = send_welcomes(self.config, stop=self._stop)
        except NewsletterError as exc:
            _echo(
                f"Welcome mail not sent yet: {exc} (still owed: tried again in "
                f"{WELCOME_RETRY_SECONDS // 60} minutes)"
            )
            return
        if run is not None:
            _echo(run.summary())

    def _step(self, what: str, action: Callable[[], object]) -> object:
        try:
            return action()
        except NewsletterError as exc:
            _echo(f"{what}: {exc}")
        except Exception:
            log.exception("%s: unexpected error; trying again", what)
            self._wake.wait(5.0)
        return None
