"""What the HTTP email-API transports share: URL and secret parsing, one pooled httpx client,
status mapping, Retry-After / rate-limit headers, and the batch loop.

`HttpApiTransport` owns the loop, as django-anymail's backend does: plan the batch into
requests (`plan`), cut each to the provider's limit (`max_batch`), build the payload
(`payload`), post it (`deliver`), read the reply (`refuse` for whole-account refusals,
`results` per recipient) and split a rejected batch until the refused recipients stand alone.
A provider module supplies only those provider-specific steps. The rules they all follow:

* 2xx: accepted -> sent (per-recipient errors inside a 2xx body are the provider module's job).
* 401 / 403: a bad or unauthorised key -> `TransportAuthError` at once; nothing is marked sent.
* 429: every message of the request -> throttled (put back, not an attempt; the runner slows
  down), with `retry_after` taken from Retry-After or the provider's rate-limit reset header.
* 5xx, timeouts, dropped connections: every message of the request -> deferred.
* Every request waits for the run's `gate` first (`--rate` and the adaptive provider limit);
  IETF `ratelimit-limit` / `ratelimit-policy` headers tell the gate the provider's limit;
  without them, `ratelimit-remaining: 0` holds every worker until `ratelimit-reset`.
* Other 4xx: the provider rejected the request as a whole. When the reply blames a recipient,
  the batch is split in halves and re-sent until the bad recipients stand alone, so exactly
  they are marked failed; otherwise every message of the request fails with the reply.
* The key is never shown: `describe()`, error messages and stored replies are scrubbed of it.
"""

from __future__ import annotations

import email.utils
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx

from newsletter.errors import (
    MessageError,
    TransportAuthError,
    TransportConfigError,
    TransportConnectError,
    TransportTemporaryError,
)
from newsletter.transports._merge import Group, group_documents
from newsletter.transports.base import DeliveryResult, OutgoingMessage, Transport, throttled

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
MAX_REPLY = 500  # characters of a provider reply kept for the ledger


# ---------------------------------------------------------------- URL and environment


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    target: str  # what follows "scheme:" up to "?" (a domain, a region or nothing)
    params: dict[str, str]
    endpoint: str | None  # ?endpoint=... override, validated


def parse_url(url: str, scheme: str, allowed: Sequence[str] = ()) -> ParsedUrl:
    """Split `scheme:TARGET?key=value` and reject unknown or repeated parameters."""
    head, _, query = url.partition("?")
    got_scheme, _, target = head.partition(":")
    if got_scheme.lower() != scheme:
        raise TransportConfigError(f"expected a {scheme}: transport URL, got {url!r}")
    target = target.strip("/")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "endpoint" and key not in allowed:
            known = ", ".join(["endpoint", *allowed])
            # Only the name: the value may be a key pasted into the URL by mistake.
            raise TransportConfigError(
                f"unknown parameter {key!r} in the {scheme}: transport URL; known: {known} "
                "(API keys belong in the environment, never in the URL)"
            )
        if key in params:
            raise TransportConfigError(f"parameter {key!r} given twice in the {scheme}: URL")
        params[key] = value
    endpoint = params.pop("endpoint", None)
    if endpoint is not None:
        endpoint = check_endpoint(endpoint, url)
    return ParsedUrl(scheme, target, params, endpoint)


def no_target(parsed: ParsedUrl, url: str) -> None:
    if parsed.target:
        # The text after the colon is not repeated: it is often the API key itself.
        raise TransportConfigError(
            f"{parsed.scheme}: takes no host or path after the colon; write '{parsed.scheme}:' or "
            f"'{parsed.scheme}:?endpoint=...' (the API key belongs in the environment, never "
            "in the URL)"
        )


def check_endpoint(endpoint: str, url: str) -> str:
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:  # e.g. an unclosed IPv6 bracket: reported below like any bad endpoint
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TransportConfigError(
            f"'endpoint' must be a base URL like http://127.0.0.1:8025 in {url!r}, got {endpoint!r}"
        )
    if parts.username or parts.password:
        raise TransportConfigError(
            "'endpoint' must not carry credentials; keys come from the environment"
        )
    return endpoint.rstrip("/")


