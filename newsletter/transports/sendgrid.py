"""SendGrid v3 Mail Send: `POST /v3/mail/send`, up to 1,000 personalizations per request.

The content goes once per request; what differs per recipient travels in its personalization:
`to` (address and name), `subject`, `headers` (Message-ID, List-Unsubscribe and any other header
whose value differs), `substitutions` (the per-recipient pieces of the text and HTML bodies, as
found by `_merge`) and `custom_args` (our ledger key and Message-ID, echoed back in SendGrid's
event webhooks). A recipient whose body does not fit the shared template, or whose substitutions
would pass SendGrid's 10,000-byte limit, gets a request of its own with its full content.

SendGrid answers 202 with an `X-Message-Id` for the whole request; it is stored as each
recipient's provider id (SendGrid's per-recipient ids extend it with a suffix).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.errors import TransportAuthError, TransportConfigError
from newsletter.transports._http import (
    DEFAULT_TIMEOUT,
    ApiReply,
    ApiRequest,
    HttpApiTransport,
    custom_headers,
    no_target,
    parse_url,
    reply_to_of,
    require_secret,
    results_for,
    split_address,
)
from newsletter.transports.base import DeliveryResult, OutgoingMessage

if TYPE_CHECKING:
    from newsletter.config import Config

API = "https://api.sendgrid.com"
REGIONS = {"global": API, "eu": "https://api.eu.sendgrid.com"}  # EU regional subusers
PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, keys and values together
_PERSONALIZATION_FIELD = re.compile(r"personalizations\.\d+")


@dataclass
class _Entry:
    index: int  # position in the batch
    message: OutgoingMessage
    substitutions: dict[str, str]


class SendGridTransport(HttpApiTransport):
    name = "sendgrid"
    provider = "SendGrid"
    secret_variable = "SENDGRID_API_KEY"
    max_batch = MAX_PERSONALIZATIONS
    path = PATH

    def __init__(self, api_key: str, *, endpoint: str = API, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(endpoint, {"Authorization": f"Bearer {api_key}"}, api_key, timeout=timeout)

    @classmethod
    def from_url(
        cls, url: str, config: Config | None, environ: Mapping[str, str]
    ) -> SendGridTransport:
        parsed = parse_url(url, "sendgrid", allowed=("region",))
        no_target(parsed, url)
        region = parsed.params.get("region", "global").lower()
        if region not in REGIONS:
            raise TransportConfigError(f"sendgrid region must be 'global' or 'eu', got {region!r}")
        key = require_secret(environ, cls.secret_variable, cls.provider)
        return cls(key, endpoint=parsed.endpoint or REGIONS[region])

    def preflight(self) -> None:
        """GET /v3/scopes: any key may read its own scopes; sending needs `mail.send`."""
        reply = self.check("/v3/scopes")
        self.raise_for_auth(reply, _errors_text(reply))
        body = reply.json()
        scopes = body.get("scopes") if reply.ok and isinstance(body, dict) else None
        if isinstance(scopes, list) and "mail.send" not in scopes:
            raise TransportAuthError(
                f"the SendGrid key in {self.secret_variable} lacks the mail.send permission; "
                "give it Mail Send access (Settings > API Keys)"
            )

    # ------------------------------------------------------------ sending

    def plan(self, messages: Sequence[OutgoingMessage]) -> list[ApiRequest]:
        """Requests sharing content (with substitutions), then the messages that go alone."""
        groups, alone = self.content_groups(
            messages,
            lambda m: (m.parts.text, m.parts.html),
            lambda m: m.recipient.lower(),  # SendGrid refuses an address twice per request
        )
        requests = []
        for group, indices in groups:
            tag = _tag_prefix(group.pieces, group.values)
            if tag is None:
                alone.extend(indices)
                continue
            text_pieces, html_pieces = group.pieces
            content = (
                _template(text_pieces, tag, 0),
                _template(html_pieces, tag, len(text_pieces) - 1),
            )
            members = []
            for index, (text_values, html_values) in zip(indices, group.values, strict=True):
                values = [*text_values, *html_values]
                subs = {f"{tag}{n}]": value for n, value in enumerate(values)}
                size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
                if size > MAX_SUBSTITUTION_BYTES:
                    alone.append(index)
                else:
                    members.append((index, _Entry(index, messages[index], subs)))
            if members:
                requests.append(ApiRequest(content, members))
        for index in sorted(alone):
            parts = messages[index].parts
            entry = _Entry(index, messages[index], {})
            requests.append(ApiRequest((parts.text, parts.html), [(index, entry)]))
        return requests

    def payload(
        self, shared: tuple[str, str], members: Sequence[tuple[int, _Entry]]
    ) -> dict[str, Any]:
        return {"json": self._payload([entry for _, entry in members], shared)}

    def refuse(self, reply: ApiReply) -> None:
        self.raise_for_auth(reply, _errors_text(reply))

    def results(
        self, reply: ApiReply, members: Sequence[tuple[int, _Entry]]
    ) -> list[DeliveryResult] | str:
        if reply.ok:
            provider_id = reply.headers.get("x-message-id")
            return [
                DeliveryResult("sent", self.reply_text(reply, "Accepted"), provider_id)
                for _ in members
            ]
        detail = _errors_text(reply)
        blames_recipient = reply.status == 413 or _PERSONALIZATION_FIELD.search(reply.text)
        if blames_recipient and len(members) > 1:
            return self.reply_text(reply, detail)  # one recipient is refused: find it
        return results_for(len(members), "failed", self.reply_text(reply, detail))

    def _payload(self, entries: Sequence[_Entry], content: tuple[str, str]) -> dict[str, Any]:
        first = entries[0].message.parts
        from_name, from_email = split_address(first.from_header)
        headers = [custom_headers(e.message) for e in entries]
        common = (
            {k: v for k, v in headers[0].items() if all(h.get(k) == v for h in headers[1:])}
            if len(entries) > 1
            else {}
        )
        personalizations = []
        for entry, own_headers in zip(entries, headers, strict=True):
            parts = entry.message.parts
            to: dict[str, str] = {"email": parts.to_email}
            if parts.to_name:
                to["name"] = parts.to_name
            item: dict[str, Any] = {
                "to": [to],
                "subject": parts.subject,
                "custom_args": {
                    "newsletter_key": str(entry.message.key),
                    "newsletter_message_id": entry.message.message_id,
                },
            }
            own = {k: v for k, v in own_headers.items() if k not in common}
            if own:
                item["headers"] = own
            if entry.substitutions:
                item["substitutions"] = entry.substitutions
            personalizations.append(item)
        payload: dict[str, Any] = {
            "personalizations": personalizations,
            "from": {"email": from_email, **({"name": from_name} if from_name else {})},
            "subject": first.subject,
            "content": [
                {"type": "text/plain", "value": content[0]},
                {"type": "text/html", "value": content[1]},
            ],
        }
        if common:
            payload["headers"] = common
        reply_to = reply_to_of(entries[0].message)
        if reply_to:
            name, addr = split_address(reply_to)
            payload["reply_to"] = {"email": addr, **({"name": name} if name else {})}
        return payload


def _tag_prefix(pieces: list[list[str]], values: list[list[list[str]]]) -> str | None:
    """A substitution tag prefix that occurs nowhere in the content or the values."""
    for _ in range(5):
        tag = f"[nl{secrets.token_hex(3)}:"
        if not any(tag in p for field in pieces for p in field) and not any(
            tag in v for member in values for field in member for v in field
        ):
            return tag
    return None


def _template(pieces: list[str], tag: str, offset: int) -> str:
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:]):
        out.append(f"{tag}{offset + n}]")
        out.append(piece)
    return "".join(out)


def _errors_text(reply: ApiReply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        messages = []
        for error in body["errors"]:
            if isinstance(error, dict):
                field = f" ({error['field']})" if error.get("field") else ""
                messages.append(f"{error.get('message', '')}{field}")
        if messages:
            return "; ".join(messages)
    return reply.text.strip()
