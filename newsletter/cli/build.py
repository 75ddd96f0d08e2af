"""`newsletter build`: render an issue to files for a look before sending."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import app, reports_errors


@click.command("build")
@click.argument("issue", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Folder to write into; the files go to OUTPUT/<slug>/.",
)
@reports_errors
def build_command(issue: Path, out_dir: Path) -> None:
    """Render ISSUE to email.html, email.txt, web.html and message.eml.

    email.html and message.eml are what a sample subscriber would receive; web.html is the
    browser version. The same YAML always gives byte-identical files. An issue with any error
    `check` reports is refused with every error listed, and nothing is written.
    """
    from newsletter.build import build_issue  # the renderer is heavy: load it only when used

    for path in build_issue(issue, app().config, out_dir):
        click.echo(f"{path}  {_size(path.stat().st_size)}")


def _size(size: int) -> str:
    return f"{size} bytes" if size < 1024 else f"{size / 1024:.1f} KB"


commands: list[click.Command] = [build_command]
