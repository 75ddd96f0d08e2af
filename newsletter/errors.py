"""One exception tree for the whole package.

    NewsletterError                 anything the CLI reports as a clear one-line error
    ├── ConfigError                 newsletter.yaml / environment (carries file and line)
    │   └── SetupRefused            `send` off this machine with a setup that `doctor` fails
    ├── IssueInvalid                an issue file failed validation (carries diagnostics)
    ├── RenderError                 a theme template failed (carries template file and line)
    ├── SubscriberError             the subscriber store refused an operation
    │   └── ImportFileError         a CSV import could not be read at all
    ├── TokenError                  a signed token is forged, truncated, expired or cross-purpose
    ├── MailboxError                a bounce mailbox (file, mbox, Maildir, IMAP) cannot be read
    ├── MessageError                one recipient's values cannot make a valid message (CR/LF
    │                               in a header value, a non-ASCII local part): fail that recipient
    ├── CampaignError               a send cannot start or continue (refused issue, empty list…)
    │   ├── CampaignPaused          too many failures in a row: the campaign was paused
    │   └── ScheduleError           a `send --at` time or zone is wrong, or a schedule is unknown
    └── TransportError              delivery machinery failed as a whole (not one recipient)
        ├── TransportConfigError    bad transport URL, missing secret: fix the configuration
        ├── TransportConnectError   unreachable server, TLS handshake failure
        │   └── TransportTemporaryError  refused for now (an SMTP 4xx before sending): retry
        └── TransportAuthError      refused login / bad API key

Per-recipient outcomes (a 550 for one address, a 429 for one batch) are not exceptions: transports
return them as results so the campaign ledger can record them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.diagnostics import Diagnostic


class NewsletterError(Exception):
    """Base class: str(error) is the message shown to the user."""


class ConfigError(NewsletterError):
    def __init__(self, message: str, path: object = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(f"{where}{message}")


class SetupRefused(ConfigError):
    """`send` refused: the transport delivers off this machine and the setup would reach
    readers broken (newsletter.doctor). Carries every error finding."""

    def __init__(self, transport: str, findings: Sequence[object]) -> None:
        self.findings = list(findings)
        lines = "\n".join(f.format() for f in self.findings)  # type: ignore[attr-defined]
        super().__init__(
            f"not sending: {transport} delivers to real inboxes, and this setup would reach "
            f"readers broken:\n{lines}\nFix these (`newsletter doctor` checks again), or try "
            "the issue with the outbox (--transport outbox:./outbox), --test or --dry-run."
        )


class IssueInvalid(NewsletterError):
    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__("\n".join(d.format() for d in errors or self.diagnostics))


class RenderError(NewsletterError):
    pass


class SubscriberError(NewsletterError):
    pass


class ImportFileError(SubscriberError):
    pass


class TokenError(NewsletterError):
    pass


class MailboxError(NewsletterError):
    """`bounces import`/`fetch`: a path, mailbox file, Maildir folder or IMAP mailbox cannot be
    read (raised before anything is applied), or the IMAP server refused to flag or move what
    was applied (the next fetch reads those messages again: already recorded)."""


class MessageError(NewsletterError):
    pass


class CampaignError(NewsletterError):
    pass


class CampaignPaused(CampaignError):
    pass


class ScheduleError(CampaignError):
    pass


class TransportError(NewsletterError):
    pass


class TransportConfigError(TransportError):
    pass


class TransportConnectError(TransportError):
    pass


class TransportTemporaryError(TransportConnectError):
    """The server refused the connection for now (SMTP 4xx at greeting, EHLO, STARTTLS or
    AUTH: "421 4.7.0 Too many concurrent connections"): try again later, not a wrong setting."""


class TransportAuthError(TransportError):
    pass
