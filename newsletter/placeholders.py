"""Per-recipient placeholders: `{{ subscriber.name | default("reader") }}` and friends.

Only `{{ expression }}` is allowed (no `{% statements %}`), only the `subscriber` variable exists,
and expressions run in Jinja2's sandbox because subscriber data is untrusted. Each expression is
compiled once per issue and evaluated once per recipient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_STATEMENT = re.compile(r"\{%|\{#")
MAX_RESULT = 100_000  # characters (or items) a `*` in a placeholder may produce
MAX_POWER_BITS = 100_000  # bits of an integer `**` may produce


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with `*` and `**` refused when the result would be huge.

    `{{ "a" * 10**10 }}` in an issue would otherwise allocate gigabytes in `newsletter check`
    and again for every recipient; refused, it renders empty like any value that cannot be
    computed. Only expressions using these operators pay for the check.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and _is_number(right):
            # A float result overflows on its own (OverflowError); an int one just grows.
            if abs(left) > 1 and right > 0 and left.bit_length() * right > MAX_POWER_BITS:
                raise SecurityError("the power is too large")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_RESULT
                ):
                    raise SecurityError("the repeated value is too large")
        return super().call_binop(context, operator, left, right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_ENV = _BoundedEnvironment(autoescape=False)
ALLOWED_NAMES = frozenset({"subscriber"})


class PlaceholderSyntaxError(ValueError):
    pass


class Fields(dict):
    """A subscriber's fields as placeholders see them: names compared ignoring case, as the
    subscriber store and import do (`{{ subscriber.fields.city }}` finds a field stored as
    `City`). The exact spelling is found at dict speed; only a miss pays for the scan."""

    def __missing__(self, key: Any) -> Any:
        if isinstance(key, str):
            wanted = key.lower()
            for name, value in self.items():
                if name.lower() == wanted:
                    return value
        raise KeyError(key)


@dataclass(frozen=True)
class Recipient:
    """What a placeholder can see of a subscriber."""

    email: str
    name: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        # Missing values are left out so `default("reader")` applies to them.
        subscriber: dict[str, Any] = {"email": self.email, "fields": Fields(self.fields)}
        if self.name:
            subscriber["name"] = self.name
        return {"subscriber": subscriber}


SAMPLE_RECIPIENT = Recipient(email="reader@example.com", name="Sample Reader")


@dataclass(frozen=True)
class Expression:
    source: str  # the text between the braces, stripped

    def evaluate(self, context: Mapping[str, Any]) -> str:
        try:
            value = _evaluator(self.source)(context)
        # ArithmeticError: `{{ 1/0 }}`, or a range the sandbox refuses (OverflowError); like any
        # value that cannot be computed for this reader, it renders empty instead of crashing.
        except (
            SecurityError,
            UndefinedError,
            TypeError,
            ValueError,
            AttributeError,
            ArithmeticError,
            MemoryError,  # one huge allocation refused (e.g. "a" | center(10**9))
        ):
            return ""
        return "" if value is None else str(value)


def parse_placeholders(text: str) -> list[str | Expression]:
    """Split text into literal strings and expressions; raise PlaceholderSyntaxError."""
    statement = _STATEMENT.search(text)
    if statement:
        raise PlaceholderSyntaxError(
            f"'{statement.group()}' is not allowed: only {{{{ expressions }}}} such as "
            '{{ subscriber.name | default("reader") }}'
        )
    pieces: list[str | Expression] = []
    last = 0
    for match in _EXPRESSION.finditer(text):
        if match.start() > last:
            pieces.append(text[last : match.start()])
        source = match.group(1).strip()
        _validate(source)
        pieces.append(Expression(source))
        last = match.end()
    if "{{" in text[last:] or "}}" in text[last:]:
        raise PlaceholderSyntaxError("unbalanced '{{' or '}}' in placeholder")
    if last < len(text):
        pieces.append(text[last:])
    return pieces


def render_placeholders(text: str, recipient: Recipient) -> str:
    context = recipient.context()
    return "".join(
        p if isinstance(p, str) else p.evaluate(context) for p in parse_placeholders(text)
    )


def _validate(source: str) -> None:
    if not source:
        raise PlaceholderSyntaxError("empty placeholder '{{ }}'")
    try:
        names = meta.find_undeclared_variables(_ENV.parse("{{ " + source + " }}"))
        _compiled(source)
    except TemplateSyntaxError as exc:
        raise PlaceholderSyntaxError(
            f"invalid placeholder '{{{{ {source} }}}}': {exc.message}"
        ) from None
    unknown = sorted(names - ALLOWED_NAMES)
    if unknown:
        raise PlaceholderSyntaxError(
            f"unknown name '{unknown[0]}' in placeholder '{{{{ {source} }}}}'; "
            "use subscriber.name, subscriber.email or subscriber.fields.NAME"
        )


_CACHE: dict[str, Any] = {}


def _compiled(source: str) -> Any:
    fn = _CACHE.get(source)
    if fn is None:
        fn = _CACHE[source] = _ENV.compile_expression(source, undefined_to_none=False)
    return fn


class _Evaluator:
    """What `_compiled(source)(**context)` does, minus its per-call cost.

    Jinja's `TemplateExpression.__call__` builds each call's Context from the template's
    globals, a ChainMap it iterates twice (copying it into the context, then listing its keys):
    about 7 of the 11 us an evaluation costs, paid per recipient and expression. Here the
    globals are flattened once (`_ENV` is private and never changes them) and the same compiled
    template runs on a Context built from them: the same Context contents and the same result.
    """

    __slots__ = ("_blocks", "_globals", "_name", "_render")

    def __init__(self, source: str) -> None:
        template = _compiled(source)._template
        self._render = template.root_render_func
        self._name = template.name
        self._blocks = template.blocks
        self._globals = dict(template.globals)

    def __call__(self, context: Mapping[str, Any]) -> Any:
        ctx = _ENV.context_class(
            _ENV, {**self._globals, **context}, self._name, self._blocks, globals=self._globals
        )
        for _ in self._render(ctx):
            pass
        return ctx.vars["result"]


_EVALUATORS: dict[str, Callable[[Mapping[str, Any]], Any]] = {}


_PROBES = (
    {"subscriber": {"email": "probe@example.com", "fields": {}}},
    {"subscriber": {"email": "probe@example.com", "name": "Probe", "fields": {"x": "1"}}},
)


def _evaluator(source: str) -> Callable[[Mapping[str, Any]], Any]:
    fn = _EVALUATORS.get(source)
    if fn is None:
        fn = _EVALUATORS[source] = _fast_or_public(source)
    return fn


def _fast_or_public(source: str) -> Callable[[Mapping[str, Any]], Any]:
    """The fast evaluator leans on Jinja internals: if another Jinja version lacks them or they
    give another answer than the public API on probe readers, fall back to the public API
    rather than render every placeholder empty."""
    public = _compiled(source)

    def slow(context: Mapping[str, Any]) -> Any:
        return public(**context)

    try:
        fast = _Evaluator(source)
        for probe in _PROBES:
            if _outcome(fast, probe) != _outcome(slow, probe):
                return slow
    except (AttributeError, KeyError, TypeError):
        return slow
    return fast


def _outcome(fn: Callable[[Mapping[str, Any]], Any], context: Mapping[str, Any]) -> object:
    try:
        return ("value", fn(context))
    except Exception as exc:  # comparing behaviours, errors included
        return ("error", type(exc))
