"""Bounce mail as mail servers write it, for the bounce-reading tests and the benchmark.

Each builder returns RFC 5322 bytes in the shape a given server produces, from the RFCs (3464
DSNs, 5965 ARF, 3834 auto-replies) and the servers' public documentation and sample reports;
every address is invented. `original` is the quoted message we sent: our Message-ID and the VERP
envelope sender (`bounces+TOKEN@news.example.com`) as Return-Path.
"""

from __future__ import annotations

BOUNCE_BASE = "bounces@news.example.org"


def verp(token: str) -> str:
    return f"bounces+{token}@news.example.org"


def original(
    message_id: str, rcpt: str, token: str, *, headers_only: bool = False, jmrp: str | None = None
) -> str:
    head = (f"X-HmXmrOriginalRecipient: <{jmrp}>\r\n" if jmrp else "") + (
        f"Return-Path: <{verp(token)}>\r\n"
        f"From: Example Weekly <news@news.example.com>\r\n"
        f"To: {rcpt}\r\n"
        f"Subject: Example Weekly, issue 12\r\n"
        f"Message-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
    )
    return head if headers_only else head + "\r\nHello reader.\r\n"


def _report(
    *,
    top: str,
    report_type: str,
    human: str,
    status_part: str,
    status_type: str,
    quoted: str,
    quoted_type: str,
    boundary: str = "=_report_1",
) -> bytes:
    text = (
        f"{top}"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type};\r\n\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        f"\r\n--{boundary}\r\n{human}"
        f"\r\n--{boundary}\r\nContent-Type: {status_type}\r\n\r\n{status_part}"
        f"\r\n--{boundary}\r\nContent-Type: {quoted_type}\r\n\r\n{quoted}"
        f"\r\n--{boundary}--\r\n"
    )
    return text.encode()


def postfix_dsn(
    rcpt: str,
    token: str,
    message_id: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    quoted: bytes | None = None,
) -> bytes:
    """`quoted`: the message as the relay received it (default: a made-up original).

    Postfix's bounce(8) notice: `Undelivered Mail Returned to Sender` (or `Delayed Mail`),
    X-Postfix-Sender, the original as message/rfc822, delivered with Delivered-To/X-Original-To."""
    subject = (
        "Undelivered Mail Returned to Sender"
        if action == "failed"
        else ("Delayed Mail (still being retried)")
    )
    top = (
        f"Return-Path: <>\r\nDelivered-To: {verp(token)}\r\nX-Original-To: {verp(token)}\r\n"
        "Date: Mon, 30 Nov 2026 02:10:00 +0000 (UTC)\r\n"
        "From: MAILER-DAEMON@mx1.example.net (Mail Delivery System)\r\n"
        f"Subject: {subject}\r\nTo: {verp(token)}\r\nAuto-Submitted: auto-replied\r\n"
        f"Message-Id: <20261130021000.4A1B2C3D4E@mx1.example.net>\r\n"
    )
    human = (
        "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx1.example.net.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
    )
    status_part = (
        "Reporting-MTA: dns; mx1.example.net\r\nX-Postfix-Queue-ID: 4A1B2C3D4E\r\n"
        f"X-Postfix-Sender: rfc822; {verp(token)}\r\n"
        "Arrival-Date: Mon, 30 Nov 2026 01:58:00 +0000 (UTC)\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.example.org\r\n"
        f"Diagnostic-Code: {diagnostic.format(rcpt=rcpt)}\r\n"
    )
    return _report(
        top=top,
        report_type="delivery-status",
        human=human,
        status_part=status_part,
        status_type="message/delivery-status",
        quoted=quoted.decode() if quoted is not None else original(message_id, rcpt, token),
        quoted_type="message/rfc822",
    )


def exim_dsn(rcpt: str, token: str, message_id: str) -> bytes:
    """Exim 4's bounce with its DSN parts: X-Failed-Recipients, the original's headers as
    text/rfc822-headers, no Original-Recipient."""
    top = (
        f"Envelope-to: {verp(token)}\r\nDelivery-date: Mon, 30 Nov 2026 02:11:00 +0000\r\n"
        f"X-Failed-Recipients: {rcpt}\r\nAuto-Submitted: auto-replied\r\n"
        "From: Mail Delivery System <Mailer-Daemon@smtp.example.net>\r\n"
        f"To: {verp(token)}\r\nSubject: Mail delivery failed: returning message to sender\r\n"
        "Message-Id: <E1kXyZa-0001Ab-Cd@smtp.example.net>\r\n"
        "Date: Mon, 30 Nov 2026 02:11:00 +0000\r\n"
    )
    human = (
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        f"recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        f"  {rcpt}\r\n    host mx.example.org [192.0.2.25]\r\n"
        "    SMTP error from remote mail server after RCPT TO:<x>:\r\n    550 No such user\r\n"
    )
    status_part = (
        "Reporting-MTA: dns; smtp.example.net\r\n\r\n"
        f"Action: failed\r\nFinal-Recipient: rfc822;{rcpt}\r\nStatus: 5.0.0\r\n"
        "Remote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 550 No such user\r\n"
    )
    return _report(
        top=top,
        report_type="delivery-status",
        human=human,
        status_part=status_part,
        status_type="message/delivery-status",
        quoted=original(message_id, rcpt, token, headers_only=True),
        quoted_type="text/rfc822-headers",
    )


