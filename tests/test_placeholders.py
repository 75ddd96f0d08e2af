"""Placeholder values: the send path's evaluator must agree with Jinja's own compile_expression."""

from __future__ import annotations

import pytest

from newsletter.placeholders import (
    Expression,
    Recipient,
    _compiled,
    _evaluator,
    parse_placeholders,
)

EXPRESSIONS = [
    'subscriber.name | default("reader")',
    "subscriber.name",
    "subscriber.email",
    "subscriber.fields.city",
    'subscriber.fields.city | default("your town") | upper',
    "subscriber.name | title ~ ' from ' ~ subscriber.fields.get('city', '?')",
    "subscriber.fields.visits + 1",
    "subscriber.name.__class__",
    "subscriber.fields.visits | round(1)",
    "subscriber.missing.deeper",
    "subscriber.name[:3] if subscriber.name else 'x'",
]
RECIPIENTS = [
    Recipient("ann@example.com", "Ann", {"city": "Springfield", "visits": 3}),
    Recipient("zoe@example.com", "Zoë Ångström", {"city": "Åre"}),
    Recipient("anon@example.com", None, {}),
    Recipient("x@example.com", "<b>&</b>", {"visits": "3"}),
]


def outcome(evaluate: object, recipient: Recipient) -> str:
    """The value as text, or the class of the error raised."""
    try:
        return str(evaluate(recipient))  # type: ignore[operator]
    except Exception as exc:
        return f"error {type(exc).__name__}"


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_same_value_as_jinja_compile_expression(source: str) -> None:
    (expression,) = parse_placeholders("{{ " + source + " }}")
    assert isinstance(expression, Expression)
    for recipient in RECIPIENTS:
        jinja = outcome(lambda r: _compiled(source)(**r.context()), recipient)
        fast = outcome(lambda r: _evaluator(source)(r.context()), recipient)
        assert fast == jinja, (source, recipient)
        expected = "" if jinja.startswith("error ") or jinja == "None" else jinja
        assert expression.evaluate(recipient.context()) == expected, (source, recipient)


def test_sandbox_still_applies() -> None:
    (expression,) = parse_placeholders("{{ subscriber.name.__class__.__mro__ }}")
    assert isinstance(expression, Expression)
    assert expression.evaluate(Recipient("a@example.com", "Ann").context()) == ""


def test_without_jinjas_internals_the_public_api_still_renders(monkeypatch) -> None:
    """The fast path relies on Jinja internals; another Jinja version must not silently turn
    every placeholder into an empty string."""
    from newsletter import placeholders

    def missing_internals(self, source):  # type: ignore[no-untyped-def]
        raise AttributeError("'TemplateExpression' object has no attribute '_template'")

    monkeypatch.setattr(placeholders._Evaluator, "__init__", missing_internals)
    monkeypatch.setattr(placeholders, "_EVALUATORS", {})
    expr = placeholders.Expression('subscriber.name | default("reader") | upper')
    assert expr.evaluate(placeholders.Recipient("a@example.com", "Zoë").context()) == "ZOË"
    assert expr.evaluate(placeholders.Recipient("a@example.com").context()) == "READER"
