"""Local stand-ins for the email APIs, one per provider, on 127.0.0.1 (never the internet).

Each server checks every request against the provider's documented contract (method, path,
auth header, content type, required fields, batch limits) and answers the way the provider
does: 202/200 with its ids, 400/422 for invalid input, 401/403 for a bad key. A broken contract
is recorded in `violations` and answered with a 400 naming it, so a test sees it either way.

Accepted messages are rendered the way the provider would deliver them (SendGrid substitutions
applied per personalization, Mailgun `%recipient.x%` variables per address, ...) into
`Delivered` records: what each recipient would receive. Tests script faults with `fail_next`
(a 429 with Retry-After, a 500, a stall past the client's timeout) and per-recipient refusals
with `refuse` (invalid address, inactive/suppressed recipient).

Amazon SES runs as moto's server (`moto.server`) behind a thin WSGI layer that checks the SigV4
credential scope and the SendEmail shape, and can inject the same faults.

The servers live in `provider_base` (shared machinery), `provider_json` (SendGrid, Postmark,
Resend) and `provider_mailgun_ses`; this module gathers them and runs one as a process for the
benchmark (`python tests/provider_servers.py PROVIDER KEY [DOMAIN]`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from provider_base import Delivered, Fault, ProviderServer, Reply, Request
from provider_json import PostmarkServer, ResendServer, SendGridServer
from provider_mailgun_ses import MailgunServer, SesServer

__all__ = [
    "Delivered",
    "Fault",
    "MailgunServer",
    "PostmarkServer",
    "ProviderServer",
    "Reply",
    "Request",
    "ResendServer",
    "SendGridServer",
    "SesServer",
    "serve_forever",
]


# ===================================================================== as a process (benchmarks)


def serve_forever(provider: str, key: str, domain: str = "news.example.org") -> None:
    """Run one provider's server in this process; print `PORT <n>`; serve until killed.

    `domain` is Mailgun's sending domain, or for SES the verified identity.
    Without per-recipient rendering (`render=False`): the contract is still checked in full,
    but deliveries are only counted, so the server costs about what parsing the request does.
    `GET /__stats` answers {"delivered": n, "requests": n, "violations": [...]}.
    """
    if provider == "ses":
        import boto3

        ses = SesServer("AKIABENCHMARK0000001", "eu-west-1").start()
        boto3.client(
            "sesv2",
            region_name="eu-west-1",
            endpoint_url=ses.url,
            aws_access_key_id="AKIABENCHMARK0000001",
            aws_secret_access_key=key,
        ).create_email_identity(EmailIdentity=domain)
        print(f"PORT {ses.url.rsplit(':', 1)[1]}", flush=True)
        threading.Event().wait()
    servers: dict[str, Callable[[], ProviderServer]] = {
        "sendgrid": lambda: SendGridServer(key, render=False),
        "mailgun": lambda: MailgunServer(key, domain, render=False),
        "postmark": lambda: PostmarkServer(key, render=False),
        "resend": lambda: ResendServer(key, render=False),
    }
    server = servers[provider]()
    original = server.check

    def check(request: Request) -> Reply:
        if request.path == "/__stats":
            return Reply(
                200,
                {
                    "delivered": server.delivered_count,
                    "requests": len(server.requests),
                    "violations": server.violations,
                },
            )
        return original(request)

    server.check = check  # type: ignore[method-assign]
    server.start()
    print(f"PORT {server.url.rsplit(':', 1)[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve_forever(*sys.argv[1:4])
