"""Provider webhooks on a real `newsletter serve` (uvicorn on loopback): keys generated here,
payloads in each provider's documented shape, signed the way the provider signs them
(tests/support/webhook_support.py). Every refusal is checked against a dump of the whole
database taken before and after: a refused webhook changes nothing."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import run
from click.testing import CliRunner
from db_support import use_database
from serve_support import dump, populate, running
from webhook_support import (
    PROVIDERS,
    Event,
    MailgunSigner,
    SendGridSigner,
    SesSigner,
    Signed,
    signer_for,
    sns_sign,
)

from newsletter import db
from newsletter.bounces.webhooks.sns import SnsHosts
from newsletter.config import Config, load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app

STALE = {"sendgrid": 600, "mailgun": 600, "resend": 600, "ses": 7200}  # Postmark signs no time


@pytest.fixture
def config(project: Path, database: str) -> Config:
    """The project on each engine (`database`: an SQLite file, a PostgreSQL URL)."""
    use_database(project, database)
    return load_config(project / "newsletter.yaml")


@pytest.fixture
def ada(config: Config) -> Event:
    """Ada, active, sent the published issue: a webhook event about that message."""
    site = populate(config)
    conn = db.connect(config.database)
    key = conn.execute(
        "SELECT id FROM campaign_recipients WHERE subscriber_id = ?", (site.ada_id,)
    ).fetchone()[0]
    conn.close()
    return Event("hard_bounce", "ada@example.com", key=key)


def status_of(config: Config, email: str) -> str:
    with SubscriberStore.for_config(config) as store:
        found = store.get(email)
        assert found is not None
        return found.status


def post(server: str, provider: str, signed: Signed) -> httpx.Response:
    return httpx.post(f"{server}/webhooks/{provider}", content=signed.body, headers=signed.headers)


def without_nonces(lines: list[str]) -> list[str]:
    return [line for line in lines if "webhook_nonces" not in line]


# ====================================================================== the table of cases


CASES = [
    (provider, case)
    for provider in PROVIDERS
    for case in ("valid", "missing", "wrong", "stale", "replay", "get")
    if not (provider == "postmark" and case == "stale")
]


@pytest.mark.parametrize(("provider", "case"), CASES)
def test_signature_table(provider, case, config, ada, certs, caplog):
    signer = signer_for(provider, certs)
    kind = "soft_bounce" if case == "replay" else "hard_bounce"
    event = Event(kind, ada.email, key=ada.key)
    knobs: dict[str, Any] = {
        "missing": {"signature": "missing"},
        "wrong": {"signature": "wrong"},
        "stale": {"age": STALE.get(provider, 0)},
    }.get(case, {})
    [signed] = signer.requests([event], **knobs)
    app = create_app(config, environ=signer.environ)  # creates its tables
    before = dump(config.database)
    with running(app) as server:
        if case == "get":
            answer = httpx.get(f"{server}/webhooks/{provider}", headers=signed.headers)
            assert answer.status_code == 405
            assert dump(config.database) == before
            return
        answer = post(server, provider, signed)
        if case in ("missing", "wrong", "stale"):
            assert answer.status_code == 401, answer.text
            proof = "credentials" if provider == "postmark" else "signature"
            assert answer.text == f"{proof} missing or invalid\n"
            assert dump(config.database) == before
            why = {"missing": "missing", "wrong": "not", "stale": "s from now"}[case]
            assert any(why in r.getMessage() for r in caplog.records), caplog.text
            return
        assert answer.status_code == 200, answer.text
        after = dump(config.database)
        if case == "valid":
            assert status_of(config, ada.email) == "bounced"
            return
        assert after != before  # the soft bounce was recorded...
        again = post(server, provider, signed)
        assert again.status_code == 200, again.text
        assert dump(config.database) == after  # ...once
    assert status_of(config, ada.email) == "active"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_route_is_off_while_its_secret_is_unset(provider, config, ada, certs, caplog):
    signer = signer_for(provider, certs)
    [signed] = signer.requests([ada])
    app = create_app(config, environ={})
    before = dump(config.database)
    with running(app) as server:
        answer = post(server, provider, signed)
    assert answer.status_code == 404
    assert dump(config.database) == before
    assert any(
        f"webhook {provider} is off" in r.getMessage()
        and next(iter(signer.environ)) in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_event_types_are_answered_200_and_ignored(provider, config, ada, certs, caplog):
    caplog.set_level(logging.INFO, "newsletter.serve")
    signer = signer_for(provider, certs)
    [signed] = signer.requests([Event("unknown", ada.email, key=ada.key)])
    app = create_app(config, environ=signer.environ)  # creates its tables
    before = dump(config.database)
    with running(app) as server:
        answer = post(server, provider, signed)
    assert answer.status_code == 200, answer.text
    assert without_nonces(dump(config.database)) == without_nonces(before)
    assert any("ignored:" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_too_large_is_refused(provider, config, ada, certs):
    signer = signer_for(provider, certs)
    app = create_app(config, environ=signer.environ)  # creates its tables
    before = dump(config.database)
    with running(app) as server:
        answer = httpx.post(f"{server}/webhooks/{provider}", content=b"[" + b" " * (5 << 20) + b"]")
    assert answer.status_code == 413
    assert dump(config.database) == before


def misshapen(provider: str, signer: Any) -> Signed:
    """A correctly signed body that is not the provider's documented shape."""
    if provider == "sendgrid":
        return signer.sign(b'{"event": "bounce"}')  # one object, not the array
    if provider == "mailgun":
        return signer.sign({"event-data": ["failed"]})
    if provider == "postmark":
        return signer.sign(b"[1, 2]")
    if provider == "resend":
        return signer.sign(b'"email.bounced"')
    message = signer.envelope("Notification", Message="{not json")
    sns_sign(message, signer.certs.signing_key)
    return Signed({"Content-Type": "text/plain"}, json.dumps(message).encode())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_verified_body_of_the_wrong_shape_gets_400(provider, config, ada, certs, caplog):
    signer = signer_for(provider, certs)
    app = create_app(config, environ=signer.environ)
    before = dump(config.database)
    with running(app) as server:
        answer = post(server, provider, misshapen(provider, signer))
    assert answer.status_code == 400, answer.text
    assert "Traceback" not in caplog.text
    assert without_nonces(dump(config.database)) == without_nonces(before)


