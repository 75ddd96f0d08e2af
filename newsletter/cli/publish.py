"""Commands of the publishing area: `newsletter publish`, `newsletter unpublish`."""

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

    click.echo(publish_issue(config_with_db(db), issue, published=False).summary())


commands: list[click.Command] = [publish, unpublish]
