"""Sign-ups from the public form (double opt-in), kept apart from the records they ask to change.

Rules (a stranger may type anyone's address into the form):
- A new address becomes a `pending` subscriber of no list and without a name: the lists and
  name asked for wait in a `subscriber_signups` row, for a new address as for a known one, and
  only that row's own confirmation link applies them. So a stranger cannot rename a reader or
  add lists to their record, and a pending record receives nothing.
- Confirming a link makes active exactly what that link names. A subscriber who is not active
  (pending, or unsubscribed: an unsubscribe is from the whole newsletter) ends up on exactly the
  link's lists; an active one gains them.
- Unsubscribed, bounced and complained readers may sign up again: the confirmation goes to the
  address, and only the person's own click on it brings them back (a complaint or unsubscribe
  is the person's choice, a fresh confirmed opt-in is too; a still-dead address never receives
  the link). Their status stays as it is until then. An active reader already on every
  requested list gets no mail. At most one confirmation per address per
  `CONFIRM_RESEND_SECONDS`: counted from the sign-up row written in the same transaction that
  decides to send, not from the mail's later `confirmation_sent` event, so one form posted
  twice at once (a double click, or to two `serve` instances behind a load balancer) sends one
  confirmation; a confirmation that could not be sent is withdrawn (`withdraw_signup`) so that
  trying again soon works.
The caller answers the same in every case, so the form never tells whether an address is known.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.errors import SubscriberError
from newsletter.subscribers.address import email_key, key_crc, normalize_email
from newsletter.subscribers.model import (
    ACTIVE,
    PENDING,
    STOPPED,
    Subscriber,
    check_list_name,
    clean_name,
    format_timestamp,
    now,
)

if TYPE_CHECKING:
    from newsletter.subscribers.store import SubscriberStore

CONFIRM_RESEND_SECONDS = 600


@dataclass(frozen=True)
class SignupRequest:
    """One sign-up waiting for its confirmation link: `id` is what the link's token names."""

    id: int
    subscriber: Subscriber
    name: str | None
    lists: tuple[str, ...]


def request_subscription(
    store: SubscriberStore, email: str, *, name: str | None, lists: Sequence[str], detail: str
) -> SignupRequest | None:
    """Record a sign-up; the request to send a confirmation for, or None (no email at all).

    Raises SubscriberError for an invalid address, name or list name (the form shows it)."""
    normalized = normalize_email(email)
    key = email_key(normalized)
    clean = clean_name(name)
    names = tuple(sorted({check_list_name(n) for n in lists}))
    if not names:
        raise SubscriberError("a sign-up needs at least one list")
    with store.transaction() as conn:
        stamp = now()
        row = conn.execute(
            "SELECT id, status FROM subscribers WHERE key_crc = ? AND email_key = ?",
            (key_crc(key), key),
        ).fetchone()
        if row is None:
            subscriber_id = store.insert_subscriber(
                conn, normalized, key, None, PENDING, {}, stamp, ("subscribed", detail)
            )
        else:
            subscriber_id, status = int(row[0]), str(row[1])
            if _recently_sent(conn, subscriber_id):
                return None
            if status == ACTIVE and set(names) <= set(store.by_id(subscriber_id).lists):
                return None
        made = conn.execute(
            "INSERT INTO subscriber_signups (subscriber_id, name, lists, detail, created_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (subscriber_id, clean, json.dumps(names), detail, stamp),
        ).fetchone()
        return SignupRequest(int(made[0]), store.by_id(subscriber_id), clean, names)


