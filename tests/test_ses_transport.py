"""Amazon SES v2 transport against moto's SES server on loopback (raw SendEmail per recipient).

SES receives our exact bytes, so the check is strict: what moto stored for each recipient is
byte for byte the message the template built (Message-ID, List-Unsubscribe, both parts).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from api_messages import TRICKY, Campaign, campaign, make_project, many
from provider_servers import SesServer

from newsletter.errors import TransportAuthError, TransportConfigError
from newsletter.transports import transport_from_url

REGION = "eu-west-1"
ACCESS = "AKIATESTNEWSLETTER01"
SECRET = "s3cr3t/Test+Key+Never+Shown+0123456789ab"
ENV = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}


@pytest.fixture(scope="module")
def camp(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    return campaign(make_project(tmp_path_factory.mktemp("ses-project")))


@pytest.fixture(scope="module")
def moto_ses() -> Iterator[SesServer]:
    with SesServer(ACCESS, REGION, configuration_sets=("news",)) as server:
        yield server


@pytest.fixture
def ses(moto_ses: SesServer) -> Iterator[SesServer]:
    httpx.post(moto_ses.url + "/moto-api/reset").raise_for_status()
    moto_ses.violations.clear()
    yield moto_ses
    assert moto_ses.violations == []


def verify_domain(server: SesServer, domain: str = "example.org") -> None:
    import boto3

    client = boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=server.url,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
    )
    client.create_email_identity(EmailIdentity=domain)


def transport(server: SesServer, camp: Campaign, query: str = "", env: dict | None = None):
    url = f"ses:{REGION}?endpoint={server.url}{query}"
    return transport_from_url(url, camp.config, ENV if env is None else env)


def test_each_recipient_gets_the_exact_bytes(ses: SesServer, camp: Campaign) -> None:
    verify_domain(ses)
    messages = camp.outgoing(TRICKY)
    with transport(ses, camp, "&configuration_set=news") as t:
        results = t.send(messages)
    assert [r.status for r in results] == ["sent"] * len(TRICKY)
    stored = {d.to_email: d for d in ses.sent()}
    assert len(stored) == len(TRICKY)
    for message, result in zip(messages, results, strict=True):
        got = stored[message.recipient]
        assert got.data == message.data  # nothing rebuilt: our Message-ID, headers, both parts
        assert got.provider_id == result.provider_id
        assert got.headers["Message-ID"] == f"<{message.message_id}>"
        assert got.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    recipient = TRICKY[4]
    got = stored[recipient.email]
    assert got.text.replace("\r\n", "\n") == camp.expected_parts(recipient).text.replace(
        "\r\n", "\n"
    )


def test_a_full_batch_goes_out_in_parallel(ses: SesServer, camp: Campaign) -> None:
    verify_domain(ses)
    with transport(ses, camp) as t:
        assert t.max_batch == 50
        results = t.send(camp.outgoing(many(50)))
    assert {r.status for r in results} == {"sent"}
    assert len(ses.sent()) == 50


def test_a_message_that_cannot_be_built_fails_alone(ses: SesServer, camp: Campaign) -> None:
    from newsletter.errors import MessageError
    from newsletter.transports.base import OutgoingMessage

    def broken() -> object:
        raise MessageError("unsubscribe URL too long")

    verify_domain(ses)
    bad = OutgoingMessage(9, "news@example.org", "bad@example.com", "x@example.org", broken, broken)
    with transport(ses, camp) as t:
        results = t.send([*camp.outgoing(TRICKY[:1]), bad])
    assert [r.status for r in results] == ["sent", "failed"]
    assert "too long" in results[1].reply and len(ses.sent()) == 1


def test_unverified_sender_stops_the_run(ses: SesServer, camp: Campaign) -> None:
    with transport(ses, camp) as t, pytest.raises(TransportConfigError, match="verify"):
        t.send(camp.outgoing(TRICKY[:2]))
    assert ses.sent() == []


def test_bad_credentials_stop_the_run_without_showing_them(ses: SesServer, camp: Campaign) -> None:
    verify_domain(ses)
    env = {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0", "AWS_SECRET_ACCESS_KEY": SECRET}
    with pytest.raises(TransportAuthError) as caught:
        transport(ses, camp, env=env).open()  # before the runner claims anyone
    assert "AWS_SECRET_ACCESS_KEY" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert ses.sent() == []


def test_throttling_and_server_errors_defer(ses: SesServer, camp: Campaign) -> None:
    verify_domain(ses)
    with transport(ses, camp) as t:
        t.send(camp.outgoing(TRICKY[:1]))  # first contact made
        ses.fail_next(429, "TooManyRequestsException", message="Maximum sending rate exceeded.")
        ses.fail_next(500, "InternalFailure")
        first = t.send(camp.outgoing(TRICKY[1:2]))
        second = t.send(camp.outgoing(TRICKY[2:3]))
        third = t.send(camp.outgoing(TRICKY[3:4]))
    assert first[0].status == "deferred" and "TooManyRequests" in first[0].reply
    assert second[0].status == "deferred" and "500" in second[0].reply
    assert third[0].status == "sent"
    assert len(ses.sent()) == 2


def test_a_rejected_message_fails_alone(ses: SesServer, camp: Campaign) -> None:
    verify_domain(ses)
    with transport(ses, camp) as t:
        t.send(camp.outgoing(TRICKY[:1]))
        ses.fail_next(400, "MessageRejected", message="Email address is not verified: recipient")
        results = t.send(camp.outgoing(TRICKY[1:2]))
    assert results[0].status == "failed" and "MessageRejected" in results[0].reply


def test_unknown_configuration_set_stops_the_run(ses: SesServer, camp: Campaign) -> None:
    verify_domain(ses)
    with (
        transport(ses, camp, "&configuration_set=nope") as t,
        pytest.raises(TransportConfigError, match="does not exist"),
    ):
        t.send(camp.outgoing(TRICKY[:1]))


@pytest.mark.parametrize(
    ("url", "env", "problem"),
    [
        ("ses:eu-west-1", {"AWS_ACCESS_KEY_ID": ACCESS}, "AWS_SECRET_ACCESS_KEY"),
        ("ses:eu-west-1", {"AWS_SECRET_ACCESS_KEY": SECRET}, "AWS_ACCESS_KEY_ID"),
        ("ses:", ENV, "region"),
        ("ses:mars", ENV, "region"),
        ("ses:eu-west-1?configuration_set=a b", ENV, "configuration_set"),
        ("ses:eu-west-1?bulk=yes", ENV, "unknown parameter"),
    ],
)
def test_configuration_errors_are_clear(url: str, env: dict, problem: str, camp: Campaign) -> None:
    with pytest.raises(TransportConfigError, match=problem):
        transport_from_url(url, camp.config, env)


def test_describe_hides_credentials(camp: Campaign) -> None:
    t = transport_from_url("ses:eu-west-1?configuration_set=news", camp.config, ENV)
    shown = t.describe() + repr(t)
    assert "eu-west-1" in shown and "news" in shown
    assert SECRET not in shown and ACCESS not in shown
