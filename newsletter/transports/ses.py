"""Amazon SES v2 through boto3: one `SendEmail` with raw content per recipient, several at once.

Why raw and not `SendBulkEmail` (50 destinations per call): a bulk send renders an SES-stored
template, so our exact bytes do not reach the recipient: the deterministic Message-ID, our DKIM
signature and the List-Unsubscribe pair would be SES's to rebuild. Raw content sends
`message.data` as it is, so every recipient gets precisely the message the SMTP transport would
have delivered. The cost is one HTTPS request per recipient, which the transport spreads over a
pool of threads (boto3 clients are thread-safe) within SES's per-second sending quota.

Credentials come from the standard variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
optionally AWS_SESSION_TOKEN; nothing is read from the URL. Throttling and 5xx defer the
recipient (SES sends no Retry-After), a rejected message fails it, refused credentials or an
account that may not send stop the run.

Limits: GetAccount, called when the transport opens, gives the account's
`SendQuota.MaxSendRate` (messages per second; one raw SendEmail is one message), which becomes
the run's starting pace. A `Throttling` / "Maximum sending rate exceeded" reply (SES sends no
Retry-After) is a throttle: the runner slows down and puts the message back. "Daily message
quota exceeded" is an account problem: nothing more can go out today, so the run pauses.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from newsletter.errors import (
    MessageError,
    TransportAuthError,
    TransportConfigError,
    TransportConnectError,
)
from newsletter.transports._http import MAX_REPLY, Redactor, parse_url, require_secret
from newsletter.transports.base import (
    DeliveryResult,
    OutgoingMessage,
    Transport,
    account_problem,
    throttled,
)

if TYPE_CHECKING:
    from newsletter.config import Config

MAX_BATCH = 50
WORKERS = 8
TIMEOUT = 30.0
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_CONFIG_SET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

AUTH_ERRORS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "AccessDeniedException",
    "AccessDenied",
}
ACCOUNT_ERRORS = {  # no message can go out until the account or configuration is fixed
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
}
THROTTLE_ERRORS = {"TooManyRequestsException", "ThrottlingException", "Throttling"}
TRANSIENT_ERRORS = THROTTLE_ERRORS | {
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
}


class SesTransport(Transport):
    name = "ses"
    secret_variable = "AWS_SECRET_ACCESS_KEY"  # with AWS_ACCESS_KEY_ID (and AWS_SESSION_TOKEN)
    thread_safe = True
    request_per_message = True  # one SendEmail per recipient
    max_batch = MAX_BATCH

    def __init__(
        self,
        region: str,
        credentials: Mapping[str, str],
        *,
        configuration_set: str | None = None,
        endpoint: str | None = None,
        workers: int = WORKERS,
        timeout: float = TIMEOUT,
    ) -> None:
        self.region = region
        self.configuration_set = configuration_set
        self.endpoint = endpoint
        self.workers = workers
        self.timeout = timeout
        self._credentials = dict(credentials)
        self._redact = Redactor(*self._credentials.values())
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._reached = False
        self.requests = 0

    @classmethod
    def from_url(cls, url: str, config: Config | None, environ: Mapping[str, str]) -> SesTransport:
        parsed = parse_url(url, "ses", allowed=("configuration_set",))
        region = parsed.target or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if not region or not _REGION.match(region):
            raise TransportConfigError(
                f"ses: needs an AWS region such as 'ses:eu-west-1', got {url!r}"
            )
        config_set = parsed.params.get("configuration_set")
        if config_set is not None and not _CONFIG_SET.match(config_set):
            raise TransportConfigError(
                f"configuration_set must be an SES configuration set name, got {config_set!r}"
            )
        credentials = {
            "aws_access_key_id": require_secret(environ, "AWS_ACCESS_KEY_ID", "Amazon SES"),
            "aws_secret_access_key": require_secret(environ, "AWS_SECRET_ACCESS_KEY", "Amazon SES"),
        }
        if environ.get("AWS_SESSION_TOKEN"):
            credentials["aws_session_token"] = environ["AWS_SESSION_TOKEN"]
        return cls(region, credentials, configuration_set=config_set, endpoint=parsed.endpoint)

    def __repr__(self) -> str:
        return f"<SesTransport {self.describe()}>"

    def describe(self) -> str:
        where = f" via {self.endpoint}" if self.endpoint else ""
        config_set = ""
        if self.configuration_set:
            config_set = f" configuration set {self.configuration_set}"
        return f"ses:{self.region}{config_set}{where}"

    def open(self) -> None:
        import boto3  # only when SES is used: it takes a while to import
        from botocore.config import Config as BotoConfig

        with self._lock:
            if self._client is not None:
                return
            session = boto3.session.Session(region_name=self.region, **self._credentials)
            self._client = session.client(
                "sesv2",
                endpoint_url=self.endpoint,
                config=BotoConfig(
                    retries={"total_max_attempts": 1, "mode": "standard"},  # the runner retries
                    connect_timeout=min(self.timeout, 10.0),
                    read_timeout=self.timeout,
                    max_pool_connections=self.workers * 2,
                ),
            )
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ses")
        try:
            self._preflight()
        except BaseException:
            self.close()
            raise

    def _preflight(self) -> None:
        """GetAccount: refused credentials stop the run before anyone is claimed. A key that
        may send but not read the account (AccessDenied) passes; so does any other answer."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            account = self._client.get_account()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in AUTH_ERRORS - {"AccessDeniedException", "AccessDenied"}:
                detail = self._clip(f"{code}: {error.get('Message', '')}")
                raise TransportAuthError(
                    "Amazon SES refused the credentials from AWS_ACCESS_KEY_ID / "
                    f"AWS_SECRET_ACCESS_KEY ({detail}); check the key"
                ) from None
        except BotoCoreError as exc:
            raise TransportConnectError(
                f"cannot reach Amazon SES ({self.describe()}): {self._clip(str(exc))}"
            ) from None
        else:
            rate = (account.get("SendQuota") or {}).get("MaxSendRate")
            if isinstance(rate, int | float) and rate > 0:
                self.published_rate = float(rate)
        self._reached = True

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            client, self._client = self._client, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

    def send(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        if self._client is None:
            self.open()
        assert self._pool is not None
        if not self._reached and messages:  # the first call alone: a bad key stops at once
            first = [self._send_one(messages[0])]
            return first + list(self._pool.map(self._send_one, messages[1:]))
        return list(self._pool.map(self._send_one, messages))

    def _send_one(self, message: OutgoingMessage) -> DeliveryResult:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )

        try:
            data = message.data
        except MessageError as exc:
            return DeliveryResult("failed", f"not sent: {exc}")
        request: dict[str, Any] = {
            # SES keeps its own envelope sender (and reports bounces itself): the identity it
            # checks is the From address, not our VERP envelope sender.
            "FromEmailAddress": message.header_from or message.envelope_from,
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": data}},
            "EmailTags": [{"Name": "newsletter_key", "Value": str(message.key)}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        self.gate.wait_for_request()
        self.requests += 1
        try:
            reply = self._client.send_email(**request)
        except ClientError as exc:
            self._reached = True
            return self._client_error(exc, message)
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            return DeliveryResult("deferred", self._clip(f"SES timeout: {exc}"))
        except (ConnectionError, BotoCoreError) as exc:
            if not self._reached:
                raise TransportConnectError(
                    f"cannot reach Amazon SES ({self.describe()}): {self._clip(str(exc))}"
                ) from None
            return DeliveryResult("deferred", self._clip(f"SES connection failed: {exc}"))
        self._reached = True
        message_id = reply.get("MessageId")
        return DeliveryResult("sent", f"SES accepted {message_id}", message_id)

    def _client_error(self, exc: Any, message: OutgoingMessage) -> DeliveryResult:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = self._clip(f"{status} {code}: {error.get('Message', '')}")
        if code in AUTH_ERRORS or (status in (401, 403) and code not in ACCOUNT_ERRORS):
            raise TransportAuthError(
                f"Amazon SES refused the credentials from AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY ({text}); check the key and its ses:SendEmail permission"
            )
        if code in ACCOUNT_ERRORS:
            raise TransportConfigError(f"Amazon SES will not send ({self.describe()}): {text}")
        if "daily message quota exceeded" in text.lower():
            return account_problem(f"Amazon SES: {text}")
        if code in THROTTLE_ERRORS or status == 429:
            return throttled(text)
        if code in TRANSIENT_ERRORS or status >= 500:
            return DeliveryResult("deferred", text)
        identity = message.header_from or message.envelope_from
        sender = identity.lower()
        if code == "MessageRejected" and sender in text.lower() and "recipient" not in text.lower():
            raise TransportConfigError(
                f"Amazon SES will not send from {identity}: {text}; verify the "
                f"address or its domain as an identity in {self.region}"
            )
        return DeliveryResult("failed", text)

    def _clip(self, text: str) -> str:
        return self._redact(text)[:MAX_REPLY]
