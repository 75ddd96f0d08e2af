"""Whose fault a refusal is, from its RFC 3463 enhanced status code: the one rule every source
uses (DSNs, non-standard bounces that carry a code, SMTP replies while sending, provider
webhooks that pass the receiving server's status on).

An enhanced status code is `class.subject.detail`: class 2 success, 4 persistent transient
failure, 5 permanent failure; the subject says what failed. Only the subjects about the
recipient's address or mailbox are the reader's:

    4.x.x                     soft_bounce  (transient, whatever the subject)
    5.1.x  address            hard_bounce  (bad mailbox, bad domain, moved...), except
    5.1.7, 5.1.8              blocked      (the SENDER's address or domain is bad)
    5.2.0, 5.2.1  mailbox     hard_bounce  (mailbox disabled, not accepting messages)
    5.2.2  mailbox full       soft_bounce  (RFC 3463: may be transient; cleared by its owner)
    5.2.3, 5.2.4 ...          blocked      (message too long for the mailbox, list expansion)
    5.0.x  other/undefined    hard_bounce  (a permanent failure that says no more: RFC 3464
                                            `Action: failed` is permanent by definition)
    5.3.x  mail system, 5.4.x network and routing, 5.5.x protocol, 5.6.x content,
    5.7.x  security or policy (Microsoft's 5.7.515 "sender not authenticated", 5.7.1 spam or
           policy blocks, 5.7.26 DMARC)  ->  blocked: about the sender, the message or a
           system, not the reader; the subscriber is NOT marked bounced

`blocked` is recorded in the subscriber's history and counted by the campaign's reputation
guard (many blocks mean the sender is in trouble), but never changes the subscriber's status.
"""

from __future__ import annotations

import re
from typing import Literal

Refusal = Literal["hard_bounce", "soft_bounce", "blocked"]

# class.subject.detail; RFC 3463 allows 1-3 digits for subject and detail.
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")

# An SMTP reply's text starts with the code when it has one (RFC 2034): `5.1.1 User unknown`.
_REPLY_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\b")

_SENDER_ADDRESS = frozenset({"7", "8"})  # X.1.7 sender's mailbox syntax, X.1.8 sender's system
_RECIPIENT_MAILBOX = frozenset({"0", "1"})  # X.2.0 other mailbox status, X.2.1 disabled
_MAILBOX_FULL = "2"  # X.2.2


def find_status(text: str) -> str | None:
    """The first enhanced status code in `text` (`"550 5.7.1 Spam"` -> `"5.7.1"`), or None."""
    match = ENHANCED_STATUS.search(text)
    return match.group(0) if match else None


def reply_status(text: str) -> str | None:
    """The enhanced status code an SMTP reply's text starts with (`"5.7.1 Spam"` -> `"5.7.1"`),
    or None (RFC 2034 puts it first; a code further on is not the reply's)."""
    match = _REPLY_STATUS.match(text)
    return match.group(0) if match else None


def classify_status(status: str) -> Refusal | None:
    """The kind of a refusal whose text holds enhanced status `status` (see the module
    docstring); None when it holds no code or a success (2.x.x): the caller's own fallback
    then applies (a bare reply code, a provider's permanent/transient flag)."""
    code = find_status(status)
    if code is None:
        return None
    klass, subject, detail = code.split(".")
    if klass == "2":
        return None
    if klass == "4":
        return "soft_bounce"
    if subject == "0":
        return "hard_bounce"
    if subject == "1":
        return "blocked" if detail in _SENDER_ADDRESS else "hard_bounce"
    if subject == "2":
        if detail == _MAILBOX_FULL:
            return "soft_bounce"
        return "hard_bounce" if detail in _RECIPIENT_MAILBOX else "blocked"
    return "blocked"
