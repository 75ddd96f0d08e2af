"""SendGrid, Mailgun, Postmark and Resend transports against local contract-checking servers.

Each test builds real personalised messages (the example issue compiled by the renderer and
filled by MessageTemplate), sends them through the transport created from its URL, and then
checks what every recipient would receive as the provider renders it, and the per-recipient
results the campaign ledger would record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.utils import parseaddr

import pytest
from api_messages import TRICKY, Campaign, campaign, make_project, many
from provider_servers import (
    Delivered,
    MailgunServer,
    PostmarkServer,
    ProviderServer,
    ResendServer,
    SendGridServer,
)

from newsletter.errors import TransportAuthError, TransportConfigError, TransportConnectError
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import Recipient
from newsletter.transports import transport_from_url
from newsletter.transports._http import split_address
from newsletter.transports.base import DeliveryResult, OutgoingMessage
from newsletter.transports.resend import idempotency_key

KEY = "sk-test-Zq9secretvalue-3141"
DOMAIN = "news.example.org"
PROVIDERS = ["sendgrid", "mailgun", "postmark", "resend"]
ENV = {
    "sendgrid": "SENDGRID_API_KEY",
    "mailgun": "MAILGUN_API_KEY",
    "postmark": "POSTMARK_SERVER_TOKEN",
    "resend": "RESEND_API_KEY",
}


@pytest.fixture(scope="module")
def camp(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    return campaign(make_project(tmp_path_factory.mktemp("project")))


def new_server(provider: str) -> ProviderServer:
    if provider == "sendgrid":
        return SendGridServer(KEY)
    if provider == "mailgun":
        return MailgunServer(KEY, DOMAIN)
    if provider == "postmark":
        return PostmarkServer(KEY)
    return ResendServer(KEY)


@pytest.fixture(params=PROVIDERS)
def server(request: pytest.FixtureRequest) -> Iterator[ProviderServer]:
    with new_server(request.param) as srv:
        yield srv
    assert srv.violations == [], srv.violations


def url_for(server: ProviderServer, extra: str = "") -> str:
    target = {"mailgun": DOMAIN, "postmark": "", "sendgrid": "", "resend": ""}[server.name]
    query = "?stream=broadcast&" if server.name == "postmark" else "?"
    return f"{server.name}:{target}{query}endpoint={server.url}{extra}"


def transport_for(server: ProviderServer, camp: Campaign, key: str = KEY, timeout: float = 10):
    t = transport_from_url(url_for(server), camp.config, {ENV[server.name]: key})
    t.timeout = timeout  # seconds per request (the constructor's timeout=)
    return t


def send(server: ProviderServer, camp: Campaign, messages: list[OutgoingMessage], **kw):
    transport = transport_for(server, camp, **kw)
    with transport:
        return transport.send(messages)


def assert_received(got: Delivered, camp: Campaign, recipient: Recipient) -> None:
    """The copy the provider would deliver is exactly this recipient's message."""
    want = camp.expected_parts(recipient)
    assert got.subject == want.subject
    assert got.text == want.text
    assert got.html == want.html
    name, address = split_address(got.to_header)
    assert address == recipient.email
    assert (name or None) == (recipient.name or None)
    assert split_address(got.from_header) == ("Test Letter", "news@example.org")
    assert split_address(got.reply_to or "") == ("Editors", "editors@example.org")
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["message-id"] == want.headers["Message-ID"]
    assert headers["list-unsubscribe"] == want.headers["List-Unsubscribe"]
    assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
    assert headers["list-id"] == want.headers["List-Id"]


def assert_private(server: ProviderServer, recipients: list[Recipient]) -> None:
    """No recipient's copy mentions another recipient's address or unsubscribe URL."""
    for got in server.delivered:
        blob = " ".join([got.to_header, got.subject, got.text, got.html, *got.headers.values()])
        for other in recipients:
            if other.email != got.to_email:
                assert other.email not in blob
                assert other.email.split("@")[0][:10] + ".sig" not in blob


