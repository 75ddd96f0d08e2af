"""Provider webhooks as the providers send them: keys generated here, payloads in each
provider's documented shape, signed the way each provider signs (see
newsletter/bounces/webhooks/ and /work/shared/reference/after-the-send.md).

`Signer` per provider: `environ` (what the operator sets), `post(events, ...)` the request parts
(headers, body) for a list of abstract events, with knobs to drop or spoil the signature or age
the timestamp. `SnsCertServer` is a local HTTPS server (its own CA) that serves the SNS signing
certificate and records every GET (SubscribeURL confirmations)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-ses-events"


@dataclass
class Event:
    """One provider-neutral event to express in a provider's shape."""

    kind: str  # hard_bounce, soft_bounce, complaint, unsubscribe, delivered, unknown
    email: str
    key: int | None = None  # our ledger key (custom data echoed back)
    message_id: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # A bounce's RFC 3463 status as the receiving server gave it (SendGrid `status`, Mailgun
    # `delivery-status`, SES `bouncedRecipients[].status`); None: the usual 5.1.1 / 4.2.2.
    status: str | None = None

    def reply(self, default: str) -> tuple[str, str]:
        """(status, the server's reply line) for a bounce."""
        status = self.status or default
        code = {"4": "450", "5": "550"}[status[0]]
        return status, f"{code} {status} refused by the receiving server"


@dataclass
class Signed:
    headers: dict[str, str]
    body: bytes


def _spoil(text: str) -> str:
    return ("A" if text[:1] != "A" else "B") + text[1:]


# ================================================================================== SendGrid


class SendGridSigner:
    name = "sendgrid"

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.environ = {"SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(der).decode()}

    def payload(self, events: list[Event]) -> bytes:
        items = []
        for e in events:
            item: dict[str, Any] = {
                "email": e.email,
                "timestamp": int(time.time()),
                "sg_event_id": e.id,
                "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
                "smtp-id": f"<{e.message_id}>",
                "newsletter_key": str(e.key) if e.key is not None else None,
                "newsletter_message_id": e.message_id,
            }
            item.update(
                {
                    "hard_bounce": {
                        "event": "bounce",
                        "type": "bounce",
                        "status": "5.1.1",
                        "reason": "550 5.1.1 The email account does not exist",
                    },
                    "soft_bounce": {
                        "event": "bounce",
                        "type": "blocked",
                        "status": "4.2.2",
                        "reason": "452 4.2.2 Mailbox full",
                    },
                    "complaint": {"event": "spamreport"},
                    "unsubscribe": {"event": "group_unsubscribe", "asm_group_id": 1},
                    "delivered": {"event": "delivered", "response": "250 OK"},
                    "unknown": {"event": "open", "useragent": "Mozilla/5.0"},
                }[e.kind]
            )
            if e.status and e.kind in ("hard_bounce", "soft_bounce"):
                item["status"], item["reason"] = e.reply("")
            items.append({k: v for k, v in item.items() if v is not None})
        return json.dumps(items).encode()

    def sign(
        self, body: bytes, *, age: float = 0, signature: str = "good", stamp: str | None = None
    ) -> Signed:
        stamp = stamp if stamp is not None else str(int(time.time() - age))
        sig = base64.b64encode(
            self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        ).decode()
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        if signature == "wrong":
            other = ec.generate_private_key(ec.SECP256R1())
            sig = base64.b64encode(other.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256())))
            headers["X-Twilio-Email-Event-Webhook-Signature"] = sig.decode()
        elif signature == "good":
            headers["X-Twilio-Email-Event-Webhook-Signature"] = sig
        return Signed(headers, body)

    def requests(self, events: list[Event], **knobs: Any) -> list[Signed]:
        return [self.sign(self.payload(events), **knobs)]  # one batch


# =================================================================================== Mailgun


