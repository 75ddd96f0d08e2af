"""`smtp://[user@]host[:port]?tls=starttls|none` and `smtps://[user@]host[:port]` (implicit TLS).

Query parameters: `timeout=SECONDS` (default 30), `cafile=PATH` (trust this CA/self-signed cert in
addition to nothing else), `verify=false` (skip certificate checks: only for testing),
`helo=NAME` (EHLO name; default the sender's domain). The password comes from
NEWSLETTER_SMTP_PASSWORD and is never part of the URL, `describe()` or any message.

One instance is one persistent connection (the runner gives each worker its own); it is reused
for every message, re-opened after a 421 or a dropped connection. Each reply is mapped to a result:
2xx sent, 4xx or a connection problem deferred, 5xx failed, a 5xx whose enhanced status is
about the reader's address or mailbox (5.1.x, 5.2.1: `newsletter.enhancedstatus`, the rule every
bounce source shares) bounced. Some replies are not about the recipient (`reply_result`, by
the command answered and the RFC 3463 subject): a 421/450/451/452 that says we send too fast is
a throttle unless it is about one mailbox (at RCPT, or X.1.x/X.2.x: that reader's deferral); a
5xx to MAIL FROM (a daily quota spent), a 530/535 or a 5.7.x about the sender, relaying or
authentication is an account problem that pauses the run. A message larger than the server's
advertised SIZE fails without being sent. Each transaction waits for the run's `gate` (`--rate`
and the adaptive pace).
Opening a session: a 4xx at the greeting, EHLO, STARTTLS or AUTH raises TransportTemporaryError
(refused for now: the campaign retries that connection), a 5xx, a failed certificate check or
refused credentials raise TransportConnectError / TransportAuthError (fix the setting).

The client speaks SMTP over a plain socket instead of smtplib: it avoids smtplib's regex passes
over every 50 KB message (dot-stuffing is a `bytes.replace` here), and keeps full control of
timeouts and reply handling.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from newsletter.enhancedstatus import classify_status, reply_status
from newsletter.errors import (
    MessageError,
    TransportAuthError,
    TransportConfigError,
    TransportConnectError,
    TransportTemporaryError,
)
from newsletter.idn import ascii_domain
from newsletter.transports.base import (
    DeliveryResult,
    DotSafeBytes,
    OutgoingMessage,
    Status,
    Transport,
    account_problem,
    throttled,
)

if TYPE_CHECKING:
    from newsletter.config import Config

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
PARAMS = ("tls", "timeout", "cafile", "verify", "helo")
_MAX_REPLY_LINES = 100


class SmtpReplyError(Exception):
    """A reply that ends the current step: carries the code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class ConnectionLost(Exception):
    """The connection broke or timed out: the message's fate is unknown, so it is deferred."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    user: str | None
    password: str | None
    timeout: float
    cafile: str | None
    verify: bool
    helo: str

    def describe(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        who = f"{self.user}@" if self.user else ""
        tls = "" if self.implicit_tls else f"?tls={'starttls' if self.starttls else 'none'}"
        return f"{scheme}://{who}{self.host}:{self.port}{tls}"


def classify(code: int, text: str) -> Status:
    """Map an SMTP reply to a delivery status: a 5xx is `bounced` (the subscriber is marked)
    only when its enhanced status says the reader's address or mailbox is bad; a block about
    the sender, the message or policy (5.7.x...) is `failed` and leaves the reader alone."""
    if 200 <= code < 300:
        return "sent"
    if 400 <= code < 500:
        return "deferred"
    status = reply_status(text)
    if code >= 500 and status and classify_status(status) == "hard_bounce":
        return "bounced"
    return "failed"


# "Too many messages on this connection" is a per-connection cap (a reconnect answers it), and
# "quota exceeded" is usually the recipient's mailbox: neither is a throttle.
_RATE = re.compile(r"\brate\b|throttl|slow down|too fast|too many (requests|messages in)", re.I)
_ACCOUNT_WORDS = ("sender", "from address", "relay", "authenticat", "not authorized", "domain")
# RFC 3463 subjects: X.1.x address and X.2.x mailbox are about the reader; X.4.x network and
# routing (connection rate) and X.7.x policy (sender rate) are about us.
_READER_SUBJECTS = frozenset({"1", "2"})
_SENDER_SUBJECTS = frozenset({"4", "7"})
# The session stages a reply can answer; before RCPT nothing is about the recipient.
Stage = Literal["MAIL", "RCPT", "DATA"]
_STAGES: tuple[Stage, Stage, Stage] = ("MAIL", "RCPT", "DATA")  # a transaction's commands


def reply_result(code: int, text: str, stage: Stage = "DATA") -> DeliveryResult:
    """An SMTP reply to `stage`'s command (MAIL FROM, RCPT TO, or DATA and the message) as a
    result: `classify`'s status, except

    * a 421/450/451/452 about a rate is a throttle (slows everyone, not an attempt) only when it
      is about the sender or the connection: at MAIL, or with RFC 3463 subject X.4.x/X.7.x. At
      RCPT, or with X.1.x/X.2.x (Gmail's `450 4.2.1 ... receiving mail at a rate`), it is about
      that reader's mailbox: an ordinary deferral, one of the reader's attempts;
    * a 5xx at MAIL FROM (a daily quota spent, a sender refused) is never about the recipient,
      and 530/535 or 5.7.x about the sender, relaying or authentication: account problems that
      pause the run with the server's words."""
    reply = f"{code} {text}"
    lowered = text.lower()
    status = reply_status(text)
    subject = status.split(".")[1] if status else None
    if code in (421, 450, 451, 452) and _RATE.search(text):
        about_reader = subject in _READER_SUBJECTS or (
            stage == "RCPT" and subject not in _SENDER_SUBJECTS
        )
        if not about_reader or code == 421:  # 421 closes the connection: never one reader's
            return throttled(reply)
        return DeliveryResult("deferred", reply=reply)
    if code >= 500 and stage == "MAIL":
        return account_problem(reply)
    about_policy = code in (530, 535) or bool(code >= 500 and subject == "7")
    if about_policy and "recipient" not in lowered and any(w in lowered for w in _ACCOUNT_WORDS):
        return account_problem(reply)
    return DeliveryResult(classify(code, text), reply=reply)


def parse_url(url: str, config: Config, environ: Mapping[str, str]) -> SmtpSettings:
    """Settings from a transport URL; TransportConfigError saying what to fix."""
    shown = _without_password(url)
    example = "smtp://user@mail.example.com:587?tls=starttls"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket: smtp://[::1
        raise TransportConfigError(
            f"bad SMTP transport URL {shown!r}: {exc}; expected e.g. {example}"
        ) from None
    scheme = parts.scheme.lower()
    if parts.password is not None:
        raise TransportConfigError(
            f"do not put the SMTP password in the transport URL; set {PASSWORD_ENV} instead"
        )
    if scheme not in ("smtp", "smtps") or not parts.hostname:
        raise TransportConfigError(f"bad SMTP transport URL {shown!r}: expected e.g. {example}")
    try:
        params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
        port = parts.port
    except ValueError:
        raise TransportConfigError(
            f"bad SMTP transport URL {shown!r}: the port must be a number from 1 to 65535"
        ) from None
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise TransportConfigError(
            f"unknown SMTP URL parameter {unknown[0]!r}; known: {', '.join(PARAMS)}"
        )
    implicit = scheme == "smtps"
    tls, timeout, verify = _options(params, implicit)
    user = unquote(parts.username) if parts.username else None
    password = environ.get(PASSWORD_ENV) or None
    if user and password is None:
        raise TransportConfigError(
            f"the SMTP URL names user {user!r} but {PASSWORD_ENV} is not set: "
            "put the password in that environment variable"
        )
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls=tls == "starttls",
        user=user,
        password=password if user else None,
        timeout=timeout,
        cafile=params.get("cafile") or None,
        verify=verify,
        helo=_helo(params.get("helo")) or config.sender_domain,
    )


