"""Segment expressions: who of a list an issue goes to, in a small language parsed with lark.

    fields.city == "Oslo" and "pro" in tags and joined_after("2026-01-01")

Grammar (lowest precedence first; keywords are lower case):

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | condition | "(" expr ")"
    condition  := value OP value            OP: == != < <= > >=
                | value ["not"] "in" value  (a name in tags / lists, or text in text)
                | function "(" args ")"      joined_after("2026-01-01"), joined_before(...)
    value      := "text" | 'text' | number | fields.NAME | email | name | status | tags | lists

Meaning (also what `tests/test_segments.py` checks the SQL against):
- `fields.NAME` is the subscriber's field (names compared ignoring case, as the store does); a
  missing field is the empty text "", so `fields.city == ""` is "no city".
- Text comparisons ignore case (Unicode case folding: "ZÜRICH" == "zürich"); `<`, `>` compare
  the folded text. Against a number literal a field compares as a number, and a field that is
  not a number (`-?digits[.digits]`) matches no numeric comparison.
- `"pro" in tags`: the subscriber has the tag (tags are stored case-folded); `"weekly" in lists`:
  a member of that list (exact name); `"@example.com" in email`: text contains text.
- `joined_after(D)` / `joined_before(D)`: the subscriber's `created_at` is after / before D, an
  ISO 8601 date (the whole day, UTC) or date and time (naive means UTC).

The parse gives an `Expr` tree; nothing in the text ever becomes SQL or Python code
(`segmentsql.compile_segment` turns the tree into parameterised SQL). Errors are
`SegmentError`s carrying the column and a caret line under the expression.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import cache
from typing import TYPE_CHECKING, Literal

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from newsletter.errors import SubscriberError
from newsletter.subscribers.model import fold as _fold

if TYPE_CHECKING:
    from collections.abc import Mapping

    from newsletter.config import NamedSegment

NAMES = ("email", "name", "status", "tags", "lists")
SET_NAMES = frozenset({"tags", "lists"})
FUNCTIONS = {"joined_after": 'a date such as "2026-01-01"', "joined_before": "a date"}
MAX_LENGTH = 4000  # characters in one expression (it is typed or kept in newsletter.yaml)
# Levels of `not` and of and/or groups in parentheses inside one another. Deeper trees exhaust
# Python's recursion while building and SQLite's parser stack (about 100 levels) when queried.
MAX_NESTING = 32

_GRAMMAR = r"""
?start: or_
?or_: and_ ("or" and_)*
?and_: not_ ("and" not_)*
?not_: NOT not_ -> negate
     | condition
     | "(" or_ ")"
condition: value COMP value       -> compare
         | value IN value         -> contains
         | value NOT IN value     -> not_contains
         | IDENT "(" [value ("," value)*] ")" -> call
?value: STRING -> string
      | NUMBER -> number
      | IDENT "." IDENT -> dotted
      | IDENT -> name
