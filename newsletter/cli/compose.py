"""Commands of the compose area: check, init, new."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import click

from newsletter.cli.common import app, reports_errors
from newsletter.errors import ConfigError
from newsletter.lint import check_paths, config_report
from newsletter.scaffold import init_project, issues_folder, new_issue


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@click.command()
@click.argument("issues", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one `path:line:col: severity: field: message` line per problem; json: for tools.",
)
@click.option("--strict", is_flag=True, help="Fail (exit status 1) on warnings too.")
@click.option("--links", is_flag=True, help="Also request every URL over HTTP (HEAD, then GET).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each URL with --links.",
)
@reports_errors
def check(
    issues: tuple[Path, ...], output_format: str, strict: bool, links: bool, timeout: float
) -> None:
    """Report every problem in the ISSUES files at once.

    The email's HTML size is reported as written and as sent (quoted-printable or base64, as
    the message carries it) when either nears Gmail's 102 KB clip. Exits with status 1 when
    any file has an error (with --strict: any warning too).
    """
    try:
        report = check_paths(issues, app().config, links=links, link_timeout=timeout)
    except ConfigError as exc:
        if output_format != "json":
            raise  # reported as every command reports it
        report = config_report(exc, len(issues))  # a tool reading JSON gets JSON, always
    if output_format == "json":
        click.echo(json.dumps(report.as_dict(strict=strict), indent=2, ensure_ascii=False))
    else:
        for diagnostic in report.diagnostics:
            click.echo(diagnostic.format())
        click.echo(report.summary())
    if report.failed(strict=strict):
        raise SystemExit(1)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The newsletter's name (default: from the folder's name).")
@click.option(
    "--copy-theme",
    is_flag=True,
    help="Copy the default theme into DIRECTORY/templates/ to edit it.",
)
@reports_errors
def init(directory: Path, name: str | None, copy_theme: bool) -> None:
    """Create a newsletter project in DIRECTORY: newsletter.yaml and a sample issue.

    Never overwrites a file.
    """
    created = init_project(directory, name=name, copy_theme=copy_theme)
    for path in created:
        click.echo(f"created {_shown(path)}")
    issue = next(p for p in created if p.parent.name == "issues")
    click.echo(f"next: cd {_shown(directory)} && newsletter check {issue.relative_to(directory)}")


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise click.BadParameter(f"{value!r} is not a date in the form YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:  # 2026-02-30: the right form, but no such day
        raise click.BadParameter(f"{value!r} is not a calendar date ({exc})") from None


@click.command()
@click.argument("title")
@click.option(
    "--date",
    "date",
    metavar="YYYY-MM-DD",
    callback=_date,
    help="The issue's date, YYYY-MM-DD (default: today).",
)
@reports_errors
def new(title: str, date: dt.date | None) -> None:
    """Write a skeleton issue issues/<date>-<slug>.yaml titled TITLE.

    Its placeholder text is reported by `newsletter check` until replaced. Never overwrites a file.
    """
    folder = issues_folder(app().config_path)
    path = new_issue(title, date=date, folder=folder)
    click.echo(f"created {_shown(path)}")


commands: list[click.Command] = [check, init, new]
