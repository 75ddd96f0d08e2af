"""`newsletter doctor`: is this setup ready to send to real inboxes?

`diagnose(config)` runs every check (`checks.py`; with `dns=True` also the published DKIM, SPF
and DMARC records, `dnscheck.py`) and returns a `Report`. `check_before_send(...)` is the same
checks as `send` runs them: when the transport delivers off this machine, the errors refuse the
send (`SetupRefused`, listing them all) before any connection is made; with the outbox, the
console or a loopback relay, and for `--test` and `--dry-run`, they come back as warnings.
`dkim keygen` lives in `keygen.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.config import Config
from newsletter.doctor.checks import CHECKS
from newsletter.doctor.domains import delivers_off_machine
from newsletter.doctor.findings import Finding, Locator
from newsletter.errors import SetupRefused

if TYPE_CHECKING:
    from dns.resolver import Resolver

__all__ = [
    "Finding",
    "Report",
    "SetupRefused",
    "check_before_send",
    "delivers_off_machine",
    "diagnose",
]


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    dkim_record: tuple[str, str] | None = None  # (DNS name, TXT value) of the configured key

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def diagnose(
    config: Config,
    *,
    transport: str | None = None,
    environ: Mapping[str, str] | None = None,
    dns: bool = False,
    resolver: Resolver | None = None,
) -> Report:
    """Every check of the configuration (and with `dns`, of the published records) for sending
    through `transport` (default: the configured one). Never raises for what it finds."""
    url = transport or config.transport
    at = Locator(config, environ)
    report = Report()
    for check in CHECKS:
        report.findings.extend(check(config, at, url))
    report.dkim_record = _dkim_record(config)
    if dns:
        from newsletter.doctor.dnscheck import check_dns

        report.findings.extend(check_dns(config, at, report.dkim_record, resolver))
    return report


def check_before_send(
    config: Config,
    transport: str | None = None,
    *,
    real: bool,
    environ: Mapping[str, str] | None = None,
) -> list[Finding]:
    """The checks `send` runs first. `real` is False for `--test` and `--dry-run`.

    Returns the findings to show as warnings; raises SetupRefused (listing every error) when
    `real` and the transport delivers off this machine and anything would reach a reader
    broken, and TransportConfigError for a transport URL that cannot work. Reads files only:
    no connection is made."""
    from newsletter.transports import transport_from_url

    url = transport or config.transport
    # A bad URL or a missing key is reported alone, before any finding (nothing is opened).
    transport_from_url(url, config, environ)
    report = diagnose(config, transport=url, environ=environ)
    if real and report.errors and delivers_off_machine(url):
        raise SetupRefused(url, report.errors)
    return [f.as_warning() for f in report.findings]


def _dkim_record(config: Config) -> tuple[str, str] | None:
    from newsletter.errors import ConfigError
    from newsletter.mail.dkim import DkimSigner

    if config.dkim is None:
        return None
    try:
        signer = DkimSigner.from_config(config.dkim)
    except (ConfigError, ValueError):
        return None  # reported by check_dkim
    return signer.dns_name, signer.dns_record()
