"""Tags in every script: tagging, a segment naming the tag in another case, export and import
(the letters README promises; İ case-folds to i + a combining dot, Indic vowel signs are
combining marks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database

from tests.support.cli_support import run


@pytest.mark.parametrize(
    ("typed", "other_case"),
    [
        ("İstanbul", "İSTANBUL"),
        ("Straße", "STRASSE"),
        ("हिंदी", "हिंदी"),
        ("Σίσυφος", "ΣΊΣΥΦΟΣ"),
        ("日本語", "日本語"),
        ("ĲSSEL", "ĳssel"),
        ("Ωmega-2", "ωMEGA-2"),
    ],
)
def test_a_tag_in_any_script_works_end_to_end(
    request: pytest.FixtureRequest,
    project: Path,
    runner: CliRunner,
    database: str,
    typed: str,
    other_case: str,
) -> None:
    use_database(project, database)
    copy = "copy.db"  # a second database on the same engine
    if database.startswith("postgresql"):
        copy = str(request.getfixturevalue("postgres_server").create_database())
    for address in ("ada@example.net", "bo@example.net"):
        code, out = run(runner, project, "subscribers", "add", address)
        assert code == 0, out
    code, out = run(runner, project, "subscribers", "tag", "ada@example.net", typed)
    assert code == 0 and "tagged 1" in out, out
    code, out = run(runner, project, "subscribers", "list", "--segment", f'"{other_case}" in tags')
    assert code == 0 and "1 subscriber matching" in out and "ada@example.net" in out, out
    code, out = run(runner, project, "subscribers", "export", "-o", "all.csv")
    assert code == 0, out
    code, out = run(runner, project, "subscribers", "import", "all.csv", "--db", copy)
    assert code == 0 and "2 added" in out, out
    code, out = run(
        runner, project, "subscribers", "list", "--db", copy, "--segment", f'"{typed}" in tags'
    )
    assert code == 0 and "1 subscriber matching" in out, out


@pytest.mark.parametrize("bad", ["-x", "a b", "a|b", "", "x" * 65, "\u0301a"])
def test_a_bad_tag_is_still_refused(project: Path, runner: CliRunner, bad: str) -> None:
    code, out = run(runner, project, "subscribers", "add", "ada@example.net")
    assert code == 0, out
    code, out = run(runner, project, "subscribers", "tag", "ada@example.net", "--", bad)
    assert code != 0, out
