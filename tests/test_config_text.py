"""One rule for text values in newsletter.yaml: YAML reads 12, 1.10 and true as numbers or
yes/no (1.10 would become "1.1"), so a text key takes text only, and the error says to quote."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.cli_support import run


@pytest.mark.parametrize(
    ("yaml", "key", "shown"),
    [
        ("utm: {source: 12, medium: email}\n", "utm.source", "12"),
        ("utm: {source: news, medium: true}\n", "utm.medium", "True"),
        ("utm: {source: 1.10, medium: email}\n", "utm.source", "1.1"),
        ("language: 1.10\n", "language", "1.1"),
        ("timezone: 12\n", "timezone", "12"),
    ],
)
def test_a_number_or_yes_no_where_text_belongs_is_a_clear_error(
    project: Path, runner: CliRunner, yaml: str, key: str, shown: str
) -> None:
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
        f.write(yaml)
    code, out = run(runner, project, "check", "issues/2026-11-25-microsoft-openai-partnership.yaml")
    assert code != 0, out
    assert f"'{key}' must be text" in out and "put it in quotes" in out, out
    assert "newsletter.yaml:5" in out, out


def test_quoted_values_are_kept_as_written(project: Path) -> None:
    from newsletter.config import load_config

    with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
        f.write('utm: {source: "12", medium: "1.10"}\n')
    utm = load_config(project / "newsletter.yaml").utm
    assert utm is not None and (utm.source, utm.medium) == ("12", "1.10")
