"""Every command documents itself, and `python -m newsletter` is the same program."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from newsletter.cli import main


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


def test_every_command_has_help_text() -> None:
    runner = CliRunner()
    commands = list(_walk(main))
    assert commands, "the CLI has no commands"
    for path, command in commands:
        assert command.help, f"`newsletter {' '.join(path)}` has no help text"
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "newsletter" in result.stdout
