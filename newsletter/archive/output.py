"""Writing a folder of files: incrementally (a file whose bytes are unchanged is not touched, so
its mtime stays and a sync to a static host sends only what changed) and atomically (each file is
written beside its place and renamed over it: a reader never sees half a page).

The folder's `.newsletter-archive` lists what the last build wrote, so a file dropped from the
site (an unpublished issue) is removed, and nothing else in the folder ever is. A folder that is
neither empty nor one of ours is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from newsletter.errors import NewsletterError

MANIFEST = ".newsletter-archive"


@dataclass(frozen=True)
class WriteReport:
    written: tuple[str, ...]  # relative paths, sorted
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def write_tree(out: Path, files: Mapping[str, bytes], *, clean: bool = False) -> WriteReport:
    """Make `out` hold exactly `files` (relative POSIX path -> bytes) among what we wrote before.
    `clean` first removes every file the previous build wrote. Raises NewsletterError for a
    folder we did not make (not empty, no manifest) or a file that cannot be written."""
    for name in files:
        _check_name(name)
    previous = _previous(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        removed = set()
        if clean:
            removed = {name for name in previous if _remove(out, name)}
            previous = set()
        removed |= {name for name in previous - set(files) if _remove(out, name)}
        written, unchanged = [], []
        for name in sorted(files):
            target = out / name
            data = files[name]
            if _same(target, data):
                unchanged.append(name)
                continue
            _write_atomic(target, data)
            written.append(name)
        manifest = (json.dumps(sorted(files), indent=0) + "\n").encode()
        if not _same(out / MANIFEST, manifest):
            _write_atomic(out / MANIFEST, manifest)
    except OSError as exc:
        raise NewsletterError(f"cannot write the archive in {out}: {exc}") from None
    return WriteReport(tuple(written), tuple(unchanged), tuple(sorted(removed - set(written))))


def _previous(out: Path) -> set[str]:
    if not out.exists():
        return set()
    if not out.is_dir():
        raise NewsletterError(f"{out} is a file, not a folder: name a folder for the archive")
    manifest = out / MANIFEST
    if not manifest.is_file():
        if any(out.iterdir()):
            raise NewsletterError(
                f"{out} is not empty and was not made by `newsletter archive` (no {MANIFEST}):"
                " name a new or empty folder"
            )
        return set()
    try:
        names = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NewsletterError(f"{manifest}: unreadable ({exc}); remove the folder") from None
    return {n for n in names if isinstance(n, str) and _safe(n)}


def _check_name(name: str) -> None:
    if not _safe(name):
        raise NewsletterError(f"refusing to write {name!r} outside the archive folder")


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and name != MANIFEST


def _same(target: Path, data: bytes) -> bool:
    try:
        return target.stat().st_size == len(data) and target.read_bytes() == data
    except OSError:
        return False


def _remove(out: Path, name: str) -> bool:
    target = out / name
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    parent = target.parent
    while parent != out:
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty
        parent = parent.parent
    return True


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)  # public files, whatever mkstemp's 0600
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