def require_secret(environ: Mapping[str, str], variable: str, provider: str) -> str:
    value = environ.get(variable, "").strip()
    if not value:
        raise TransportConfigError(
            f"{provider} needs its API key in the environment variable {variable} "
            f"(export {variable}=...); it is never read from the URL or newsletter.yaml"
        )
    if any(ch in value for ch in "\r\n"):
        raise TransportConfigError(f"{variable} must be a single line")
    if not (value.isascii() and value.isprintable()):
        # It goes into an HTTP header or a request signature, which take ASCII only.
        raise TransportConfigError(
            f"{variable} contains a character that no API key has (non-ASCII or a control "
            "character); copy the key again"
        )
    return value


# ---------------------------------------------------------------- message helpers


@functools.lru_cache(maxsize=64)  # the same From / Reply-To for a whole campaign
def split_address(header_value: str) -> tuple[str, str]:
    """(display name decoded to text, address) from an encoded From/Reply-To value."""
    name, addr = email.utils.parseaddr(header_value)
    if "=?" in name:
        name = str(make_header(decode_header(name)))
    return name, addr


_SPECIALS = set('()<>[]:;@\\,."')


def recipient_display(name: str | None, addr: str) -> str:
    """`Name <addr>` in plain UTF-8, the name quoted when it holds specials: the providers
    encode non-ASCII names themselves (pre-encoded words could be encoded a second time)."""
    if not name:
        return addr
    if any(c in _SPECIALS for c in name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


# Headers an API takes as fields of its own (or sets itself); the rest travel as custom headers.
FIELD_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "reply-to", "date", "mime-version", "content-type"}
)


def custom_headers(message: OutgoingMessage) -> dict[str, str]:
    """The per-recipient extra headers, with the deterministic Message-ID always present."""
    out: dict[str, str] = {}
    for name, value in message.parts.headers.items():
        if name.lower() in FIELD_HEADERS or name.lower() == "message-id":
            continue
        out[name] = value
    out["Message-ID"] = f"<{message.message_id}>"
    return out


def reply_to_of(message: OutgoingMessage) -> str | None:
    for name, value in message.parts.headers.items():
        if name.lower() == "reply-to":
            return value
    return None


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def chunk_by_size(items: Sequence[T], sizes: Sequence[int], limit: int) -> list[Sequence[T]]:
    """Consecutive runs of items whose summed size stays under `limit` (at least one each)."""
    out: list[Sequence[T]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            out.append(items[start:i])
            start, total = i, 0
        total += size
    if start < len(items):
        out.append(items[start:])
    return out


# ---------------------------------------------------------------- replies


@dataclass(frozen=True)
class ApiReply:
    status: int
    headers: httpx.Headers
    text: str

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status in (408, 425, 429) or self.status >= 500


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or a rate-limit reset header.

    SendGrid's X-RateLimit-Reset is a Unix time; Resend's ratelimit-reset counts seconds;
    a value larger than a day's worth of seconds is read as a Unix time.
    """
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if "," in value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    for name in ("ratelimit-reset", "x-ratelimit-reset"):
        value = headers.get(name)
        if not value:
            continue
        try:
            number = float(value.strip())
        except ValueError:
            continue
        return max(0.0, number - now) if number > 86_400 else max(0.0, number)
    return None


_POLICY_WINDOW = re.compile(r"\bw\s*=\s*(\d+(?:\.\d+)?)")


def published_rate(headers: Mapping[str, str], window: float = 1.0) -> float | None:
    """Requests per second from the IETF draft's `ratelimit-limit` (and `ratelimit-policy`'s
    `w=` window in seconds, else `window`), as Resend sends them on every reply."""
    value = headers.get("ratelimit-limit")
    if not value:
        return None
    try:
        limit = float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    policy = _POLICY_WINDOW.search(headers.get("ratelimit-policy", ""))
    seconds = float(policy.group(1)) if policy else window
    return limit / seconds if limit > 0 and seconds > 0 else None


def quota_spent(headers: Mapping[str, str]) -> float | None:
    """Seconds until the provider's window resets when `ratelimit-remaining` says 0."""
    remaining = headers.get("ratelimit-remaining") or headers.get("x-ratelimit-remaining")
    if remaining is None or remaining.strip() != "0":
        return None
    reset = headers.get("ratelimit-reset") or headers.get("x-ratelimit-reset")
    return retry_after_seconds({"ratelimit-reset": reset}) if reset else None


class Redactor:
    def __init__(self, *secrets: str) -> None:
        self._secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


def results_for(n: int, status: str, reply: str, retry_after: float | None = None) -> list[Any]:
    return [DeliveryResult(status, reply, None, retry_after)] * n  # type: ignore[arg-type]


# ---------------------------------------------------------------- the shared transport base


