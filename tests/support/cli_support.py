"""Running the command line inside a project, and reading elements out of built HTML."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main


def run(runner: CliRunner, project: Path, *args: str) -> tuple[int, str]:
    """`newsletter ARGS` with `project` as the working directory: (exit code, output); never a
    traceback."""
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = runner.invoke(main, list(args))
    finally:
        os.chdir(cwd)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def elements(html: str, tag: str) -> list[dict[str, str | None]]:
    """Every attribute of every `tag` element, decoded."""
    found: list[dict[str, str | None]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, name: str, attrs: list[tuple[str, str | None]]) -> None:
            if name == tag:
                found.append(dict(attrs))

    Collect().feed(html)
    return found