def _helo(name: str | None) -> str | None:
    """`helo=` as the ASCII name EHLO needs (RFC 5321 4.1.1.1): an IDN as IDNA A-labels."""
    if not name:
        return None
    try:
        return ascii_domain(name)
    except UnicodeError as exc:  # idna.IDNAError is one
        raise TransportConfigError(
            f"SMTP URL parameter helo: {name!r} is not a valid internationalised domain name "
            f"(IDNA 2008: {exc})"
        ) from None


def _without_password(url: str) -> str:
    """The URL as it may be shown: a password typed into it (refused anyway) is masked."""
    return re.sub(r"(//[^/?#@]*?):[^/?#@]*@", r"\1:***@", url)


def _options(params: dict[str, str], implicit: bool) -> tuple[str, float, bool]:
    """tls=, timeout= and verify= checked: (tls mode, seconds, verify certificates)."""
    tls = params.get("tls", "implicit" if implicit else "starttls").lower()
    if implicit and tls != "implicit":
        raise TransportConfigError("smtps:// always uses implicit TLS; drop the tls= parameter")
    if not implicit and tls not in ("starttls", "none"):
        raise TransportConfigError(f"tls={tls!r} is not valid: use tls=starttls or tls=none")
    try:
        timeout = float(params.get("timeout", "30"))
        if not 0 < timeout <= 3600:
            raise ValueError
    except ValueError:
        raise TransportConfigError(
            f"timeout={params['timeout']!r} is not valid: use seconds, e.g. timeout=30"
        ) from None
    verify_text = params.get("verify", "true").lower()
    if verify_text not in ("true", "false", "1", "0", "yes", "no"):
        raise TransportConfigError(f"verify={verify_text!r} is not valid: use true or false")
    return tls, timeout, verify_text in ("true", "1", "yes")


