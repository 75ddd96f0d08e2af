"""The shared-template recovery behind SendGrid substitutions and Mailgun recipient-variables.

Whatever the recipients' values look like (empty, at the very start or end, containing the
literal text around them, each other's prefixes), every grouped message must be rebuilt
exactly from the shared pieces and its own values, and a message that cannot be must be left
to go out alone rather than be sent wrong.
"""

from __future__ import annotations

import random

import pytest

from newsletter.transports._http import chunk_by_size, retry_after_seconds
from newsletter.transports._merge import diff_spans, fit, group_documents, join, skeleton

BODY = "".join(f"<tr><td class='c{i % 3}'>row {i} lorem ipsum</td></tr>" for i in range(300))


def letter(name: str, token: str, company: str = "") -> tuple[str, str]:
    text = f"{name}Hello {name},\n{BODY}\n{company}\nUnsubscribe: https://x.org/u/{token}\n{name}"
    html = f"<p>Hello <b>{name}</b></p>{BODY}<a href='https://x.org/u/{token}'>u</a>{company}"
    return text, html


def assert_exact(docs: list[tuple[str, ...]]) -> tuple[list, list[int]]:
    groups, alone = group_documents(docs)
    covered = sorted([m for g in groups for m in g.members] + alone)
    assert covered == list(range(len(docs)))  # everyone exactly once
    for group in groups:
        for member, values in zip(group.members, group.values, strict=True):
            for field, pieces in enumerate(group.pieces):
                assert join(pieces, values[field]) == docs[member][field]
    return groups, alone


def test_a_typical_batch_shares_one_template_with_a_few_slots() -> None:
    rng = random.Random(1)
    names = ["Ann", "Anna", "Anne", "", "Bob Smith", "Zoë", "ann", "Hello", "row 1", "<td>"]
    docs = [letter(rng.choice(names), f"{rng.getrandbits(64):016x}") for _ in range(500)]
    groups, alone = assert_exact(docs)
    assert alone == [] and len(groups) == 1
    text_pieces, html_pieces = groups[0].pieces
    assert len(text_pieces) <= 8 and len(html_pieces) <= 6  # a handful of slots, not a diff soup
    assert sum(map(len, html_pieces)) > len(BODY)  # the body itself is shared


@pytest.mark.parametrize(
    "values",
    [
        ["", "x", ""],  # empty values
        ["same", "same", "same"],  # identical documents
        ["row 12 lorem ipsum", "row 1", "row"],  # values that look like the shared text
        ["a" * 5000, "b", ""],  # a value longer than the diff looks across
        ["Hello ", "Hello Hello", "H"],  # values repeating the text around them
    ],
)
def test_adversarial_values_are_rebuilt_exactly_or_sent_alone(values: list[str]) -> None:
    docs = [letter(v, "tok" + v[:3], company=v[::-1]) for v in values]
    assert_exact(docs)


def test_random_edits_property() -> None:
    rng = random.Random(7)
    alphabet = "ab<>/ x"
    for _ in range(60):
        base = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        docs = []
        for _ in range(rng.randint(1, 6)):
            text = list(base)
            for _ in range(rng.randint(0, 4)):
                at = rng.randint(0, len(text))
                text[at : at + rng.randint(0, 3)] = rng.choice(alphabet) * rng.randint(0, 4)
            docs.append(("".join(text),))
        assert_exact(docs)


def test_fit_and_diff_primitives() -> None:
    assert fit(["Hi ", "!"], "Hi Ann!") == ["Ann"]
    assert fit(["Hi ", "!"], "Hi !") == [""]
    assert fit(["Hi ", "!"], "Yo Ann!") is None
    assert fit(["Hi ", ", ", "!"], "Hi a, b, c!") == ["a", "b, c"]
    assert diff_spans("Hello Ann, bye", "Hello Bob, bye") == [(6, 9)]
    assert skeleton(["Hello Ann, bye", "Hello Bob, bye", "Hello , bye"]) == ["Hello ", ", bye"]


def test_retry_after_sources() -> None:
    now = 1_000_000_000.0
    assert retry_after_seconds({"retry-after": "7"}, now) == 7
    assert retry_after_seconds({"retry-after": "Sun, 09 Sep 2001 01:47:00 GMT"}, now) == 20
    assert retry_after_seconds({"x-ratelimit-reset": str(int(now) + 30)}, now) == 30
    assert retry_after_seconds({"ratelimit-reset": "2"}, now) == 2
    assert retry_after_seconds({"retry-after": "soon"}, now) is None
    assert retry_after_seconds({}, now) is None


def test_chunk_by_size_keeps_order_and_limits() -> None:
    items = list(range(7))
    parts = chunk_by_size(items, [5, 5, 5, 20, 1, 1, 1], limit=10)
    assert [list(p) for p in parts] == [[0, 1], [2], [3], [4, 5, 6]]


def test_an_outlier_goes_alone_and_does_not_widen_the_others() -> None:
    names = ["Ann", "Bob", "Zoë", "Li", "Pat"]
    docs = [letter("x" * 9000, "t0")] + [letter(n, f"t{i}") for i, n in enumerate(names, 1)]
    docs.insert(3, letter("y" * 9000, "t9"))
    groups, alone = assert_exact(docs)
    assert alone == [0]  # the first document is the odd one out: it cannot be the template
    (group,) = groups  # the long "y" name fits the others' template: its values are long
    longest = max(
        len(v)
        for member, values in zip(group.members, group.values, strict=True)
        if member != 3
        for field in values
        for v in field
    )
    assert longest < 20  # the shared template was not stretched over the outliers


def test_json_strings_equal_json_dumps() -> None:
    import json

    from newsletter.transports._merge import json_strings

    rng = random.Random(3)
    specials = ['"', "\\", "\n", "\t", "\u2028", "é", "😀", "\x00", "</script>"]
    docs = []
    for i in range(40):
        value = "".join(rng.choice([*specials, "a", "b"]) for _ in range(rng.randint(0, 12)))
        docs.append(letter(value, f"t{i}"))
    docs.append(letter("x" * 9000, "outlier"))  # one that goes alone
    for doc, escaped in zip(docs, json_strings(docs), strict=True):
        assert escaped == [json.dumps(field, ensure_ascii=False) for field in doc]
