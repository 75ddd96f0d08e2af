"""Files that hold secrets or subscriber data, created readable by their owner only.

The database (subscribers, the generated signing secret), outbox messages (addresses, personal
unsubscribe links), spooled unsubscribes and DKIM private keys are created mode 0600 and the
folders we create for them 0700, whatever the umask: the mode is set explicitly after creation,
because the umask can only take bits away (a umask of 0277 would leave a key unwritable for
its own owner, 0 a database readable by everyone on the machine). Files that already exist keep
their mode: `newsletter doctor` reports wider ones with the `chmod` to run.

SQLite creates a database's `-wal` and `-shm` files with the mode of the database file itself,
so creating the database file 0600 first covers them too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parents, each new one mode 0700; existing ones untouched.

    Raises OSError like `Path.mkdir` (FileExistsError when a file is in the way)."""
    missing: list[Path] = []
    here = folder
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    if here.exists() and not here.is_dir():  # a file in the way: name it, as mkdir does
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(here))
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # another process made it at the same moment: its mode is its own
        os.chmod(path, DIR_MODE)
    if not folder.is_dir():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))


def open_private(path: Path | str, flags: int) -> int:
    """`os.open(path, flags | O_CREAT, 0600)`; a file this call created is then set to exactly
    0600. Returns the file descriptor. With O_EXCL an existing file raises FileExistsError."""
    existed = os.path.lexists(path)
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    if not existed:
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError:
            os.close(fd)
            raise
    return fd


def create_private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 unless it exists; True when this call created it."""
    try:
        fd = open_private(path, os.O_WRONLY | os.O_EXCL)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def wider_than_private(path: Path) -> int | None:
    """The permission bits of `path` when group or others have any access, else None (also
    when the path does not exist)."""
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return mode
    return None