# ------------------------------------------------------------------------ happy path


def test_every_recipient_gets_their_own_message(server: ProviderServer, camp: Campaign) -> None:
    messages = camp.outgoing(TRICKY)
    results = send(server, camp, messages)
    assert [r.status for r in results] == ["sent"] * len(TRICKY)
    assert all(r.provider_id for r in results)
    for recipient in TRICKY:
        copies = server.for_address(recipient.email)
        assert len(copies) == 1, recipient
        assert_received(copies[0], camp, recipient)
    assert_private(server, TRICKY)
    # Ids map back: each result carries the id the provider gave that recipient's request.
    by_address = {d.to_email: d.provider_id for d in server.delivered}
    for message, result in zip(messages, results, strict=True):
        assert result.provider_id == by_address[message.recipient]


@pytest.mark.parametrize(
    ("provider", "count", "requests"),
    [("sendgrid", 1000, 1), ("mailgun", 1000, 1), ("postmark", 500, 1), ("resend", 250, 3)],
)
def test_full_batches_use_the_documented_limits(
    provider: str, count: int, requests: int, camp: Campaign
) -> None:
    recipients = many(count)
    with new_server(provider) as srv:
        transport = transport_for(srv, camp)
        assert transport.max_batch == {"sendgrid": 1000, "mailgun": 1000}.get(
            provider, {"postmark": 500, "resend": 100}.get(provider)
        )
        with transport:
            results = transport.send(camp.outgoing(recipients))
        assert {r.status for r in results} == {"sent"}
        assert len(srv.requests) == requests
        assert len(srv.delivered) == count
        assert srv.violations == []
        for recipient in recipients[:: count // 7]:
            (copy,) = srv.for_address(recipient.email)
            assert_received(copy, camp, recipient)


@pytest.mark.parametrize(
    ("provider", "limit"),
    [("sendgrid", 1000), ("mailgun", 1000), ("postmark", 500), ("resend", 100)],
)
def test_a_batch_over_the_limit_is_split_by_the_transport_itself(
    provider: str, limit: int, camp: Campaign
) -> None:
    """A caller handing more than the provider's limit (1,001 to SendGrid) gets every message
    sent: the transport splits the request, the server never sees an oversized one."""
    recipients = many(limit + 1)
    with new_server(provider) as srv:
        with transport_for(srv, camp) as transport:
            results = transport.send(camp.outgoing(recipients))
        assert [r.status for r in results] == ["sent"] * (limit + 1)
        assert len(srv.requests) == 2
        assert len(srv.delivered) == limit + 1
        assert srv.violations == []
        (last,) = srv.for_address(recipients[-1].email)
        assert_received(last, camp, recipients[-1])


# ------------------------------------------------------------------------ faults


def test_429_defers_everyone_with_retry_after(server: ProviderServer, camp: Campaign) -> None:
    server.fail_next(429, body={"message": "too many requests"}, headers={"Retry-After": "7"})
    results = send(server, camp, camp.outgoing(TRICKY[:4]))
    assert [r.status for r in results] == ["deferred"] * 4
    assert all(r.retry_after == 7 for r in results)
    assert "429" in results[0].reply
    assert server.delivered == []


def test_rate_limit_reset_header_without_retry_after(camp: Campaign) -> None:
    import time

    with SendGridServer(KEY) as srv:
        reset = str(int(time.time()) + 30)
        srv.fail_next(429, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
        results = send(srv, camp, camp.outgoing(TRICKY[:2]))
    assert [r.status for r in results] == ["deferred"] * 2
    assert 25 <= (results[0].retry_after or 0) <= 31


def test_server_error_and_timeout_defer(server: ProviderServer, camp: Campaign) -> None:
    tries = 3 if server.name == "resend" else 1  # Resend asks twice more with the same key
    server.fail_next(500, body={"message": "internal error"}, times=tries)
    server.fail_next(200, stall=1.5, times=tries)
    transport = transport_for(server, camp, timeout=0.5)
    with transport:
        first = transport.send(camp.outgoing(TRICKY[:3]))
        second = transport.send(camp.outgoing(TRICKY[3:5]))
        third = transport.send(camp.outgoing(TRICKY[5:6]))
    assert [r.status for r in first] == ["deferred"] * 3 and "500" in first[0].reply
    assert [r.status for r in second] == ["deferred"] * 2 and "timeout" in second[0].reply
    assert [r.status for r in third] == ["sent"]


def test_bad_key_stops_the_run_without_showing_it(server: ProviderServer, camp: Campaign) -> None:
    wrong = "sk-wrong-Yy7-not-the-real-one"
    with pytest.raises(TransportAuthError) as caught:
        send(server, camp, camp.outgoing(TRICKY[:3]), key=wrong)
    message = str(caught.value)
    assert ENV[server.name] in message
    assert wrong not in message and KEY not in message
    assert server.delivered == []


def test_unreachable_endpoint_stops_before_anyone_is_marked(camp: Campaign) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = transport_from_url(
        f"resend:?endpoint=http://127.0.0.1:{port}", camp.config, {"RESEND_API_KEY": KEY}
    )
    with pytest.raises(TransportConnectError, match="cannot reach Resend"):
        transport.open()  # the runner opens transports before it claims anyone


# ------------------------------------------------------------------------ per-recipient errors


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "resend", "postmark"])
def test_an_invalid_address_fails_alone(provider: str, camp: Campaign) -> None:
    recipients = many(9)
    bad = recipients[5]
    with new_server(provider) as srv:
        srv.refuse(bad.email, "invalid")
        results = send(srv, camp, camp.outgoing(recipients))
        assert srv.violations == []
    statuses = {r.email: res.status for r, res in zip(recipients, results, strict=True)}
    assert statuses.pop(bad.email) == "failed"
    assert set(statuses.values()) == {"sent"}
    assert sorted(d.to_email for d in srv.delivered) == sorted(statuses)  # exactly once each
    failed = results[5]
    assert "valid" in failed.reply.lower() and failed.provider_id is None