def exchange_dsn(rcpt: str, token: str, message_id: str, *, status: str = "5.1.10") -> bytes:
    """Exchange Online's NDR (`Undeliverable: ...`): an HTML+text first part, Status 5.1.10
    RESOLVER.ADR.RecipientNotFound, the original's headers as text/rfc822-headers."""
    top = (
        f"Delivered-To: {verp(token)}\r\n"
        "From: Microsoft Outlook <postmaster@contoso.example>\r\n"
        f"To: <{verp(token)}>\r\nDate: Mon, 30 Nov 2026 02:12:00 +0000\r\n"
        "Subject: Undeliverable: Example Weekly, issue 12\r\n"
        "Message-ID: <4f2c1a0e-6c3b-4a6e@BN8PR04MB6210.namprd04.prod.outlook.com>\r\n"
        ""
        "Auto-Submitted: auto-replied\r\nX-MS-Exchange-Message-Is-Ndr:\r\n"
        "Content-Language: en-US\r\n"
    )
    alt = "=_alt_2"
    human = (
        f'Content-Type: multipart/alternative; boundary="{alt}"\r\n\r\n'
        f"--{alt}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Your message to {rcpt} couldn't be delivered.\r\n"
        f"--{alt}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
        "<html><body><p>Your message couldn't be delivered.</p></body></html>\r\n"
        f"--{alt}--\r\n"
    ).replace("{rcpt}", rcpt)
    status_part = (
        "Reporting-MTA: dns;BN8PR04MB6210.namprd04.prod.outlook.com\r\n"
        "Received-From-MTA: dns;mail.news.example.com\r\n"
        "Arrival-Date: Mon, 30 Nov 2026 02:11:58 +0000\r\n\r\n"
        f"Final-Recipient: rfc822;{rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp;550 {status} RESOLVER.ADR.RecipientNotFound; Recipient not "
        "found by SMTP address lookup\r\n"
    )
    return _report(
        top=top,
        report_type="delivery-status",
        human=human,
        status_part=status_part,
        status_type="message/delivery-status",
        quoted=original(message_id, rcpt, token, headers_only=True),
        quoted_type="text/rfc822-headers",
    )


def gmail_dsn(
    rcpt: str,
    token: str,
    message_id: str,
    *,
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
) -> bytes:
    """Gmail's `Delivery Status Notification (Failure)` from mailer-daemon@googlemail.com: the
    DSN with the original as message/rfc822 (Gmail writes 4.2.2/5.2.2 for a full mailbox)."""
    top = (
        f"Delivered-To: {verp(token)}\r\nReturn-Path: <>\r\n"
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        f"To: {verp(token)}\r\nAuto-Submitted: auto-replied\r\n"
        "Subject: Delivery Status Notification (Failure)\r\n"
        "Message-ID: <5f8a.170a0220.2b3c4d.7e6f@mx.google.com>\r\n"
        "Date: Sun, 29 Nov 2026 18:12:00 -0800 (PST)\r\n"
    )
    human = (
        "Content-Type: text/plain; charset=UTF-8\r\n\r\n"
        "** Address not found **\r\n\r\nYour message wasn't delivered to "
        f"{rcpt} because the address couldn't be found.\r\n"
    )
    status_part = (
        "Reporting-MTA: dns; googlemail.com\r\n"
        "Arrival-Date: Sun, 29 Nov 2026 18:11:58 -0800 (PST)\r\n"
        "X-Original-Message-ID: <" + message_id + ">\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Remote-MTA: dns; gmail-smtp-in.l.google.com. (142.250.0.26, the server for the "
        "domain.)\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        "Last-Attempt-Date: Sun, 29 Nov 2026 18:12:00 -0800 (PST)\r\n"
    )
    return _report(
        top=top,
        report_type="delivery-status",
        human=human,
        status_part=status_part,
        status_type="message/delivery-status",
        quoted=original(message_id, rcpt, token),
        quoted_type="message/rfc822",
    )


