"""`outbox:PATH`: every message written as the exact bytes that would go on the wire.

One `.eml` file per message, named from its Message-ID, so sending the same message again (a
resume after a crash) overwrites the file instead of adding a duplicate. Each file is written to a
temporary name (mode 0600, in a folder made 0700), flushed to disk and renamed into place, and
the folder entry is synced before the batch is reported sent: a crash leaves either the old
file or the new one, never half a message.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import MessageError, TransportConfigError
from newsletter.private import make_private_dirs, open_private
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport

if TYPE_CHECKING:
    from newsletter.config import Config

DEFAULT_PATH = "./outbox"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def eml_name(message_id: str) -> str:
    """A file name that is a pure function of the Message-ID (and safe on any filesystem)."""
    safe = _UNSAFE.sub("_", message_id.strip("<>")).lstrip(".")[:150]
    if safe != message_id or not safe:
        # Distinct ids that sanitise alike must not share a file.
        safe = f"{safe}-{hashlib.sha256(message_id.encode()).hexdigest()[:12]}"
    return f"{safe}.eml"


class OutboxTransport(Transport):
    name = "outbox"
    max_batch = 100
    thread_safe = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def from_url(cls, url: str, config: Config, environ: Mapping[str, str]) -> OutboxTransport:
        scheme, _, rest = url.partition(":")
        if scheme.lower() != "outbox":
            raise TransportConfigError(f"not an outbox URL: {url!r}")
        if rest.startswith("//"):
            rest = rest[2:]
        path = Path(rest or DEFAULT_PATH).expanduser()
        return cls(path if path.is_absolute() else (config.root / path))

    def open(self) -> None:
        try:
            make_private_dirs(self.folder)
        except OSError as exc:
            # mkdir reports a file in the way as "File exists": say what that means here.
            reason = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
            raise TransportConfigError(
                f"cannot create the outbox folder {self.folder}: {reason}; "
                "fix the path in 'transport: outbox:PATH'"
            ) from None
        if not os.access(self.folder, os.W_OK):
            raise TransportConfigError(
                f"the outbox folder {self.folder} is not writable; "
                "fix its permissions or the path in 'transport: outbox:PATH'"
            )

    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        written = False
        for message in messages:
            try:
                data = message.data
            except MessageError as exc:
                results.append(DeliveryResult("failed", reply=f"not sent: {exc}"))
                continue
            target = self.folder / eml_name(message.message_id)
            try:
                self._write(target, data)
            except OSError as exc:
                results.append(DeliveryResult("deferred", reply=f"cannot write {target}: {exc}"))
                continue
            written = True
            results.append(DeliveryResult("sent", reply=f"written to {target}"))
        if written:
            self._sync_folder()
        return results

    def _write(self, target: Path, data: bytes) -> None:
        temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            # 0600: each file holds an address and that reader's own unsubscribe link.
            with os.fdopen(open_private(temp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def describe(self) -> str:
        return f"outbox:{self.folder}"