def test_postmark_inactive_recipient_is_bounced(camp: Campaign) -> None:
    recipients = many(5)
    with PostmarkServer(KEY) as srv:
        srv.refuse(recipients[1].email, "inactive")
        srv.refuse(recipients[3].email, "invalid")
        results = send(srv, camp, camp.outgoing(recipients))
    assert [r.status for r in results] == ["sent", "bounced", "sent", "failed", "sent"]
    assert "406" in results[1].reply and "inactive" in results[1].reply
    assert len(srv.delivered) == 3


# ------------------------------------------------------------------------ Resend idempotency


def test_resend_retried_batch_is_not_sent_twice(camp: Campaign) -> None:
    messages = camp.outgoing(many(120))
    with ResendServer(KEY) as srv:
        # The first request is accepted, but the answer comes too late: the client gives up
        # and asks again with the same key, which Resend answers from the first attempt.
        srv.fail_next(200, stall=1.5, process=True)
        transport = transport_for(srv, camp, timeout=0.5)
        with transport:
            first = transport.send(messages)
            again = transport.send(messages)  # a later retry of the same batches
        keys = [r.headers.get("idempotency-key") for r in srv.requests]
    assert {r.status for r in first} == {"sent"}
    assert [r.provider_id for r in again] == [r.provider_id for r in first]
    assert srv.replayed == 3
    assert len(srv.delivered) == 120  # nobody got a second copy
    assert keys == [keys[0], keys[0], keys[2], keys[0], keys[2]] and keys[0] != keys[2]
    # The same recipients in another campaign (other Message-IDs) get another key.
    other = Campaign(
        camp.config, MessageTemplate(camp.template.compiled, camp.config, campaign_key="c-2")
    )
    assert idempotency_key(other.outgoing(many(100)), b"[]") != idempotency_key(
        messages[:100], b"[]"
    )


