"""`newsletter doctor --dns`: the published DKIM, SPF and DMARC records (dnspython).

Only when asked: nothing else in the project touches DNS. `resolver(nameserver)` builds a
resolver for one server (`IP` or `IP:PORT`, how the tests point it at a stub on loopback);
without one, the system's resolvers are used.
"""

from __future__ import annotations

import re

import dns.exception
import dns.resolver

from newsletter.config import Config
from newsletter.doctor import domains
from newsletter.doctor.findings import Finding, Locator
from newsletter.errors import ConfigError

LIFETIME = 5.0  # seconds per lookup, all retries included


def resolver(nameserver: str | None = None) -> dns.resolver.Resolver:
    """A resolver asking `nameserver` (`IP`, `IP:PORT` or `[IPv6]:PORT`), or the system's."""
    if nameserver is None:
        res = dns.resolver.Resolver()
    else:
        match = re.fullmatch(r"\[?([0-9A-Fa-f:.]+?)\]?(?::(\d{1,5}))?", nameserver.strip())
        if not match or domains.ip_address(match.group(1)) is None:
            raise ConfigError(
                f"--nameserver must be an IP address with an optional :PORT, got {nameserver!r}"
            )
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [match.group(1)]
        res.port = int(match.group(2) or 53)
    res.lifetime = LIFETIME
    return res


class _Lookup:
    def __init__(self, res: dns.resolver.Resolver) -> None:
        self.res = res
        self.unreachable: str | None = None  # once no server answers, the next lookups fail too

    def txt(self, name: str) -> list[str] | str:
        """The TXT strings at `name` (each record's strings joined), [] when there is none, or
        the reason the lookup failed."""
        if self.unreachable is not None:
            return self.unreachable
        try:
            answer = self.res.resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            self.unreachable = f"no DNS server answered ({exc.__class__.__name__})"
            return self.unreachable
        except dns.exception.DNSException as exc:
            return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def check_dns(
    config: Config,
    at: Locator,
    dkim_record: tuple[str, str] | None,
    res: dns.resolver.Resolver | None = None,
) -> list[Finding]:
    lookup = _Lookup(res or resolver())
    found: list[Finding] = []
    if config.dkim is not None and dkim_record is not None:
        found += _check_dkim(lookup, at, *dkim_record)
    found += _check_spf(lookup, at, config.sender.domain)
    found += _check_dmarc(lookup, at, config.sender.domain)
    return found


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def _check_dkim(lookup: _Lookup, at: Locator, name: str, expected: str) -> list[Finding]:
    got = lookup.txt(name)
    if isinstance(got, str):
        return [at.finding("dkim.selector", "warning", f"could not look up {name}: {got}")]
    records = [_tags(r) for r in got if "p=" in r]
    if not records:
        return [
            at.finding(
                "dkim.selector",
                "error",
                f"no DKIM record at {name}: receivers cannot verify the signature; publish "
                f"the TXT record {expected!r}",
            )
        ]
    want = _tags(expected)
    for tags in records:
        if tags.get("p") == want["p"] and tags.get("k", "rsa") == want["k"]:
            return []
    if any(tags.get("p") == "" for tags in records):
        problem = "is revoked (empty p=)"
    else:
        problem = "holds another public key than dkim.private_key"
    return [
        at.finding(
            "dkim.selector",
            "error",
            f"the DKIM record at {name} {problem}: every signature would fail; publish "
            f"{expected!r}",
        )
    ]


def _check_spf(lookup: _Lookup, at: Locator, domain: str) -> list[Finding]:
    got = lookup.txt(domain)
    if isinstance(got, str):
        return [
            at.finding("from", "warning", f"could not look up the SPF record of {domain}: {got}")
        ]
    spf = [r for r in got if r.lower().startswith("v=spf1")]
    if not spf:
        return [
            at.finding(
                "from",
                "warning",
                f"no SPF record at {domain}: publish one naming the servers that send for it "
                "(e.g. 'v=spf1 include:<your provider> -all')",
            )
        ]
    if len(spf) > 1:
        return [
            at.finding(
                "from",
                "error",
                f"{len(spf)} SPF records at {domain}: receivers treat that as a permanent error "
                "(RFC 7208 4.5); merge them into one",
            )
        ]
    return []


def _check_dmarc(lookup: _Lookup, at: Locator, domain: str) -> list[Finding]:
    names = [f"_dmarc.{domain}"]
    org = domains.organizational_domain(domain)
    if org != domain:
        names.append(f"_dmarc.{org}")  # RFC 7489 6.6.3: the organizational domain's policy
    for name in names:
        got = lookup.txt(name)
        if isinstance(got, str):
            return [at.finding("from", "warning", f"could not look up {name}: {got}")]
        if any(r.lower().startswith("v=dmarc1") for r in got):
            return []
    return [
        at.finding(
            "from",
            "warning",
            f"no DMARC record at _dmarc.{domain}: large mailbox providers require one of bulk "
            "senders; start with 'v=DMARC1; p=none; rua=mailto:<you>'",
        )
    ]