@dataclass
class ApiRequest:
    """One planned API request: what its recipients share (provider-specific: a content
    template, form fields, or None) and its members, each (position in the batch, that
    recipient's own part: a message, its JSON object, its substitutions...)."""

    shared: Any
    members: list[tuple[int, Any]]


class HttpApiTransport(Transport):
    """A pooled, thread-safe httpx client, the status rules described in the module doc, and
    the batch loop; providers supply `plan` (optional), `payload`, `results`, and may refine
    `deliver` and `refuse`."""

    thread_safe = True
    provider = "API"
    secret_variable = ""
    path = ""  # where `deliver` POSTs, under base_url
    rate_window = 1.0  # seconds a `ratelimit-limit` counts over, when no policy header says

    def __init__(
        self, base_url: str, auth_headers: Mapping[str, str], secret: str, *, timeout: float
    ) -> None:
        self.base_url = base_url
        self._auth_headers = dict(auth_headers)
        self._redact = Redactor(secret, *auth_headers.values())
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._reached = False  # a reply came back once: later connection errors are transient
        self.requests = 0  # HTTP requests made (benchmarks report requests per recipient)

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.describe()}>"

    def describe(self) -> str:
        return f"{self.name}: {self.base_url}"

    def open(self) -> None:
        """Connect, and check the key with one cheap authenticated GET (`preflight`), so that a
        wrong key or endpoint stops the run before anyone is claimed, let alone marked."""
        with self._lock:
            if self._client is not None:
                return
            self._client = httpx.Client(
                headers={**self._auth_headers, "User-Agent": "newsletter"},
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
        try:
            self.preflight()
        except BaseException:
            self.close()
            raise

    def preflight(self) -> None:
        """Raise TransportAuthError / TransportConfigError when the provider says so."""

    def check(self, path: str, **kwargs: Any) -> ApiReply:
        """A preflight GET; no answer at all stops the run (the endpoint is wrong or down)."""
        reply = self.request("GET", path, **kwargs)
        if isinstance(reply, str):  # reached, then no answer in time: for now, not for good
            raise TransportTemporaryError(f"{reply}; check the endpoint or try again later")
        if reply.status == 429 or reply.status >= 500:
            raise TransportTemporaryError(
                f"{self.provider} answered {self.reply_text(reply)}; try again later"
            )
        return reply

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Messages whose content cannot be built fail alone; the others go to `send_parts`."""
        results: list[DeliveryResult | None] = [None] * len(messages)
        ready: list[int] = []
        for i, message in enumerate(messages):
            try:
                message.parts  # noqa: B018 - built (and cached) here, so a bad one fails alone
            except MessageError as exc:
                results[i] = DeliveryResult("failed", f"not sent: {exc}")
            else:
                ready.append(i)
        if ready:
            sent = self.send_parts([messages[i] for i in ready])
            for i, result in zip(ready, sent, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    def send_parts(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """The loop: each planned request cut to `max_batch`, sent, a rejected one split."""
        results: list[DeliveryResult | None] = [None] * len(messages)
        for request in self.plan(messages):
            for members in chunks(request.members, self.max_batch):
                outcome = split_rejected(members, functools.partial(self.attempt, request.shared))
                for (index, _), result in zip(members, outcome, strict=True):
                    results[index] = result
        return results  # type: ignore[return-value]

    def plan(self, messages: Sequence[OutgoingMessage]) -> list[ApiRequest]:
        """How the batch goes out; by default one request of complete messages."""
        return [ApiRequest(None, list(enumerate(messages)))]

    def attempt(
        self, shared: Any, members: Sequence[tuple[int, Any]]
    ) -> list[DeliveryResult] | str:
        """One request: its results, or the provider's reply text when it refused the request
        for a recipient's sake (then the batch is split and tried again)."""
        reply = self.deliver(self.payload(shared, members))
        if isinstance(reply, str) or reply.transient:
            return self.transient_results(len(members), reply)
        self.refuse(reply)
        return self.results(reply, members)

    def payload(self, shared: Any, members: Sequence[tuple[int, Any]]) -> dict[str, Any]:
        """The keyword arguments of the POST (json=, or content= and headers=)."""
        raise NotImplementedError

    def deliver(self, payload: dict[str, Any]) -> ApiReply | str:
        return self.post(self.path, **payload)

    def refuse(self, reply: ApiReply) -> None:
        """Raise for a reply that stops the run (a refused key, an unknown account)."""
        self.raise_for_auth(reply)

    def results(
        self, reply: ApiReply, members: Sequence[tuple[int, Any]]
    ) -> list[DeliveryResult] | str:
        """One result per member from a non-transient reply; a str to split the request."""
        raise NotImplementedError

    @staticmethod
    def content_groups(
        messages: Sequence[OutgoingMessage],
        document: Callable[[OutgoingMessage], tuple[str, ...]],
        key: Callable[[OutgoingMessage], str],
    ) -> tuple[list[tuple[Group, list[int]]], list[int]]:
        """Messages that can share one content template (each group with its positions in the
        batch) and those that must go alone: a second message to one address (providers key
        per-recipient values by address) and the ones no template fits (see `_merge`)."""
        seen: set[str] = set()
        unique: list[int] = []
        alone: list[int] = []
        for i, message in enumerate(messages):
            address = key(message)
            (alone if address in seen else unique).append(i)
            seen.add(address)
        groups, leftovers = group_documents([document(messages[i]) for i in unique])
        alone.extend(unique[i] for i in leftovers)
        return [(group, [unique[m] for m in group.members]) for group in groups], alone

    def post(self, path: str, **kwargs: Any) -> ApiReply | str:
        """POST to base_url + path: an ApiReply, or a reply text when no answer came (transient).

        A connection refused before any reply ever came back means the endpoint is wrong or
        down: that stops the run (TransportConnectError) instead of deferring everyone.
        """
        if self._client is None:
            self.open()
        self.gate.wait_for_request()
        self.requests += 1
        reply = self.request("POST", path, **kwargs)
        if not isinstance(reply, str):
            self.read_limits(reply.headers)
        return reply

    def read_limits(self, headers: Mapping[str, str]) -> None:
        """Tell the gate what the provider says of its limit (every reply, 429s included)."""
        rate = published_rate(headers, self.rate_window)
        if rate is not None:
            if rate != self.published_rate:
                self.published_rate = rate
                self.gate.provider_limit(rate)
            return  # the pace keeps to the limit: waiting for each reset would halve it
        wait = quota_spent(headers)
        if wait:
            self.gate.hold(wait)

    def request(self, method: str, path: str, **kwargs: Any) -> ApiReply | str:
        assert self._client is not None
        url = self.base_url + path
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            return f"{self.provider} did not answer within {self.timeout:g}s (timeout)"
        except httpx.TransportError as exc:
            if not self._reached:
                raise TransportConnectError(
                    f"cannot reach {self.provider} at {self.base_url}: "
                    f"{self._redact(str(exc)) or type(exc).__name__}"
                ) from None
            return f"connection to {self.provider} failed: {self._redact(str(exc))}"
        self._reached = True
        return ApiReply(response.status_code, response.headers, response.text)

    def reply_text(self, reply: ApiReply, detail: str | None = None) -> str:
        text = detail if detail is not None else reply.text.strip()
        return self._redact(f"{reply.status} {text}")[:MAX_REPLY]

    def raise_for_auth(self, reply: ApiReply, detail: str | None = None) -> None:
        if reply.status == 401:
            raise TransportAuthError(
                f"{self.provider} refused the API key from {self.secret_variable} "
                f"({self.reply_text(reply, detail)}); check the key"
            )
        if reply.status == 403:  # a valid key without the right, or an unverified sender
            raise TransportAuthError(
                f"{self.provider} refused to send ({self.reply_text(reply, detail)}); check the "
                f"permissions of the key in {self.secret_variable} and that the From address "
                "is a verified sender"
            )

    def transient_results(self, n: int, reply: ApiReply | str) -> list[DeliveryResult]:
        if isinstance(reply, str):
            return results_for(n, "deferred", self._redact(reply)[:MAX_REPLY])
        wait = retry_after_seconds(reply.headers)
        if reply.status == 429:
            return [throttled(self.reply_text(reply), wait)] * n
        return results_for(n, "deferred", self.reply_text(reply), wait)


def split_rejected(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], list[DeliveryResult] | str],
) -> list[DeliveryResult]:
    """Send `items`; when `attempt` answers with a rejection naming a recipient (a str), halve
    the batch and retry so only the recipients the provider refuses end up failed."""
    outcome = attempt(items)
    if not isinstance(outcome, str):
        return outcome
    if len(items) == 1:
        return [DeliveryResult("failed", outcome)]
    middle = len(items) // 2
    return split_rejected(items[:middle], attempt) + split_rejected(items[middle:], attempt)
