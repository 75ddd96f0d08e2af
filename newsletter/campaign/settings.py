"""How a campaign is sent, remembered so that a bare `newsletter send ISSUE` resumes the same way.

The first run stores the transport URL (without secrets), the rate and the concurrency in the
ledger. A resume without `--transport` uses the stored transport, whatever the configuration
(`NEWSLETTER_TRANSPORT`, `transport:` in newsletter.yaml, the default) says now: the campaign's
own record is the more specific. A transport given explicitly that differs from the stored one
is refused unless the caller asks to switch (`switch_transport`, the CLI's `--switch-transport`);
switching without `--transport` moves the rest of the campaign to the configured transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from newsletter.campaign.ledger import CampaignRow
from newsletter.campaign.ratelimit import Rate, parse_rate
from newsletter.config import Config
from newsletter.errors import CampaignError
from newsletter.transports import transport_from_url, url_without_secrets
from newsletter.transports.base import Transport

TransportSpec = str | Callable[[], Transport] | None
DEFAULT_CONCURRENCY = 4
UNLIMITED = "none"  # a rate given as "none": no limit, even when the campaign had one


@dataclass(frozen=True)
class TransportChoice:
    factory: Callable[[], Transport]
    description: str  # for people: no secrets
    url: str | None  # to store (without secrets); None for a transport given as an object
    switching_from: str | None = None  # the stored transport this run moves away from
    note: str | None = None  # the configuration names another transport than the stored one


def choose_transport(
    config: Config,
    transport: TransportSpec,
    existing: CampaignRow | None,
    *,
    switch: bool = False,
    environ: Mapping[str, str] | None = None,
) -> TransportChoice:
    """The transport this run uses; CampaignError when it would silently change a campaign's.

    `transport` None means "not given": the stored one when resuming, else the configuration's.
    """
    stored = existing.transport_url if existing is not None else None
    if callable(transport):
        probe = transport()
        return TransportChoice(transport, probe.describe(), None)
    configured = transport or config.transport
    if stored is None:
        choice = _choice(config, configured, environ)
        legacy = existing.transport if existing is not None else None
        if legacy and legacy != choice.description and not switch:
            # Started before the URL was stored: only its description is known.
            raise CampaignError(
                f"this campaign was sent via {legacy}, and the transport chosen now is "
                f"{choice.description}: give the campaign's transport URL with --transport to "
                "resume, or add --switch-transport to switch"
            )
        return choice
    if url_without_secrets(configured, environ) == stored:
        return _choice(config, configured, environ)
    if switch:
        choice = _choice(config, configured, environ)
        return TransportChoice(choice.factory, choice.description, choice.url, stored)
    if transport is not None:
        raise CampaignError(
            f"this campaign was sent via {stored}, and --transport asks for "
            f"{url_without_secrets(transport, environ)}: refusing to switch transports in the "
            "middle of a campaign; add --switch-transport to switch, or leave out --transport "
            "to resume as before"
        )
    choice = _choice(config, stored, environ)
    note = (
        f"Resuming via {stored} as before (the configuration now names "
        f"{url_without_secrets(configured, environ)}; add --switch-transport to use it)."
    )
    return TransportChoice(choice.factory, choice.description, choice.url, None, note)


def _choice(config: Config, url: str, environ: Mapping[str, str] | None) -> TransportChoice:
    probe = transport_from_url(url, config, environ)  # a bad URL fails here, before anything
    return TransportChoice(
        lambda: transport_from_url(url, config, environ),
        probe.describe(),
        url_without_secrets(url, environ),
    )


def run_rate(given: Rate | str | None, existing: CampaignRow | None) -> Rate | None:
    """The rate for this run: the one given ("none": no limit), else the campaign's stored one,
    else no limit."""
    if isinstance(given, str):
        return None if given.strip().lower() == UNLIMITED else parse_rate(given)
    if given is not None:
        return given
    if existing is not None and existing.rate:
        return parse_rate(existing.rate)
    return None


def run_concurrency(given: int | None, existing: CampaignRow | None) -> int:
    """The number of connections for this run: given, else stored, else 4."""
    if given is not None:
        if given < 1:
            raise CampaignError("concurrency must be at least 1")
        return given
    if existing is not None and existing.concurrency:
        return existing.concurrency
    return DEFAULT_CONCURRENCY
