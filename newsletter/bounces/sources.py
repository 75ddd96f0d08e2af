"""Where bounce mail is read from on disk: `.eml` files (one message each), mbox files and
Maildir folders (the standard library's `mailbox` module), in any mix.

Every path is opened and checked before the first message is parsed, so a bad path is an error
before anything is applied.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import MailboxError


@dataclass(frozen=True, slots=True)
class MailSource:
    """One path and how to read it: kind `eml`, `mbox` or `maildir`."""

    path: Path
    kind: str

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(label, bytes) per message: `PATH`, `PATH#N` (mbox, from 1) or `PATH:KEY`
        (Maildir). Raises MailboxError when the file can no longer be read."""
        try:
            if self.kind == "eml":
                yield str(self.path), self.path.read_bytes()
            elif self.kind == "mbox":
                box = mailbox.mbox(self.path, create=False)
                try:
                    for number, key in enumerate(box.iterkeys(), 1):
                        yield f"{self.path}#{number}", box.get_bytes(key)
                finally:
                    box.close()
            else:
                folder = mailbox.Maildir(self.path, factory=None, create=False)
                for key in sorted(folder.iterkeys()):
                    yield f"{self.path}:{key}", folder.get_bytes(key)
        except OSError as exc:
            raise MailboxError(f"{self.path}: cannot read: {exc.strerror or exc}") from None


def open_sources(paths: list[Path]) -> list[MailSource]:
    """Each path as a MailSource: a folder with cur/ new/ tmp/ is a Maildir, a file whose first
    line starts with `From ` is an mbox, any other file one message. Raises MailboxError naming
    the path for a missing or unreadable path or a folder that is not a Maildir."""
    if not paths:
        raise MailboxError("give at least one .eml file, mbox file or Maildir folder")
    sources = []
    for path in paths:
        if path.is_dir():
            missing = [d for d in ("cur", "new", "tmp") if not (path / d).is_dir()]
            if missing:
                raise MailboxError(
                    f"{path}: a folder, but not a Maildir (no {', '.join(d + '/' for d in missing)}"
                    "); give a Maildir folder, an mbox file or .eml files"
                )
            sources.append(MailSource(path, "maildir"))
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(5)
        except FileNotFoundError:
            raise MailboxError(f"{path}: no such file or folder") from None
        except OSError as exc:
            raise MailboxError(f"{path}: cannot read: {exc.strerror or exc}") from None
        sources.append(MailSource(path, "mbox" if head == b"From " else "eml"))
    return sources