def test_resend_gives_up_after_two_quick_retries(camp: Campaign) -> None:
    with ResendServer(KEY) as srv:
        srv.fail_next(503, times=3, body={"name": "internal_server_error"})
        results = send(srv, camp, camp.outgoing(TRICKY[:2]))
    assert [r.status for r in results] == ["deferred"] * 2 and "503" in results[0].reply
    assert len(srv.requests) == 3


# ------------------------------------------------------------------------ URLs and secrets


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_secret_names_the_variable(provider: str, camp: Campaign) -> None:
    url = {"mailgun": f"mailgun:{DOMAIN}", "postmark": "postmark:"}.get(provider, f"{provider}:")
    with pytest.raises(TransportConfigError, match=ENV[provider]):
        transport_from_url(url, camp.config, {})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sendgrid:?endpoint=ftp://x", "endpoint"),
        ("sendgrid:?endpoint=http://user:pw@127.0.0.1:1", "credentials"),
        ("sendgrid:?colour=blue", "unknown parameter 'colour'"),
        ("sendgrid:api.sendgrid.com", "takes no host"),
        ("sendgrid:?region=mars", "region"),
        ("mailgun:", "sending domain"),
        ("mailgun:news.example.org?region=mars", "region"),
        ("postmark:?stream=", "stream"),
        ("resend:?endpoint=http://127.0.0.1:1&endpoint=http://127.0.0.1:2", "twice"),
    ],
)
def test_bad_urls_are_clear(url: str, problem: str, camp: Campaign) -> None:
    env = {v: KEY for v in ENV.values()}
    with pytest.raises(TransportConfigError, match=problem):
        transport_from_url(url, camp.config, env)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_describe_and_repr_hide_the_key(provider: str, camp: Campaign) -> None:
    url = {"mailgun": f"mailgun:{DOMAIN}?region=eu"}.get(provider, f"{provider}:")
    transport = transport_from_url(url, camp.config, {ENV[provider]: KEY})
    shown = transport.describe() + repr(transport) + str(vars(transport).get("base_url"))
    assert KEY not in shown
    assert provider in transport.describe()
    if provider == "mailgun":
        assert "api.eu.mailgun.net" in transport.describe()
    eu = transport_from_url("sendgrid:?region=eu", camp.config, {ENV["sendgrid"]: KEY})
    assert "api.eu.sendgrid.com" in eu.describe()


def test_replies_stored_for_the_ledger_never_hold_the_key(camp: Campaign) -> None:
    with SendGridServer(KEY) as srv:
        srv.fail_next(500, body={"errors": [{"message": f"echo: Bearer {KEY}"}]})
        results = send(srv, camp, camp.outgoing(TRICKY[:1]))
    assert results[0].status == "deferred"
    assert KEY not in results[0].reply and "[redacted]" in results[0].reply


def test_result_is_one_per_message_in_order(camp: Campaign) -> None:
    recipients = [*TRICKY[:3], Recipient(TRICKY[0].email, "Same address again")]
    with SendGridServer(KEY) as srv:
        results = send(srv, camp, camp.outgoing(recipients))
        assert srv.violations == []  # the duplicate went in a request of its own
    assert len(results) == 4 and all(isinstance(r, DeliveryResult) for r in results)
    assert [r.status for r in results] == ["sent"] * 4
    assert sorted(parseaddr(d.to_header)[0] for d in srv.for_address(TRICKY[0].email)) == [
        "Ada Lovelace",
        "Same address again",
    ]


