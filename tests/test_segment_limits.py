"""Segment expressions past the limits are one clear error with a column, never a traceback or
SQLite's "parser stack overflow"; typographic quotes get the hint to use straight ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database

from tests.support.cli_support import run

TAG = '"pro" in tags'


@pytest.fixture
def members(project: Path, runner: CliRunner) -> Path:
    return add_members(project, runner)


def add_members(project: Path, runner: CliRunner) -> Path:
    for args in (("ada@example.net",), ("bo@example.net",)):
        code, out = run(runner, project, "subscribers", "add", *args)
        assert code == 0, out
    code, out = run(runner, project, "subscribers", "tag", "ada@example.net", "pro")
    assert code == 0, out
    return project


@pytest.fixture
def members_on(project: Path, runner: CliRunner, database: str) -> Path:
    """The same members, on SQLite and on PostgreSQL (the deepest SQL each engine runs)."""
    use_database(project, database)
    return add_members(project, runner)


def nested_groups(depth: int) -> str:
    return '("a" in tags or ' * depth + TAG + ")" * depth


@pytest.mark.parametrize(
    "expression",
    [
        "not " * 600 + TAG,
        "not " * 200 + TAG,
        "not " * 33 + TAG,
        nested_groups(40),
        '("x" in tags and (not ' * 20 + TAG + "))" * 20,
    ],
    ids=["not-600", "not-200", "not-33", "groups-40", "mixed-40"],
)
@pytest.mark.parametrize(
    "command",
    [("subscribers", "list", "--segment"), ("send", "ISSUE", "--dry-run", "--segment")],
    ids=["list", "send"],
)
def test_too_deep_is_one_error_with_a_column(
    members: Path, runner: CliRunner, expression: str, command: tuple[str, ...]
) -> None:
    args = [
        "issues/2026-11-25-microsoft-openai-partnership.yaml" if a == "ISSUE" else a
        for a in command
    ]
    code, out = run(runner, members, *args, expression)
    assert code != 0, out
    assert "more than 32 deep" in out and "column " in out, out
    assert "database error" not in out and "RecursionError" not in out


@pytest.mark.parametrize(
    ("expression", "matches"),
    [("not " * 32 + TAG, 1), ("not " * 31 + TAG, 1), (nested_groups(30), 1)],
)
def test_up_to_the_limit_works(
    members_on: Path, runner: CliRunner, expression: str, matches: int
) -> None:
    code, out = run(runner, members_on, "subscribers", "list", "--segment", expression)
    assert code == 0, out
    assert f"{matches} subscriber" in out, out


@pytest.mark.parametrize(
    ("expression", "column"),
    [
        ("fields.city == \u201cOslo\u201d", 16),
        ("\u2018pro\u2019 in tags", 1),
        ("name == \u201eAnn\u201c", 9),
        ("name == \u00abAnn\u00bb", 9),
    ],
)
def test_typographic_quotes_get_a_hint(
    members: Path, runner: CliRunner, expression: str, column: int
) -> None:
    code, out = run(runner, members, "subscribers", "list", "--segment", expression)
    assert code != 0, out
    assert f"column {column}:" in out and "use straight quotes" in out, out
