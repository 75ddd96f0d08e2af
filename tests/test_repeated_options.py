"""An option given twice is never silently read as its last value: `subscribers add --list a
--list b` joins both; single-value options (--list, --segment, --name) refuse a repeat."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.cli_support import run

ISSUE = "issues/2026-11-25-microsoft-openai-partnership.yaml"


def test_add_joins_every_list_given(project: Path, runner: CliRunner) -> None:
    code, out = run(
        runner, project, "subscribers", "add", "x@example.net", "--list", "a", "--list", "b"
    )
    assert code == 0, out
    for name in ("a", "b"):
        code, out = run(runner, project, "subscribers", "list", "--list", name)
        assert "x@example.net" in out, out
    code, out = run(runner, project, "subscribers", "add", "y@example.net")
    code, out = run(runner, project, "subscribers", "list", "--list", "default")
    assert "y@example.net" in out and "x@example.net" not in out, out


@pytest.mark.parametrize(
    "args",
    [
        ("subscribers", "list", "--list", "a", "--list", "b"),
        ("subscribers", "export", "--list", "a", "--list", "b"),
        ("subscribers", "count", "--list", "a", "--list", "b"),
        ("subscribers", "list", "--segment", '"a" in tags', "--segment", '"b" in tags'),
        ("subscribers", "add", "z@example.net", "--name", "A", "--name", "B"),
        ("send", ISSUE, "--list", "a", "--list", "b", "--dry-run"),
        ("send", ISSUE, "--segment", '"a" in tags', "--segment", '"b" in tags', "--dry-run"),
    ],
    ids=lambda a: " ".join(a[:3]),
)
def test_a_single_value_option_given_twice_is_refused(
    project: Path, runner: CliRunner, args: tuple[str, ...]
) -> None:
    code, out = run(runner, project, "subscribers", "add", "x@example.net", "--list", "a")
    assert code == 0, out
    code, out = run(runner, project, *args)
    assert code == 2, out
    assert "given 2 times" in out, out
    code, out = run(runner, project, "subscribers", "list")
    assert "z@example.net" not in out