class SmtpTransport(Transport):
    name = "smtp"
    secret_variable = PASSWORD_ENV
    max_batch = 1  # one message in flight per connection: a crash leaves at most one unknown
    thread_safe = False

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._conn: _Connection | None = None
        self._ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str, config: Config, environ: Mapping[str, str]) -> SmtpTransport:
        return cls(parse_url(url, config, environ))

    def describe(self) -> str:
        return self.settings.describe()

    @property
    def pipelining(self) -> bool:
        """Whether the open connection sends MAIL, RCPT and DATA in one write (RFC 2920: the
        server offered PIPELINING)."""
        return self._conn is not None and "pipelining" in self._conn.extensions

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, say EHLO, start TLS, log in: raise TransportError subclasses on failure."""
        if self._conn is None:
            self._conn = self._connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.quit()
            self._conn = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = client_tls_context(self.settings.cafile, self.settings.verify)
        return self._ssl_context

    def _connect(self) -> _Connection:
        s = self.settings
        where = f"{s.host}:{s.port}"
        context = self._tls_context() if (s.implicit_tls or s.starttls) else None
        try:
            conn = _Connection.open(s, context)
        except ssl.SSLCertVerificationError as exc:
            raise _untrusted_certificate(where, exc) from None
        except ssl.SSLError as exc:
            raise TransportConnectError(
                f"TLS handshake with {where} failed ({exc.reason or exc}); "
                "check the port and the tls= setting (587: tls=starttls, 465: smtps://)"
            ) from None
        except (OSError, ConnectionLost) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TransportConnectError(
                f"cannot connect to SMTP server {where}: {reason or 'timed out'}; "
                "check the host and port in the transport URL"
            ) from None
        except SmtpReplyError as exc:
            raise _refused(where, "greeting", exc) from None
        try:
            self._start_session(conn, context)
        except BaseException:
            conn.abort()
            raise
        return conn

    def _start_session(self, conn: _Connection, context: ssl.SSLContext | None) -> None:
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            conn.ehlo(s.helo)
            if s.starttls:
                if "starttls" not in conn.extensions:
                    raise TransportConnectError(
                        f"SMTP server {where} does not offer STARTTLS; use smtps:// if it "
                        "speaks implicit TLS, or tls=none only for a trusted local relay"
                    )
                conn.starttls(context, s.host)  # type: ignore[arg-type]
                conn.ehlo(s.helo)
            if s.user:
                conn.login(s.user, s.password or "")
        except ssl.SSLCertVerificationError as exc:
            raise _untrusted_certificate(where, exc) from None
        except ssl.SSLError as exc:
            raise TransportConnectError(f"TLS handshake with {where} failed ({exc})") from None
        except (OSError, ConnectionLost) as exc:
            raise TransportConnectError(
                f"SMTP server {where} dropped the connection: {exc}"
            ) from None
        except SmtpReplyError as exc:
            if 400 <= exc.code < 500:  # 421 too many connections, 454 try AUTH later...
                raise _refused(where, conn.stage, exc) from None
            if conn.authenticating and exc.text.startswith("the server offers no AUTH"):
                raise TransportAuthError(
                    f"SMTP server {where} does not offer login ({exc.text}); remove the user "
                    "from the URL, or use the submission port (587 with tls=starttls, or 465)"
                ) from None
            if exc.code == 535 or conn.authenticating:
                raise TransportAuthError(
                    f"SMTP login as {s.user!r} at {where} was refused ({exc}); "
                    f"check the user name and {PASSWORD_ENV}"
                ) from None
            raise _refused(where, conn.stage, exc) from None

    # --- sending --------------------------------------------------------------------------

    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        return [self._send_one(m) for m in messages]

    def _send_one(self, message: OutgoingMessage) -> DeliveryResult:
        try:
            data = message.data
        except MessageError as exc:
            return DeliveryResult("failed", reply=f"not sent: {exc}")
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except (TransportConnectError, TransportAuthError) as exc:
                    return DeliveryResult("deferred", reply=f"reconnect failed: {exc}")
            conn = self._conn
            limit = conn.size_limit
            if limit and len(data) > limit:
                return DeliveryResult(
                    "failed",
                    reply=f"552 5.3.4 message is {len(data):,} bytes; the server accepts at "
                    f"most {limit:,} (SIZE)",
                )
            self.gate.wait_for_request()
            try:
                return conn.transaction(message.envelope_from, message.recipient, data)
            except _StaleConnection:
                # The server closed an idle reused connection before our first command:
                # nothing was sent, so reconnect and try once more.
                self._drop()
                if attempt == 2 or not reused:
                    return DeliveryResult("deferred", reply="connection closed by the server")
            except ConnectionLost as exc:
                self._drop()
                return DeliveryResult("deferred", reply=f"connection lost: {exc}")
            except SmtpReplyError as exc:  # 421: the server is closing this connection
                self._drop()
                return reply_result(exc.code, exc.text)
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.abort()
            self._conn = None


class _StaleConnection(Exception):
    pass


class _Connection:
    """One SMTP session on a socket: replies read with a buffered reader."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.reader = sock.makefile("rb")
        self.extensions: dict[str, str] = {}
        self.size_limit = 0
        self.authenticating = False
        self.stage = "greeting"  # the session step in progress, for error messages
        self.last_lines: list[str] = []

    @classmethod
    def open(cls, s: SmtpSettings, context: ssl.SSLContext | None) -> _Connection:
        sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.implicit_tls:
                sock = context.wrap_socket(sock, server_hostname=s.host)  # type: ignore[union-attr]
            conn = cls(sock, s.timeout)
            code, text = conn.reply()
            if code != 220:
                raise SmtpReplyError(code, text)
            return conn
        except BaseException:
            sock.close()
            raise

    # --- low level ------------------------------------------------------------------------

    def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        try:
            for _ in range(_MAX_REPLY_LINES):
                line = self.reader.readline(8192)
                if not line:
                    raise ConnectionLost("the server closed the connection")
                if len(line) < 3 or not line[:3].isdigit():
                    raise ConnectionLost(f"malformed reply {line[:60]!r}")
                lines.append(line[4:].decode("utf-8", "replace").rstrip("\r\n"))
                if line[3:4] != b"-":
                    self.last_lines = lines
                    return int(line[:3]), " ".join(lines)
        except TimeoutError:
            raise ConnectionLost(f"no reply within {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionLost(str(exc) or exc.__class__.__name__) from None
        raise ConnectionLost("reply too long")

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise ConnectionLost(f"send timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionLost(str(exc) or exc.__class__.__name__) from None

    def write_parts(self, *parts: bytes) -> None:
        """Several buffers in as few system calls as possible, without joining (copying) them."""
        if isinstance(self.sock, ssl.SSLSocket):  # no sendmsg: TLS encrypts record by record
            for part in parts:
                self.write(part)
            return
        views = [memoryview(p) for p in parts if p]
        try:
            while views:
                sent = self.sock.sendmsg(views)
                while views and sent >= len(views[0]):
                    sent -= len(views.pop(0))
                if sent:
                    views[0] = views[0][sent:]
        except TimeoutError:
            raise ConnectionLost(f"send timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionLost(str(exc) or exc.__class__.__name__) from None

    def command(self, line: str) -> tuple[int, str]:
        self.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    # --- session --------------------------------------------------------------------------

    def ehlo(self, name: str) -> None:
        self.stage = "EHLO"
        code, text = self.command(f"EHLO {name}")
        if 400 <= code < 500:  # refused for now: HELO would get the same answer
            raise SmtpReplyError(code, text)
        if code != 250:
            helo_code, helo_text = self.command(f"HELO {name}")
            if helo_code != 250:  # the EHLO refusal is the one that explains
                raise SmtpReplyError(code, f"{text} (then HELO: {helo_code} {helo_text})")
            self.extensions = {}
            return
        self.extensions = _parse_ehlo(self.last_lines)
        size = self.extensions.get("size", "")
        self.size_limit = int(size) if size.isdigit() else 0

    def starttls(self, context: ssl.SSLContext, host: str) -> None:
        self.stage = "STARTTLS"
        code, text = self.command("STARTTLS")
        if code != 220:
            raise SmtpReplyError(code, text)
        self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.reader = self.sock.makefile("rb")

    def login(self, user: str, password: str) -> None:
        mechanisms = self.extensions.get("auth", "").upper().split()
        self.stage = "AUTH"
        self.authenticating = True
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            code, text = self.command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechanisms:
            code, text = self.command("AUTH LOGIN")
            if code == 334:
                code, text = self.command(base64.b64encode(user.encode()).decode())
            if code == 334:
                code, text = self.command(base64.b64encode(password.encode()).decode())
        else:
            raise SmtpReplyError(
                504, f"the server offers no AUTH PLAIN or LOGIN (offers: {mechanisms or 'none'})"
            )
        if code != 235:
            raise SmtpReplyError(code, text)
        self.authenticating = False

    def transaction(self, sender: str, rcpt: str, data: bytes) -> DeliveryResult:
        """MAIL, RCPT, DATA, the message: pipelined in one write when the server allows it
        (RFC 2920), which halves the round trips to a distant server."""
        options = f" SIZE={len(data)}" if "size" in self.extensions else ""
        safe = data.__class__ is DotSafeBytes
        if not safe and not data.isascii() and "8bitmime" in self.extensions:
            options += " BODY=8BITMIME"
        commands = (f"MAIL FROM:<{sender}>{options}", f"RCPT TO:<{rcpt}>", "DATA")
        pipelined = "pipelining" in self.extensions
        if pipelined:
            self._first_write("".join(c + "\r\n" for c in commands).encode("utf-8"))
        refused: tuple[int, str, Stage] | None = None
        for step, command in enumerate(commands):
            if not pipelined:
                if refused is not None:
                    break
                line = command.encode("utf-8") + b"\r\n"
                (self._first_write if step == 0 else self.write)(line)
            try:
                code, text = self.reply()
            except ConnectionLost as exc:
                if step == 0:
                    raise _StaleConnection() from exc  # nothing was accepted yet
                raise
            if code == 421:
                raise SmtpReplyError(code, text)
            ok = code == 354 if command == "DATA" else code in (250, 251)
            if refused is None and not ok:
                refused = (code, text, _STAGES[step])
            elif refused is not None and command == "DATA" and code == 354:
                # A server that accepts DATA after refusing the recipient: end it empty.
                self.write(b".\r\n")
                self.reply()
        if refused is not None:
            return self._abort(*refused)
        if not safe and (data.startswith(b".") or b"\n." in data):
            data = (b"." if data.startswith(b".") else b"") + data.replace(b"\n.", b"\n..")
        self.write_parts(data, b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")
        code, text = self.reply()
        if code == 421:
            raise SmtpReplyError(code, text)
        return reply_result(code, text)

    def _first_write(self, data: bytes) -> None:
        """The transaction's first write: failing here means the idle connection went stale."""
        try:
            self.write(data)
        except ConnectionLost as exc:
            raise _StaleConnection() from exc

    def _abort(self, code: int, text: str, stage: Stage) -> DeliveryResult:
        """A refused step: reset the transaction so the connection can be reused."""
        code_rset, _ = self.command("RSET")
        if code_rset != 250:
            raise ConnectionLost(f"RSET refused after {code} {text}")
        return reply_result(code, text, stage)

    def quit(self) -> None:
        try:
            self.sock.settimeout(min(self.timeout, 5))
            self.command("QUIT")
        except (ConnectionLost, OSError):
            pass
        self.abort()

    def abort(self) -> None:
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass


def _parse_ehlo(lines: list[str]) -> dict[str, str]:
    """EHLO keywords (lower-case) -> parameters; the first line is the greeting."""
    out: dict[str, str] = {}
    for line in lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            out[keyword.lower()] = params
    return out


def _refused(where: str, stage: str, exc: SmtpReplyError) -> TransportConnectError:
    """A refused session step: 4xx is for now (TransportTemporaryError: retried), 5xx for good."""
    if 400 <= exc.code < 500:
        return TransportTemporaryError(
            f"SMTP server {where} refused the connection for now at {stage}: {exc}"
        )
    return TransportConnectError(f"SMTP server {where} refused the session at {stage}: {exc}")


def _untrusted_certificate(where: str, exc: ssl.SSLCertVerificationError) -> TransportConnectError:
    return TransportConnectError(
        f"the TLS certificate of {where} could not be verified ({exc.verify_message}); "
        "fix the server certificate, or trust it with ?cafile=PATH"
    )


def client_tls_context(cafile: str | None, verify: bool = True) -> ssl.SSLContext:
    """The TLS client context of a `?cafile=`-style URL: the system trust store, or only the PEM
    file `cafile` (a private CA or a self-signed certificate); `verify=False` checks nothing.
    Raises TransportConfigError when the file cannot be loaded. Shared with the IMAP reader of
    bounce mail (newsletter.bounces.imap)."""
    if cafile:
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise TransportConfigError(
                f"cannot load cafile={cafile}: {exc}; give a PEM certificate file"
            ) from None
    else:
        context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
