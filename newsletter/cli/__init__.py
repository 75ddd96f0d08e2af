"""The `newsletter` command: a thin click layer over the library.

Each command parses its arguments, calls one library function and maps NewsletterError to a
click.ClickException (a clear message and exit status 1, never a traceback).
"""

from __future__ import annotations

from pathlib import Path

import click

from newsletter import __version__
from newsletter.cli import build, compose, preview, send, subscribers
from newsletter.cli.common import AppContext


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    ctx.obj = AppContext(config_path)


for module in (compose, build, preview, subscribers, send):
    for command in module.commands:
        main.add_command(command)
