"""`console:`: one line per message on standard output, nothing delivered.

Useful to watch what a send would do. The line shows the envelope recipient, the decoded subject,
the Message-ID and the size of the complete message.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from newsletter.errors import MessageError, TransportConfigError
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport

if TYPE_CHECKING:
    from newsletter.config import Config


class ConsoleTransport(Transport):
    name = "console"
    max_batch = 100
    thread_safe = True

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, config: Config, environ: Mapping[str, str]) -> ConsoleTransport:
        scheme, _, rest = url.partition(":")
        if scheme.lower() != "console" or rest.strip("/"):
            raise TransportConfigError(
                f"the console transport takes no options: use 'console:', got {url!r}"
            )
        return cls()

    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        lines: list[str] = []
        for message in messages:
            try:
                size = len(message.data)
                subject = message.parts.subject
            except MessageError as exc:
                results.append(DeliveryResult("failed", reply=f"not sent: {exc}"))
                lines.append(f"FAILED {message.recipient}: {exc}")
                continue
            lines.append(
                f"To: {message.recipient} | Subject: {subject} | "
                f"Message-ID: <{message.message_id}> | {size:,} bytes"
            )
            results.append(DeliveryResult("sent", reply="printed to the console"))
        stream = self._stream or sys.stdout
        text = "".join(line + "\n" for line in lines)
        encoding = getattr(stream, "encoding", None)
        if encoding:  # a console that cannot show a subject's "—" gets "?", not a crash
            text = text.encode(encoding, "replace").decode(encoding)
        with self._lock:
            stream.write(text)
            stream.flush()
        return results

    def describe(self) -> str:
        return "console:"
