"""The `newsletter` command: a thin click layer over the library.

Each command parses its arguments, calls one library function and maps NewsletterError to a
click.ClickException (a clear message and exit status 1, never a traceback). Command modules
are imported only when their command runs, so `newsletter build` does not pay for importing the
sending machinery or the HTTP client.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from newsletter import __version__
from newsletter.cli.common import AppContext

# command name -> the module of newsletter.cli that defines it (in its `commands` list)
COMMAND_MODULES = {
    "init": "compose",
    "new": "compose",
    "check": "compose",
    "build": "build",
    "preview": "preview",
    "subscribers": "subscribers",
    "serve": "serve",
    "publish": "publish",
    "unpublish": "publish",
    "archive": "publish",
    "send": "send",
    "status": "send",
    "schedule": "schedule",
    "send-due": "schedule",
    "doctor": "doctor",
    "dkim": "doctor",
    "bounces": "bounces",
    "db": "database",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"newsletter.cli.{module_name}")
        return next((c for c in module.commands if c.name == cmd_name), None)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="newsletter.yaml to use (default: found by walking up from the current folder).",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Draft newsletter issues as YAML, preview them as real email, send them to subscribers."""
    from newsletter import clock

    clock.restart()  # a NEWSLETTER_NOW test clock starts when the command does
    ctx.obj = AppContext(config_path)