class MailgunSigner:
    name = "mailgun"

    def __init__(self) -> None:
        self.key = secrets.token_hex(16)
        self.environ = {"MAILGUN_WEBHOOK_SIGNING_KEY": self.key}

    def event_data(self, e: Event) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": e.id,
            "timestamp": time.time(),
            "recipient": e.email,
            "message": {"headers": {"message-id": e.message_id, "to": e.email}},
            "user-variables": {"newsletter_key": str(e.key)} if e.key is not None else {},
        }
        data.update(
            {
                "hard_bounce": {
                    "event": "failed",
                    "severity": "permanent",
                    "reason": "bounce",
                    "delivery-status": {
                        "code": 550,
                        "message": "5.1.1 No such user",
                        "description": "No such user",
                    },
                },
                "soft_bounce": {
                    "event": "failed",
                    "severity": "temporary",
                    "reason": "generic",
                    "delivery-status": {"code": 452, "message": "4.2.2 Mailbox full"},
                },
                "complaint": {"event": "complained"},
                "unsubscribe": {"event": "unsubscribed"},
                "delivered": {"event": "delivered", "delivery-status": {"code": 250}},
                "unknown": {"event": "opened"},
            }[e.kind]
        )
        if e.status and e.kind in ("hard_bounce", "soft_bounce"):
            status, reply = e.reply("")
            data["delivery-status"] = {
                "code": int(reply[:3]),
                "enhanced-code": status,
                "message": reply[4:],
                "description": reply[4:],
            }
        return data

    def sign_one(self, e: Event, *, stamp: str | None = None, **knobs: Any) -> Signed:
        return self.sign({"event-data": self.event_data(e)}, stamp=stamp, **knobs)

    def sign(
        self,
        body: dict[str, Any],
        *,
        age: float = 0,
        signature: str = "good",
        stamp: str | None = None,
    ) -> Signed:
        """`body` with the `signature` object Mailgun adds (a fresh token each time)."""
        stamp = stamp if stamp is not None else str(int(time.time() - age))
        token = secrets.token_hex(25)
        key = self.key if signature != "wrong" else secrets.token_hex(16)
        sig = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        if signature != "missing":
            body = {**body, "signature": {"timestamp": stamp, "token": token, "signature": sig}}
        return Signed({"Content-Type": "application/json"}, json.dumps(body).encode())

    def requests(self, events: list[Event], **knobs: Any) -> list[Signed]:
        return [self.sign_one(e, **knobs) for e in events]  # Mailgun posts one event each


# ================================================================================== Postmark


