"""Commands of the setup area: `newsletter doctor` and `newsletter dkim keygen`."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.common import app, reports_errors


@click.command("doctor")
@click.option(
    "--transport",
    metavar="URL",
    help="Check for sending through URL (default: `transport:` / NEWSLETTER_TRANSPORT).",
)
@click.option(
    "--dns",
    "use_dns",
    is_flag=True,
    help="Also look up the published DKIM, SPF and DMARC records and compare the DKIM key.",
)
@click.option(
    "--nameserver",
    metavar="IP[:PORT]",
    envvar="NEWSLETTER_NAMESERVER",
    help="DNS server for --dns (default: the system's; env NEWSLETTER_NAMESERVER).",
)
@reports_errors
def doctor(transport: str | None, use_dns: bool, nameserver: str | None) -> None:
    """Check the setup before mail goes to real readers.

    Prints each finding as `newsletter.yaml:LINE:COL: error|warning: KEY: message` (or the
    NEWSLETTER_* variable the value came from): a From on an example or free-mail domain, a
    base_url that is local or plain http, a missing or placeholder postal address, no DKIM or
    a DKIM domain not aligned with From, an over-long List-Id, where the signing secret is
    kept, SMTP to another machine without TLS or certificate checks, private files readable by
    others (with the chmod to run), a named segment (`segments:`) that does not parse (its line
    and the parser's column). Prints the DKIM record to publish. Exits 1 when anything would
    reach a reader broken; `send` refuses the same errors when its transport delivers off this
    machine.
    """
    from newsletter.doctor import diagnose
    from newsletter.doctor.dnscheck import resolver

    res = resolver(nameserver) if use_dns else None
    report = diagnose(app().config, transport=transport, dns=use_dns, resolver=res)
    for finding in report.findings:
        click.echo(finding.format())
    if report.dkim_record is not None:
        name, value = report.dkim_record
        click.echo(f"DKIM record to publish: TXT at {name}\n  {value}")
    errors, warnings = len(report.errors), len(report.warnings)
    if errors:
        click.echo(
            f"{_count(errors, 'error')}, {_count(warnings, 'warning')}: readers would get "
            "broken mail; `send` refuses to deliver off this machine until the errors are fixed.",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"Ready to send: no errors, {_count(warnings, 'warning')}.", err=True)


@click.group("dkim")
def dkim() -> None:
    """DKIM keys for signing every message."""


@dkim.command("keygen")
@click.option("--selector", metavar="S", help="DKIM selector (default: nlYYYYMM, e.g. nl202611).")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="rsa is 2048 bits and verified everywhere; ed25519 is faster but not checked by all "
    "receivers.",
)
@click.option("--domain", metavar="D", help="Signing domain d= (default: the From domain).")
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (default: dkim/<selector>.<domain>.pem beside "
    "newsletter.yaml).",
)
@reports_errors
def keygen(selector: str | None, key_type: str, domain: str | None, key_path: Path | None) -> None:
    """Write a new DKIM private key (mode 0600, never over an existing file), add the `dkim:`
    block to newsletter.yaml (or print it when the file cannot be edited safely) and print the
    DNS TXT record to publish."""
    from newsletter.doctor.keygen import generate_dkim_key

    result = generate_dkim_key(
        app().config,
        selector=selector,
        key_type=key_type,  # type: ignore[arg-type]
        domain=domain,
        key_path=key_path,
    )
    click.echo(f"Wrote the private key {result.key_path} (mode 0600; keep it secret).")
    if result.config_updated:
        click.echo(f"Added to {app().config.path}:\n{result.block}", nl=False)
    else:
        click.echo(
            f"Not editing the configuration: {result.not_updated_because}. Add this block:\n"
            f"{result.block}",
            nl=False,
        )
    click.echo(f"Publish this TXT record at {result.dns_name}:\n  {result.dns_value}")
    click.echo(f"As a zone-file line:\n  {result.zone_line()}")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


commands: list[click.Command] = [doctor, dkim]