# ============================================================ what each kind of event does


EXPECTED = {
    "hard_bounce": "bounced",
    "soft_bounce": "active",
    "complaint": "complained",
    "unsubscribe": "unsubscribed",
    "delivered": "active",
}
KINDS = [
    (provider, kind)
    for provider in PROVIDERS
    for kind in EXPECTED
    # Resend and SES send no provider-side unsubscribe event.
    if not (kind == "unsubscribe" and provider in ("resend", "ses"))
]


def feedback_rows(config: Config) -> list[tuple[str, str, int | None, int | None]]:
    conn = db.connect(config.database)
    try:
        return [
            tuple(r)
            for r in conn.execute(
                "SELECT source, kind, subscriber_id, row_id FROM feedback_events ORDER BY id"
            ).fetchall()
        ]
    finally:
        conn.close()


@pytest.mark.parametrize(("provider", "kind"), KINDS)
def test_each_kind_lands_on_the_right_subscriber_and_ledger_row(provider, kind, config, ada, certs):
    """The provider's class maps to our kind (SES Permanent/Transient, SendGrid bounce/blocked,
    Postmark TypeCode, Mailgun severity, Resend bounce.type...), tied by the ledger key."""
    signer = signer_for(provider, certs)
    with running(create_app(config, environ=signer.environ)) as server:
        for signed in signer.requests([Event(kind, ada.email, key=ada.key)]):
            assert post(server, provider, signed).status_code == 200
    assert status_of(config, ada.email) == EXPECTED[kind]
    [(source, recorded_kind, subscriber_id, row_id)] = feedback_rows(config)
    assert (source, recorded_kind, row_id) == (provider, kind, ada.key)
    assert subscriber_id is not None


def test_sendgrid_batch_applies_every_event_of_the_array(config, ada, certs, caplog):
    caplog.set_level(logging.INFO, "newsletter.serve")
    with SubscriberStore.for_config(config) as store:
        for email in ("bo@example.com", "cy@example.com", "di@example.com"):
            store.add(email)
    signer = SendGridSigner()
    events = [
        Event("hard_bounce", "bo@example.com"),
        Event("complaint", "cy@example.com"),
        Event("unknown", "di@example.com"),
        Event("delivered", ada.email, key=ada.key),
        Event("unsubscribe", "di@example.com"),
    ]
    [signed] = signer.requests(events)
    with running(create_app(config, environ=signer.environ)) as server:
        assert post(server, "sendgrid", signed).status_code == 200
    statuses = {e: status_of(config, e) for e in ("bo@example.com", "cy@example.com")}
    assert statuses == {"bo@example.com": "bounced", "cy@example.com": "complained"}
    assert status_of(config, "di@example.com") == "unsubscribed"
    assert status_of(config, ada.email) == "active"
    lines = [r.getMessage() for r in caplog.records]
    why = "(sendgrid 5.1.1: 550 5.1.1 The email account does not exist)"
    assert f"webhook sendgrid: b***@example.com: bounced {why}" in lines  # masked
    assert [row[1] for row in feedback_rows(config)] == [
        "hard_bounce",
        "complaint",
        "delivered",
        "unsubscribe",
    ]


def test_mailgun_token_is_refused_again_by_another_serve_process(config, ada, certs):
    """The one-time token lives in the database: a second app (another process) refuses it."""
    signer = MailgunSigner()
    [signed] = signer.requests([Event("soft_bounce", ada.email, key=ada.key)])
    with running(create_app(config, environ=signer.environ)) as first:
        assert post(first, "mailgun", signed).status_code == 200
    after = dump(config.database)
    with running(create_app(config, environ=signer.environ)) as second:
        assert post(second, "mailgun", signed).status_code == 200
    assert dump(config.database) == after
    assert len(feedback_rows(config)) == 1


# ============================================================================ SES and SNS


