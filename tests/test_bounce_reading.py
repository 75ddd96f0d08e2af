"""Reading one bounce-mailbox message: DSNs, ARF reports, non-standard bounces, auto-replies and
unsubscribe mail, in the shapes real servers write (tests/support/bounce_mail.py)."""

from __future__ import annotations

from email.header import Header

import pytest

from newsletter import tokens
from newsletter.bounces.reading import read_message
from newsletter.bounces.report import MailboxAddresses
from tests.support import bounce_mail as mail

ADDRESSES = MailboxAddresses(bounce_address=mail.BOUNCE_BASE)
T1 = tokens.verp_token(b"v" * 32, 1)
T5 = tokens.verp_token(b"v" * 32, 5)
T9 = tokens.verp_token(b"v" * 32, 9)
MID = "20261130.12.abc@news.example.com"

# (shape, message, kind, recipient, status)
BOUNCES = [
    (
        "postfix 5.1.1",
        mail.postfix_dsn("bob@example.org", T1, MID),
        "hard_bounce",
        "bob@example.org",
        "5.1.1",
    ),
    (
        "postfix delayed",
        mail.postfix_dsn(
            "bob@example.org",
            T1,
            MID,
            action="delayed",
            status="4.4.1",
            diagnostic="smtp; 421 4.4.1 connection timed out",
        ),
        "soft_bounce",
        "bob@example.org",
        "4.4.1",
    ),
    (
        "postfix mailbox full 5.2.2",
        mail.postfix_dsn(
            "bob@example.org", T1, MID, status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full"
        ),
        "soft_bounce",
        "bob@example.org",
        "5.2.2",
    ),
    (
        "postfix failed 4.x",
        mail.postfix_dsn(
            "bob@example.org", T1, MID, status="4.7.1", diagnostic="smtp; 450 4.7.1 try later"
        ),
        "soft_bounce",
        "bob@example.org",
        "4.7.1",
    ),
    (
        "exim",
        mail.exim_dsn("ann@example.net", T1, MID),
        "hard_bounce",
        "ann@example.net",
        "5.0.0",
    ),
    (
        "exchange online",
        mail.exchange_dsn("Bob@Contoso.Example", T1, MID),
        "hard_bounce",
        "Bob@contoso.example",
        "5.1.10",
    ),
    (
        "exchange 5.7.515",
        mail.exchange_dsn("bob@outlook.example", T1, MID, status="5.7.515"),
        "blocked",  # "sender not authenticated": the sender's fault, not the reader's
        "bob@outlook.example",
        "5.7.515",
    ),
    (
        "gmail 5.1.1",
        mail.gmail_dsn("joe@gmail.example", T1, MID),
        "hard_bounce",
        "joe@gmail.example",
        "5.1.1",
    ),
    (
        "gmail over quota 4.2.2",
        mail.gmail_dsn(
            "joe@gmail.example",
            T1,
            MID,
            status="4.2.2",
            diagnostic="smtp; 452-4.2.2 The recipient's inbox is out of storage space.",
        ),
        "soft_bounce",
        "joe@gmail.example",
        "4.2.2",
    ),
    (
        "qmail (non-standard)",
        mail.qmail_bounce("q@example.org", T1),
        "hard_bounce",
        "q@example.org",
        "5.1.1",  # qmail's "(#5.1.1)": the code in the bounce's text is its status
    ),
    (
        "exim without DSN (non-standard)",
        mail.exim_plain_bounce("e@example.org", T1),
        "hard_bounce",
        "e@example.org",
        "permanent",
    ),
    (
        "yahoo plain (non-standard)",
        mail.yahoo_plain_bounce("y@yahoo.example", T1),
        "hard_bounce",
        "y@yahoo.example",
        "permanent",
    ),
]


@pytest.mark.parametrize(
    ("raw", "kind", "recipient", "status"),
    [pytest.param(*row[1:], id=row[0]) for row in BOUNCES],
)
def test_a_bounce_maps_to_its_recipient_by_verp(raw, kind, recipient, status):
    reading = read_message(raw, ADDRESSES)
    assert reading.ignored == "" and len(reading.events) == 1
    (event,) = reading.events
    assert (event.kind, event.source, event.recipient, event.status) == (
        kind,
        "dsn",
        recipient,
        status,
    )
    assert event.verp_token == T1
    assert event.reason and event.occurred_at is not None


@pytest.mark.parametrize(
    "raw",
    [row[1] for row in BOUNCES if "non-standard" not in row[0]],
    ids=[row[0] for row in BOUNCES if "non-standard" not in row[0]],
)
def test_a_dsn_carries_the_original_message_id(raw):
    (event,) = read_message(raw, ADDRESSES).events
    assert event.message_id == MID


def test_without_a_delivered_to_the_original_return_path_gives_the_verp_token():
    raw = mail.postfix_dsn("bob@example.org", T9, MID)
    stripped = b"\r\n".join(
        line
        for line in raw.split(b"\r\n")
        if not line.startswith((b"Delivered-To:", b"X-Original-To:", b"To:"))
    )
    (event,) = read_message(stripped, ADDRESSES).events
    assert event.verp_token == T9


def test_verp_needs_our_bounce_address():
    raw = mail.postfix_dsn("bob@example.org", T1, MID)
    other = MailboxAddresses(bounce_address="returns@elsewhere.example")
    (event,) = read_message(raw, other).events
    assert event.verp_token is None and event.message_id == MID  # still mapped by Message-ID


