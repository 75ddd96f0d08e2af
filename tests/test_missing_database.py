"""A command that only reads (or changes what is already recorded) never creates a database:
a typo'd --db, or a folder without newsletter.yaml, is an error and nothing is written or
removed (`archive` used to build from a new empty database and delete the whole site)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.cli_support import run

SLUG = "2026-11-25-microsoft-openai-partnership"
TYPO = "newsleter.db"

READ_ONLY = [
    ("archive", "-o", "site"),
    ("unpublish", SLUG),
    ("subscribers", "list"),
    ("subscribers", "export"),
    ("subscribers", "count"),
    ("subscribers", "show", "ada@example.net"),
    ("subscribers", "tag", "ada@example.net", "pro"),
    ("subscribers", "untag", "ada@example.net", "pro"),
    ("subscribers", "unsubscribe", "ada@example.net"),
    ("subscribers", "remove", "ada@example.net"),
    ("bounces", "import", "."),
    ("bounces", "import", ".", "--dry-run"),
]


@pytest.fixture
def built(project: Path, runner: CliRunner) -> Path:
    """A project with a subscriber, a published issue and its archive built."""
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
        f.write("database: data.db\n")
    for args in (
        ("subscribers", "add", "ada@example.net"),
        ("publish", SLUG),
        ("archive", "-o", "site"),
    ):
        code, out = run(runner, project, *args)
        assert code == 0, out
    return project


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_a_typo_in_db_is_an_error_and_writes_nothing(
    built: Path, runner: CliRunner, command: tuple[str, ...]
) -> None:
    before = files(built)
    code, out = run(runner, built, *command, "--db", TYPO)
    assert code != 0, out
    assert "no database at" in out and TYPO in out, out
    assert not (built / TYPO).exists()
    assert files(built) == before  # the site, the database: untouched


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_without_newsletter_yaml_nothing_is_created(
    tmp_path: Path, runner: CliRunner, command: tuple[str, ...]
) -> None:
    code, out = run(runner, tmp_path, *command)
    assert code != 0, out
    assert "no database at" in out, out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [("schedule",), ("status", SLUG), ("schedule", "cancel", SLUG)])
def test_listing_without_a_database_creates_none(
    project: Path, runner: CliRunner, command: tuple[str, ...]
) -> None:
    run(runner, project, *command)
    assert not list(project.glob("*.db*"))
