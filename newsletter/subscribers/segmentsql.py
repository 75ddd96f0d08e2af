"""A parsed segment (`segment.Segment`) as one parameterised SQL condition over `subscribers s`.

Every value from the expression is a bound parameter; the SQL text is made only of our own
fixed fragments, chosen by the tree's node types. Text comparisons go through two deterministic
functions registered on the connection (`register_functions`): `nl_fold` (Unicode case folding,
which SQLite's lower() does not do beyond ASCII) and `nl_number` (a field as a number, NULL when
it is not one). Every condition yields 0 or 1, never NULL, so `not` is plain negation.

PostgreSQL gets its own spelling of the same condition (`SegmentQuery.sql`), with the same
parameters in the same order: a field is read with jsonb functions instead of json_each, text is
compared bytewise (COLLATE "C", SQLite's BINARY), and `nl_fold` / `nl_number` are SQL functions
of the subscribers schema that give Python's answers (schema.char_map).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.subscribers.segment import (
    And,
    Compare,
    Contains,
    Expr,
    Field,
    Joined,
    Name,
    Not,
    Number,
    Or,
    Segment,
    SegmentError,
    Text,
    Value,
    as_number,
    fold,
    resolve_segment,
)

if TYPE_CHECKING:
    from newsletter.config import NamedSegment
    from newsletter.subscribers.store import SubscriberStore

_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_COLUMNS = {"email": "s.email", "name": "COALESCE(s.name, '')", "status": "s.status"}
# A field's value, its name compared ignoring case (the store treats City and city as one).
_FIELD = (
    "COALESCE((SELECT j.value FROM json_each(s.fields) AS j"
    " WHERE lower(j.key) = ? AND j.type = 'text' LIMIT 1), '')"
)
# The same in PostgreSQL: lower() under "C" folds ASCII letters only, as SQLite's lower().
_PG_FIELD = (
    "COALESCE((SELECT j.value #>> '{}' FROM jsonb_each(s.fields::jsonb) AS j"
    " WHERE lower(j.key COLLATE \"C\") = ? AND jsonb_typeof(j.value) = 'string' LIMIT 1), '')"
)
_HAS_TAG = "EXISTS (SELECT 1 FROM subscriber_tags t WHERE t.subscriber_id = s.id AND t.tag = {})"
_IN_LIST = (
    "EXISTS (SELECT 1 FROM subscriber_memberships m JOIN subscriber_lists l ON l.id = m.list_id"
    " WHERE m.subscriber_id = s.id AND l.name = {})"
)


@dataclass(frozen=True)
class SegmentQuery:
    """`where` is a condition on the table alias `s` (subscribers) in SQLite's SQL,
    `postgresql_where` the same in PostgreSQL's; `params` the values of either."""

    where: str
    params: tuple[object, ...]
    postgresql_where: str = ""

    def sql(self, conn: Any) -> str:
        """The condition in the SQL of the engine behind `conn` (a newsletter.db connection)."""
        from newsletter import db

        return self.postgresql_where if db.is_postgresql(conn) else self.where


def segment_query(
    store: SubscriberStore, given: str, named: Mapping[str, NamedSegment]
) -> tuple[Segment, SegmentQuery]:
    """`--segment GIVEN` (a name under `segments:` or an expression), parsed and compiled
    against the store's fields; SegmentError with column and caret when it cannot be used."""
    segment = resolve_segment(given, named)
    return segment, compile_segment(segment, store.field_names())


def register_functions(conn: Any) -> None:
    """The SQL functions a compiled segment calls (per connection, idempotent)."""
    conn.create_function("nl_fold", 1, _fold, deterministic=True)
    conn.create_function("nl_number", 1, as_number, deterministic=True)


def _fold(value: object) -> str:
    return fold(value) if isinstance(value, str) else ""


def compile_segment(segment: Segment, field_names: Iterable[str] | None) -> SegmentQuery:
    """The segment as SQL. `field_names` are the fields stored (`store.field_names()`): a
    `fields.NAME` none of them matches is a SegmentError (a typo would silently match nobody);
    None skips that check (a resumed campaign keeps the segment it started with)."""
    if field_names is not None:
        _check_fields(segment, segment.expr, {name.lower(): name for name in field_names})
    params: list[object] = []
    where = _expr(segment.expr, params, False)
    pg_params: list[object] = []
    pg_where = _expr(segment.expr, pg_params, True)
    return SegmentQuery(where, tuple(params), pg_where)


