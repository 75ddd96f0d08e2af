"""A parsed segment (`segment.Segment`) as one parameterised SQL condition over `subscribers s`.

Every value from the expression is a bound parameter; the SQL text is made only of our own
fixed fragments, chosen by the tree's node types. Text comparisons go through two deterministic
functions registered on the connection (`register_functions`): `nl_fold` (Unicode case folding,
which SQLite's lower() does not do beyond ASCII) and `nl_number` (a field as a number, NULL when
it is not one). Every condition yields 0 or 1, never NULL, so `not` is plain negation.
"""

from __future__ import annotations

import difflib
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
_HAS_TAG = "EXISTS (SELECT 1 FROM subscriber_tags t WHERE t.subscriber_id = s.id AND t.tag = {})"
_IN_LIST = (
    "EXISTS (SELECT 1 FROM subscriber_memberships m JOIN subscriber_lists l ON l.id = m.list_id"
    " WHERE m.subscriber_id = s.id AND l.name = {})"
)


@dataclass(frozen=True)
class SegmentQuery:
    """`where` is a condition on the table alias `s` (subscribers); `params` its values."""

    where: str
    params: tuple[object, ...]


def segment_query(
    store: SubscriberStore, given: str, named: Mapping[str, NamedSegment]
) -> tuple[Segment, SegmentQuery]:
    """`--segment GIVEN` (a name under `segments:` or an expression), parsed and compiled
    against the store's fields; SegmentError with column and caret when it cannot be used."""
    segment = resolve_segment(given, named)
    return segment, compile_segment(segment, store.field_names())


def register_functions(conn: sqlite3.Connection) -> None:
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
    where = _expr(segment.expr, params)
    return SegmentQuery(where, tuple(params))


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


def _expr(expr: Expr, params: list[object]) -> str:
    match expr:
        case And(operands):
            return "(" + " AND ".join(_expr(o, params) for o in operands) + ")"
        case Or(operands):
            return "(" + " OR ".join(_expr(o, params) for o in operands) + ")"
        case Not(operand):
            return f"(NOT {_expr(operand, params)})"
        case Joined(after, moment):
            params.append(moment)
            return "(s.created_at >= ?)" if after else "(s.created_at < ?)"
        case Compare(op, left, right):
            return _compare(op, left, right, params)
        case Contains(item, container):
            return _contains(item, container, params)
    raise TypeError(expr)


def _compare(op: str, left: Value, right: Value, params: list[object]) -> str:
    sql_op = _OPS[op]
    if isinstance(left, Number) or isinstance(right, Number):
        sides = [_numeric(v, params) for v in (left, right)]
        return f"COALESCE({sides[0]} {sql_op} {sides[1]}, 0)"
    sides = [_text(v, params) for v in (left, right)]
    return f"({sides[0]} {sql_op} {sides[1]})"


def _contains(item: Value, container: Value, params: list[object]) -> str:
    if isinstance(container, Name) and container.name == "tags":
        return _HAS_TAG.format(_text(item, params))
    if isinstance(container, Name) and container.name == "lists":
        # List names are exact (as `--list` takes them), not case-folded.
        if isinstance(item, Text):
            params.append(item.value)
            return _IN_LIST.format("?")
        return _IN_LIST.format(_raw(item, params))
    hay = _text(container, params)  # parameters in the order their ? appear
    needle = _text(item, params)
    return f"(instr({hay}, {needle}) > 0)"


def _text(value: Value, params: list[object]) -> str:
    """A value as folded text."""
    if isinstance(value, Text):
        params.append(fold(value.value))
        return "?"
    return f"nl_fold({_raw(value, params)})"


def _numeric(value: Value, params: list[object]) -> str:
    if isinstance(value, Number):
        params.append(value.value)
        return "?"
    if isinstance(value, Text):  # a text compared with a number: only if it reads as one
        params.append(as_number(value.value))
        return "?"
    return f"nl_number({_raw(value, params)})"


def _raw(value: Value, params: list[object]) -> str:
    if isinstance(value, Field):
        params.append(value.name.lower())
        return _FIELD
    if isinstance(value, Name) and value.name in _COLUMNS:
        return _COLUMNS[value.name]
    raise TypeError(value)  # the parser refuses sets and literals here
