"""Auto-replies and out-of-office messages: recognised by their headers, then ignored.

RFC 3834 `Auto-Submitted` (any value but `no`), and the headers vacation responders write where
they do not follow it: `X-Autoreply`, `X-Autorespond` (also `X-Autoresponder`), `Precedence` /
`X-Precedence: auto_reply`, and Microsoft Exchange/Outlook's `X-Auto-Response-Suppress` (set on
its Out of Office replies so that they draw none themselves). Subjects are not read: a subject
in the reader's language ("Abwesenheitsnotiz", "Réponse automatique") is no proof.
"""

from __future__ import annotations

from email.message import Message

_PRESENCE = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-response-suppress")


def autoreply_reason(msg: Message) -> str | None:
    """The header that shows `msg` is an automatic reply (`Auto-Submitted: auto-replied`), or
    None when none does."""
    submitted = msg.get("auto-submitted")
    if submitted is not None and str(submitted).strip().lower().split(";")[0] not in ("", "no"):
        return f"Auto-Submitted: {str(submitted).strip()}"
    for name in ("precedence", "x-precedence"):
        value = msg.get(name)
        if value is not None and str(value).strip().lower() == "auto_reply":
            return f"{name.title()}: auto_reply"
    for name in _PRESENCE:
        value = msg.get(name)
        if value is not None and str(value).strip().lower() not in ("no", "false"):
            return f"{name.title()}: {str(value).strip()}"
    return None
