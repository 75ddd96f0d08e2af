"""Real SMTP servers on loopback for tests: aiosmtpd with recording, faults, AUTH and TLS.

Usage (any test module; `tests/` is on sys.path under pytest):

    from smtp_servers import SmtpServer, fault

    with SmtpServer() as server:                       # plain SMTP on 127.0.0.1:<free port>
        url = server.url()                             # "smtp://127.0.0.1:PORT?tls=none&timeout=5"
        ... send ...
        server.wait_for(3)                             # block until 3 messages were accepted
        server.messages                                # [Delivered(mail_from, rcpt_tos, data)]
        server.parsed("ann@example.com")               # EmailMessages delivered to that address
        server.count_by_recipient()                    # Counter of deliveries per address

    faults = [fault("550", "gone*@example.com"),       # 550 5.1.1 at RCPT for matching addresses
              fault("451", "busy@example.com", times=1),  # only the first attempt
              fault("421", "cap@*"),                   # 421 at RCPT, then the server hangs up
              fault("554", "spam@*"),                  # 554 after DATA (the message is refused)
              fault("drop", "drop@*"),                 # connection closed after DATA, no reply
              fault("slow", "slow@*", delay=3)]        # RCPT reply only after 3 s
    with SmtpServer(faults=faults, auth={"user": "secret"}, tls="starttls") as server:
        url = server.url(user="user")                  # plus ?cafile=... for the self-signed cert
        # the password goes in the environment: {"NEWSLETTER_SMTP_PASSWORD": "secret"}

Fault kinds: "421" (at RCPT, then hang up), "451", "452", "550" (5.1.1 at RCPT), "553" (5.1.3
at RCPT), "554" and "552" (after DATA), "drop" (close after DATA without a reply), "slow" (delay
the RCPT reply), "slow-data" (delay the DATA reply), "hangup" (accept the message, then close the
connection without a word, like a provider's per-connection cap), "drop-mid-data" (answer 354,
read the first bytes of the message, then close the connection while the client is still
sending). `times=N` applies a fault to the first N matching attempts only (per address), so
retries can succeed. `server.attempts` counts RCPT attempts per address; `server.connections`
the TCP connections that sent a RCPT. The server runs in a thread of the test process, so a
sender in a subprocess (e.g. one killed with SIGKILL) can use `server.url()` as well.
Session faults refuse a whole connection before any mail, at one stage: the greeting, EHLO (and
HELO), STARTTLS or AUTH, with a given reply (a 421 also hangs up), for every connection or only
for those opened while `beyond` others are open (a relay's connection cap), optionally only the
first `times` of them:

    SmtpServer(session_faults=[session_fault("greeting", "421 4.7.0 Too many concurrent
               connections", beyond=2)])    # the 3rd and 4th simultaneous connection refused
    server.refused_sessions                 # how many connections the faults refused

`SmtpServer(tls="implicit")` is an smtps:// server; `data_size_limit=N` advertises SIZE N;
`pipelining=True` advertises PIPELINING (the client then pipelines MAIL, RCPT and DATA).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import fnmatch
import ipaddress
import logging
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every line otherwise
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")

FaultKind = Literal[
    "421",
    "451",
    "452",
    "550",
    "553",
    "552",
    "554",
    "drop",
    "slow",
    "slow-data",
    "451-rate",
    "550-sender",
    "554-relay",
    "530-auth",
    "450-rcpt-rate",
    "451-mail-rate",
    "550-quota",
    "554-daily-limit",
]
_PRESETS: dict[str, tuple[str, str | None, bool]] = {
    # kind: (stage, reply or None for no reply, disconnect after)
    "421": ("rcpt", "421 4.7.0 Too many messages on this connection, closing", True),
    "451": ("rcpt", "451 4.3.0 Temporary local problem, try again later", False),
    "452": ("rcpt", "452 4.2.2 Mailbox full", False),
    "550": ("rcpt", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown", False),
    "553": ("rcpt", "553 5.1.3 <{rcpt}>: Bad recipient address syntax", False),
    "552": ("data", "552 5.3.4 Message size exceeds fixed limit", False),
    "554": ("data", "554 5.7.1 Message rejected as spam", False),
    "drop": ("data", None, True),
    "slow": ("rcpt", "250 2.1.5 OK (slowly)", False),
    "slow-data": ("data", "250 2.0.0 OK (slowly)", False),
    "hangup": ("data", "250 2.0.0 OK, and goodbye", True),
    "drop-mid-data": ("data-start", None, True),
    # Replies about the pace or the sender, not the recipient (Postfix rejects a sender at RCPT
    # time by default: smtpd_delay_reject).
    "451-rate": ("rcpt", "451 4.7.1 Sending rate limit exceeded, slow down", False),
    "550-sender": (
        "rcpt",
        "550 5.7.1 <news@example.org>: Sender address rejected: not owned by user",
        False,
    ),
    "554-relay": ("rcpt", "554 5.7.1 <{rcpt}>: Relay access denied", False),
    "530-auth": ("rcpt", "530 5.7.0 Authentication required", False),
    # Gmail's per-mailbox rate at RCPT: about that reader, not our pace.
    "450-rcpt-rate": (
        "rcpt",
        "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents"
        " additional messages from being delivered. Please resend your message at a later point.",
        False,
    ),
    # Replies to MAIL FROM (the pattern matches the sender): never about a recipient.
    "451-mail-rate": ("mail", "451 4.7.1 Rate limit exceeded, try again later", False),
    "550-quota": ("mail", "550 5.4.5 Daily user sending quota exceeded.", False),
    "554-daily-limit": (
        "mail",
        "554 5.7.0 Your account has exceeded its daily sending limit",
        False,
    ),
}


@dataclass
class Fault:
    pattern: str  # fnmatch pattern on the recipient address (case-insensitive)
    stage: Literal["mail", "rcpt", "data", "data-start"]
    reply: str | None  # None: say nothing and drop the connection
    disconnect: bool = False
    delay: float = 0.0
    times: int | None = None  # apply to the first N matching attempts only
    used: int = 0

    def matches(self, rcpt: str) -> bool:
        return fnmatch.fnmatch(rcpt.lower(), self.pattern.lower()) and (
            self.times is None or self.used < self.times
        )


def fault(kind: FaultKind, pattern: str, *, times: int | None = None, delay: float = 0.0) -> Fault:
    stage, reply, disconnect = _PRESETS[kind]
    if kind.startswith("slow") and not delay:
        delay = 5.0
    return Fault(pattern, stage, reply, disconnect, delay, times)  # type: ignore[arg-type]


SessionStage = Literal["greeting", "ehlo", "starttls", "auth"]


@dataclass
class SessionFault:
    stage: SessionStage
    reply: str
    beyond: int | None = None  # refuse only connections opened while this many are open
    times: int | None = None  # refuse only this many connections
    used: int = 0


def session_fault(
    stage: SessionStage, reply: str, *, beyond: int | None = None, times: int | None = None
) -> SessionFault:
    return SessionFault(stage, reply, beyond, times)


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)
    helo: str = ""  # the name the client gave in EHLO/HELO

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class RecordingHandler:
    """Accepts everything (except scripted faults) and stores each accepted message."""

    def __init__(
        self, faults: list[Fault] | None = None, session_faults: list[SessionFault] | None = None
    ) -> None:
        self.faults = list(faults or [])
        self.session_faults = list(session_faults or [])
        self.open_sessions = 0
        self.refused_sessions = 0
        self.messages: list[Delivered] = []
        self.attempts: Counter[str] = Counter()
        self.peers: set[object] = set()
        self.lock = threading.Lock()
        self.accepted = threading.Condition(self.lock)

    def _fault(self, stage: str, rcpts: list[str]) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.stage == stage and any(f.matches(r) for r in rcpts):
                    f.used += 1
                    return f
        return None

    async def _apply(self, server: SMTP, f: Fault, rcpt: str) -> str:
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.reply is not None and f.reply.startswith("250") and f.disconnect:
            await server.push(f.reply)
            assert server.transport is not None
            server.transport.close()
            return f.reply  # accepted: the caller records the message
        if f.reply is None or f.disconnect:
            if f.reply is not None:
                await server.push(f.reply.format(rcpt=rcpt))
            assert server.transport is not None
            server.transport.close()
            return "421 4.3.2 connection closed"  # written to a closed transport: never arrives
        return f.reply.format(rcpt=rcpt)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        f = self._fault("mail", [address])
        if f is not None:
            reply = await self._apply(server, f, address)
            if not reply.startswith("250"):
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.attempts[address.lower()] += 1
            self.peers.add(session.peer)
        f = self._fault("rcpt", [address])
        if f is not None:
            reply = await self._apply(server, f, address)
            if reply.startswith("250"):
                envelope.rcpt_tos.append(address)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        f = self._fault("data", list(envelope.rcpt_tos))
        reply = None
        if f is not None:
            reply = await self._apply(server, f, envelope.rcpt_tos[0])
            if not reply.startswith("250") or f.reply is None:
                return reply
        data = envelope.original_content or b""
        with self.accepted:
            self.messages.append(
                Delivered(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    bytes(data),
                    list(envelope.mail_options),
                    session.host_name or "",
                )
            )
            number = len(self.messages)
            self.accepted.notify_all()
        return reply or f"250 2.0.0 OK queued as Q{number}"


class _FaultySMTP(SMTP):
    """aiosmtpd's session with extra fault points: a connection dropped mid-DATA, and session
    faults (a refused greeting, EHLO, STARTTLS or AUTH)."""

    _refusal: SessionFault | None = None
    _counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.event_handler
        if self._original_transport is None and isinstance(handler, RecordingHandler):
            with handler.lock:  # a new connection (not the STARTTLS upgrade of one)
                handler.open_sessions += 1
                self._counted = True
                for f in handler.session_faults:
                    over = f.beyond is None or handler.open_sessions > f.beyond
                    if over and (f.times is None or f.used < f.times):
                        f.used += 1
                        handler.refused_sessions += 1
                        self._refusal = f
                        break
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        handler = self.event_handler
        if self._counted and isinstance(handler, RecordingHandler):
            with handler.lock:
                handler.open_sessions -= 1
            self._counted = False
        super().connection_lost(error)

    async def _refuse(self, stage: str) -> bool:
        f = self._refusal
        if f is None or f.stage != stage:
            return False
        await self.push(f.reply)
        if f.reply.startswith("421"):
            assert self.transport is not None
            self.transport.close()
        return True

    async def _handle_client(self) -> None:
        if self._refusal is not None and self._refusal.stage == "greeting":
            await self._refuse("greeting")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._refuse("ehlo"):
            await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._refuse("ehlo"):
            await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if not await self._refuse("starttls"):
            await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if not await self._refuse("auth"):
            await super().smtp_AUTH(arg)

    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        if (
            isinstance(handler, RecordingHandler)
            and self.envelope is not None
            and self.envelope.rcpt_tos
            and handler._fault("data-start", list(self.envelope.rcpt_tos)) is not None
        ):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.read(4096)  # part of the message has arrived...
            assert self.transport is not None
            self.transport.close()  # ...and the line goes dead
            return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, **self.SMTP_kwargs)


class PipeliningHandler(RecordingHandler):
    """Also advertises PIPELINING (aiosmtpd reads commands in order, so it copes with it)."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 and a free port; a context manager."""

    def __init__(
        self,
        *,
        faults: list[Fault] | None = None,
        auth: dict[str, str] | None = None,
        tls: Literal["starttls", "implicit"] | None = None,
        data_size_limit: int | None = 33554432,
        handler: RecordingHandler | None = None,
        pipelining: bool = False,
        session_faults: list[SessionFault] | None = None,
    ) -> None:
        self.handler = handler or (PipeliningHandler if pipelining else RecordingHandler)(
            faults, session_faults
        )
        self.tls = tls
        self.auth = auth
        self.host = "127.0.0.1"
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp-tls-")
        self.cafile: Path | None = None
        kwargs: dict[str, Any] = {"data_size_limit": data_size_limit}
        ssl_context = None
        if tls:
            cert, key = self_signed_cert(Path(self._tmp.name))
            self.cafile = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if tls == "implicit":
                ssl_context = context
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
        if auth is not None:
            kwargs["authenticator"] = _Authenticator(auth)
            # Implicit TLS is invisible to aiosmtpd's STARTTLS bookkeeping (it would refuse AUTH
            # or warn), so only the STARTTLS server demands TLS for, and AUTH before, MAIL.
            kwargs["auth_required"] = tls == "starttls"
            kwargs["auth_require_tls"] = tls == "starttls"
        self.controller = _Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=ssl_context,
            ready_timeout=10,
            **kwargs,
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> SmtpServer:
        self.controller.start()
        with self.handler.lock:  # the controller's own readiness probe is not a client
            self.handler.refused_sessions = 0
            for f in self.handler.session_faults:
                f.used = 0
        return self

    def stop(self) -> None:
        self.controller.stop()
        self._tmp.cleanup()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for the client -------------------------------------------------------------------

    def url(self, *, user: str | None = None, timeout: float = 5, **params: str) -> str:
        """A transport URL for this server (TLS servers get ?cafile= for the test cert)."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        query = {"timeout": str(timeout), **params}
        if self.tls is None:
            query.setdefault("tls", "none")
        elif self.tls == "starttls":
            query.setdefault("tls", "starttls")
        if self.cafile is not None:
            query.setdefault("cafile", str(self.cafile))
        who = f"{user}@" if user else ""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{scheme}://{who}{self.host}:{self.port}?{qs}"

    # --- what arrived ---------------------------------------------------------------------

    @property
    def messages(self) -> list[Delivered]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def attempts(self) -> Counter[str]:
        with self.handler.lock:
            return Counter(self.handler.attempts)

    @property
    def refused_sessions(self) -> int:
        with self.handler.lock:
            return self.handler.refused_sessions

    @property
    def connections(self) -> int:
        with self.handler.lock:
            return len(self.handler.peers)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivered]:
        deadline = time.monotonic() + timeout
        with self.handler.accepted:
            while len(self.handler.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} messages, server has {len(self.handler.messages)}"
                    )
                self.handler.accepted.wait(left)
            return list(self.handler.messages)

    def count_by_recipient(self) -> Counter[str]:
        return Counter(r.lower() for m in self.messages for r in m.rcpt_tos)

    def parsed(self, rcpt: str | None = None) -> list[EmailMessage]:
        return [
            m.parsed()
            for m in self.messages
            if rcpt is None or rcpt.lower() in (r.lower() for r in m.rcpt_tos)
        ]