def test_sendgrid_recipient_past_the_substitution_limit_goes_alone(camp: Campaign) -> None:
    recipients = [*many(4), Recipient("long@example.com", ("Bartholomew " * 700).strip())]
    with SendGridServer(KEY) as srv:
        results = send(srv, camp, camp.outgoing(recipients))
        assert srv.violations == []  # no personalization carried more than 10,000 bytes
    assert {r.status for r in results} == {"sent"}
    assert len(srv.requests) == 2
    (copy,) = srv.for_address("long@example.com")
    assert_received(copy, camp, recipients[-1])


def test_mailgun_unknown_domain_stops_before_sending(camp: Campaign) -> None:
    with MailgunServer(KEY, "other.example.org") as srv:
        transport = transport_from_url(
            f"mailgun:{DOMAIN}?region=eu&endpoint={srv.url}", camp.config, {ENV["mailgun"]: KEY}
        )
        with pytest.raises(TransportConfigError, match="does not know the domain"):
            transport.open()
    assert srv.requests == []


def test_sendgrid_key_without_mail_send_scope_stops(camp: Campaign) -> None:
    with SendGridServer(KEY) as srv:
        srv.scopes = ["user.profile.read"]
        with pytest.raises(TransportAuthError, match=r"mail\.send"):
            transport_for(srv, camp).open()


def test_one_instance_serves_several_workers_at_once(
    server: ProviderServer, camp: Campaign
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    recipients = many(240)
    batches = [camp.outgoing(recipients[i : i + 30], start=i) for i in range(0, 240, 30)]
    transport = transport_for(server, camp)
    assert transport.thread_safe  # the runner shares one instance between its workers
    with transport, ThreadPoolExecutor(4) as pool:
        results = [r for batch in pool.map(transport.send, batches) for r in batch]
    assert {r.status for r in results} == {"sent"}
    assert sorted(d.to_email for d in server.delivered) == sorted(r.email for r in recipients)


def test_a_message_that_cannot_be_built_fails_alone(server: ProviderServer, camp: Campaign) -> None:
    from newsletter.errors import MessageError

    def broken() -> object:
        raise MessageError("line break in the subscriber's name")

    messages = camp.outgoing(TRICKY[:3])
    bad = OutgoingMessage(
        99, "news@example.org", "bad@example.com", "x@example.org", broken, broken
    )
    results = send(server, camp, [messages[0], bad, messages[1], messages[2]])
    assert [r.status for r in results] == ["sent", "failed", "sent", "sent"]
    assert "line break" in results[1].reply
    assert sorted(d.to_email for d in server.delivered) == sorted(r.email for r in TRICKY[:3])


def test_mailgun_variables_are_identifiers_and_every_list_unsubscribe_arrives(
    camp: Campaign,
) -> None:
    """Mailgun substitutes only `%recipient.name%` with a plain identifier: a header variable
    named `h:List-Unsubscribe` would reach every reader unsubstituted. The stand-in leaves any
    other form as written (and records a violation), so each delivered header must be right."""
    recipients = [*many(40), *TRICKY]
    with new_server("mailgun") as srv:
        send(srv, camp, camp.outgoing(recipients))
        assert srv.violations == []
        batch = max(srv.requests, key=lambda r: r.body.count(b'name="to"'))
        for header in (b"List-Unsubscribe", b"Message-ID"):
            value = re.search(rb'name="h:' + header + rb'"\r\n\r\n([^\r]*)\r\n', batch.body).group(
                1
            )  # type: ignore[union-attr]
            assert re.fullmatch(rb"%recipient\.[A-Za-z0-9_]+%", value), value
        for recipient in recipients:
            (copy,) = srv.for_address(recipient.email)
            headers = {k.lower(): v for k, v in copy.headers.items()}
            want = camp.expected_parts(recipient).headers
            assert headers["list-unsubscribe"] == want["List-Unsubscribe"]
            assert "%recipient" not in " ".join([copy.subject, copy.text, *headers.values()]) or (
                recipient.name and "%recipient" in recipient.name
            )
