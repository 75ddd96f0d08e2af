"""Commands of the preview area: `newsletter preview`."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from newsletter.cli.common import app, reports_errors


@click.command("preview")
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port to listen on (default: a free one).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The preview answers only requests addressed (Host header) to "
    "127.0.0.1, localhost, [::1] or this host, with its port; others get 421 (DNS rebinding).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in a web browser.")
@reports_errors
def preview(issue: Path, port: int, host: str, open_browser: bool) -> None:
    """Serve ISSUE as recipients will see it, reloading the page on every save.

    Shows the email in desktop and phone frames, in dark mode, as plain text and with its mail
    headers, next to the `check` results; "Preview as" renders it for any subscriber. Saving
    the issue, a theme template or newsletter.yaml updates the open page. Ctrl-C stops it.
    """
    from newsletter.web.preview import PreviewServer

    try:
        server = PreviewServer(issue, config_path=app().config_path, host=host, port=port)
        click.echo(f"Previewing {issue} at {server.url} (Ctrl-C to stop)")
        if not server.is_loopback:
            click.echo(
                f"Warning: listening on {host}: other machines can see this preview, "
                "including subscriber names and addresses in 'Preview as'.",
                err=True,
            )
        if open_browser:
            webbrowser.open(server.url)
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        pass
    click.echo("Preview stopped.")


commands: list[click.Command] = [preview]