def arf_report(
    rcpt: str | None,
    token: str,
    message_id: str,
    *,
    shape: str = "yahoo",
    feedback_type: str = "abuse",
) -> bytes:
    """An RFC 5965 feedback report: Yahoo's complaint feedback loop (recipient redacted in the
    original), Microsoft JMRP (Original-Rcpt-To absent, the original with the address
    redacted), or a generic one (AOL/Comcast style, with Original-Rcpt-To)."""
    sender = {
        "yahoo": "Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>",
        "microsoft": "staff@hotmail.com",
        "generic": "Feedback Loop <fbl@fbl.example.net>",
    }[shape]
    agent = {
        "yahoo": "Yahoo!-Mail-Feedback/2.0",
        "microsoft": "Microsoft JMRP/1.0",
        "generic": "ExampleFBL/1.0",
    }[shape]
    top = (
        f"Delivered-To: fbl@news.example.com\r\nFrom: {sender}\r\n"
        "To: fbl@news.example.com\r\nSubject: FW: Example Weekly, issue 12\r\n"
        f"Message-ID: <arf-{shape}-{message_id}>\r\nDate: Mon, 30 Nov 2026 03:00:00 +0000\r\n"
    )
    human = (
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is an email abuse report for an email message received from IP 192.0.2.10.\r\n"
    )
    fields = (
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: {agent}\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{verp(token)}>\r\n"
        "Arrival-Date: Mon, 30 Nov 2026 02:00:00 +0000\r\nSource-IP: 192.0.2.10\r\n"
        "Reported-Domain: news.example.com\r\n"
    )
    if rcpt and shape == "generic":
        fields += f"Original-Rcpt-To: <{rcpt}>\r\n"
    quoted_rcpt = rcpt if (rcpt and shape == "generic") else "redacted@redacted.invalid"
    if shape == "yahoo":
        quoted_rcpt = "redacted"
    return _report(
        top=top,
        report_type="feedback-report",
        human=human,
        status_part=fields,
        status_type="message/feedback-report",
        quoted=original(
            message_id, quoted_rcpt, token, jmrp=rcpt if shape == "microsoft" else None
        ),
        quoted_type="message/rfc822",
    )


def qmail_bounce(rcpt: str, token: str) -> bytes:
    """qmail's QSBMF bounce (plain text, no DSN)."""
    return (
        f"Delivered-To: {verp(token)}\r\nFrom: MAILER-DAEMON@qmail.example.net\r\n"
        f"To: {verp(token)}\r\nSubject: failure notice\r\n"
        "Date: 30 Nov 2026 02:13:00 -0000\r\n"
        "Message-ID: <20261130021300.1234.qmail@qmail.example.net>\r\n\r\n"
        "Hi. This is the qmail-send program at qmail.example.net.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        f"<{rcpt}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\nReturn-Path: <x>\r\n"
    ).encode()


def exim_plain_bounce(rcpt: str, token: str) -> bytes:
    """An older Exim bounce without DSN parts: only X-Failed-Recipients says who."""
    return (
        f"Envelope-to: {verp(token)}\r\nX-Failed-Recipients: {rcpt}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "From: Mail Delivery System <Mailer-Daemon@old.example.net>\r\n"
        f"To: {verp(token)}\r\nSubject: Mail delivery failed: returning message to sender\r\n"
        "Message-Id: <E1old-0002-Xy@old.example.net>\r\n"
        "Date: Mon, 30 Nov 2026 02:14:00 +0000\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        f"A message that you sent could not be delivered.\r\n"
        f"\r\n  {rcpt}\r\n    Unrouteable address\r\n"
    ).encode()


def yahoo_plain_bounce(rcpt: str, token: str) -> bytes:
    """Yahoo's own plain-text bounce (`Sorry, we were unable to deliver your message`)."""
    return (
        f"Delivered-To: {verp(token)}\r\nFrom: MAILER-DAEMON@yahoo.com\r\n"
        f"To: {verp(token)}\r\nSubject: Failure Notice\r\n"
        "Date: Mon, 30 Nov 2026 02:15:00 +0000\r\nMessage-ID: <yahoo-bounce-1@yahoo.com>\r\n\r\n"
        "Sorry, we were unable to deliver your message to the following address.\r\n\r\n"
        f"<{rcpt}>:\r\n"
        f"Remote host said: 554 delivery error: dd This user doesn't have an account\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n"
    ).encode()


AUTO_REPLY_HEADERS = {
    "rfc3834": "Auto-Submitted: auto-replied\r\n",
    "exchange-oof": "X-Auto-Response-Suppress: All\r\nThread-Topic: Example Weekly\r\n",
    "x-autoreply": "X-Autoreply: yes\r\n",
    "x-autorespond": "X-Autorespond: Vacation\r\n",
    "precedence": "Precedence: auto_reply\r\n",
}


def auto_reply(shape: str, sender: str = "carol@example.org") -> bytes:
    """An out-of-office reply to an issue, marked the way `shape` marks it."""
    return (
        f"From: Carol <{sender}>\r\nTo: news@news.example.com\r\n"
        f"Subject: Automatic reply: Example Weekly, issue 12\r\n"
        f"Message-ID: <oof-{shape}@example.org>\r\nDate: Mon, 30 Nov 2026 02:20:00 +0000\r\n"
        f"{AUTO_REPLY_HEADERS[shape]}\r\n"
        "I am out of the office until December 7 with limited access to email.\r\n"
    ).encode()


def unsubscribe_mail(to: str, subject: str, sender: str = "dave@example.org") -> bytes:
    """What a mail client sends for a List-Unsubscribe mailto: link."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <unsub-{abs(hash(subject))}@example.org>\r\n"
        "Date: Mon, 30 Nov 2026 02:30:00 +0000\r\n\r\n"
        "This message was automatically generated by Gmail.\r\n"
    ).encode()