def ses_post(server: str, message: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server}/webhooks/ses",
        content=json.dumps(message).encode(),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_subscription_confirmation_fetches_subscribe_url_once_verified(
    version, config, ada, certs
):
    signer = SesSigner(certs, version)
    token = "2336412f37fb687f5d51e6e2425f004aed8e3c5ab6b4bdd3d5f6a1b0d18a"
    url = f"https://{certs.host}/?Action=ConfirmSubscription&TopicArn=x&Token={token}"
    message = signer.envelope(
        "SubscriptionConfirmation",
        Token=token,
        SubscribeURL=url,
        Message="You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
    )
    forged = dict(message, SubscribeURL=url + "&forged=1")
    sns_sign(message, certs.signing_key, version)
    sns_sign(forged, certs.signing_key, version)
    forged["SubscribeURL"] = url + "&forged=2"  # changed after signing
    app = create_app(config, environ=signer.environ)
    before = dump(config.database)
    with running(app) as server:
        assert ses_post(server, forged).status_code == 401
        assert not [p for p in certs.gets if "forged" in p]
        assert ses_post(server, message).status_code == 200
    assert [p for p in certs.gets if "ConfirmSubscription" in p][-1].endswith(token)
    assert dump(config.database) == before


def test_ses_refuses_a_topic_not_configured_before_fetching_anything(config, ada, certs):
    signer = SesSigner(certs)
    message = signer.envelope("Notification", Message=json.dumps(signer.ses_event(ada)))
    message["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:someone-elses-topic"
    sns_sign(message, certs.signing_key)
    fetched = certs.cert_gets()
    app = create_app(config, environ=signer.environ)
    before = dump(config.database)
    with running(app) as server:
        assert ses_post(server, message).status_code == 401
    assert certs.cert_gets() == fetched
    assert dump(config.database) == before


def test_ses_signing_certificate_is_fetched_once(config, ada, certs):
    signer = SesSigner(certs)
    fetched = certs.cert_gets()
    with running(create_app(config, environ=signer.environ)) as server:
        for kind in ("soft_bounce", "delivered", "soft_bounce"):
            [signed] = signer.requests([Event(kind, ada.email, key=ada.key)])
            assert post(server, "ses", signed).status_code == 200
    assert certs.cert_gets() == fetched + 1
    assert len(feedback_rows(config)) == 3


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com@evil.example/x.pem",
        "https://evil.example\\@sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
        "https://snsXeu-west-1.amazonaws.com/x.pem",
        "https://sqs.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.co/x.pem",
        "ftp://sns.eu-west-1.amazonaws.com/x.pem",
        "",
    ],
)
def test_production_rule_refuses_every_other_certificate_host(cert_url):
    assert not SnsHosts().allowed(cert_url)


def test_without_test_settings_a_local_certificate_url_is_refused_unfetched(config, ada, certs):
    """Serve without the test settings: the local server's HTTPS URL is not sns.<region>.
    amazonaws.com, so the message is refused and nothing is requested from that server."""
    signer = SesSigner(certs)
    [signed] = signer.requests([ada])
    fetched = certs.cert_gets()
    app = create_app(config, environ={"SES_SNS_TOPIC_ARN": signer.environ["SES_SNS_TOPIC_ARN"]})
    before = dump(config.database)
    with running(app) as server:
        assert post(server, "ses", signed).status_code == 401
    assert certs.cert_gets() == fetched
    assert dump(config.database) == before


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem",
    ],
)
def test_production_rule_accepts_sns_hosts(cert_url):
    assert SnsHosts().allowed(cert_url)


def _rsa_public_key_b64() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "not-a-key", "not a base64 DER public key"),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", "rsa", "not an ECDSA P-256 public key"),
        ("RESEND_WEBHOOK_SECRET", "whsec_!!not base64", "not whsec_ followed by base64"),
    ],
)
def test_serve_refuses_to_start_with_an_unusable_webhook_secret(project, variable, value, said):
    value = _rsa_public_key_b64() if value == "rsa" else value
    code, output = run(CliRunner(env={variable: value}), project, "serve", "--port", "0")
    assert code != 0
    assert variable in output and said in output
    assert value not in output  # a secret never goes to the output


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_busy_database_answers_503_and_the_providers_retry_applies(provider, config, ada, certs):
    """Another process holds the write lock (a long import): the webhook answers 503 with
    Retry-After after serve's busy timeout, nothing written; the provider's retry of the same
    request applies it once."""
    signer = signer_for(provider, certs)
    [signed] = signer.requests([ada])
    app = create_app(config, environ=signer.environ)
    with running(app) as server:
        # The policy's tables exist already, as they do after a first event or an import.
        [warm] = signer.requests([Event("delivered", "nobody@example.net")])
        assert post(server, provider, warm).status_code == 200
        before = dump(config.database)
        holder = db.connect(config.database, timeout=0)  # the write lock, on either engine
        holder.execute("BEGIN IMMEDIATE")
        try:
            answer = post(server, provider, signed)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert dump(config.database) == before
        assert post(server, provider, signed).status_code == 200
    assert status_of(config, ada.email) == "bounced"
