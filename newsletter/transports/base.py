"""The transport interface every delivery method implements.

A campaign hands a transport batches of `OutgoingMessage` (at most `max_batch` each) and gets
back one `DeliveryResult` per message, in order. Per-recipient outcomes are results, never
exceptions; an exception (TransportError subclasses) means the transport as a whole cannot work
(bad URL, refused login, unreachable server) and stops the run before anyone is marked sent.

Transports that take the finished RFC 5322 bytes (smtp, outbox, console, ses raw) read
`message.data`; API transports that build their own payload (sendgrid, mailgun, postmark,
resend) read the per-recipient parts (`subject`, `html`, `text`, `headers`). Both are produced
lazily from the per-issue template, so a transport pays only for what it reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from newsletter.config import Config

# What a transport says of one message; the ledger's row statuses (campaign/ledger.RowStatus)
# are these plus its own (due, inflight, skipped): one vocabulary.
Status = Literal["sent", "deferred", "failed", "bounced"]


class DotSafeBytes(bytes):
    """A complete 7-bit message known to have no line starting with "." (our encoders guarantee
    both: QP escapes a leading dot, folded header lines start with whitespace, every header is
    encoded to ASCII). SMTP then skips the dot-stuffing and 8-bit scans, which cost ~100 us on a
    50 KB message (a bytes search for b"\\n.")."""

    __slots__ = ()


@dataclass(frozen=True)
class MessageParts:
    """One recipient's message as API providers want it."""

    from_header: str  # encoded From header value
    to_email: str
    to_name: str | None
    subject: str  # decoded text
    text: str
    html: str
    headers: Mapping[str, str]  # extra headers: Message-ID, List-Unsubscribe, List-Id, Reply-To...


@dataclass(eq=False)
class OutgoingMessage:
    key: int  # the campaign ledger row id (or any caller-chosen key)
    envelope_from: str
    recipient: str  # envelope recipient address
    message_id: str  # without angle brackets
    build_data: Callable[[], bytes] = field(repr=False)
    build_parts: Callable[[], MessageParts] = field(repr=False)
    # The From address when the envelope sender differs (VERP): what an API that keeps its own
    # envelope sender (SES) must name as the sending identity. None: same as envelope_from.
    header_from: str | None = None

    @cached_property
    def data(self) -> bytes:
        """The complete message as it goes on the wire (CRLF line ends, DKIM-signed if set)."""
        return self.build_data()

    @cached_property
    def parts(self) -> MessageParts:
        return self.build_parts()


@dataclass(frozen=True)
class DeliveryResult:
    """One message's outcome. Two kinds of "not sent" are not about the recipient at all, and
    every transport maps its provider's documented replies onto them:

    * `throttled` (status deferred): the provider said "too fast" (HTTP 429, SES `Throttling`,
      SMTP 421/451 4.7.x rate replies). The runner slows every worker down and puts the message
      back without spending one of the recipient's attempts.
    * `account` (status deferred): the provider refused the sender or the account (unverified
      sender or domain, missing message stream, SMTP 5.7.x about the sender or authentication).
      No other message can go out either: the runner pauses the run with the provider's words
      and the recipient stays due.
    """

    status: Status
    reply: str = ""  # the server's / provider's reply, for the ledger
    provider_id: str | None = None  # the provider's message id, when it gives one
    retry_after: float | None = None  # seconds, when the server said how long to wait
    throttled: bool = False
    account: bool = False


def throttled(reply: str, retry_after: float | None = None) -> DeliveryResult:
    """The provider refused this message for now because we send too fast."""
    return DeliveryResult("deferred", reply, None, retry_after, throttled=True)


def account_problem(reply: str) -> DeliveryResult:
    """The provider refused the sender or the account, not this recipient."""
    return DeliveryResult("deferred", reply, account=True)


class RequestGate:
    """What paces a transport's requests to the provider; the campaign's rate limiter is one.

    A transport calls `wait_for_request()` right before each request (an HTTP call, an SMTP
    transaction), and `provider_limit()` when the provider tells its limit (SES GetAccount's
    MaxSendRate, `ratelimit-limit` headers). This default paces nothing.
    """

    def wait_for_request(self) -> None:
        """Block until one more request may go out."""

    def provider_limit(self, per_second: float) -> None:
        """The provider's published limit, in requests per second."""

    def hold(self, seconds: float) -> None:
        """The provider said nobody should send for `seconds` (its quota is spent)."""


NO_GATE = RequestGate()


class Transport(ABC):
    """Open once, send batches (possibly from several threads when `thread_safe`), close.

    Built from a URL by `from_url` (the registry in `newsletter.transports` maps each scheme to
    its class); a secret never comes from the URL but from the environment variable the class
    names in `secret_variable`, whose value is masked in every message we print.
    """

    name: str = "transport"
    max_batch: int = 1
    thread_safe: bool = False  # False: the runner gives each worker its own instance
    secret_variable: str | None = None  # e.g. "SENDGRID_API_KEY"; None: needs no secret
    gate: RequestGate = NO_GATE  # set by the runner: paces each request
    published_rate: float | None = None  # requests/s the provider allows, once it said so
    # True when `send` makes one paced request per message (SES): a batch then takes
    # len(batch) / rate seconds and its results are recorded only when it returns, so the
    # runner keeps such a batch to about a second at `published_rate`.
    request_per_message: bool = False

    @classmethod
    def from_url(cls, url: str, config: Config, environ: Mapping[str, str]) -> Transport:
        """The transport `url` describes (`smtp://host:587`, `sendgrid:`...), its secret read
        from `environ`; TransportConfigError for a URL or secret it cannot use."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a URL")

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / authenticate; raise TransportError subclasses when that fails."""

    @abstractmethod
    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Deliver a batch; return one result per message, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> str:
        """Human-readable destination without secrets, e.g. 'smtp://mail.example.com:587'."""
        return self.name

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
