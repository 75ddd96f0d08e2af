"""Segment expressions against a real subscriber store, on SQLite and on PostgreSQL: who matches,
what a bad expression says, that hostile text stays text, and that the SQL of either engine
agrees with a plain Python reading of the same parsed expression (hypothesis): so both engines
give the same answers, Unicode folding and numbers in any script included."""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

import pytest
from db_support import dump
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import NamedSegment
from newsletter.subscribers import SubscriberStore, import_csv
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
    parse_segment,
    resolve_segment,
    unparse,
)
from newsletter.subscribers.segmentsql import compile_segment, segment_query
from newsletter.subscribers.tags import tags_of

EVE = "Robert'); DROP TABLE subscribers; --"
PEOPLE = f"""\
email,name,status,lists,tags,created_at,city,age,plan
ada@example.com,Ada,active,default|weekly,pro|beta,2025-12-15T08:00:00Z,Oslo,36,pro
bjorn@example.no,Bjørn,active,default,Pro,2026-01-05T00:00:00Z,oslo,29,
chloe@example.fr,Chloé,active,weekly,,2026-02-01T10:00:00Z,Zürich,n/a,free
dan@example.com,,unsubscribed,default,vip,2026-01-01T23:59:59Z,,41,pro
eve@example.org,{EVE},active,default,x,2026-01-02T00:00:00Z,"Oslo'; DELETE FROM subscribers; --",7,
fritz@example.de,Fritz,pending,default|vip,stammgast,2026-01-01T00:00:00Z,STRASSE,100.5,Pro
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SubscriberStore:
    folder = tmp_path_factory.mktemp("segments")
    (folder / "people.csv").write_text(PEOPLE, encoding="utf-8")
    if request.param == "sqlite":
        database = str(folder / "s.db")
    else:  # one database for the module, as the SQLite file is
        database = str(request.getfixturevalue("postgres_server").create_database())
    store = SubscriberStore.open(database)
    report = import_csv(store, folder / "people.csv")
    assert report.rejected == 0
    store.add("fritz@example.de", fields={"street": "Hauptstraße"})
    return store


def matching(store: SubscriberStore, text: str) -> list[str]:
    _, query = segment_query(store, text, {})
    return sorted(s.email.split("@")[0] for s in store.iter_subscribers(segment=query))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # fields: text compared ignoring case (Unicode folding), a missing field is ""
        ('fields.city == "Oslo"', ["ada", "bjorn"]),
        ('fields.CITY == "OSLO"', ["ada", "bjorn"]),
        ('fields.city == "zürich"', ["chloe"]),
        ('fields.city == "ZÜRICH"', ["chloe"]),
        ('fields.city == "Straße"', ["fritz"]),  # ß folds to ss
        ('fields.street == "HAUPTSTRASSE"', ["fritz"]),
        ('fields.city == ""', ["dan"]),
        ('fields.city != "Oslo"', ["chloe", "dan", "eve", "fritz"]),
        ('"osl" in fields.city', ["ada", "bjorn", "eve"]),
        ('fields.city < "p"', ["ada", "bjorn", "dan", "eve"]),
        # numbers: a field compares as a number only when it is one
        ("fields.age >= 36", ["ada", "dan", "fritz"]),
        ("fields.age < 30", ["bjorn", "eve"]),
        ("fields.age == 100.5", ["fritz"]),
        ("not fields.age > 0", ["chloe"]),  # "n/a" is not a number
        # tags: case-folded names
        ('"pro" in tags', ["ada", "bjorn"]),
        ('"PRO" in tags', ["ada", "bjorn"]),
        ('"pro" not in tags', ["chloe", "dan", "eve", "fritz"]),
        ('"Stammgast" in tags', ["fritz"]),
        ("fields.plan in tags", ["ada"]),  # a field's value as the tag
        # lists: exact names
        ('"weekly" in lists', ["ada", "chloe"]),
        ('"vip" in lists', ["fritz"]),
        ('"Weekly" in lists', []),
        # status, email, name
        ('status == "active"', ["ada", "bjorn", "chloe", "eve"]),
        ('status != "active"', ["dan", "fritz"]),
        ('"@example.com" in email', ["ada", "dan"]),
        ('name == "bjørn"', ["bjorn"]),
        ('name == ""', ["dan"]),
        ('"é" in name', ["chloe"]),
        # dates: whole days in UTC
        ('joined_after("2026-01-01")', ["bjorn", "chloe", "eve"]),
        ('joined_before("2026-01-01")', ["ada"]),
        ('joined_after("2026-01-01T23:59:58Z")', ["bjorn", "chloe", "dan", "eve"]),
        ('joined_before("2026-01-02T00:00:00")', ["ada", "dan", "fritz"]),
        ('joined_after("2026-01-01T12:00:00+02:00")', ["bjorn", "chloe", "dan", "eve"]),
        # and / or / not / parentheses, precedence: not > and > or
        ('fields.city == "Oslo" and "pro" in tags and joined_after("2025-12-31")', ["bjorn"]),
        ('"vip" in tags or "vip" in lists', ["dan", "fritz"]),
        ('fields.city == "Oslo" or fields.city == "Zürich" and "pro" in tags', ["ada", "bjorn"]),
        ('(fields.city == "Oslo" or fields.city == "Zürich") and not "pro" in tags', ["chloe"]),
        ('not (fields.city == "Oslo" or fields.city == "")', ["chloe", "eve", "fritz"]),
        ("not not fields.age == 7", ["eve"]),
        # single quotes and escapes
        ("fields.plan == 'PRO'", ["ada", "dan", "fritz"]),
        ('name == "Robert\'); DROP TABLE subscribers; --"', ["eve"]),
    ],
)
def test_expressions_select_exactly_these_subscribers(store, text, expected):
    assert matching(store, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('fields.city == "Oslo\'; DELETE FROM subscribers; --"', ["eve"]),
        ("fields.city == \"x' OR '1'='1\"", []),
        ('name == "x\\" OR 1=1 --"', []),
        ('"pro\') OR 1=1; --" in tags', []),
        ("\"default' OR '1'='1\" in lists", []),
        ('fields.select == "drop table subscribers"', ["odd"]),
        ('fields.DROP == "1"', ["odd"]),
        ('"; DROP TABLE subscribers; --" in email', []),
        ('fields.city == "Oslo" or "x" in tags; DELETE FROM subscribers', None),
        ('fields.city == "Oslo" -- and "pro" in tags', None),
    ],
)
def test_injection_attempts_are_text_and_change_nothing(tmp_path, database, text, expected):
    """Quotes, `;` and SQL keywords in strings and names match only what they say; outside a
    string they are a syntax error. Nothing in the database changes either way."""
    (tmp_path / "p.csv").write_text(PEOPLE, encoding="utf-8")
    store = SubscriberStore.open(database)
    import_csv(store, tmp_path / "p.csv")
    store.add("odd@example.com", fields={"select": "DROP TABLE subscribers", "DROP": "1"})
    before = dump(database)
    if expected is None:
        with pytest.raises(SegmentError, match="unexpected character"):
            matching(store, text)
    else:
        assert matching(store, text) == expected
    assert dump(database) == before


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ('fields.city = "Oslo"', 13, "unexpected character '=' (equality is ==)"),
        ('fields.city == "Oslo" && "x" in tags', 23, "use and / or"),
        ("fields.city ==", 15, "ends too early; expected"),
        ('(fields.city == "Oslo"', 23, "ends too early; expected ')'"),
        ('fields.city == "Oslo")', 22, "unexpected ')'"),
        ('fields.city == "Oslo" and and', 27, "unexpected 'and'; expected"),
        ('fields.city == "Oslo', 16, "closing quote"),
        ("fields.city", 12, "expected 'in', 'not' or a comparison"),
        ('citty == "Oslo"', 1, "unknown name 'citty'"),
        ('"pro" in tag', 10, "unknown name 'tag' (did you mean 'tags'?)"),
        (
            'joined_afte("2026-01-01")',
            1,
            "unknown function 'joined_afte' (did you mean joined_after?)",
        ),
        ('joined_after("2026-13-01")', 14, "not a date"),
        ("joined_after(2026)", 1, "takes one date in quotes"),
        ('tags == "pro"', 1, 'tags is a set of names, not one value; write "NAME" in tags'),
        ('tags in "pro"', 1, "tags is a set"),
        ('"x" in "xyz"', 8, "the right side of 'in'"),
        ('"a" == "b"', 5, "not two values"),
        ('city.name == "x"', 1, "only fields.NAME has a dot"),
        ("fields.city == true", 16, "'true' is not a value"),
        (
            'fields.ctiy == "Oslo"',
            1,
            "no subscriber has a field 'ctiy' (did you mean fields.city?)",
        ),
        ('"x" in tags and fields.nope == ""', 17, "no subscriber has a field 'nope'"),
    ],
)
def test_bad_expressions_name_the_column_and_what_was_expected(store, text, column, message):
    with pytest.raises(SegmentError) as caught:
        segment_query(store, text, {})
    error = caught.value
    assert error.column == column
    assert message in error.reason
    # The message shows the expression with a caret under the column.
    lines = str(error).splitlines()
    assert lines[0].startswith(f"segment: column {column}: ")
    assert lines[1].strip() == text and lines[2].index("^") - lines[1].index(text[0]) == column - 1


@pytest.mark.parametrize("text", ["", "   ", "x" * 4001])
def test_empty_or_huge_expressions_are_refused(text):
    with pytest.raises(SegmentError, match=r"empty|longer than"):
        parse_segment(text)


def test_a_named_segment_error_points_at_newsletter_yaml_line(store, tmp_path):
    named = {
        "oslo": NamedSegment('fields.city == "Oslo"', tmp_path / "newsletter.yaml", 7),
        "broken": NamedSegment('"pro" in tags or', tmp_path / "newsletter.yaml", 8),
        "typo": NamedSegment('fields.ctiy == "Oslo"', tmp_path / "newsletter.yaml", 9),
    }
    segment, _ = segment_query(store, "oslo", named)
    assert segment.name == "oslo" and segment.label == 'oslo (fields.city == "Oslo")'
    for name, line, message in [("broken", 8, "ends too early"), ("typo", 9, "'ctiy'")]:
        with pytest.raises(SegmentError) as caught:
            segment_query(store, name, named)
        assert str(caught.value).startswith(f"{tmp_path / 'newsletter.yaml'}:{line}: segment")
        assert message in str(caught.value)
    with pytest.raises(SegmentError, match=r"no segment named 'osl' .*did you mean 'oslo'"):
        resolve_segment("osl", named)


def test_tags_are_stored_case_folded_and_shown_sorted(store):
    fritz = store.get("fritz@example.de")
    assert tags_of(store, [fritz.id]) == {fritz.id: ("stammgast",)}


# -- the SQL agrees with a Python reading of the same tree ----------------------------------------
def fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def number(text: str) -> float | None:
    try:
        return float(text) if text.strip().lstrip("-").replace(".", "", 1).isdigit() else None
    except ValueError:
        return None


def evaluate(expr: Expr, row: dict) -> bool:
    """The meaning of a segment (module docstring of newsletter.subscribers.segment), in Python."""
    match expr:
        case And(operands):
            return all(evaluate(o, row) for o in operands)
        case Or(operands):
            return any(evaluate(o, row) for o in operands)
        case Not(operand):
            return not evaluate(operand, row)
        case Joined(after, moment):
            return row["created_at"] >= moment if after else row["created_at"] < moment
        case Compare(op, left, right):
            if isinstance(left, Number) or isinstance(right, Number):
                a, b = (_number_of(v, row) for v in (left, right))
                return a is not None and b is not None and _apply(op, a, b)
            return _apply(op, fold(_text(left, row)), fold(_text(right, row)))
        case Contains(item, Name("tags")):
            return fold(_text(item, row)) in row["tags"]
        case Contains(item, Name("lists")):
            return (item.value if isinstance(item, Text) else _text(item, row)) in row["lists"]
        case Contains(item, container):
            return fold(_text(item, row)) in fold(_text(container, row))
    raise AssertionError(expr)


def _apply(op: str, a: object, b: object) -> bool:
    return {
        "==": a == b,
        "!=": a != b,
        "<": a < b,  # type: ignore[operator]
        "<=": a <= b,  # type: ignore[operator]
        ">": a > b,  # type: ignore[operator]
        ">=": a >= b,  # type: ignore[operator]
    }[op]


def _text(value: Value, row: dict) -> str:
    match value:
        case Text(text):
            return text
        case Field(name):
            return next((v for k, v in row["fields"].items() if k.lower() == name.lower()), "")
        case Name("name"):
            return row["name"] or ""
        case Name(other):
            return row[other]
    raise AssertionError(value)


def _number_of(value: Value, row: dict) -> float | None:
    if isinstance(value, Number):
        return value.value
    return number(_text(value, row))


# Field values never hold control characters (the store refuses them), nor do typed segments.
TEXTS = st.sampled_from(
    [
        "Oslo",
        "oslo",
        "ZÜRICH",
        "straße",
        "",
        "pro",
        "Pro",
        "vip",
        "x",
        "36",
        "100.5",
        "n/a",
        "é",
        "weekly",
        "default",
        "@example.com",
        "active",
        "'; DROP TABLE x; --",
        'a"b\\',
    ]
) | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4)
FIELDS = st.sampled_from(["city", "CITY", "age", "plan", "street"]).map(Field)
TEXT_VALUES = FIELDS | st.sampled_from(["email", "name", "status"]).map(Name)
DATES = st.dates(dt.date(2025, 12, 1), dt.date(2026, 2, 28)).map(lambda d: d.isoformat())


def _compare() -> st.SearchStrategy[Expr]:
    text_cmp = st.builds(
        Compare,
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        TEXT_VALUES,
        TEXTS.map(Text) | TEXT_VALUES,
    )
    num_cmp = st.builds(
        Compare,
        st.sampled_from(["==", "!=", "<", ">="]),
        FIELDS,
        st.integers(-5, 120).map(lambda n: Number(float(n))),
    )
    contains = st.builds(
        Contains,
        TEXTS.map(Text) | FIELDS,
        st.sampled_from([Name("tags"), Name("lists")]) | TEXT_VALUES,
    )
    joined = st.builds(
        lambda after, day: parse_segment(f'joined_{"after" if after else "before"}("{day}")').expr,
        st.booleans(),
        DATES,
    )
    return text_cmp | num_cmp | contains | joined


EXPRESSIONS = st.recursive(
    _compare(),
    lambda inner: (
        st.builds(Not, inner)
        | st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs)))
        | st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def rows(store: SubscriberStore) -> dict[int, dict]:
    people = list(store.iter_subscribers())
    tags = tags_of(store, [p.id for p in people])
    return {
        p.id: {
            "email": p.email,
            "name": p.name,
            "status": p.status,
            "fields": p.fields,
            "tags": set(tags[p.id]),
            "lists": set(p.lists),
            "created_at": p.created_at,
        }
        for p in people
    }


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(expr=EXPRESSIONS)
def test_the_sql_result_equals_a_python_evaluation_of_the_same_tree(store, rows, expr):
    # Through the text a person would type: the canonical spelling parses back to this tree.
    text = unparse(expr)
    segment = parse_segment(text)
    assert unparse(segment.expr) == text
    query = compile_segment(segment, None)
    by_sql = {s.id for s in store.iter_subscribers(segment=query)}
    by_python = {sid for sid, row in rows.items() if evaluate(segment.expr, row)}
    assert by_sql == by_python, text
    assert store.count(segment=query) == len(by_python)


def test_the_canonical_text_is_what_a_campaign_is_keyed_by():
    a = parse_segment("fields.city=='Oslo'  and('pro' in tags)")
    b = parse_segment('fields.city == "Oslo" and "pro" in tags')
    assert a.canonical == b.canonical == 'fields.city == "Oslo" and "pro" in tags'
    assert isinstance(Segment(a.text, a.expr).expr, And)


def test_an_expression_is_never_run_as_python(tmp_path: Path):
    marker = tmp_path / "ran"
    text = f'__import__("os").system("touch {marker}") == "0"'
    with pytest.raises(SegmentError):
        parse_segment(text)
    assert not marker.exists()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
    | st.from_regex(r"\s*-?\d{1,4}(\.\d{1,3})?\s*", fullmatch=True)
)
def test_postgresqls_text_functions_answer_as_python_does(postgres_url, text):
    """nl_fold, nl_casefold and nl_number in PostgreSQL (subscribers schema) against
    segment.fold, str.casefold and segment.as_number, on random text of every script and
    numbers with any script's digits and white space."""
    from newsletter import db
    from newsletter.subscribers.segment import as_number, fold

    with SubscriberStore.open(postgres_url) as pg:  # creates the schema and its functions
        row = pg.conn.execute("SELECT nl_fold(?1), nl_casefold(?1), nl_number(?1)", (text,))
        folded, casefolded, number = row.fetchone()
    assert folded == fold(text)
    assert casefolded == text.casefold()
    assert number == as_number(text)
    assert db.is_postgresql(pg.conn)
