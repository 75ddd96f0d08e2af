"""Commands of the publishing area: `newsletter publish`, `unpublish`, `archive`."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import config_with_db, db_option, reports_errors


@click.command("publish")
@click.argument("issue")
@db_option
@reports_errors
def publish(issue: str, db: Path | None) -> None:
    """Serve ISSUE's web version at /issues/<slug>/ (ISSUE: the issue file, anywhere, or its
    slug).

    Issues sent to a public list are published already; this publishes one before (or
    without) sending it, or one sent only to a private list. What is served is a snapshot of
    the file as it is now: later edits stay private until you run `publish` again, which
    refreshes it. An issue with `check` errors is refused. Nothing unpublished is ever served.
    """
    from newsletter.publishing import publish_issue

    click.echo(publish_issue(config_with_db(db), issue, published=True).summary())


@click.command("unpublish")
@click.argument("issue")
@db_option
@reports_errors
def unpublish(issue: str, db: Path | None) -> None:
    """Stop serving ISSUE's web version (ISSUE: the issue file or its slug), even if sent.

    /issues/<slug>/ then answers 404, exactly like a page that never existed.
    """
    from newsletter.publishing import publish_issue

    click.echo(publish_issue(config_with_db(db, existing=True), issue, published=False).summary())


@click.command("archive")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the site into (default: site/ beside newsletter.yaml).",
)
@click.option(
    "--clean", is_flag=True, help="Remove every file the last build wrote, then write all."
)
@db_option
@reports_errors
def archive(out: Path | None, clean: bool, db: Path | None) -> None:
    """Write a static site of every published issue into a folder.

    index.html (newest first: date, title, headlines), issues/<slug>/index.html (each web
    version), feed.xml (Atom 1.0), feed.json (JSON Feed 1.1), sitemap.xml and robots.txt, with
    absolute URLs under base_url. Pages link to each other relatively, so the folder works on
    any static host and opened from disk. Only changed files are rewritten (each atomically);
    a file of an issue no longer published is removed. Nothing unpublished is ever written.
    """
    from newsletter.archive.build import build_archive

    config = config_with_db(db, existing=True)
    click.echo(build_archive(config, out or config.root / "site", clean=clean).summary())


commands: list[click.Command] = [publish, unpublish, archive]
