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
from newsletter.campaign import ledger
from newsletter.scheduling import store as schedules
from newsletter.subscribers import schema as subscribers


@dataclass(frozen=True)
class Component:
    """`name` as recorded in schema_migrations; `module` holds its two step lists under the
    attribute names `sqlite` and `postgresql`."""

    name: str
    module: ModuleType
    sqlite: str = "MIGRATIONS"
    postgresql: str = "POSTGRESQL_MIGRATIONS"
    # Tables only PostgreSQL has: what its SQL functions need of what SQLite calls in Python
    # (never copied, never compared with SQLite).
    postgresql_only: tuple[str, ...] = ()

    def steps(self, conn: db.Connection) -> Sequence[Any] | None:
        """The steps for `conn`'s engine (None: the component has none for it)."""
        name = self.postgresql if db.is_postgresql(conn) else self.sqlite
        return getattr(self.module, name, None)

    def migrate(self, conn: db.Connection) -> int:
        postgresql = getattr(self.module, self.postgresql, None)
        return db.migrate(conn, self.name, getattr(self.module, self.sqlite), postgresql)


# In the order they are created: a table after those it references (subscribers first).
COMPONENTS: tuple[Component, ...] = (
    Component("subscribers", subscribers, postgresql_only=("nl_char_map",)),
    Component("tokens", tokens, "_MIGRATIONS"),
    Component("campaigns", ledger),
    Component("schedules", schedules),
    Component("welcome", welcome),
    Component(publishing.COMPONENT, publishing),
    Component(imagestore.COMPONENT, imagestore),
    Component(records.COMPONENT, records),
    Component(nonces.COMPONENT, nonces),
)


POSTGRESQL_ONLY = frozenset(t for c in COMPONENTS for t in c.postgresql_only)


def ensure_schema(conn: db.Connection) -> dict[str, int]:
    """Apply every component's migrations not yet applied (each step in its own transaction,
    see newsletter.db.migrate); return component -> schema version.

    Raises ConfigError for a component without steps for the engine, db.Error from the engine."""
    return {component.name: component.migrate(conn) for component in COMPONENTS}


def recorded_versions(conn: db.Connection) -> dict[str, int]:
    """component -> the highest version recorded in schema_migrations ({} before any)."""
    if not db.has_table(conn, "schema_migrations"):
        return {}
    rows = conn.execute(
        "SELECT component, MAX(version) FROM schema_migrations GROUP BY component"
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