def _check_fields(segment: Segment, expr: Expr | Value, known: dict[str, str]) -> None:
    for node in _walk(expr):
        if isinstance(node, Field) and node.name.lower() not in known:
            hint = difflib.get_close_matches(node.name.lower(), list(known), n=1)
            suggestion = f" (did you mean fields.{known[hint[0]]}?)" if hint else ""
            in_use = ", ".join(sorted(known.values())) or "none yet"
            raise SegmentError(
                f"no subscriber has a field {node.name!r}{suggestion}; fields in use: {in_use}",
                segment.text.replace("\n", " "),
                node.column or None,
                segment.where,
            )


def _walk(expr: Expr | Value) -> Iterable[Expr | Value]:
    yield expr
    match expr:
        case Compare(_, left, right):
            yield from (left, right)
        case Contains(item, container):
            yield from (item, container)
        case Not(operand):
            yield from _walk(operand)
        case And(operands) | Or(operands):
            for operand in operands:
                yield from _walk(operand)


# `pg`: spell it for PostgreSQL (booleans, not 0/1; strpos, not instr; typed parameters).
def _expr(expr: Expr, params: list[object], pg: bool) -> str:
    match expr:
        case And(operands):
            return "(" + " AND ".join(_expr(o, params, pg) for o in operands) + ")"
        case Or(operands):
            return "(" + " OR ".join(_expr(o, params, pg) for o in operands) + ")"
        case Not(operand):
            return f"(NOT {_expr(operand, params, pg)})"
        case Joined(after, moment):
            params.append(moment)
            return "(s.created_at >= ?)" if after else "(s.created_at < ?)"
        case Compare(op, left, right):
            return _compare(op, left, right, params, pg)
        case Contains(item, container):
            return _contains(item, container, params, pg)
    raise TypeError(expr)


def _compare(op: str, left: Value, right: Value, params: list[object], pg: bool) -> str:
    sql_op = _OPS[op]
    if isinstance(left, Number) or isinstance(right, Number):
        sides = [_numeric(v, params, pg) for v in (left, right)]
        return f"COALESCE({sides[0]} {sql_op} {sides[1]}, {'FALSE' if pg else '0'})"
    sides = [_text(v, params, pg) for v in (left, right)]
    if pg:  # compared bytewise, as SQLite compares text, whatever the database's locale
        sides = [f'CAST({side} AS TEXT) COLLATE "C"' for side in sides]
    return f"({sides[0]} {sql_op} {sides[1]})"


def _contains(item: Value, container: Value, params: list[object], pg: bool) -> str:
    if isinstance(container, Name) and container.name == "tags":
        return _HAS_TAG.format(_text(item, params, pg))
    if isinstance(container, Name) and container.name == "lists":
        # List names are exact (as `--list` takes them), not case-folded.
        if isinstance(item, Text):
            params.append(item.value)
            return _IN_LIST.format("?")
        return _IN_LIST.format(_raw(item, params, pg))
    hay = _text(container, params, pg)  # parameters in the order their ? appear
    needle = _text(item, params, pg)
    return f"(strpos({hay}, {needle}) > 0)" if pg else f"(instr({hay}, {needle}) > 0)"


def _text(value: Value, params: list[object], pg: bool) -> str:
    """A value as folded text."""
    if isinstance(value, Text):
        params.append(fold(value.value))
        return "CAST(? AS TEXT)" if pg else "?"
    return f"nl_fold({_raw(value, params, pg)})"


def _numeric(value: Value, params: list[object], pg: bool) -> str:
    if isinstance(value, Number | Text):
        # A text compared with a number counts only if it reads as one.
        params.append(value.value if isinstance(value, Number) else as_number(value.value))
        return "CAST(? AS DOUBLE PRECISION)" if pg else "?"
    return f"nl_number({_raw(value, params, pg)})"


def _raw(value: Value, params: list[object], pg: bool) -> str:
    if isinstance(value, Field):
        params.append(value.name.lower())
        return _PG_FIELD if pg else _FIELD
    if isinstance(value, Name) and value.name in _COLUMNS:
        return _COLUMNS[value.name]
    raise TypeError(value)  # the parser refuses sets and literals here
