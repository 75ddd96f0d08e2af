"""SubscriberStore: the only code that touches the subscriber tables.

Callers (CLI, web app, campaign runner, importer) go through this class, whichever engine
holds the tables (an SQLite file or PostgreSQL, see newsletter.db): the queries are written
once in the SQL both accept, and branch on `db.is_postgresql` only for JSON and the search.
One store may be shared by threads: every method holds the store's lock, and every write runs
in a `BEGIN IMMEDIATE` transaction so a writer waits for the database's busy timeout instead of
failing with "database is locked".
Several processes (an import, `newsletter serve`, a send) can use the same file at once (WAL).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import json.scanner
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from newsletter import db
from newsletter.errors import SubscriberError
from newsletter.placeholders import Recipient
from newsletter.subscribers.address import email_key, key_crc, normalize_email, normalize_lookup
from newsletter.subscribers.bulk import BulkImport
from newsletter.subscribers.model import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    DEFAULT_LIST,
    PENDING,
    STOPPED,
    UNSUBSCRIBED,
    Event,
    Subscriber,
    Tombstone,
    check_list_name,
    check_status,
    clean_fields,
    clean_name,
    dump_fields,
    now,
)
from newsletter.subscribers.schema import (
    COMPONENT,
    MIGRATIONS,
    POSTGRESQL_MIGRATIONS,
    next_subscriber_id,
    remember_erased_id,
)
from newsletter.subscribers.segmentsql import SegmentQuery, register_functions

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.subscribers.signup import SignupRequest

_COLUMNS = "id, email, name, status, fields, created_at, updated_at"
_BY_KEY = "key_crc = ? AND email_key = ?"
_CHUNK = 500  # ids per IN (...) query
_PAGE = 1000  # rows per page when streaming


class SubscriberStore:
    """The subscriber database: subscribers, lists, event history and erased-address tombstones."""

    def __init__(self, conn: db.Connection) -> None:
        self.conn = conn  # shared with other components (campaign ledger) in the same database
        self._lock = threading.RLock()
        self._depth = 0
        self._lock_timeout: str | None = None
        self.postgresql = db.is_postgresql(conn)
        db.migrate(conn, COMPONENT, MIGRATIONS, POSTGRESQL_MIGRATIONS)
        if not self.postgresql:  # PostgreSQL has them as SQL functions (schema)
            register_functions(conn)  # type: ignore[arg-type]  # what a segment's SQL calls
        row = conn.execute(
            "SELECT value FROM subscriber_settings WHERE key = 'tombstone_salt'"
        ).fetchone()
        self._salt = str(row[0]).encode()

    @classmethod
    def open(cls, path: db.Database | str, *, busy_timeout: float = 30.0) -> SubscriberStore:
        """Open (creating and migrating if needed) the database at `path` (an SQLite file or a
        PostgreSQL database, newsletter.db), and apply unsubscribes spooled while an SQLite file
        was locked (see `spool`; PostgreSQL has no spool). A write waits at most `busy_timeout`
        seconds for another writer, then raises db.OperationalError."""
        try:
            conn = db.connect(path, timeout=busy_timeout)
        except FileExistsError as exc:  # creating the database's folder: a file is in the way
            raise SubscriberError(
                f"{path}: cannot open the database: {exc.filename} is a file, not a folder"
            ) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise SubscriberError(
                f"{path}: cannot open the database: {where}{exc.strerror or exc}"
            ) from None
        except db.Error as exc:
            raise SubscriberError(f"{path}: cannot open the database: {exc}") from None
        try:
            # PostgreSQL: wait `busy_timeout` for the write lock from the start (migrations
            # take it too), not the pool's first caller's timeout.
            prior = _wait_for_locks(conn, busy_timeout) if db.is_postgresql(conn) else None
            store = cls(conn)
            store._lock_timeout = prior
        except db.Error as exc:
            conn.close()
            raise SubscriberError(f"{path}: not a usable newsletter database: {exc}") from None
        if str(path) != ":memory:":
            from newsletter.subscribers.spool import drain

            # Unsubscribes spooled while the database was locked (newsletter.subscribers.spool).
            drain(store, db.parse_database(path) if isinstance(path, str) else path)
        return store

    @classmethod
    def for_config(cls, config: Config, *, busy_timeout: float = 30.0) -> SubscriberStore:
        """The store named by `database:` in newsletter.yaml / NEWSLETTER_DB."""
        return cls.open(config.database, busy_timeout=busy_timeout)

    def close(self) -> None:
        with self._lock:
            if self._lock_timeout is not None:  # the pooled connection's own setting again
                with contextlib.suppress(db.Error):
                    self.conn.execute(f"SET lock_timeout = '{self._lock_timeout}'")
            self.conn.close()

    def __enter__(self) -> SubscriberStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[db.Connection]:
        """One write transaction (nested calls join the outer one); rolled back on any error."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    @contextmanager
    def waiting_at_most(self, seconds: float) -> Iterator[None]:
        """Within the block, a write waits at most `seconds` for another writer's lock, then
        raises db.OperationalError (SQLite's busy timeout; PostgreSQL's lock_timeout)."""
        with self._lock:
            if self.postgresql:
                before = _wait_for_locks(self.conn, seconds)
                restore = f"SET lock_timeout = '{before}'"
            else:
                before = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
                self.conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
                restore = f"PRAGMA busy_timeout = {int(before)}"
            try:
                yield
            finally:
                self.conn.execute(restore)

    @contextmanager
    def reading(self) -> Iterator[db.Connection]:
        """The connection, held for reading by this thread (for the store's helper modules)."""
        with self._lock:
            yield self.conn

    # -- reading ---------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        """The subscriber with this address (any case), or None (also for invalid text)."""
        try:
            key = email_key(normalize_lookup(email))
        except SubscriberError:
            return None
        with self._lock:
            row = self.conn.execute(
                f"SELECT {_COLUMNS} FROM subscribers WHERE {_BY_KEY}", (key_crc(key), key)
            ).fetchone()
            return self._build([row])[0] if row else None

    def get_by_id(self, subscriber_id: int) -> Subscriber | None:
        return self.get_many([subscriber_id]).get(subscriber_id)

    def get_many(self, ids: Sequence[int]) -> dict[int, Subscriber]:
        """Subscribers by id in a few queries (the send path calls this per batch of ~500)."""
        out: dict[int, Subscriber] = {}
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM subscribers WHERE id IN ({marks})", chunk
                ).fetchall()
                for sub in self._build(rows):
                    out[sub.id] = sub
        return out

    def iter_member_ids(
        self, list_name: str, status: str = ACTIVE, segment: SegmentQuery | None = None
    ) -> Iterator[int]:
        """Ids of a list's members with `status` (and in `segment`, a compiled segment),
        ascending, streamed page by page."""
        last = 0
        where = f" AND {segment.sql(self.conn)}" if segment is not None else ""
        extra = segment.params if segment is not None else ()
        while True:
            with self._lock:
                rows = self.conn.execute(
                    "SELECT s.id FROM subscriber_memberships m"
                    " JOIN subscriber_lists l ON l.id = m.list_id"
                    " JOIN subscribers s ON s.id = m.subscriber_id"
                    f" WHERE l.name = ? AND s.status = ? AND m.subscriber_id > ?{where}"
                    " ORDER BY m.subscriber_id LIMIT ?",
                    (list_name, status, last, *extra, _PAGE),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield int(row[0])
            last = int(rows[-1][0])

    def iter_subscribers(
        self,
        list_name: str | None = None,
        status: str | None = None,
        segment: SegmentQuery | None = None,
    ) -> Iterator[Subscriber]:
        """Subscribers in id order, optionally of one list, status and segment, streamed."""
        where, params = self._filters(list_name, status, segment)
        last = 0
        while True:
            with self._lock:
                rows = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM subscribers s WHERE s.id > ?{where}"
                    " ORDER BY s.id LIMIT ?",
                    (last, *params, _PAGE),
                ).fetchall()
                subs = self._build(rows)
            if not subs:
                return
            yield from subs
            last = subs[-1].id

    def search(self, text: str, limit: int = 50) -> list[Subscriber]:
        """Up to `limit` subscribers whose address or name contains `text`, case-insensitive
        (Unicode case folding: "ZOË" finds "Zoë"), an exact address first, then in id order."""
        if not text.isascii():  # SQLite's LIKE folds ASCII letters only
            return self._search_casefolded(text.strip(), limit)
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text.strip()) + "%"
        # PostgreSQL's ILIKE over these "C"-collated columns folds ASCII letters only, as
        # SQLite's LIKE does (schema).
        like = "ILIKE" if self.postgresql else "LIKE"
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM subscribers"
                f" WHERE email {like} ?1 ESCAPE '\\' OR name {like} ?1 ESCAPE '\\'"
                " ORDER BY lower(email) != lower(?2), id LIMIT ?3",
                (pattern, text.strip(), limit),
            ).fetchall()
            return self._build(rows)

    def _search_casefolded(self, text: str, limit: int) -> list[Subscriber]:
        # nl_casefold: Python's str.casefold, as a registered function in SQLite and an SQL
        # function giving the same results in PostgreSQL (schema).
        found = "strpos({}, ?1) > 0" if self.postgresql else "instr({}, ?1)"
        with self._lock:
            if not self.postgresql:
                self.conn.create_function(  # type: ignore[union-attr]
                    "nl_casefold", 1, _casefold, deterministic=True
                )
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM subscribers"
                f" WHERE {found.format('nl_casefold(email)')}"
                f" OR {found.format('nl_casefold(name)')}"
                " ORDER BY nl_casefold(email) != ?1, id LIMIT ?2",
                (text.casefold(), limit),
            ).fetchall()
            return self._build(rows)

    def count(
        self,
        list_name: str | None = None,
        status: str | None = None,
        segment: SegmentQuery | None = None,
    ) -> int:
        where, params = self._filters(list_name, status, segment)
        with self._lock:
            row = self.conn.execute(
                f"SELECT COUNT(*) FROM subscribers s WHERE TRUE{where}", params
            ).fetchone()
        return int(row[0])

    def count_by_status(self, list_name: str | None = None) -> dict[str, int]:
        where, params = self._filters(list_name, None)
        with self._lock:
            rows = self.conn.execute(
                f"SELECT status, COUNT(*) FROM subscribers s WHERE TRUE{where} GROUP BY status",
                params,
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def field_names(self, list_name: str | None = None, status: str | None = None) -> list[str]:
        """Every field name used by the selected subscribers, sorted."""
        where, params = self._filters(list_name, status)
        keys = (
            'SELECT DISTINCT j.key COLLATE "C" AS key FROM subscribers s,'
            " jsonb_object_keys(s.fields::jsonb) AS j (key)"
            if self.postgresql
            else "SELECT DISTINCT j.key FROM subscribers s, json_each(s.fields) j"
        )
        with self._lock:
            rows = self.conn.execute(
                f"{keys} WHERE TRUE{where} ORDER BY 1",
                params,
            ).fetchall()
        return [str(r[0]) for r in rows]

    def field_spellings(self, names: Iterable[str]) -> dict[str, str]:
        """Each name -> the spelling already stored for it, compared case-insensitively.

        Field names are case-insensitive (`City` and `city` are one field), so a new spelling
        fills the stored field instead of starting a second column that an export could not
        import again. Names not stored yet map to themselves.
        """
        stored: dict[str, str] = {}
        for name in self.field_names():
            stored.setdefault(name.lower(), name)
        return {name: stored.get(name.lower(), name) for name in names}

    def list_names(self) -> list[str]:
        with self._lock:
            rows = self.conn.execute("SELECT name FROM subscriber_lists ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def recipients_for(self, ids: Sequence[int]) -> dict[int, tuple[str, Recipient]]:
        """(status, Recipient) by subscriber id, the erased ones missing: all the send path
        needs of each reader of a chunk of due rows, in one query per 500 ids (`get_many` also
        reads every list and builds whole Subscribers: twice the cost, once per recipient)."""
        out: dict[int, tuple[str, Recipient]] = {}
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                rows = self.conn.execute(
                    "SELECT id, email, name, status, fields FROM subscribers"
                    f" WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for r in rows:
                    out[int(r[0])] = (r[3], Recipient(r[1], r[2], _fields(r[4])))
        return out

    def events(self, subscriber_id: int) -> list[Event]:
        """The subscriber's history, oldest first: how they came (kept on their row, see
        schema) then every later event (confirmed, unsubscribed with how, bounced with the
        server's reply, ...)."""
        with self._lock:
            origin = self.conn.execute(
                "SELECT origin_at, origin_kind, origin_detail FROM subscribers WHERE id = ?",
                (subscriber_id,),
            ).fetchone()
            rows = self.conn.execute(
                "SELECT at, kind, detail FROM subscriber_events WHERE subscriber_id = ?"
                " ORDER BY id",
                (subscriber_id,),
            ).fetchall()
        first = [origin] if origin is not None and origin[1] else []
        return [Event(r[0], r[1], r[2] or "", subscriber_id) for r in [*first, *rows]]

    def tombstone(self, email: str) -> Tombstone | None:
        """The erasure record of an address, if it was removed."""
        digest = self.email_hash(email_key(normalize_lookup(email)))
        with self._lock:
            row = self.conn.execute(
                "SELECT erased_at FROM subscriber_tombstones WHERE email_hash = ?", (digest,)
            ).fetchone()
        return Tombstone(digest, row[0]) if row else None

    def email_hash(self, key: str) -> str:
        return hashlib.sha256(self._salt + key.encode()).hexdigest()

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str | None = None,
        lists: Iterable[str] = (DEFAULT_LIST,),
        fields: dict[str, str] | None = None,
        status: str = ACTIVE,
        source: str = "cli",
    ) -> Subscriber:
        """Add a subscriber, or merge into the existing one (name, fields, lists).

        An existing subscriber keeps their status: adding never re-activates an unsubscribed,
        bounced or complained address. An erased address is refused (SubscriberError).
        """
        normalized = normalize_email(email)
        key = email_key(normalized)
        clean = clean_name(name)
        values = clean_fields(fields or {})
        if values:
            spelling = self.field_spellings(values)
            values = {spelling[k]: v for k, v in values.items()}
        names = sorted({check_list_name(n) for n in lists}) or [DEFAULT_LIST]
        status = check_status(status)
        with self.transaction() as conn:
            row = conn.execute(
                f"SELECT id FROM subscribers WHERE {_BY_KEY}", (key_crc(key), key)
            ).fetchone()
            stamp = now()
            if row is None:
                self._refuse_erased(key, normalized)
                origin = ("subscribed", f"added by {source}")
                subscriber_id = self.insert_subscriber(
                    conn, normalized, key, clean, status, values, stamp, origin
                )
            else:
                subscriber_id = int(row[0])
                self._merge(subscriber_id, clean, values, stamp, source)
            self.join_lists(subscriber_id, names)
            return self.by_id(subscriber_id)

    def unsubscribe(self, subscriber_id: int, how: str) -> bool:
        """Stop sending to this subscriber; True if that changed anything (idempotent)."""
        return self._stop(subscriber_id, UNSUBSCRIBED, how, frozenset({ACTIVE, PENDING}))

    def mark_bounced(self, subscriber_id: int, reply: str) -> bool:
        """A permanent delivery failure: record the server's reply, stop sending."""
        return self._stop(subscriber_id, BOUNCED, reply, frozenset({ACTIVE, PENDING}))

    def mark_complained(self, subscriber_id: int, detail: str = "") -> bool:
        """A spam complaint (feedback loop): never send again."""
        allowed = frozenset({ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED})
        return self._stop(subscriber_id, COMPLAINED, detail, allowed)

    def request_subscription(
        self, email: str, *, name: str | None, lists: Sequence[str], detail: str
    ) -> SignupRequest | None:
        """A sign-up from the public form; the request to confirm by email, or None when no
        email must go out. See `newsletter.subscribers.signup` for the rules."""
        from newsletter.subscribers.signup import request_subscription

        return request_subscription(self, email, name=name, lists=lists, detail=detail)

    def confirm_signup(
        self, signup_id: int, *, issued_at: str | None = None, detail: str = ""
    ) -> Subscriber:
        """Apply the sign-up request `signup_id` (its confirmation link was used)."""
        from newsletter.subscribers.signup import confirm_signup

        return confirm_signup(self, signup_id, issued_at=issued_at, detail=detail)

    def confirm(
        self, subscriber_id: int, *, issued_at: str | None = None, detail: str = ""
    ) -> bool:
        """Double opt-in: activate; True if that changed anything.

        A confirmation issued before the subscriber's last unsubscribe/bounce/complaint is
        refused (SubscriberError): an old link must not undo a later opt-out.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT status, email_key FROM subscribers WHERE id = ?", (subscriber_id,)
            ).fetchone()
            if row is None:
                raise SubscriberError("this subscription no longer exists")
            if row[0] == ACTIVE:
                return False
            if issued_at is not None and row[0] in STOPPED:
                stopped = conn.execute(
                    "SELECT MAX(at) FROM subscriber_events WHERE subscriber_id = ?"
                    " AND kind IN ('unsubscribed', 'bounced', 'complained')",
                    (subscriber_id,),
                ).fetchone()[0]
                if stopped is not None and stopped > issued_at:
                    raise SubscriberError("this confirmation link is older than your unsubscribe")
            stamp = now()
            conn.execute(
                "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
                (ACTIVE, stamp, subscriber_id),
            )
            conn.execute(
                "DELETE FROM subscriber_tombstones WHERE email_hash = ?",
                (self.email_hash(row[1]),),
            )
            self.write_event(subscriber_id, "confirmed", detail, stamp)
            return True

    def record_event(self, subscriber_id: int, kind: str, detail: str = "") -> None:
        with self.transaction():
            self.write_event(subscriber_id, kind, detail, now())

    def erase(self, email: str) -> bool:
        """Delete an address and everything about it, keeping a salted hash (a tombstone) so an
        import cannot silently add it back. True if there was someone to erase."""
        key = email_key(normalize_lookup(email))
        digest = self.email_hash(key)
        with self.transaction() as conn:
            stamp = now()
            row = conn.execute(
                f"SELECT id FROM subscribers WHERE {_BY_KEY}", (key_crc(key), key)
            ).fetchone()
            conn.execute(
                "INSERT INTO subscriber_tombstones (email_hash, erased_at) VALUES (?, ?)"
                " ON CONFLICT (email_hash) DO UPDATE SET erased_at = excluded.erased_at",
                (digest, stamp),
            )
            if row is None:
                return False
            remember_erased_id(conn, int(row[0]))
            conn.execute("DELETE FROM subscribers WHERE id = ?", (row[0],))
            self.write_event(None, "erased", digest, stamp)
            return True

    def bulk_import(
        self, *, default_status: str, extra_lists: Sequence[str], source: str
    ) -> BulkImport:
        """A bulk writer for one import; use it inside `with store.transaction():`."""
        return BulkImport(
            self,
            default_status=check_status(default_status),
            extra_lists=[check_list_name(n) for n in extra_lists],
            source=source,
            stamp=now(),
        )

    # -- internals shared with the bulk importer -------------------------------------------

    def list_ids(self, names: Iterable[str]) -> dict[str, int]:
        """Ids of lists, creating missing ones (call inside a transaction)."""
        out: dict[str, int] = {}
        conn = self.conn
        for name in names:
            row = conn.execute("SELECT id FROM subscriber_lists WHERE name = ?", (name,)).fetchone()
            if row is None:
                made = conn.execute(
                    "INSERT INTO subscriber_lists (name, created_at) VALUES (?, ?) RETURNING id",
                    (name, now()),
                ).fetchone()
                out[name] = int(made[0])
            else:
                out[name] = int(row[0])
        return out

    def _filters(
        self, list_name: str | None, status: str | None, segment: SegmentQuery | None = None
    ) -> tuple[str, list[object]]:
        where, params = "", []
        if segment is not None:
            where += f" AND {segment.sql(self.conn)}"
            params.extend(segment.params)
        if list_name is not None:
            where += (
                " AND s.id IN (SELECT m.subscriber_id FROM subscriber_memberships m"
                " JOIN subscriber_lists l ON l.id = m.list_id WHERE l.name = ?)"
            )
            params.append(list_name)
        if status is not None:
            where += " AND s.status = ?"
            params.append(check_status(status))
        return where, params

    def _build(self, rows: Sequence[Any]) -> list[Subscriber]:
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        lists: dict[int, list[str]] = {i: [] for i in ids}
        marks = ",".join("?" * len(ids))
        for sid, name in self.conn.execute(
            "SELECT m.subscriber_id, l.name FROM subscriber_memberships m"
            f" JOIN subscriber_lists l ON l.id = m.list_id WHERE m.subscriber_id IN ({marks})",
            ids,
        ):
            lists[sid].append(name)
        return [
            Subscriber(
                id=int(r[0]),
                email=r[1],
                name=r[2],
                status=r[3],
                fields=json.loads(r[4]) if r[4] != "{}" else {},
                lists=tuple(sorted(lists[int(r[0])])),
                created_at=r[5],
                updated_at=r[6],
            )
            for r in rows
        ]

    def by_id(self, subscriber_id: int) -> Subscriber:
        """The subscriber with this id, which must exist (one just written in a transaction)."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)
        ).fetchone()
        return self._build([row])[0]

    def _refuse_erased(self, key: str, normalized: str) -> None:
        row = self.conn.execute(
            "SELECT erased_at FROM subscriber_tombstones WHERE email_hash = ?",
            (self.email_hash(key),),
        ).fetchone()
        if row:
            raise SubscriberError(
                f"{normalized} was erased on {row[0]}; only the person can subscribe again "
                "(through the sign-up form)"
            )

    def insert_subscriber(
        self,
        conn: db.Connection,
        email: str,
        key: str,
        name: str | None,
        status: str,
        fields: dict[str, str],
        stamp: str,
        origin: tuple[str, str],
    ) -> int:
        """A new subscriber row inside `transaction()`; returns its id. `key` is the address's
        `email_key`; `origin` is (kind, detail) of the consent, e.g. ("form", ip)."""
        subscriber_id = next_subscriber_id(conn)
        conn.execute(
            "INSERT INTO subscribers (id, email, email_key, key_crc, name, status, fields,"
            " created_at, updated_at, origin_at, origin_kind, origin_detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *(subscriber_id, email, key, key_crc(key), name, status, dump_fields(fields)),
                *(stamp, stamp, stamp, *origin),
            ),
        )
        return subscriber_id

    def _merge(
        self, subscriber_id: int, name: str | None, fields: dict[str, str], stamp: str, source: str
    ) -> None:
        row = self.conn.execute(
            "SELECT name, fields FROM subscribers WHERE id = ?", (subscriber_id,)
        ).fetchone()
        merged = {**json.loads(row[1]), **fields}
        new_name = name or row[0]
        if new_name != row[0] or dump_fields(merged) != row[1]:
            self.conn.execute(
                "UPDATE subscribers SET name = ?, fields = ?, updated_at = ? WHERE id = ?",
                (new_name, dump_fields(merged), stamp, subscriber_id),
            )
            self.write_event(subscriber_id, "updated", f"by {source}", stamp)

    def join_lists(self, subscriber_id: int, names: Iterable[str]) -> None:
        """Add memberships inside `transaction()` (lists created as needed; idempotent)."""
        for list_id in self.list_ids(names).values():
            self.conn.execute(
                "INSERT INTO subscriber_memberships (list_id, subscriber_id) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                (list_id, subscriber_id),
            )

    def write_event(self, subscriber_id: int | None, kind: str, detail: str, stamp: str) -> None:
        """One line of a subscriber's history (table `subscriber_events`), inside
        `transaction()`; `stamp` is an ISO 8601 UTC time (`model.now()`)."""
        self.conn.execute(
            "INSERT INTO subscriber_events (subscriber_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            (subscriber_id, stamp, kind, detail),
        )

    def _stop(self, subscriber_id: int, status: str, detail: str, allowed: frozenset[str]) -> bool:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT status FROM subscribers WHERE id = ?", (subscriber_id,)
            ).fetchone()
            if row is None:
                return False
            stamp = now()
            changed = row[0] in allowed
            if changed:
                conn.execute(
                    "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
                    (status, stamp, subscriber_id),
                )
            # Repeated bounces and complaints are history worth keeping; repeated unsubscribes
            # (a mail client retrying the one-click POST) are not.
            if changed or status != UNSUBSCRIBED:
                self.write_event(subscriber_id, status, detail, stamp)
            return changed


# The C scanner under json.loads, called directly: the send path decodes one `fields` object
# per recipient, and json.loads's Python layers (whitespace regex, wrappers) cost three times
# the decoding of a small object.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def _fields(text: str) -> dict[str, Any]:
    """A subscriber's stored `fields` JSON (written by json.dumps: one object, no padding)."""
    if text == "{}":
        return {}
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    if end != len(text) or not isinstance(value, dict):
        return json.loads(text)  # anything unusual: the full parser (and its errors)
    return value


def _wait_for_locks(conn: db.Connection, seconds: float) -> str:
    """Make a PostgreSQL connection wait `seconds` for a lock (SQLite's busy timeout; the
    pooled connection came with its first caller's); its setting before, to restore."""
    before = str(conn.execute("SHOW lock_timeout").fetchone()[0]).replace("'", "")
    conn.execute(f"SET lock_timeout = {int(seconds * 1000)}")
    return before


def _casefold(value: str | None) -> str:
    return value.casefold() if value else ""