def confirm_signup(
    store: SubscriberStore, signup_id: int, *, issued_at: str | None, detail: str
) -> Subscriber:
    """Apply a confirmed sign-up: activate, take its name, and join its lists: only those
    lists if the subscriber was not active (pending or unsubscribed), in addition to their
    lists if active. Idempotent.

    A link issued before the subscriber's last unsubscribe, bounce or complaint is refused
    (SubscriberError), and so is a link used already by someone stopped since: an old link
    must not undo a later opt-out. So is a link whose sign-up or
    subscriber no longer exists (erased)."""
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT g.subscriber_id, g.name, g.lists, g.confirmed_at, s.status, s.email_key"
            " FROM subscriber_signups g JOIN subscribers s ON s.id = g.subscriber_id"
            " WHERE g.id = ?",
            (signup_id,),
        ).fetchone()
        if row is None:
            raise SubscriberError("this subscription no longer exists")
        subscriber_id, name, lists, confirmed_at, status, key = row
        if confirmed_at is not None:
            if status in STOPPED:  # used once already; the opt-out since then stands
                raise SubscriberError(
                    "this confirmation link was used already, and you unsubscribed after that"
                )
            return store.by_id(subscriber_id)
        if status in STOPPED and issued_at is not None:
            stopped = conn.execute(
                "SELECT MAX(at) FROM subscriber_events WHERE subscriber_id = ?"
                " AND kind IN ('unsubscribed', 'bounced', 'complained')",
                (subscriber_id,),
            ).fetchone()[0]
            if stopped is not None and stopped > issued_at:
                raise SubscriberError("this confirmation link is older than your unsubscribe")
        stamp = now()
        names = tuple(json.loads(lists))
        conn.execute(
            "UPDATE subscribers SET status = ?, name = COALESCE(?, name), updated_at = ?"
            " WHERE id = ?",
            (ACTIVE, name, stamp, subscriber_id),
        )
        if status != ACTIVE:
            # Lists joined before an unsubscribe, or by a sign-up never confirmed, stay left.
            conn.execute(
                "DELETE FROM subscriber_memberships WHERE subscriber_id = ?", (subscriber_id,)
            )
        store.join_lists(subscriber_id, names)
        conn.execute(
            "DELETE FROM subscriber_tombstones WHERE email_hash = ?", (store.email_hash(key),)
        )
        conn.execute(
            "UPDATE subscriber_signups SET confirmed_at = ? WHERE id = ?", (stamp, signup_id)
        )
        store.write_event(
            subscriber_id, "confirmed", f"{detail} (lists: {', '.join(names)})", stamp
        )
        return store.by_id(subscriber_id)


def describe_signup(conn: object, signup_id: int) -> tuple[str | None, tuple[str, ...]] | None:
    """(name, lists) that confirming the sign-up `signup_id` applies, or None if it is gone
    (read-only: the confirmation page shows it, so the owner sees what they confirm)."""
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT name, lists FROM subscriber_signups WHERE id = ?", (signup_id,)
    ).fetchone()
    return None if row is None else (row[0], tuple(json.loads(row[1])))


def withdraw_signup(store: SubscriberStore, signup_id: int) -> None:
    """Forget a sign-up whose confirmation could not be sent (its link never went out), so the
    resend cooldown does not count it. A confirmed one is kept."""
    with store.transaction() as conn:
        conn.execute(
            "DELETE FROM subscriber_signups WHERE id = ? AND confirmed_at IS NULL", (signup_id,)
        )


def _recently_sent(conn: object, subscriber_id: int) -> bool:
    """Whether a confirmation went out, or is being sent, within the cooldown."""
    since = format_timestamp(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=CONFIRM_RESEND_SECONDS))
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT 1 FROM subscriber_events WHERE subscriber_id = ?1"
        " AND kind = 'confirmation_sent' AND at > ?2"
        " UNION ALL SELECT 1 FROM subscriber_signups WHERE subscriber_id = ?1"
        " AND created_at > ?2 LIMIT 1",
        (subscriber_id, since),
    ).fetchone()
    return row is not None


__all__ = [
    "CONFIRM_RESEND_SECONDS",
    "SignupRequest",
    "confirm_signup",
    "describe_signup",
    "request_subscription",
    "withdraw_signup",
]
