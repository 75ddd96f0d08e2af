"""`newsletter serve`: the public side (unsubscribe, sign-up, web versions) on a port."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import config_with_db, db_option, reports_errors


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@db_option
@reports_errors
def serve(host: str, port: int, db: Path | None) -> None:
    """Serve the public endpoints: unsubscribe (RFC 8058 one-click), sign-up with double
    opt-in to the lists declared public, and the web versions of published issues (see
    `newsletter publish`). Only a POST changes anything; links and redirects use base_url."""
    from newsletter.web.public import serve as run

    run(config_with_db(db), host=host, port=port)


commands: list[click.Command] = [serve]
