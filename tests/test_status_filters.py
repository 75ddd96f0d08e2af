"""`status ISSUE --list L` and `--segment X` (README) select the campaigns of the summary too,
not only with --recipients."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database

from tests.support.cli_support import run

ISSUE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
SLUG = "2026-11-25-microsoft-openai-partnership"


@pytest.fixture
def sent(project: Path, runner: CliRunner, database: str) -> Path:
    with use_database(project, database).joinpath("newsletter.yaml").open("a") as f:
        f.write("transport: outbox:./outbox\nsegments:\n  pros: '\"pro\" in tags'\n")
    for args in (
        ("subscribers", "add", "a@example.net", "--list", "weekly", "--list", "default"),
        ("subscribers", "add", "b@example.net", "--list", "weekly"),
        ("subscribers", "tag", "a@example.net", "pro"),
        ("send", ISSUE, "--list", "weekly", "--segment", "pros", "--yes"),
        ("send", ISSUE, "--list", "default", "--yes"),
    ):
        code, out = run(runner, project, *args)
        assert code == 0, out
    return project


@pytest.mark.parametrize(
    ("filters", "lists"),
    [
        ((), {"weekly", "default"}),
        (("--list", "default"), {"default"}),
        (("--list", "weekly"), {"weekly"}),
        (("--segment", "pros"), {"weekly"}),
        (("--segment", '"pro" in tags'), {"weekly"}),
        (("--list", "weekly", "--segment", "pros"), {"weekly"}),
    ],
)
def test_the_summary_shows_the_selected_campaigns(
    sent: Path, runner: CliRunner, filters: tuple[str, ...], lists: set[str]
) -> None:
    code, out = run(runner, sent, "status", SLUG, *filters)
    assert code == 0, out
    shown = {name for name in ("weekly", "default") if f"-> list {name}" in out}
    assert shown == lists, out


@pytest.mark.parametrize(
    "filters",
    [("--list", "nope"), ("--segment", '"x" in tags'), ("--list", "default", "--segment", "pros")],
)
def test_a_filter_matching_nothing_is_an_error(
    sent: Path, runner: CliRunner, filters: tuple[str, ...]
) -> None:
    code, out = run(runner, sent, "status", SLUG, *filters)
    assert code != 0 and "no campaign for" in out, out
