"""`newsletter serve`: the public side (unsubscribe, sign-up, the archive) on a port."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import config_with_db, db_option, reports_errors


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@click.option(
    "--forwarded-allow-ips",
    metavar="ADDRESSES",
    default=None,
    help="Comma-separated addresses or networks of your reverse proxies (or '*'): only from "
    "these is X-Forwarded-For believed, for rate limits and the consent history. Default: the "
    "FORWARDED_ALLOW_IPS variable, else 127.0.0.1. Name only proxies that overwrite the header: "
    "anyone else could then pick their own address.",
)
@db_option
@reports_errors
def serve(host: str, port: int, forwarded_allow_ips: str | None, db: Path | None) -> None:
    """Serve the public endpoints: unsubscribe (RFC 8058 one-click), sign-up with double
    opt-in to the lists declared public (/subscribe), and the archive of published issues (see
    `newsletter publish`): the index at / and /issues/, each web version at /issues/<slug>/,
    /feed.xml (Atom), /feed.json (JSON Feed), the same files `newsletter archive` writes; and
    the email providers' bounce and complaint webhooks at /webhooks/PROVIDER (each on once its
    secret is in the environment: SENDGRID_WEBHOOK_PUBLIC_KEY, MAILGUN_WEBHOOK_SIGNING_KEY,
    POSTMARK_WEBHOOK_USER and _PASSWORD, SES_SNS_TOPIC_ARN, RESEND_WEBHOOK_SECRET). Only a
    POST changes anything; links and redirects use base_url.
    In the background (never inside a request) it sends scheduled sends when due (`send --at`;
    one missed while nothing ran goes at start, saying how late) and the welcome mail owed
    to readers who confirmed (retried every 5 minutes while it cannot go).
    newsletter.yaml is read once at start: restart after changing it (a new `lists:` entry).
    With a postgresql:// database, several serve processes (on one machine or many, behind one
    load balancer) may share it: each sign-up, confirmation and unsubscribe lands once."""
    from newsletter.web.public import serve as run

    run(config_with_db(db), host=host, port=port, forwarded_allow_ips=forwarded_allow_ips)


commands: list[click.Command] = [serve]