NOT: "not"
IN: "in"
COMP: "==" | "!=" | "<=" | ">=" | "<" | ">"
STRING: /"(?:[^"\\\n]|\\.)*"/ | /'(?:[^'\\\n]|\\.)*'/
NUMBER: /-?[0-9]+(\.[0-9]+)?(?![A-Za-z_0-9])/
IDENT: /(?!(?:and|or|not|in)(?!\w))[^\W\d]\w*/
%ignore /[ \t\r\n]+/
"""

# Terminal names lark reports -> what a person would type.
_EXPECTED = {
    "STRING": 'a text in quotes ("Oslo")',
    "NUMBER": "a number",
    "IDENT": "a name (fields.NAME, tags, lists, email, name, status) or a function",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
    "COMP": "a comparison (== != < <= > >=)",
    "IN": "'in'",
    "NOT": "'not'",
    "AND": "'and'",
    "OR": "'or'",
    "$END": "the end of the expression",
}


class SegmentError(SubscriberError):
    """A segment expression that cannot be used: message, 1-based column, the expression."""

    def __init__(
        self, message: str, text: str = "", column: int | None = None, where: str = "segment"
    ) -> None:
        self.reason = message
        self.text = text
        self.column = column
        self.where = where
        super().__init__(self.describe(where))

    def describe(self, where: str = "segment") -> str:
        if self.column is None:
            return f"{where}: {self.reason}"
        line = self.text.replace("\n", " ")
        caret = " " * (self.column - 1) + "^"
        return f"{where}: column {self.column}: {self.reason}\n    {line}\n    {caret}"


# -- the tree -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    value: str  # case-folded when compared; kept as written for display


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Field:
    name: str  # as written; compared ignoring case
    column: int = dc_field(default=0, compare=False)  # where it was written, for errors


@dataclass(frozen=True)
class Name:
    name: Literal["email", "name", "status", "tags", "lists"]


Value = Text | Number | Field | Name


@dataclass(frozen=True)
class Compare:
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    left: Value
    right: Value


@dataclass(frozen=True)
class Contains:
    item: Value
    container: Value  # tags, lists, or a text value (substring)


@dataclass(frozen=True)
class Joined:
    after: bool  # joined_after (created_at >= the moment) or joined_before (<)
    moment: str  # stored timestamp form, e.g. 2026-01-02T00:00:00Z


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Compare | Contains | Joined | Not | And | Or


@dataclass(frozen=True)
class Segment:
    """A parsed segment: the text as given, its tree, and its name in newsletter.yaml if any."""

    text: str
    expr: Expr
    name: str | None = None
    where: str = "segment"  # how errors name it: "newsletter.yaml:12: segment 'oslo-pros'"

    @property
    def canonical(self) -> str:
        """The expression written one way (spacing, quotes, parentheses): what a campaign
        stores, so re-typing the same expression differently resumes the same campaign."""
        return unparse(self.expr)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.canonical})" if self.name else self.canonical


# -- parsing ------------------------------------------------------------------------------------
_SEGMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def resolve_segment(given: str, named: Mapping[str, NamedSegment]) -> Segment:
    """`--segment GIVEN`: a segment named under `segments:` in newsletter.yaml, or an expression.
    Errors in a named one name its file and line."""
    key = given.strip()
    if key in named:
        entry = named[key]
        where = f"{entry.path}:{entry.line}: segment {key!r}" if entry.path else f"segment {key!r}"
        try:
            segment = parse_segment(entry.text, name=key)
        except SegmentError as exc:
            raise SegmentError(exc.reason, exc.text, exc.column, where) from None
        return Segment(segment.text, segment.expr, key, where)
    if _SEGMENT_NAME.match(key) and key not in NAMES and not key.startswith("fields."):
        hint = difflib.get_close_matches(key, list(named), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        names = ", ".join(sorted(named)) or "none"
        raise SegmentError(
            f"no segment named {key!r} in newsletter.yaml{suggestion} (named segments: {names});"
            " or give an expression such as 'fields.city == \"Oslo\"'"
        )
    return parse_segment(given)


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse_segment(text: str, name: str | None = None) -> Segment:
    """Parse a segment expression; SegmentError (column, caret, what was expected) if bad."""
    if not text.strip():
        raise SegmentError(
            'the segment is empty; expected a condition such as fields.city == "Oslo"'
        )
    if len(text) > MAX_LENGTH:
        raise SegmentError(f"the segment is longer than {MAX_LENGTH} characters")
    flat = text.strip().replace("\n", " ").replace("\r", " ").replace("\t", " ")
    try:
        tree = _parser().parse(flat)
        _refuse_deep(tree, flat)
        expr = _Build(flat).transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, flat) from None
    except _Problem as exc:
        raise SegmentError(exc.message, flat, exc.column) from None
    except Exception as exc:  # lark wraps errors raised in a transformer
        inner = getattr(exc, "orig_exc", None)
        if isinstance(inner, _Problem):
            raise SegmentError(inner.message, flat, inner.column) from None
        raise
    if not isinstance(expr, Compare | Contains | Joined | Not | And | Or):
        raise SegmentError(
            'a value alone is not a condition; compare it, e.g. fields.city == "Oslo" or '
            '"pro" in tags',
            flat,
            1,
        )
    return Segment(text.strip(), expr, name)


_NESTING_RULES = frozenset({"negate", "and_", "or_"})


def _refuse_deep(tree: Tree, text: str) -> None:
    """SegmentError at the first `not` or group nested more than MAX_NESTING deep (walked
    without recursion: the tree may be far deeper than Python's stack)."""
    stack: list[tuple[object, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_NESTING:
                column = getattr(node.meta, "column", 1) if not node.meta.empty else 1
                raise SegmentError(
                    f"the segment nests 'not' and parentheses more than {MAX_NESTING} deep; "
                    "write it with fewer levels (not not x is x; a and (b and c) is a and b and c)",
                    text,
                    column,
                )
        stack.extend((child, depth) for child in node.children)


def _syntax_error(exc: UnexpectedInput, text: str) -> SegmentError:
    column = getattr(exc, "column", None)
    if isinstance(exc, UnexpectedEOF) or column in (None, -1):
        column = len(text.rstrip()) + 1
        expected = _expected(getattr(exc, "expected", ()))
        return SegmentError(f"the expression ends too early; expected {expected}", text, column)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        hint = ""
        if char == "=":
            hint = " (equality is ==)"
        elif char in "&|":
            hint = " (use and / or)"
        elif char in "\"'":
            hint = " (a text needs its closing quote on the same line)"
        elif char in "\u201c\u201d\u201e\u2018\u2019\u201a\u00ab\u00bb":
            hint = " (a typographic quote: use straight quotes, \"Oslo\" or 'Oslo')"

        return SegmentError(f"unexpected character {char!r}{hint}", text, column)
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    expected = _expected(exc.expected)
    if token.type == "$END":
        column = len(text.rstrip()) + 1
        return SegmentError(f"the expression ends too early; expected {expected}", text, column)
    return SegmentError(f"unexpected {str(token)!r}; expected {expected}", text, column)


def _expected(names: object) -> str:
    wanted = sorted({_EXPECTED.get(str(n), str(n)) for n in names or ()})  # type: ignore[attr-defined]
    if not wanted:
        return "a condition"
    return wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]


class _Problem(Exception):
    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def _col(token: Token) -> int:
    return int(token.column or 1)


@v_args(inline=True)
class _Build(Transformer):  # type: ignore[type-arg]
    """lark tree -> Expr, checking names, functions and types (each error with its column)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self._columns: dict[int, int] = {}  # id(value) -> column, for type errors

    def _at(self, value: Value, column: int) -> Value:
        self._columns[id(value)] = column
        return value

    def string(self, token: Token) -> Value:
        body = str(token)[1:-1]
        return self._at(Text(re.sub(r"\\(.)", r"\1", body)), _col(token))

    def number(self, token: Token) -> Value:
        return self._at(Number(float(token)), _col(token))

    def dotted(self, head: Token, tail: Token) -> Value:
        if str(head) != "fields":
            raise _Problem(
                f"unknown name {str(head)!r}.{tail}; only fields.NAME has a dot", _col(head)
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", str(tail)):
            raise _Problem(
                f"{str(tail)!r} is not a field name (letters, digits and '_')", _col(tail)
            )
        return self._at(Field(str(tail), _col(head)), _col(head))

    def name(self, token: Token) -> Value:
        word = str(token)
        if word in NAMES:
            return self._at(Name(word), _col(token))  # type: ignore[arg-type]
        if word in ("and", "or", "in", "not"):
            raise _Problem(f"unexpected {word!r}; expected a value", _col(token))
        if word in ("true", "false", "True", "False", "null", "None"):
            raise _Problem(f"{word!r} is not a value here; compare a field with text", _col(token))
        hint = difflib.get_close_matches(word, [*NAMES, "fields"], n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise _Problem(
            f"unknown name {word!r}{suggestion}; names are fields.NAME, " + ", ".join(NAMES),
            _col(token),
        )

    def compare(self, left: Value, op: Token, right: Value) -> Expr:
        for side in (left, right):
            if isinstance(side, Name) and side.name in SET_NAMES:
                raise _Problem(
                    f'{side.name} is a set of names, not one value; write "NAME" in {side.name}',
                    self._columns.get(id(side), _col(op)),
                )
        if isinstance(left, Text | Number) and isinstance(right, Text | Number):
            raise _Problem("compare a field or a name with a value, not two values", _col(op))
        return Compare(str(op), left, right)  # type: ignore[arg-type]

    def contains(self, item: Value, _in: Token, container: Value) -> Expr:
        if isinstance(item, Name) and item.name in SET_NAMES:
            raise _Problem(
                f'{item.name} is a set; put it on the right: "NAME" in {item.name}',
                self._columns.get(id(item), _col(_in)),
            )
        if isinstance(container, Number) or isinstance(item, Number):
            raise _Problem("'in' looks for a text, not a number", _col(_in))
        if isinstance(container, Text):
            raise _Problem(
                "the right side of 'in' is tags, lists, or a field or name holding text",
                self._columns.get(id(container), _col(_in)),
            )
        return Contains(item, container)

    def not_contains(self, item: Value, _not: Token, _in: Token, container: Value) -> Expr:
        return Not(self.contains(item, _in, container))

    def call(self, function: Token, *args: Value) -> Expr:
        word = str(function)
        if word not in FUNCTIONS:
            hint = difflib.get_close_matches(word, list(FUNCTIONS), n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise _Problem(
                f"unknown function {word!r}{suggestion}; functions are "
                + ", ".join(f"{f}(DATE)" for f in FUNCTIONS),
                _col(function),
            )
        if len(args) != 1 or not isinstance(args[0], Text):
            raise _Problem(
                f'{word} takes one date in quotes, e.g. {word}("2026-01-01")', _col(function)
            )
        moment = _moment(args[0].value, after=word == "joined_after")
        if moment is None:
            raise _Problem(
                f'{args[0].value!r} is not a date such as "2026-01-01" or "2026-01-01T09:30:00Z"',
                self._columns.get(id(args[0]), _col(function)),
            )
        return Joined(word == "joined_after", moment)

    def negate(self, _not: Token, operand: Expr) -> Expr:
        return Not(operand)

    def and_(self, *operands: Expr) -> Expr:
        # (a and b) and c is a and b and c: one canonical tree, one canonical text.
        return And(tuple(x for o in operands for x in (o.operands if isinstance(o, And) else (o,))))

    def or_(self, *operands: Expr) -> Expr:
        return Or(tuple(x for o in operands for x in (o.operands if isinstance(o, Or) else (o,))))


def _moment(text: str, *, after: bool) -> str | None:
    """The stored-timestamp bound for joined_after/joined_before: a date means the whole day
    (after 2026-01-01: from 2026-01-02T00:00:00Z on; before it: until 2026-01-01T00:00:00Z)."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = dt.date.fromisoformat(value)
            start = dt.datetime.combine(day, dt.time(), dt.UTC)
            return _stamp(start + dt.timedelta(days=1) if after else start)
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # Stored times have whole seconds: "after" starts at the next one, and a fraction rounds up.
    if after or moment.microsecond:
        moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
    return _stamp(moment)


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fold(text: str) -> str:
    """How text values compare: as tags do (newsletter.subscribers.model.fold)."""
    return _fold(text)


_NUMBER = re.compile(r"\s*-?\d+(?:\.\d+)?\s*\Z")


def as_number(text: str | None) -> float | None:
    """A field's value as a number for numeric comparisons, or None when it is not one."""
    if text is None or not _NUMBER.match(text):
        return None
    try:
        return float(text)
    except ValueError:  # \x1c-\x1f: white space to the pattern, not to float()
        return None


# -- writing it back ----------------------------------------------------------------------------
def unparse(expr: Expr | Value) -> str:
    """The expression in one canonical spelling (parses back to the same tree)."""
    match expr:
        case Text(value):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        case Number(value):
            return str(int(value)) if value.is_integer() else repr(value)
        case Field(name):
            return f"fields.{name.lower()}"  # field names are compared ignoring case
        case Name(name):
            return name
        case Compare(op, left, right):
            return f"{unparse(left)} {op} {unparse(right)}"
        case Contains(item, container):
            return f"{unparse(item)} in {unparse(container)}"
        case Joined(after, moment):
            return f'joined_{"after" if after else "before"}("{_moment_text(after, moment)}")'
        case Not(operand):
            return f"not {_wrapped(operand)}"
        case And(operands):
            return " and ".join(_wrapped(o, Or) for o in operands)
        case Or(operands):
            return " or ".join(unparse(o) for o in operands)
    raise TypeError(expr)


def _wrapped(expr: Expr, *also: type) -> str:
    needs = isinstance(expr, And | Or) if not also else isinstance(expr, also)
    return f"({unparse(expr)})" if needs else unparse(expr)


def _moment_text(after: bool, moment: str) -> str:
    # Written back as the exact bound, so the canonical text parses to the same tree.
    stamp = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if stamp.time() == dt.time():  # a whole day
        return (stamp.date() - dt.timedelta(days=1) if after else stamp.date()).isoformat()
    if after:
        stamp -= dt.timedelta(seconds=1)
    return _stamp(stamp)
