"""CSV import: validate every row, apply the valid ones in one transaction, report the rest.

Columns: `email` (required), `name`, `status`, `lists` (names separated by '|'), `created_at`,
`tags` (separated by '|'; an import adds tags, never removes one), and any other column
becomes a personalisation field (`{{ subscriber.fields.city }}`). This is
exactly what `export` writes, so export -> import round-trips. Without a `name` column, the
first/last name columns of common exports (`First Name`/`Last Name` as Mailchimp, Substack and
Google Contacts write them, `Given Name`/`Family Name`) fill `name`, joined with a space, and
stay fields too. Field names are case-insensitive: a column spelled `city` fills the stored
field `City`; two columns of one file that differ only in case are refused, naming both.

Rules: the whole import is one transaction (an unreadable line halfway leaves the database as it
was); re-importing a file changes nothing; an import never re-activates an unsubscribed,
bounced, complained or erased address; rejected rows go to a rejects file with line and reason.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from newsletter.errors import ImportFileError, SubscriberError
from newsletter.subscribers.address import email_key, normalize_email
from newsletter.subscribers.csvfile import open_rows, refuse_to_replace, write_csv_atomic
from newsletter.subscribers.model import (
    ACTIVE,
    DEFAULT_LIST,
    FIELD_VALUE_MAX,
    NAME_MAX,
    PENDING,
    ImportCounts,
    ImportRow,
    check_field_name,
    check_list_name,
    check_status,
    clean_field_value,
    clean_name,
    format_character,
    has_control,
    parse_lists,
    parse_tags,
    parse_timestamp,
)
from newsletter.subscribers.store import SubscriberStore

CHUNK_ROWS = 5000
DEFAULT_LISTS = (DEFAULT_LIST,)
_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "email address": "email",
    "email_address": "email",
    "name": "name",
    "full name": "name",
    "full_name": "name",
    "status": "status",
    "lists": "lists",
    "created_at": "created_at",
    "tags": "tags",
}
_GIVEN = {"first name", "first_name", "firstname", "given name", "given_name"}
_FAMILY = {"last name", "last_name", "lastname", "family name", "family_name", "surname"}


@dataclass(frozen=True)
class ImportReport:
    path: Path
    added: int
    updated: int
    unchanged: int
    rejected: int
    rejects_path: Path | None  # written only when rows were rejected
    seconds: float

    @property
    def rows(self) -> int:
        return self.added + self.updated + self.unchanged + self.rejected

    def summary(self) -> str:
        text = (
            f"{self.path}: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.rejected} rejected"
        )
        if self.rejects_path is not None:
            text += f" (see {self.rejects_path})"
        return text


@dataclass(frozen=True)
class Columns:
    """Where each known column is in a row, and the field columns."""

    width: int
    email: int
    name: int | None
    status: int | None
    lists: int | None
    created_at: int | None
    fields: tuple[tuple[int, str], ...]
    unnamed: tuple[int, ...]
    name_parts: tuple[int, ...] = ()  # given and family name columns, used without `name`
    tags: int | None = None


def default_rejects_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


def import_csv(
    store: SubscriberStore,
    path: str | Path,
    *,
    list_name: str | None = None,
    status: str = ACTIVE,
    rejects_path: str | Path | None = None,
) -> ImportReport:
    """Import a CSV file of subscribers; see the module docstring for the rules.

    `list_name` adds every row to that list (besides a `lists` column); without either, rows go
    to `default`. `status` (active or pending) applies to new subscribers without a `status`
    column value. Raises ImportFileError when the file cannot be read at all (nothing changes).
    """
    started = time.perf_counter()
    path = Path(path)
    if status not in (ACTIVE, PENDING):
        raise SubscriberError(f"--status must be active or pending, not {status!r}")
    extra = (check_list_name(list_name),) if list_name else ()
    rejects = Path(rejects_path) if rejects_path else default_rejects_path(path)
    if _same_file(rejects, path):
        # The rejects file replaces its target: this would overwrite the only copy of the list.
        raise ImportFileError(
            f"{rejects}: the rejects file would overwrite the file being imported; "
            "give --rejects another name"
        )
    refuse_to_replace(rejects, store.conn, "line")
    fh, header, rows = open_rows(path)
    counts = ImportCounts()
    rejected_cells: dict[int, list[str]] = {}
    # An import allocates ~10 small objects per row and frees them at once: the cyclic GC
    # would rescan the growing heap hundreds of times for nothing (a third of the parse time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        columns = parse_header(header, path)
        spelling = store.field_spellings(name for _, name in columns.fields)
        columns = replace(columns, fields=tuple((i, spelling[n]) for i, n in columns.fields))
        with store.transaction():
            bulk = store.bulk_import(default_status=status, extra_lists=extra, source=path.name)
            for chunk, raw in _chunks(rows, columns, extra, counts, rejected_cells):
                before = len(counts.rejected)
                bulk.apply(chunk, counts)
                for line, _reason in counts.rejected[before:]:
                    rejected_cells[line] = raw[line]
            written = _write_rejects(rejects, header, counts, rejected_cells)
    finally:
        fh.close()
        if collecting:
            gc.enable()
    return ImportReport(
        path=path,
        added=counts.added,
        updated=counts.updated,
        unchanged=counts.unchanged,
        rejected=len(counts.rejected),
        rejects_path=written,
        seconds=time.perf_counter() - started,
    )


def parse_header(header: list[str], path: Path) -> Columns:
    """Map header cells to columns; raise ImportFileError for an unusable header."""
    known: dict[str, int] = {}
    fields: list[tuple[int, str]] = []
    unnamed: list[int] = []
    seen: dict[str, int] = {}
    given = family = None
    for index, cell in enumerate(header):
        label = cell.strip()
        if not label:
            unnamed.append(index)
            continue
        role = _ALIASES.get(label.lower())
        name = role or _field_name(label, path)
        if name.lower() in seen:
            first = seen[name.lower()]
            raise ImportFileError(
                f"{path}:1: columns {first + 1} ({header[first].strip()!r}) and {index + 1} "
                f"({label!r}) are both {name!r} (column names are compared ignoring case); "
                "merge them into one column or rename one"
            )
        seen[name.lower()] = index
        if label.lower() in _GIVEN and given is None:
            given = index
        elif label.lower() in _FAMILY and family is None:
            family = index
        if role:
            known[role] = index
        else:
            fields.append((index, name))
    if "email" not in known:
        found = ", ".join(repr(c.strip()) for c in header if c.strip()) or "nothing"
        raise ImportFileError(
            f"{path}:1: the header row has no 'email' column (found {found}); the first line "
            "must name the columns, e.g. 'email,name'"
        )
    return Columns(
        width=len(header),
        email=known["email"],
        name=known.get("name"),
        status=known.get("status"),
        lists=known.get("lists"),
        created_at=known.get("created_at"),
        fields=tuple(fields),
        unnamed=tuple(unnamed),
        name_parts=tuple(i for i in (given, family) if i is not None),
        tags=known.get("tags"),
    )


def parse_row(line: int, cells: list[str], columns: Columns, extra: tuple[str, ...]) -> ImportRow:
    """One row -> ImportRow, or SubscriberError saying what is wrong with it.

    The hot path of an import: the common case (no control characters anywhere in the row)
    is checked once for the whole row instead of once per cell.
    """
    if len(cells) != columns.width:
        cells = _fit(cells, columns.width)
    for index in columns.unnamed:
        if cells[index].strip():
            raise SubscriberError(f"column {index + 1} has a value but no name in the header")
    email = normalize_email(cells[columns.email])
    if has_control("".join(cells)):
        _explain_control(cells, columns)
    name = None
    if columns.name is not None:
        name = cells[columns.name].strip() or None  # control characters were checked above
    elif columns.name_parts:
        name = " ".join(p for p in (cells[i].strip() for i in columns.name_parts) if p) or None
    if name is not None and (len(name) > NAME_MAX or format_character(name) is not None):
        clean_name(name)  # raises with the reason
    status = created = None
    if columns.status is not None:
        status = _optional(cells, columns.status, check_status)
    if columns.created_at is not None:
        created = _optional(cells, columns.created_at, parse_timestamp)
    lists: tuple[str, ...] = ()
    if columns.lists is not None:
        lists = parse_lists(cells[columns.lists])
    if not lists and not extra:
        lists = DEFAULT_LISTS
    fields = {}
    for index, field_name in columns.fields:
        value = cells[index].strip()
        if value:
            if len(value) > FIELD_VALUE_MAX:
                clean_field_value(field_name, value)  # raises with the reason
            fields[field_name] = value
    tags = parse_tags(cells[columns.tags]) if columns.tags is not None else ()
    return ImportRow(line, email, email_key(email), name, fields, lists, status, created, tags)


def _fit(cells: list[str], width: int) -> list[str]:
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        raise SubscriberError(f"the row has {len(cells)} columns but the header names {width}")
    return (cells + [""] * (width - len(cells)))[:width]


def _explain_control(cells: list[str], columns: Columns) -> None:
    if columns.name is not None:
        clean_name(cells[columns.name])
    for index, field_name in columns.fields:
        clean_field_value(field_name, cells[index])
    for index, cell in enumerate(cells):
        if has_control(cell.strip()):
            raise SubscriberError(f"column {index + 1} contains a control character")


def _chunks(
    rows: Iterator[tuple[int, list[str]]],
    columns: Columns,
    extra: tuple[str, ...],
    counts: ImportCounts,
    rejected_cells: dict[int, list[str]],
) -> Iterator[tuple[list[ImportRow], dict[int, list[str]]]]:
    """Valid rows in chunks, with their raw cells (for rows the store may still reject)."""
    first_line: dict[str, int] = {}
    chunk: list[ImportRow] = []
    raw: dict[int, list[str]] = {}
    for line, cells in rows:
        try:
            row = parse_row(line, cells, columns, extra)
            earlier = first_line.setdefault(row.key, line)
            if earlier != line:
                raise SubscriberError(f"the same address as line {earlier}")
        except SubscriberError as exc:
            counts.rejected.append((line, str(exc)))
            rejected_cells[line] = cells
            continue
        chunk.append(row)
        raw[line] = cells
        if len(chunk) >= CHUNK_ROWS:
            yield chunk, raw
            chunk, raw = [], {}
    if chunk:
        yield chunk, raw


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _write_rejects(
    path: Path,
    header: list[str],
    counts: ImportCounts,
    cells: dict[int, list[str]],
) -> Path | None:
    if not counts.rejected:
        return None
    rows = ([str(line), reason, *cells.get(line, [])] for line, reason in sorted(counts.rejected))
    try:
        write_csv_atomic(path, ["line", "reason", *header], rows)
    except OSError as exc:
        raise ImportFileError(
            f"{path}: cannot write the rejects file: {exc.strerror or exc}; nothing was imported"
        ) from None
    return path


def _optional(cells: list[str], index: int, check: Callable[[str], str]) -> str | None:
    """An optional column's checked value; None for an empty cell."""
    return check(cells[index]) if cells[index].strip() else None


def _field_name(label: str, path: Path) -> str:
    candidate = re.sub(r"[^A-Za-z0-9_]+", "_", label).strip("_")
    try:
        return check_field_name(candidate)
    except SubscriberError as exc:
        raise ImportFileError(f"{path}:1: column {label!r}: {exc}") from None
