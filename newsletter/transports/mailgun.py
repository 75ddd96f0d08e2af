"""Mailgun Messages API: `POST /v3/<domain>/messages` (multipart form), batches of up to 1,000.

A batch is one request listing every recipient in repeated `to` fields, with
`recipient-variables` (a JSON object keyed by address) so that Mailgun sends each recipient a
message of their own: without it every recipient would see all the others in To. The content
goes once, with `%recipient.vN%` wherever the recipients' texts differ (found by `_merge`), and
per-recipient headers (Message-ID, List-Unsubscribe) as `h:Name=%recipient.hN%`. Variable names
are plain identifiers (letters, digits, underscore), the only form Mailgun documents
(`%recipient.yourkey%`): a name such as `h:List-Unsubscribe` may be left unsubstituted. A
recipient whose values would be read as Mailgun markers again goes alone. Our ledger key travels
as custom data (`v:newsletter_key`), echoed in Mailgun's webhooks.

Mailgun validates a batch as a whole: a 400 that blames an address rejects the request, so the
batch is halved and re-sent until the refused addresses stand alone. Its 200 reply carries one
message id for the batch, stored as each recipient's provider id.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from newsletter.errors import TransportAuthError, TransportConfigError
from newsletter.transports._http import (
    DEFAULT_TIMEOUT,
    ApiReply,
    ApiRequest,
    HttpApiTransport,
    custom_headers,
    parse_url,
    recipient_display,
    reply_to_of,
    require_secret,
    results_for,
    split_address,
)
from newsletter.transports._merge import Group
from newsletter.transports.base import DeliveryResult, OutgoingMessage, account_problem

if TYPE_CHECKING:
    from newsletter.config import Config

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
MAX_RECIPIENTS = 1000
VAR = "%recipient."


class MailgunTransport(HttpApiTransport):
    name = "mailgun"
    provider = "Mailgun"
    secret_variable = "MAILGUN_API_KEY"
    max_batch = MAX_RECIPIENTS

    def __init__(
        self,
        domain: str,
        api_key: str,
        *,
        region: str = "us",
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(endpoint or REGIONS[region], {}, api_key, timeout=timeout)
        self.domain = domain
        self._auth = ("api", api_key)
        self.path = f"/v3/{domain}/messages"

    @classmethod
    def from_url(
        cls, url: str, config: Config | None, environ: Mapping[str, str]
    ) -> MailgunTransport:
        parsed = parse_url(url, "mailgun", allowed=("region", "preflight"))
        domain = parsed.target.lower()
        if not domain or "/" in domain or "." not in domain or any(c.isspace() for c in domain):
            raise TransportConfigError(
                f"mailgun: needs your sending domain, e.g. 'mailgun:news.example.com', got {url!r}"
            )
        region = parsed.params.get("region", "us").lower()
        if region not in REGIONS:
            raise TransportConfigError(f"mailgun region must be 'us' or 'eu', got {region!r}")
        preflight = parsed.params.get("preflight", "yes").lower()
        if preflight not in ("yes", "no"):
            raise TransportConfigError(
                f"mailgun preflight must be 'yes' or 'no', got {preflight!r}"
            )
        key = require_secret(environ, cls.secret_variable, cls.provider)
        transport = cls(domain, key, region=region, endpoint=parsed.endpoint)
        transport.verify_key = preflight == "yes"
        return transport

    def describe(self) -> str:
        return f"mailgun:{self.domain} ({self.base_url})"

    verify_key = True

    def preflight(self) -> None:
        """GET /v3/domains/DOMAIN: the key works and the domain exists in this region.

        A domain sending key may only send, so it is refused here too: `?preflight=no` skips
        the check for such keys (a wrong key then shows up as deferred sends instead)."""
        if not self.verify_key:
            return
        reply = self.check(f"/v3/domains/{self.domain}", auth=self._auth)
        if reply.status in (401, 403):
            raise TransportAuthError(
                f"Mailgun refused the API key from {self.secret_variable} "
                f"({self.reply_text(reply, _message_of(reply))}); check the key, or add "
                "?preflight=no when it is a domain sending key"
            )
        if reply.status == 404:
            raise TransportConfigError(
                f"Mailgun does not know the domain {self.domain!r} at {self.base_url}; "
                "check the domain and ?region="
            )

    # ------------------------------------------------------------ sending

    def plan(self, messages: Sequence[OutgoingMessage]) -> list[ApiRequest]:
        """Shared form fields with recipient-variables per group; then the ones alone."""
        groups, alone = self.content_groups(
            messages,
            lambda m: (m.parts.subject, m.parts.text, m.parts.html),
            lambda m: m.parts.to_email.lower(),  # recipient-variables are keyed by address
        )
        requests = []
        for group, indices in groups:
            request, misfits = self._batch_request(messages, indices, group)
            alone.extend(misfits)
            if request is not None:
                requests.append(request)
        for index in sorted(alone):
            requests.append(self._single_request(messages[index], index))
        return requests

    def _batch_request(
        self, messages: Sequence[OutgoingMessage], indices: list[int], group: Group
    ) -> tuple[ApiRequest | None, list[int]]:
        """The batch request, and the messages that must go alone (values that look like
        Mailgun's own `%recipient.` markers would be substituted again)."""
        if any(VAR in piece for field in group.pieces for piece in field):
            return None, indices
        slots: list[str] = []
        templates = []
        for field in group.pieces:
            out = [field[0]]
            for piece in field[1:]:
                out.append(f"{VAR}v{len(slots)}%")
                out.append(piece)
                slots.append(f"v{len(slots)}")
            templates.append("".join(out))
        first = messages[indices[0]]
        fields = self._common_fields(first)
        fields += [("subject", templates[0]), ("text", templates[1]), ("html", templates[2])]
        headers = [custom_headers(messages[i]) for i in indices]
        varying = {
            name for h in headers for name, value in h.items() if headers[0].get(name) != value
        } | {name for h in headers for name in h if name not in headers[0]}
        for name, value in headers[0].items():
            if name not in varying:
                fields.append((f"h:{name}", value))
        header_slots = {name: f"h{n}" for n, name in enumerate(sorted(varying))}
        for name, slot in header_slots.items():
            fields.append((f"h:{name}", f"{VAR}{slot}%"))
        fields.append(("v:newsletter_key", f"{VAR}newsletter_key%"))
        members, misfits = [], []
        for index, own_headers, values in zip(indices, headers, group.values, strict=True):
            variables = dict(zip(slots, [v for field in values for v in field], strict=True))
            variables.update(
                {slot: own_headers.get(name, "") for name, slot in header_slots.items()}
            )
            variables["newsletter_key"] = str(messages[index].key)
            if any(VAR in v for v in variables.values()):
                misfits.append(index)
                continue
            variables["_to"] = recipient_display(
                messages[index].parts.to_name, messages[index].parts.to_email
            )
            variables["_email"] = messages[index].parts.to_email
            members.append((index, variables))
        return (ApiRequest(fields, members) if members else None), misfits

    def _single_request(self, message: OutgoingMessage, index: int) -> ApiRequest:
        parts = message.parts
        fields = self._common_fields(message)
        fields += [("subject", parts.subject), ("text", parts.text), ("html", parts.html)]
        fields += [(f"h:{name}", value) for name, value in custom_headers(message).items()]
        fields.append(("v:newsletter_key", str(message.key)))
        to = recipient_display(parts.to_name, parts.to_email)
        return ApiRequest(fields, [(index, {"_to": to, "_email": parts.to_email, "_single": "1"})])

    def _common_fields(self, message: OutgoingMessage) -> list[tuple[str, str]]:
        fields = [("from", recipient_display(*split_address(message.parts.from_header)))]
        reply_to = reply_to_of(message)
        if reply_to:
            fields.append(("h:Reply-To", reply_to))
        return fields

    def payload(
        self, shared: list[tuple[str, str]], members: Sequence[tuple[int, dict[str, str]]]
    ) -> dict[str, Any]:
        fields = list(shared)
        fields += [("to", variables["_to"]) for _, variables in members]
        if not members[0][1].get("_single"):
            recipient_variables = {
                v["_email"]: {k: x for k, x in v.items() if not k.startswith("_")}
                for _, v in members
            }
            fields.append(("recipient-variables", json.dumps(recipient_variables)))
        body, content_type = form_data(fields)
        return {"content": body, "headers": {"Content-Type": content_type}, "auth": self._auth}

    def refuse(self, reply: ApiReply) -> None:
        detail = _message_of(reply)
        self.raise_for_auth(reply, detail)
        if reply.status == 404:
            raise TransportConfigError(
                f"Mailgun does not know the domain {self.domain!r} at {self.base_url} "
                f"({self.reply_text(reply, detail)}); check the domain and ?region="
            )

    def results(
        self, reply: ApiReply, members: Sequence[tuple[int, dict[str, str]]]
    ) -> list[DeliveryResult] | str:
        detail = _message_of(reply)
        if reply.ok:
            body_json = reply.json()
            provider_id = body_json.get("id") if isinstance(body_json, dict) else None
            if provider_id is None:  # e.g. a wrong endpoint answering 200 with a web page
                return results_for(
                    len(members), "deferred", self.reply_text(reply, "unexpected reply")
                )
            return [
                DeliveryResult("sent", self.reply_text(reply, detail), provider_id) for _ in members
            ]
        lowered = detail.lower()
        if any(words in lowered for words in _ACCOUNT_WORDS):
            # e.g. "Domain example.org is not allowed to send: ... not verified": every
            # message would be refused alike, so the run pauses and the readers stay due.
            text = self.reply_text(reply, detail)
            return [account_problem(f"Mailgun will not send ({text})")] * len(members)
        blames_recipient = reply.status == 413 or (
            "address" in lowered or "recipient" in lowered or "'to'" in lowered
        )
        if blames_recipient and len(members) > 1:
            return self.reply_text(reply, detail)
        return results_for(len(members), "failed", self.reply_text(reply, detail))


_ACCOUNT_WORDS = ("not allowed to send", "not verified", "unverified", "domain is disabled")


def form_data(fields: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
    """multipart/form-data with repeated fields kept in order (Mailgun's documented format)."""
    encoded = [(name.encode(), value.encode("utf-8")) for name, value in fields]
    while True:
        boundary = secrets.token_hex(16).encode()
        if not any(boundary in value for _, value in encoded):
            break
    out = []
    for name, value in encoded:
        out.append(b"--" + boundary + b"\r\n")
        out.append(b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n')
        out.append(value)
        out.append(b"\r\n")
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out), f"multipart/form-data; boundary={boundary.decode()}"


def _message_of(reply: ApiReply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return reply.text.strip()