def test_a_dsn_with_two_recipients_gives_two_events():
    raw = mail.postfix_dsn("bob@example.org", T1, MID).replace(
        b"Diagnostic-Code:",
        b"Diagnostic-Code: smtp; 550 5.1.1 gone\r\n\r\nFinal-Recipient: rfc822; amy@example.org"
        b"\r\nAction: delayed\r\nStatus: 4.4.7\r\nX-Old-Diagnostic:",
        1,
    )
    events = read_message(raw, ADDRESSES).events
    assert [(e.recipient, e.kind) for e in events] == [
        ("bob@example.org", "hard_bounce"),
        ("amy@example.org", "soft_bounce"),
    ]
    assert len({e.event_id for e in events}) == 2


def test_a_delivery_notice_is_a_delivery_and_relayed_says_nothing():
    delivered = mail.postfix_dsn("bob@example.org", T1, MID, action="delivered", status="2.0.0")
    assert [e.kind for e in read_message(delivered, ADDRESSES).events] == ["delivered"]
    relayed = mail.postfix_dsn("bob@example.org", T1, MID, action="relayed", status="2.0.0")
    reading = read_message(relayed, ADDRESSES)
    assert reading.events == [] and "Action: relayed" in reading.ignored


@pytest.mark.parametrize(
    ("shape", "recipient"),
    [("yahoo", None), ("microsoft", "eve@hotmail.example"), ("generic", "eve@aol.example")],
)
def test_an_arf_abuse_report_is_a_complaint(shape, recipient):
    raw = mail.arf_report(
        "eve@" + {"yahoo": "yahoo", "microsoft": "hotmail", "generic": "aol"}[shape] + ".example",
        T5,
        MID,
        shape=shape,
    )
    (event,) = read_message(raw, ADDRESSES).events
    assert (event.kind, event.source, event.verp_token, event.message_id) == (
        "complaint",
        "arf",
        T5,
        MID,
    )
    assert event.recipient == recipient  # a redacted To is never taken for an address
    assert event.status == "abuse" and event.occurred_at is not None


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure", "virus"])
def test_arf_reports_that_are_not_complaints_are_ignored(feedback_type):
    raw = mail.arf_report("eve@aol.example", T5, MID, shape="generic", feedback_type=feedback_type)
    reading = read_message(raw, ADDRESSES)
    assert reading.events == [] and feedback_type in reading.ignored


@pytest.mark.parametrize("shape", sorted(mail.AUTO_REPLY_HEADERS))
def test_auto_replies_are_ignored_and_counted(shape):
    reading = read_message(mail.auto_reply(shape), ADDRESSES)
    assert reading.events == [] and reading.auto_reply
    assert reading.ignored.startswith("auto-reply (")


def test_ordinary_mail_is_ignored_with_the_reason():
    raw = b"From: a@example.org\r\nTo: news@news.example.com\r\nSubject: Thanks!\r\n\r\nGreat!\r\n"
    reading = read_message(raw, ADDRESSES)
    assert reading.events == [] and not reading.auto_reply
    assert "not a bounce" in reading.ignored and "Thanks!" in reading.ignored


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff garbage",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nx",
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n--b--\r\n",
    ],
    ids=["empty", "binary", "report without parts", "arf without parts"],
)
def test_broken_mail_is_ignored_never_raises(raw):
    reading = read_message(raw, ADDRESSES)
    assert reading.events == [] and reading.ignored


def test_the_same_bytes_give_the_same_event_ids_even_without_a_message_id():
    raw = mail.qmail_bounce("q@example.org", T1).replace(b"Message-ID:", b"X-No-Id:")
    first, second = read_message(raw, ADDRESSES), read_message(raw, ADDRESSES)
    assert first.events[0].event_id == second.events[0].event_id
    assert first.events[0].event_id.startswith("sha256:")


SECRET = b"s" * 32
UNSUB = MailboxAddresses(mail.BOUNCE_BASE, "unsubscribe@news.example.com", SECRET)


@pytest.mark.parametrize(
    "subject",
    [
        "unsubscribe {token}",
        "Unsubscribe {token}",
        "encoded",
        "Re: unsubscribe {token}",
        # clients that leave the mailto's subject= percent-encoded
        "unsubscribe%20{token}",
        "Re: Unsubscribe%20{token}",
    ],
)
def test_an_unsubscribe_mail_with_a_valid_token_names_the_subscriber(subject):
    token = tokens.make_token(SECRET, tokens.UNSUBSCRIBE, 42)
    if subject == "encoded":  # RFC 2047, as clients write a subject with non-ASCII text
        subject = Header(f"unsubscribe {token} – merci", "utf-8").encode()
    raw = mail.unsubscribe_mail("unsubscribe@news.example.com", subject.format(token=token))
    (event,) = read_message(raw, UNSUB).events
    assert (event.kind, event.source, event.subscriber_id) == ("unsubscribe", "mailto", 42)
    assert event.recipient == "dave@example.org"


@pytest.mark.parametrize(
    ("subject", "why"),
    [
        ("unsubscribe {forged}", "invalid token"),
        ("unsubscribe {confirm}", "invalid token"),
        ("unsubscribe", "without a token"),
        ("please remove me", "without a token"),
    ],
)
def test_an_unsubscribe_mail_without_a_valid_token_unsubscribes_nobody(subject, why):
    good = tokens.make_token(SECRET, tokens.UNSUBSCRIBE, 42)
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    confirm = tokens.make_token(SECRET, tokens.CONFIRM, 42, issued_at=1)
    raw = mail.unsubscribe_mail(
        "unsubscribe@news.example.com", subject.format(forged=forged, confirm=confirm)
    )
    reading = read_message(raw, UNSUB)
    assert reading.events == [] and why in reading.ignored


def test_an_unsubscribe_subject_to_another_address_is_not_an_unsubscribe():
    token = tokens.make_token(SECRET, tokens.UNSUBSCRIBE, 42)
    raw = mail.unsubscribe_mail("news@news.example.com", f"unsubscribe {token}")
    assert read_message(raw, UNSUB).events == []
