"""Postmark: `POST /email/batch`, up to 500 complete messages per request on a message stream.

Each message of the batch is a full Postmark message (From, To with the subscriber's name,
Subject, TextBody, HtmlBody, ReplyTo, Headers with Message-ID and List-Unsubscribe, Metadata with
our ledger key) on the broadcast stream named in the URL (`postmark:?stream=broadcast`, the
default). Postmark answers 200 with one result per message, in order: ErrorCode 0 is accepted
(with its MessageID), 406 is an inactive recipient (hard bounce, spam complaint or suppression:
bounced), anything else fails that message alone. Requests stay under the 50 MB payload limit.

Some per-message codes are not about the recipient at all, and Postmark gives them inside the
200 for every message of the batch: a sender signature not found or not confirmed (400, 401),
an account not allowed to send, pending or barred (405, 412, 413), a message stream that does
not exist (1235), and ErrorCode 300 naming the From as no verified sender signature. Those are
account problems (the run pauses with Postmark's words; the readers stay due); 429 is a throttle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from newsletter.errors import TransportAuthError, TransportConfigError
from newsletter.transports._http import (
    DEFAULT_TIMEOUT,
    ApiReply,
    ApiRequest,
    HttpApiTransport,
    chunk_by_size,
    custom_headers,
    no_target,
    parse_url,
    recipient_display,
    reply_to_of,
    require_secret,
    results_for,
    split_address,
)
from newsletter.transports._merge import json_strings
from newsletter.transports.base import (
    DeliveryResult,
    OutgoingMessage,
    account_problem,
    throttled,
)

if TYPE_CHECKING:
    from newsletter.config import Config

API = "https://api.postmarkapp.com"
MAX_MESSAGES = 500
MAX_PAYLOAD = 45 * 1024 * 1024  # Postmark's limit is 50 MB per batch request
INACTIVE_RECIPIENT = 406
# Error codes that no retry fixes and that are about the sender, the account or the stream,
# whole-request or per message: the run stops with Postmark's words.
ACCOUNT_ERRORS = {400, 401, 405, 412, 413, 1235}
RATE_LIMIT_EXCEEDED = 429


class PostmarkTransport(HttpApiTransport):
    name = "postmark"
    provider = "Postmark"
    secret_variable = "POSTMARK_SERVER_TOKEN"
    max_batch = MAX_MESSAGES
    path = "/email/batch"

    def __init__(
        self,
        token: str,
        *,
        stream: str = "broadcast",
        endpoint: str = API,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            endpoint,
            {"X-Postmark-Server-Token": token, "Accept": "application/json"},
            token,
            timeout=timeout,
        )
        self.stream = stream

    @classmethod
    def from_url(
        cls, url: str, config: Config | None, environ: Mapping[str, str]
    ) -> PostmarkTransport:
        parsed = parse_url(url, "postmark", allowed=("stream",))
        no_target(parsed, url)
        stream = parsed.params.get("stream", "broadcast")
        if not stream or not all(c.isalnum() or c in "-_" for c in stream):
            raise TransportConfigError(
                f"postmark stream must be a message stream ID such as 'broadcast', got {stream!r}"
            )
        token = require_secret(environ, cls.secret_variable, cls.provider)
        return cls(token, stream=stream, endpoint=parsed.endpoint or API)

    def describe(self) -> str:
        return f"postmark: stream {self.stream} ({self.base_url})"

    def preflight(self) -> None:
        """GET /server: readable with any valid server token."""
        reply = self.check("/server")
        body = reply.json()
        if reply.status == 401 or (isinstance(body, dict) and body.get("ErrorCode") == 10):
            raise TransportAuthError(
                f"Postmark refused the server token from {self.secret_variable} "
                f"({self.reply_text(reply)}); check the token"
            )

    def plan(self, messages: Sequence[OutgoingMessage]) -> list[ApiRequest]:
        """Each message as its JSON object, in requests of at most 500 and under 50 MB."""
        requests = []
        for start in range(0, len(messages), MAX_MESSAGES):
            bodies = self._bodies(messages[start : start + MAX_MESSAGES])
            indexed = [(start + i, body) for i, body in enumerate(bodies)]
            for part in chunk_by_size(indexed, [len(b) for b in bodies], MAX_PAYLOAD):
                requests.append(ApiRequest(None, list(part)))
        return requests

    def _bodies(self, batch: Sequence[OutgoingMessage]) -> list[str]:
        """Each message as a JSON object; the large bodies are escaped via the shared template."""
        escaped = json_strings([(m.parts.text, m.parts.html) for m in batch])
        return [
            json.dumps(self._message(m), ensure_ascii=False)[:-1]
            + f',"TextBody":{text},"HtmlBody":{html}}}'
            for m, (text, html) in zip(batch, escaped, strict=True)
        ]

    def _message(self, message: OutgoingMessage) -> dict[str, Any]:
        """Everything but the bodies, which `_bodies` adds already escaped."""
        parts = message.parts
        body: dict[str, Any] = {
            "From": recipient_display(*split_address(parts.from_header)),
            "To": recipient_display(parts.to_name, parts.to_email),
            "Subject": parts.subject,
            "Headers": [{"Name": k, "Value": v} for k, v in custom_headers(message).items()],
            "Metadata": {"newsletter_key": str(message.key)},
            "MessageStream": self.stream,
        }
        reply_to = reply_to_of(message)
        if reply_to:
            body["ReplyTo"] = recipient_display(*split_address(reply_to))
        return body

    def payload(self, shared: None, members: Sequence[tuple[int, str]]) -> dict[str, Any]:
        payload = ("[" + ",".join(body for _, body in members) + "]").encode("utf-8")
        return {"content": payload, "headers": {"Content-Type": "application/json"}}

    def refuse(self, reply: ApiReply) -> None:
        code, detail = _error_code(reply)
        if reply.status == 401 or code == 10:
            raise TransportAuthError(
                f"Postmark refused the server token from {self.secret_variable} "
                f"({self.reply_text(reply, detail)}); check the token"
            )
        if not reply.ok and code in ACCOUNT_ERRORS:
            raise TransportConfigError(
                f"Postmark will not send for this server ({self.reply_text(reply, detail)})"
            )

    def results(self, reply: ApiReply, members: Sequence[tuple[int, str]]) -> list[DeliveryResult]:
        if not reply.ok:
            return results_for(
                len(members), "failed", self.reply_text(reply, _error_code(reply)[1])
            )
        body = reply.json()
        if not isinstance(body, list) or len(body) != len(members):
            # Some may have gone out: deferring risks a duplicate, failing risks a loss.
            return results_for(len(members), "deferred", self.reply_text(reply, "malformed reply"))
        return [self._result(reply, item) for item in body]

    def _result(self, reply: ApiReply, item: Any) -> DeliveryResult:
        code = item.get("ErrorCode") if isinstance(item, dict) else None
        text = (
            self.reply_text(reply, f"ErrorCode {code}: {item.get('Message', '')}".strip())
            if isinstance(item, dict)
            else self.reply_text(reply, "malformed result")
        )
        if code == 0:
            return DeliveryResult("sent", text, item.get("MessageID"))
        if code == INACTIVE_RECIPIENT:
            return DeliveryResult("bounced", text)
        if code == RATE_LIMIT_EXCEEDED:
            return throttled(text)
        message = str(item.get("Message", "")).lower() if isinstance(item, dict) else ""
        if code in ACCOUNT_ERRORS or ("sender signature" in message and "from" in message):
            return account_problem(f"Postmark will not send for this server ({text})")
        return DeliveryResult("failed", text)


def _error_code(reply: ApiReply) -> tuple[Any, str | None]:
    """Postmark's ErrorCode of a whole-request reply, and the detail to show with it."""
    body = reply.json()
    code = body.get("ErrorCode") if isinstance(body, dict) else None
    detail = f"ErrorCode {code}: {body.get('Message', '')}" if code is not None else None
    return code, detail
