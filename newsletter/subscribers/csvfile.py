"""Reading subscriber CSV files defensively, and writing them.

UTF-8 with or without a BOM, comma, semicolon or tab (guessed from the header row), quoted
fields. Every problem that makes the whole file unreadable (not UTF-8, a line of megabytes, no
header) raises ImportFileError naming the file and line; problems of one row are left to the
importer, which rejects that row only.

Files we write are safe to open in a spreadsheet (OWASP, "CSV Injection"): a cell that a
spreadsheet would run as a formula (it begins with `=`, `+`, `-`, `@`, tab or carriage return,
possibly after apostrophes) gets one leading `'`. Reading removes exactly that apostrophe and no
other, so export -> import gives back every value, including one that really begins with `'`.
"""

from __future__ import annotations

import codecs
import csv
import errno
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import BinaryIO, TextIO

from newsletter import db
from newsletter.errors import ImportFileError, SubscriberError

MAX_LINE = 256 * 1024  # bytes in one physical line
MAX_FIELD = 128 * 1024  # characters in one cell (csv's default limit, made explicit)
DELIMITERS = (",", ";", "\t")
FORMULA_START = "=+-@\t\r"  # what spreadsheets read as a formula (OWASP CSV injection)
_NEEDS_GUARD = re.compile(rf"'*[{re.escape(FORMULA_START)}]")
_GUARDED = re.compile(rf"'+[{re.escape(FORMULA_START)}]")


def guard_cell(value: str) -> str:
    """The cell as written: one `'` before a value a spreadsheet would run as a formula."""
    return "'" + value if _NEEDS_GUARD.match(value) else value


def unguard_cell(value: str) -> str:
    """Undo `guard_cell` (and only it): `'=1` -> `=1`, `''-x` -> `'-x`, `'tis` unchanged."""
    return value[1:] if _GUARDED.match(value) else value


def open_rows(path: Path) -> tuple[BinaryIO, list[str], Iterator[tuple[int, list[str]]]]:
    """Open a CSV file: (file to close, header cells, iterator of (line number, cells)).

    Blank lines are skipped. The line number is the first physical line of the row.
    """
    try:
        if path.is_dir():
            raise ImportFileError(f"{path}: is a folder, not a CSV file")
        fh = path.open("rb")
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        lines = _decoded_lines(fh, path)
        first = next(lines, None)
        if first is None or not first.strip():
            raise ImportFileError(
                f"{path}:1: the first line must be a header row naming the columns, e.g. "
                "'email,name'"
            )
        delimiter = guess_delimiter(first)
        reader = csv.reader(chain((first,), lines), delimiter=delimiter, strict=False)
        header = [unguard_cell(c) for c in _next_row(reader, path) or []]
        return fh, header, _rows(reader, path)
    except BaseException:
        fh.close()
        raise


def guess_delimiter(header: str) -> str:
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _rows(reader: Iterator[list[str]], path: Path) -> Iterator[tuple[int, list[str]]]:
    line = reader.line_num  # type: ignore[attr-defined]
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num  # type: ignore[attr-defined]
            joined = "".join(cells)
            if joined.strip():
                if "'" in joined:
                    cells = [unguard_cell(c) if c[:1] == "'" else c for c in cells]
                yield start, cells
    except csv.Error as exc:
        raise _parse_error(path, line + 1, exc) from None


def _next_row(reader: Iterator[list[str]], path: Path, line: int = 1) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise _parse_error(path, line, exc) from None


def _parse_error(path: Path, line: int, exc: csv.Error) -> ImportFileError:
    message = str(exc)
    if "field larger than field limit" in message:
        message = f"a cell is longer than {MAX_FIELD // 1024} KiB"
    return ImportFileError(f"{path}:{line}: cannot parse CSV: {message}")


def _decoded_lines(fh: BinaryIO, path: Path) -> Iterator[str]:
    number = 0
    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE:
            raise ImportFileError(
                f"{path}:{number}: line is longer than {MAX_LINE // 1024} KiB; is this a CSV "
                "file with one subscriber per line?"
            )
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line); save "
                "the file as UTF-8 (in a spreadsheet: 'CSV UTF-8')"
            ) from None


def refuse_to_replace(path: Path, conn: db.Connection, first_column: str) -> None:
    """Refuse to write a CSV file over the database, or over a file that is not one of ours.

    Writing replaces the target whole: `export -o newsletter.db` wiped every subscriber and
    `--rejects newsletter.yaml` the configuration. A file whose first line starts with
    `first_column` (an earlier export or rejects file) may be replaced.
    """
    target = path.resolve()
    files = [] if db.is_postgresql(conn) else conn.execute("PRAGMA database_list").fetchall()
    databases = {Path(row[2]).resolve() for row in files if row[2]}  # none in PostgreSQL
    companions = {d.with_name(d.name + suffix) for d in databases for suffix in ("-wal", "-shm")}
    if target in databases | companions:
        raise SubscriberError(f"{path}: is the subscriber database; write to a .csv file")
    if not path.is_file():
        return
    try:
        with path.open("rb") as fh:
            start = fh.read(len(first_column) + 4)
    except OSError:
        return  # writing will report it
    if start and not start.removeprefix(codecs.BOM_UTF8).startswith(first_column.encode()):
        raise SubscriberError(
            f"{path}: exists and is not a file this command wrote; not replacing it (remove it "
            "first or choose another file)"
        )


def write_csv_atomic(path: Path, header: list[str], rows: Iterable[list[str]]) -> int:
    """Write a CSV file via a temporary file renamed into place: never half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's word for "a file is where a folder should be"
        raise NotADirectoryError(
            errno.ENOTDIR, f"{path.parent} is a file, not a folder", str(path.parent)
        ) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = write_csv(out, header, rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_csv(out: TextIO, header: list[str], rows: Iterable[list[str]]) -> int:
    """Write header and rows, each cell through `guard_cell`; returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow([guard_cell(c) for c in header])
    count = 0
    for row in rows:
        writer.writerow([guard_cell(c) if c[:1] in _GUARD_FIRST else c for c in row])
        count += 1
    return count


_GUARD_FIRST = frozenset(FORMULA_START + "'")


csv.field_size_limit(MAX_FIELD)
