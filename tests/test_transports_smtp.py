"""SmtpTransport against real aiosmtpd servers on loopback: delivery, TLS, AUTH and every fault."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from message_support import compiled_issue, content, expected_name
from smtp_servers import Fault, SmtpServer, fault

from newsletter.config import Config
from newsletter.errors import (
    TransportAuthError,
    TransportConfigError,
    TransportConnectError,
)
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import Recipient
from newsletter.transports import transport_from_url
from newsletter.transports.base import OutgoingMessage
from newsletter.transports.smtp import SmtpTransport, classify

PASSWORD = "s3cret-Pa55"
ENV = {"NEWSLETTER_SMTP_PASSWORD": PASSWORD}


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    compiled, config = compiled_issue(project)
    return MessageTemplate(compiled, config, campaign_key="c1")  # type: ignore[arg-type]


@pytest.fixture
def config(template: MessageTemplate) -> Config:
    return template.config


def msg(template: MessageTemplate, address: str, name: str | None = None, key: int = 0):
    return template.outgoing(key, Recipient(address, name), f"https://e.x/u/{key}", key)


def send_all(transport: SmtpTransport, messages: list[OutgoingMessage]) -> list[str]:
    return [transport.send([m])[0].status for m in messages]


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_delivers_personalised_messages_over_one_connection(
    template: MessageTemplate, config: Config, pipelining: bool
) -> None:
    people = [
        Recipient("ann@example.com", "Ann"),
        Recipient("zoe@example.com", "Zoë 🎉"),
        Recipient("dot@example.com", "."),
        Recipient("noname@example.com"),
    ]
    with SmtpServer(pipelining=pipelining) as server:
        transport = transport_from_url(server.url(), config, {})
        with transport:
            outgoing = [
                template.outgoing(i, r, f"https://e.x/u/{i}", i) for i, r in enumerate(people)
            ]
            results = transport.send(outgoing[:1]) + transport.send(outgoing[1:2])
            results += [transport.send([m])[0] for m in outgoing[2:]]
        assert [r.status for r in results] == ["sent"] * 4
        assert results[0].reply.startswith("250 2.0.0 OK queued")
        delivered = server.wait_for(4)
        assert server.connections == 1
        for i, (r, d) in enumerate(zip(people, delivered, strict=True)):
            assert d.rcpt_tos == [r.email]
            assert d.mail_from == "news@example.org"
            assert d.data == outgoing[i].data  # byte-exact: dot-stuffing undone by the server
            parsed = d.parsed()
            assert parsed["Subject"] == f"News for {expected_name(r)}"
            assert parsed["Message-ID"] == f"<{outgoing[i].message_id}>"
            text, body = (content(p) for p in parsed.iter_parts())
            assert f"Hello {expected_name(r)}!" in text
            assert f'href="https://e.x/u/{i}"' in body


def test_lines_starting_with_a_dot_survive_the_wire(config: Config) -> None:
    data = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: dots\r\n\r\n.\r\n..x\r\n.y\r\n"
    message = OutgoingMessage(
        1, "a@example.org", "b@example.com", "1@example.org", lambda: data, lambda: None
    )  # type: ignore[arg-type, return-value]
    with SmtpServer() as server, transport_from_url(server.url(), config, {}) as transport:
        assert transport.send([message])[0].status == "sent"
        assert server.wait_for(1)[0].data == data


def test_starttls_with_auth_and_a_verified_self_signed_certificate(
    template: MessageTemplate, config: Config
) -> None:
    with SmtpServer(tls="starttls", auth={"mailer": PASSWORD}) as server:
        url = server.url(user="mailer")
        transport = transport_from_url(url, config, ENV)
        assert PASSWORD not in transport.describe()
        assert transport.describe() == f"smtp://mailer@127.0.0.1:{server.port}?tls=starttls"
        with transport:
            assert transport.send([msg(template, "ann@example.com", "Ann")])[0].status == "sent"
        assert server.wait_for(1)[0].rcpt_tos == ["ann@example.com"]


def test_implicit_tls_smtps(template: MessageTemplate, config: Config) -> None:
    with SmtpServer(tls="implicit", auth={"mailer": PASSWORD}) as server:
        url = server.url(user="mailer")
        assert url.startswith("smtps://")
        with transport_from_url(url, config, ENV) as transport:
            assert transport.send([msg(template, "ann@example.com")])[0].status == "sent"
        server.wait_for(1)


def test_untrusted_certificate_is_refused_by_default(config: Config) -> None:
    with SmtpServer(tls="starttls") as server:
        url = f"smtp://127.0.0.1:{server.port}?tls=starttls&timeout=5"
        with pytest.raises(TransportConnectError, match=r"could not be verified.*cafile"):
            transport_from_url(url, config, {}).open()
        # ...unless verification is explicitly switched off (testing only).
        with transport_from_url(url + "&verify=false", config, {}) as transport:
            assert transport.describe().endswith("tls=starttls")


def test_tls_handshake_failure_is_a_connect_error(config: Config) -> None:
    with SmtpServer() as server:  # a plain-text server spoken to with implicit TLS
        url = f"smtps://127.0.0.1:{server.port}?timeout=5"
        with pytest.raises(TransportConnectError, match=r"TLS handshake|cannot connect"):
            transport_from_url(url, config, {}).open()


def test_refused_login_names_the_fix_and_hides_the_password(config: Config) -> None:
    with SmtpServer(tls="starttls", auth={"mailer": PASSWORD}) as server:
        url = server.url(user="mailer")
        with pytest.raises(TransportAuthError) as info:
            transport_from_url(url, config, {"NEWSLETTER_SMTP_PASSWORD": "wrong-one"}).open()
        text = str(info.value)
        assert "535" in text and "NEWSLETTER_SMTP_PASSWORD" in text and "'mailer'" in text
        assert "wrong-one" not in text and PASSWORD not in text


def test_unreachable_server_is_a_connect_error(config: Config) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(TransportConnectError, match=f"127.0.0.1:{port}.*host and port"):
            transport_from_url(f"smtp://127.0.0.1:{port}?tls=none&timeout=2", config, {}).open()


def test_server_without_starttls_is_refused_when_starttls_is_asked(config: Config) -> None:
    with (
        SmtpServer() as server,
        pytest.raises(TransportConnectError, match="does not offer STARTTLS"),
    ):
        transport_from_url(server.url(tls="starttls"), config, {}).open()


@pytest.mark.parametrize(
    ("url", "env", "match"),
    [
        ("smtp://", {}, "bad SMTP transport URL"),
        ("smtp://u:pw@host", {}, "do not put the SMTP password"),
        ("smtp://u@host", {}, "NEWSLETTER_SMTP_PASSWORD is not set"),
        ("smtp://host?tls=maybe", {}, "tls='maybe'"),
        ("smtp://host?tsl=none", {}, "unknown SMTP URL parameter 'tsl'"),
        ("smtp://host?timeout=soon", {}, "timeout='soon'"),
        ("smtps://host?tls=none", {}, "smtps:// always uses implicit TLS"),
        ("smtp://host:99999", {}, "bad SMTP transport URL"),
        ("smtp://host?verify=perhaps", {}, "verify='perhaps'"),
        ("smtps://host?cafile=/nonexistent/ca.pem", {}, "cafile"),
    ],
)
def test_bad_urls_say_what_to_fix(
    url: str, env: dict[str, str], match: str, config: Config
) -> None:
    with pytest.raises(TransportConfigError, match=match):
        transport_from_url(url, config, env).open()


def test_defaults_ports_and_description(config: Config) -> None:
    t = transport_from_url("smtp://mail.example.com", config, {})
    assert t.describe() == "smtp://mail.example.com:587?tls=starttls"
    t = transport_from_url("smtps://u%40x@mail.example.com", config, ENV)
    assert t.describe() == "smtps://u@x@mail.example.com:465"
    assert t.settings.password == PASSWORD  # type: ignore[attr-defined]
    assert PASSWORD not in repr(t.__dict__.get("settings").describe())  # type: ignore[union-attr]


def test_reply_mapping() -> None:
    assert classify(250, "2.0.0 OK") == "sent"
    assert classify(451, "4.3.0 later") == "deferred"
    assert classify(550, "5.1.1 no such user") == "bounced"
    assert classify(551, "5.1.6 moved") == "bounced"
    assert classify(553, "5.1.3 bad syntax") == "bounced"
    assert classify(550, "5.7.1 policy") == "failed"
    assert classify(550, "no enhanced code") == "failed"
    assert classify(554, "5.1.1 odd") == "bounced"  # the enhanced code decides (RFC 3463)
    assert classify(550, "5.2.1 mailbox disabled") == "bounced"
    assert classify(552, "5.2.2 mailbox full") == "failed"
    assert classify(550, "5.1.8 bad sender domain") == "failed"
    assert classify(552, "5.3.4 too big") == "failed"


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_every_fault_maps_to_the_right_status_and_the_connection_recovers(
    template: MessageTemplate, config: Config, pipelining: bool
) -> None:
    faults = [
        fault("550", "gone@*"),
        fault("553", "syntax@*"),
        fault("451", "later@*"),
        fault("452", "full@*"),
        fault("554", "spam@*"),
        fault("421", "closing@*"),
        fault("drop", "drop@*"),
        fault("hangup", "capped@*"),
        fault("drop-mid-data", "cut@*"),
    ]
    order = [
        ("ok1", "sent"),
        ("gone", "bounced"),
        ("syntax", "bounced"),
        ("later", "deferred"),
        ("full", "deferred"),
        ("spam", "failed"),
        ("ok2", "sent"),
        ("closing", "deferred"),
        ("ok3", "sent"),
        ("drop", "deferred"),
        ("ok4", "sent"),
        ("capped", "sent"),
        ("ok5", "sent"),  # the server silently closed the idle connection: reconnect and send
        ("cut", "deferred"),  # the connection died while the message was being sent
        ("ok6", "sent"),
    ]
    with SmtpServer(faults=faults, pipelining=pipelining) as server:
        with transport_from_url(server.url(), config, {}) as transport:
            assert transport.pipelining is pipelining  # type: ignore[attr-defined]
            results = [
                transport.send([msg(template, f"{name}@example.com", key=i)])[0]
                for i, (name, _) in enumerate(order)
            ]
        assert [r.status for r in results] == [status for _, status in order]
        assert results[1].reply.startswith("550 5.1.1")
        assert results[3].reply.startswith("451 4.3.0")
        assert results[5].reply.startswith("554 5.7.1")
        assert results[7].reply.startswith("421 4.7.0")
        assert "connection" in results[9].reply
        delivered = server.count_by_recipient()
        sent = ("ok1", "ok2", "ok3", "ok4", "ok5", "ok6", "capped")
        assert delivered == {f"{n}@example.com": 1 for n in sent}
        assert "connection" in results[13].reply
        # reconnected after the 421, the drop, the hang-up and the cut
        assert server.connections == 5


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_a_421_on_a_connection_the_server_keeps_open_still_leads_to_a_reconnect(
    template: MessageTemplate, config: Config, pipelining: bool, stage: str
) -> None:
    """421 means the service is closing the channel (RFC 5321 3.8): the client must not go on
    using it, even when the server forgets to hang up."""
    closing = Fault("closing@*", stage, "421 4.7.0 Service shutting down", disconnect=False)  # type: ignore[arg-type]
    with SmtpServer(faults=[closing], pipelining=pipelining) as server:
        with transport_from_url(server.url(), config, {}) as transport:
            results = [
                transport.send([msg(template, f"{name}@example.com", key=i)])[0]
                for i, name in enumerate(["ok1", "closing", "ok2"])
            ]
        assert [r.status for r in results] == ["sent", "deferred", "sent"]
        assert results[1].reply.startswith("421 4.7.0")
        assert server.count_by_recipient() == {"ok1@example.com": 1, "ok2@example.com": 1}
        assert server.connections == 2  # the 421's connection was left, a new one sent ok2


def test_slow_reply_past_the_timeout_is_deferred_then_the_next_message_goes(
    template: MessageTemplate, config: Config
) -> None:
    with SmtpServer(faults=[fault("slow", "slow@*", delay=2.5)]) as server:
        with transport_from_url(server.url(timeout=1), config, {}) as transport:
            slow = transport.send([msg(template, "slow@example.com")])[0]
            assert slow.status == "deferred"
            assert "no reply within 1 s" in slow.reply
            assert transport.send([msg(template, "fast@example.com", key=1)])[0].status == "sent"
        assert server.count_by_recipient()["fast@example.com"] == 1


def test_a_retry_after_a_temporary_failure_succeeds(
    template: MessageTemplate, config: Config
) -> None:
    with SmtpServer(faults=[fault("451", "flaky@*", times=2)]) as server:
        with transport_from_url(server.url(), config, {}) as transport:
            m = msg(template, "flaky@example.com")
            statuses = [transport.send([m])[0].status for _ in range(3)]
        assert statuses == ["deferred", "deferred", "sent"]
        assert server.attempts["flaky@example.com"] == 3
        assert server.parsed("flaky@example.com")[0]["Message-ID"] == f"<{m.message_id}>"


def test_messages_over_the_server_size_limit_fail_without_being_sent(
    template: MessageTemplate, config: Config
) -> None:
    with SmtpServer(data_size_limit=10_000) as server:
        with transport_from_url(server.url(), config, {}) as transport:
            result = transport.send([msg(template, "big@example.com")])[0]
        assert result.status == "failed"
        assert result.reply.startswith("552") and "10,000" in result.reply
        assert server.attempts["big@example.com"] == 0


def test_a_recipient_that_cannot_make_a_message_fails_alone(
    template: MessageTemplate, config: Config
) -> None:
    good = msg(template, "ok@example.com")
    bad = msg(template, "bad@example.com")

    def broken() -> bytes:
        return template.bytes_for(
            Recipient("bad@example.com", "x\r\nBcc: y@z.z"), unsubscribe_url="u", message_id="a@b"
        )

    bad.build_data = broken
    with SmtpServer() as server, transport_from_url(server.url(), config, {}) as transport:
        assert send_all(transport, [bad, good]) == ["failed", "sent"]  # type: ignore[arg-type]


def test_one_transport_per_thread_in_parallel(template: MessageTemplate, config: Config) -> None:
    with SmtpServer() as server:
        results: list[str] = []
        lock = threading.Lock()

        def worker(w: int) -> None:
            with transport_from_url(server.url(), config, {}) as transport:
                for i in range(5):
                    status = transport.send(
                        [msg(template, f"w{w}-{i}@example.com", key=w * 10 + i)]
                    )
                    with lock:
                        results.append(status[0].status)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["sent"] * 20
        server.wait_for(20)
        assert server.connections == 4


@pytest.mark.parametrize("tls", [None, "implicit"])
def test_a_large_message_arrives_byte_exact(config: Config, tls: str | None) -> None:
    body = b"".join(b"line %07d " % i + b"x" * 60 + b"\r\n" for i in range(40_000))  # ~3 MB
    data = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: big\r\n\r\n" + body
    message = OutgoingMessage(
        1, "a@example.org", "b@example.com", "1@example.org", lambda: data, lambda: None
    )  # type: ignore[arg-type, return-value]
    with (
        SmtpServer(tls=tls) as server,  # type: ignore[arg-type]
        transport_from_url(server.url(timeout=30), config, {}) as transport,
    ):
        assert transport.send([message])[0].status == "sent"
        assert server.wait_for(1)[0].data == data
