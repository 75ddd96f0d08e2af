"""Every component that owns tables, with its migrations per engine, in one place.

Each component keeps its own steps next to its queries (`MIGRATIONS`, `POSTGRESQL_MIGRATIONS`,
see newsletter.db); this list is what applies all of them at once (`ensure_schema`), what
`db check` compares the recorded versions with, and what `db migrate` prepares PostgreSQL with.
A new component is added here, or `db migrate` and the schema-parity test do not know it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from newsletter import db, imagestore, publishing, tokens, welcome
from newsletter.bounces import records
from newsletter.bounces.webhooks import nonces
from newsletter.campaign import lease, ledger
from newsletter.scheduling import store as schedules
from newsletter.subscribers import schema as subscribers


@dataclass(frozen=True)
class Component:
    """`name` as recorded in schema_migrations; `module` holds its two step lists under the
    attribute names `sqlite` and `postgresql` (`sqlite` None: a PostgreSQL-only component,
    such as the crew of workers, which has nothing to create on SQLite).

    `postgresql_only`: what only PostgreSQL has of this component, by name: tables (support
    tables of its SQL functions, the workers' leases), indexes, and `table.column`s; never
    copied from SQLite, never compared with it."""

    name: str
    module: ModuleType
    sqlite: str | None = "MIGRATIONS"
    postgresql: str = "POSTGRESQL_MIGRATIONS"
    postgresql_only: tuple[str, ...] = ()

    def steps(self, conn: db.Connection) -> Sequence[Any] | None:
        """The steps for `conn`'s engine (None: the component has none for it)."""
        if db.is_postgresql(conn):
            return getattr(self.module, self.postgresql, None)
        return [] if self.sqlite is None else getattr(self.module, self.sqlite, None)

    def migrate(self, conn: db.Connection) -> int:
        if self.sqlite is None and not db.is_postgresql(conn):
            return 0
        sqlite = [] if self.sqlite is None else getattr(self.module, self.sqlite)
        postgresql = getattr(self.module, self.postgresql, None)
        return db.migrate(conn, self.name, sqlite, postgresql)


# In the order they are created: a table after those it references (subscribers first).
COMPONENTS: tuple[Component, ...] = (
    Component("subscribers", subscribers, postgresql_only=("nl_char_map", "unsubscribe_spool")),
    Component("tokens", tokens, "_MIGRATIONS"),
    Component("campaigns", ledger),
    Component(
        lease.COMPONENT,
        lease,
        sqlite=None,
        postgresql_only=(
            "campaign_workers",
            "campaign_recipients_claimed",
            "campaign_recipients.worker",
            "campaigns.next_slot",
            "campaigns.next_request",
            "campaigns.pace",
        ),
    ),
    Component("schedules", schedules),
    Component("welcome", welcome),
    Component(publishing.COMPONENT, publishing),
    Component(imagestore.COMPONENT, imagestore),
    Component(records.COMPONENT, records),
    Component(nonces.COMPONENT, nonces),
)


# Names (tables, indexes, `table.column`s) only PostgreSQL has (see Component).
POSTGRESQL_ONLY = frozenset(name for c in COMPONENTS for name in c.postgresql_only)


def ensure_schema(conn: db.Connection) -> dict[str, int]:
    """Apply every component's migrations not yet applied (each step in its own transaction,
    see newsletter.db.migrate); return component -> schema version.

    Raises ConfigError for a component without steps for the engine, db.Error from the engine."""
    return {
        c.name: c.migrate(conn)
        for c in COMPONENTS
        if c.sqlite is not None or db.is_postgresql(conn)
    }


def recorded_versions(conn: db.Connection) -> dict[str, int]:
    """component -> the highest version recorded in schema_migrations ({} before any)."""
    if not db.has_table(conn, "schema_migrations"):
        return {}
    rows = conn.execute(
        "SELECT component, MAX(version) FROM schema_migrations GROUP BY component"
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
