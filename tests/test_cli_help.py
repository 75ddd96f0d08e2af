"""Every command documents itself, and `python -m newsletter` is the same program."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from newsletter.cli import main


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"`newsletter {' '.join((*prefix, name))}` does not load"
        assert command.name == name
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


def test_every_command_has_help_text() -> None:
    runner = CliRunner()
    commands = list(_walk(main))
    assert commands, "the CLI has no commands"
    for path, command in commands:
        assert command.help, f"`newsletter {' '.join(path)}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"`newsletter {' '.join(path)}` option {param.opts} has no help"
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "newsletter" in result.stdout


def test_every_command_module_command_is_reachable() -> None:
    """A command added to a module's `commands` list but not to COMMAND_MODULES would be
    silently unreachable."""
    import importlib

    from newsletter.cli import COMMAND_MODULES

    for module_name in set(COMMAND_MODULES.values()):
        module = importlib.import_module(f"newsletter.cli.{module_name}")
        for command in module.commands:
            assert COMMAND_MODULES.get(command.name) == module_name, command.name
