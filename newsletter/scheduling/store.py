"""Table `send_schedules` and every query on it: recording, listing, cancelling, and the lease
under which one process fires a schedule.

A schedule is `scheduled` until due; a process *claims* it with one conditional UPDATE (state
`running`, `lease_owner`, `lease_until`), so of several `serve` or `send-due` processes on one
database exactly one wins. The winner renews the lease while it sends; a claimer that died
stops renewing, its lease expires, and the next process claims the schedule again (the
campaign ledger then resumes where the dead one stopped: nobody is mailed twice). At the end
the owner marks it `done` or `failed` (with the reason), or hands it back as `scheduled` when
stopped. At most one open (scheduled or running) schedule per issue and list.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.db import migrate

SCHEDULED, RUNNING, DONE, FAILED, CANCELLED = "scheduled", "running", "done", "failed", "cancelled"
OPEN = (SCHEDULED, RUNNING)

MIGRATIONS = [
    """
    CREATE TABLE send_schedules (
        id INTEGER PRIMARY KEY,
        issue_slug TEXT NOT NULL,
        issue_path TEXT NOT NULL,
        list_name TEXT NOT NULL,
        due_at TEXT NOT NULL,
        zone TEXT NOT NULL,
        options TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'scheduled'
            CHECK (state IN ('scheduled', 'running', 'done', 'failed', 'cancelled')),
        lease_owner TEXT,
        lease_until TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE UNIQUE INDEX send_schedules_open ON send_schedules (issue_slug, list_name)
        WHERE state IN ('scheduled', 'running');
    CREATE INDEX send_schedules_due ON send_schedules (state, due_at);
    """,
]


def stamp(moment: dt.datetime) -> str:
    """A UTC instant as fixed-width text, so SQL compares them as text."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def instant(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    issue_slug: str
    issue_path: str
    list_name: str
    due_at: dt.datetime  # aware, UTC
    zone: str
    options: Mapping[str, Any]  # the send's options, as `send` validated them
    state: str
    lease_owner: str | None
    attempts: int
    last_error: str | None


class ScheduleStore:
    """The schedules of one database (its own connection, migrated on open)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, "schedules", MIGRATIONS)

    def add(
        self,
        *,
        issue_slug: str,
        issue_path: str,
        list_name: str,
        due_at: dt.datetime,
        zone: str,
        options: Mapping[str, Any],
        now: dt.datetime,
    ) -> ScheduleRow | None:
        """Record a schedule; None when this issue and list already have an open one."""
        try:
            cur = self.conn.execute(
                "INSERT INTO send_schedules (issue_slug, issue_path, list_name, due_at, zone,"
                " options, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    issue_slug,
                    issue_path,
                    list_name,
                    stamp(due_at),
                    zone,
                    json.dumps(dict(options), sort_keys=True),
                    stamp(now),
                ),
            )
        except sqlite3.IntegrityError:
            return None
        return self.get(int(cur.lastrowid or 0))

    def get(self, schedule_id: int) -> ScheduleRow:
        row = self.conn.execute("SELECT * FROM send_schedules WHERE id = ?", (schedule_id,))
        return _row(row.fetchone())

    def open_for(self, issue_slug: str, list_name: str | None = None) -> list[ScheduleRow]:
        sql = "SELECT * FROM send_schedules WHERE issue_slug = ? AND state IN (?, ?)"
        args: list[Any] = [issue_slug, *OPEN]
        if list_name is not None:
            sql += " AND list_name = ?"
            args.append(list_name)
        return [_row(r) for r in self.conn.execute(sql + " ORDER BY list_name", args)]

    def all(self, *, include_finished: bool = True) -> list[ScheduleRow]:
        sql = "SELECT * FROM send_schedules"
        if not include_finished:
            sql += " WHERE state IN ('scheduled', 'running')"
        return [_row(r) for r in self.conn.execute(sql + " ORDER BY due_at, id")]

    def cancel(self, schedule_id: int, now: dt.datetime) -> bool:
        """Cancel a schedule not yet claimed; False if it is being sent (or no longer open)."""
        cur = self.conn.execute(
            "UPDATE send_schedules SET state = 'cancelled', finished_at = ?"
            " WHERE id = ? AND state = 'scheduled'",
            (stamp(now), schedule_id),
        )
        return cur.rowcount == 1

    def claimable(self, now: dt.datetime) -> list[ScheduleRow]:
        """Due schedules, and running ones whose claimer's lease expired, oldest first."""
        rows = self.conn.execute(
            "SELECT * FROM send_schedules WHERE (state = 'scheduled' AND due_at <= ?"
            " AND COALESCE(next_try_at, due_at) <= ?)"
            " OR (state = 'running' AND lease_until < ?) ORDER BY due_at, id",
            (stamp(now), stamp(now), stamp(now)),
        )
        return [_row(r) for r in rows]

    def claim(self, schedule_id: int, owner: str, now: dt.datetime, lease: dt.timedelta) -> bool:
        """Take the schedule for `owner` until now + lease; False when another process has
        it (the one conditional UPDATE decides between racing processes)."""
        cur = self.conn.execute(
            "UPDATE send_schedules SET state = 'running', lease_owner = ?, lease_until = ?,"
            " attempts = attempts + 1, started_at = COALESCE(started_at, ?)"
            " WHERE id = ? AND ((state = 'scheduled' AND due_at <= ?"
            " AND COALESCE(next_try_at, due_at) <= ?)"
            " OR (state = 'running' AND lease_until < ?))",
            (
                owner,
                stamp(now + lease),
                stamp(now),
                schedule_id,
                stamp(now),
                stamp(now),
                stamp(now),
            ),
        )
        return cur.rowcount == 1

    def renew(self, schedule_id: int, owner: str, until: dt.datetime) -> bool:
        """Extend `owner`'s lease; False when it is no longer theirs."""
        cur = self.conn.execute(
            "UPDATE send_schedules SET lease_until = ?"
            " WHERE id = ? AND state = 'running' AND lease_owner = ?",
            (stamp(until), schedule_id, owner),
        )
        return cur.rowcount == 1

    def finish(
        self, schedule_id: int, owner: str, state: str, error: str | None, now: dt.datetime
    ) -> None:
        """`done` or `failed` (with the reason): the schedule will not fire again."""
        self.conn.execute(
            "UPDATE send_schedules SET state = ?, last_error = ?, finished_at = ?,"
            " lease_owner = NULL, lease_until = NULL"
            " WHERE id = ? AND state = 'running' AND lease_owner = ?",
            (state, error, stamp(now), schedule_id, owner),
        )

    def release(
        self,
        schedule_id: int,
        owner: str,
        error: str | None = None,
        next_try: dt.datetime | None = None,
    ) -> None:
        """Hand the schedule back (stopped before the end, or the transport unreachable for
        now): the first run from `next_try` (else the next run) takes it up."""
        self.conn.execute(
            "UPDATE send_schedules SET state = 'scheduled', lease_owner = NULL,"
            " lease_until = NULL, last_error = COALESCE(?, last_error), next_try_at = ?"
            " WHERE id = ? AND state = 'running' AND lease_owner = ?",
            (error, stamp(next_try) if next_try else None, schedule_id, owner),
        )

    def next_due(self) -> dt.datetime | None:
        """When the next open schedule is due (or its lease runs out)."""
        row = self.conn.execute(
            "SELECT MIN(CASE state WHEN 'scheduled' THEN MAX(due_at, COALESCE(next_try_at, ''))"
            " ELSE lease_until END)"
            " FROM send_schedules WHERE state IN ('scheduled', 'running')"
        ).fetchone()
        return instant(row[0]) if row and row[0] else None

    def close(self) -> None:
        self.conn.close()


def _row(row: sqlite3.Row | None) -> ScheduleRow:
    if row is None:
        raise LookupError("no such schedule")
    return ScheduleRow(
        id=int(row["id"]),
        issue_slug=row["issue_slug"],
        issue_path=row["issue_path"],
        list_name=row["list_name"],
        due_at=instant(row["due_at"]),
        zone=row["zone"],
        options=json.loads(row["options"]),
        state=row["state"],
        lease_owner=row["lease_owner"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
    )
