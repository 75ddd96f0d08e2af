"""What a domain or host name is, for the checks: reserved for examples, free-mail, private,
and its organizational domain (DMARC, RFC 7489 3.2) from the Public Suffix List.

The list is `publicsuffixlist`'s bundled snapshot, read from the package: never fetched.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import parse_qsl, urlsplit

# RFC 2606 / RFC 6761 names that never reach a real mailbox or web site, and private-use ones.
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})
RESERVED_TLDS = frozenset(
    {"test", "invalid", "example", "localhost", "local", "internal", "lan", "home.arpa"}
)
# Mailbox providers whose DMARC policy rejects or quarantines their domain in mail sent from
# anywhere but their own servers; "family" labels match every country domain (yahoo.co.uk).
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "ymail.com",
        "web.de",
        "mail.com",
        "proton.me",
        "protonmail.com",
        "zoho.com",
        "fastmail.com",
        "mail.ru",
        "qq.com",
        "163.com",
    }
)
FREE_MAIL_FAMILIES = frozenset({"yahoo", "hotmail", "outlook", "live", "gmx", "yandex", "aol"})


@functools.cache
def _psl() -> object:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registrable domain (`news.example.co.uk` -> `example.co.uk`); the name itself when
    the list has no answer (a bare suffix, a single label)."""
    name = domain.lower().rstrip(".")
    found = _psl().privatesuffix(name)  # type: ignore[attr-defined]
    return found or name


def aligned(domain_a: str, domain_b: str) -> bool:
    """DMARC relaxed alignment: the same organizational domain."""
    return organizational_domain(domain_a) == organizational_domain(domain_b)


def is_reserved(name: str) -> bool:
    """A name reserved for examples and tests, or for private use (RFC 2606, 6761, 8375)."""
    name = name.lower().rstrip(".")
    if name in RESERVED_DOMAINS or any(name.endswith("." + d) for d in RESERVED_DOMAINS):
        return True
    return any(name == tld or name.endswith("." + tld) for tld in RESERVED_TLDS)


def is_free_mail(domain: str) -> bool:
    org = organizational_domain(domain)
    return org in FREE_MAIL_DOMAINS or org.split(".")[0] in FREE_MAIL_FAMILIES


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost (by name only: nothing is resolved)."""
    if not host:
        return False
    ip = ip_address(host)
    if ip is not None:
        return ip.is_loopback
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def is_not_public(host: str) -> bool:
    """An address or name nobody else's browser can reach: loopback, private, link-local,
    unspecified or reserved addresses, and single-label names."""
    ip = ip_address(host)
    if ip is not None:
        return not ip.is_global
    return is_loopback(host) or "." not in host.strip(".")


LOCAL_SCHEMES = frozenset({"outbox", "console"})


def delivers_off_machine(transport: str) -> bool:
    """True when `transport` hands mail to another machine: an SMTP host that is not loopback,
    an email API without a loopback `?endpoint=`. Nothing is resolved or contacted (a name
    other than localhost counts as another machine)."""
    scheme = transport.partition(":")[0].lower()
    if scheme in LOCAL_SCHEMES:
        return False
    try:
        if scheme in ("smtp", "smtps"):
            return not is_loopback(urlsplit(transport).hostname)
        endpoint = dict(parse_qsl(transport.partition("?")[2])).get("endpoint")
        return endpoint is None or not is_loopback(urlsplit(endpoint).hostname)
    except ValueError:  # a malformed URL: the transport itself reports it
        return True