class PostmarkSigner:
    name = "postmark"

    def __init__(self) -> None:
        self.user, self.password = "postmark-hooks", secrets.token_urlsafe(16)
        self.environ = {
            "POSTMARK_WEBHOOK_USER": self.user,
            "POSTMARK_WEBHOOK_PASSWORD": self.password,
        }

    def record(self, e: Event) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).isoformat()
        metadata = {"newsletter_key": str(e.key)} if e.key is not None else {}
        bounce = {
            "ID": abs(hash(e.id)) % 10**10,
            "MessageID": str(uuid.uuid4()),
            "Email": e.email,
            "From": "news@example.org",
            "BouncedAt": now,
            "Metadata": metadata,
            "ServerID": 23,
            "MessageStream": "broadcast",
            "Inactive": True,
            "CanActivate": True,
            "Subject": "Issue",
        }
        return {
            "hard_bounce": {
                **bounce,
                "RecordType": "Bounce",
                "Type": "HardBounce",
                "TypeCode": 1,
                "Description": "The server was unable to deliver your message",
                "Details": "smtp;550 5.1.1 The email account does not exist",
            },
            "soft_bounce": {
                **bounce,
                "RecordType": "Bounce",
                "Type": "SoftBounce",
                "TypeCode": 4096,
                "Inactive": False,
                "Description": "Mailbox full",
                "Details": "smtp;452 4.2.2 full",
            },
            "complaint": {
                **bounce,
                "RecordType": "SpamComplaint",
                "Type": "SpamComplaint",
                "TypeCode": 100001,
                "Description": "The subscriber explicitly marked this message as spam.",
            },
            "unsubscribe": {
                "RecordType": "SubscriptionChange",
                "MessageID": str(uuid.uuid4()),
                "ServerID": 23,
                "MessageStream": "broadcast",
                "ChangedAt": now,
                "Recipient": e.email,
                "Origin": "Recipient",
                "SuppressSending": True,
                "SuppressionReason": "ManualSuppression",
                "Tag": "",
                "Metadata": metadata,
            },
            "delivered": {
                "RecordType": "Delivery",
                "ServerID": 23,
                "MessageStream": "broadcast",
                "MessageID": str(uuid.uuid4()),
                "Recipient": e.email,
                "DeliveredAt": now,
                "Details": "Test delivery webhook details",
                "Tag": "",
                "Metadata": metadata,
            },
            "unknown": {
                "RecordType": "Open",
                "MessageID": str(uuid.uuid4()),
                "Recipient": e.email,
                "Metadata": metadata,
            },
        }[e.kind]

    def sign_one(self, e: Event, *, age: float = 0, signature: str = "good") -> Signed:
        return self.sign(json.dumps(self.record(e)).encode(), signature=signature)

    def sign(self, body: bytes, *, signature: str = "good") -> Signed:
        password = self.password if signature != "wrong" else self.password + "x"
        headers = {"Content-Type": "application/json"}
        if signature != "missing":
            raw = base64.b64encode(f"{self.user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {raw}"
        return Signed(headers, body)

    def requests(self, events: list[Event], **knobs: Any) -> list[Signed]:
        return [self.sign_one(e, **knobs) for e in events]


# ==================================================================================== Resend


class ResendSigner:
    name = "resend"

    def __init__(self) -> None:
        self.key = secrets.token_bytes(24)
        self.environ = {"RESEND_WEBHOOK_SECRET": "whsec_" + base64.b64encode(self.key).decode()}

    def payload(self, e: Event) -> dict[str, Any]:
        created = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        data: dict[str, Any] = {
            "email_id": e.id,
            "created_at": created,
            "from": "Test Letter <news@example.org>",
            "to": [e.email],
            "subject": "Issue",
            "tags": {"newsletter_key": str(e.key)} if e.key is not None else {},
        }
        kind = {
            "hard_bounce": "email.bounced",
            "soft_bounce": "email.bounced",
            "complaint": "email.complained",
            "delivered": "email.delivered",
            "unknown": "email.opened",
        }[e.kind]
        if e.kind == "hard_bounce":
            data["bounce"] = {
                "type": "Permanent",
                "subType": "General",
                "message": "The recipient's email provider sent a hard bounce.",
            }
        if e.kind == "soft_bounce":
            data["bounce"] = {
                "type": "Transient",
                "subType": "MailboxFull",
                "message": "The recipient's mailbox is full.",
            }
        return {"type": kind, "created_at": created, "data": data}

    def sign_one(self, e: Event, **knobs: Any) -> Signed:
        return self.sign(json.dumps(self.payload(e)).encode(), **knobs)

    def sign(
        self, body: bytes, *, age: float = 0, signature: str = "good", stamp: str | None = None
    ) -> Signed:
        msg_id = f"msg_{uuid.uuid4().hex}"
        stamp = stamp if stamp is not None else str(int(time.time() - age))
        key = self.key if signature != "wrong" else secrets.token_bytes(24)
        mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        headers = {"Content-Type": "application/json", "svix-id": msg_id, "svix-timestamp": stamp}
        if signature != "missing":
            headers["svix-signature"] = "v1," + base64.b64encode(mac).decode()
        return Signed(headers, body)

    def requests(self, events: list[Event], **knobs: Any) -> list[Signed]:
        return [self.sign_one(e, **knobs) for e in events]


# ================================================================================ SES via SNS


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(
    subject: str,
    key: Any,
    issuer: str,
    issuer_key: Any,
    *,
    ca: bool = False,
    san: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


class SnsCertServer:
    """HTTPS on 127.0.0.1 with a CA of its own: serves the SNS signing certificate at
    /SimpleNotificationService-test.pem and answers (and records) any other GET with 200."""

    def __init__(self, folder: Path) -> None:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = _cert("Test SNS CA", ca_key, "Test SNS CA", ca_key, ca=True)
        tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls = _cert("127.0.0.1", tls_key, "Test SNS CA", ca_key, san="127.0.0.1")
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing = _cert("sns.amazonaws.com", self.signing_key, "Test SNS CA", ca_key)
        pem = serialization.Encoding.PEM
        self.cafile = folder / "sns-ca.pem"
        self.cafile.write_bytes(ca.public_bytes(pem))
        (folder / "sns-tls.pem").write_bytes(
            tls.public_bytes(pem)
            + tls_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.signing_pem = signing.public_bytes(pem)
        self.gets: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.gets.append(self.path)
                body = server.signing_pem if self.path.endswith(".pem") else b"<ok/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "sns-tls.pem")
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.cert_url = f"https://{self.host}/SimpleNotificationService-test.pem"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SnsCertServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def cert_gets(self) -> int:
        return sum(1 for p in self.gets if p.endswith(".pem"))


SNS_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SNS_SUBSCRIPTION = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def sns_sign(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> None:
    """Add SignatureVersion and Signature as SNS does (AWS's documented string to sign)."""
    names = SNS_NOTIFICATION if message["Type"] == "Notification" else SNS_SUBSCRIPTION
    text = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["SignatureVersion"] = version
    message["Signature"] = base64.b64encode(
        key.sign(text.encode(), padding.PKCS1v15(), digest)
    ).decode()


class SesSigner:
    name = "ses"

    def __init__(self, certs: SnsCertServer, version: str = "1") -> None:
        self.certs = certs
        self.version = version
        self.environ = {
            "SES_SNS_TOPIC_ARN": TOPIC,
            "NEWSLETTER_TEST_SNS_HOST": certs.host,
            "NEWSLETTER_TEST_SNS_CAFILE": str(certs.cafile),
        }

    def ses_event(self, e: Event) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        mail = {
            "timestamp": now,
            "source": "news@example.org",
            "messageId": f"0102018{uuid.uuid4().hex[:20]}-000000",
            "destination": [e.email],
            "headersTruncated": False,
            "headers": [{"name": "Message-ID", "value": f"<{e.message_id}>"}],
            "commonHeaders": {"messageId": f"<{e.message_id}>", "to": [e.email]},
            "tags": {"newsletter_key": [str(e.key)]} if e.key is not None else {},
        }
        if e.kind in ("hard_bounce", "soft_bounce"):
            hard = e.kind == "hard_bounce"
            return {
                "eventType": "Bounce",
                "mail": mail,
                "bounce": {
                    "bounceType": "Permanent" if hard else "Transient",
                    "bounceSubType": "General" if hard else "MailboxFull",
                    "bouncedRecipients": [
                        {
                            "emailAddress": e.email,
                            "action": "failed",
                            "status": e.status or ("5.1.1" if hard else "4.2.2"),
                            "diagnosticCode": f"smtp; {e.reply('')[1]}"
                            if e.status
                            else (
                                "smtp; 550 5.1.1 user unknown"
                                if hard
                                else "smtp; 452 4.2.2 mailbox full"
                            ),
                        }
                    ],
                    "timestamp": now,
                    "feedbackId": e.id,
                },
            }
        if e.kind == "complaint":
            return {
                "notificationType": "Complaint",
                "mail": mail,
                "complaint": {
                    "complainedRecipients": [{"emailAddress": e.email}],
                    "timestamp": now,
                    "feedbackId": e.id,
                    "complaintFeedbackType": "abuse",
                },
            }
        if e.kind == "delivered":
            return {
                "eventType": "Delivery",
                "mail": mail,
                "delivery": {
                    "timestamp": now,
                    "recipients": [e.email],
                    "smtpResponse": "250 2.6.0 ok",
                    "processingTimeMillis": 546,
                    "reportingMTA": "a8-70.smtp-out.amazonses.com",
                },
            }
        return {"eventType": "Open", "mail": mail, "open": {"timestamp": now}}

    def envelope(self, kind: str, *, age: float = 0, **fields: str) -> dict[str, Any]:
        stamp = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
        message = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "SigningCertURL": self.certs.cert_url,
            "UnsubscribeURL": f"https://{self.certs.host}/?Action=Unsubscribe",
            **fields,
        }
        return message

    def sign_one(self, e: Event, *, age: float = 0, signature: str = "good") -> Signed:
        message = self.envelope("Notification", age=age, Message=json.dumps(self.ses_event(e)))
        key = self.certs.signing_key
        if signature == "wrong":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if signature != "missing":
            sns_sign(message, key, self.version)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
        }
        return Signed(headers, json.dumps(message).encode())

    def requests(self, events: list[Event], **knobs: Any) -> list[Signed]:
        return [self.sign_one(e, **knobs) for e in events]


PROVIDERS = ["sendgrid", "mailgun", "postmark", "ses", "resend"]


def signer_for(provider: str, certs: SnsCertServer) -> Any:
    """A signer that signs as `provider` does (SES through SNS with the certificate `certs`
    serves)."""
    return {
        "sendgrid": SendGridSigner,
        "mailgun": MailgunSigner,
        "postmark": PostmarkSigner,
        "resend": ResendSigner,
        "ses": lambda: SesSigner(certs),
    }[provider]()
