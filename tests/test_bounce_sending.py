"""VERP, Feedback-ID and the 5xx-during-sending rule, through real sends to an aiosmtpd relay
on loopback, and the end-to-end loop: send with VERP, feed the bounces back, and the next
campaign skips exactly the bounced and complained."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from db_support import use_database
from dkim_support import verify, write_key
from smtp_servers import SmtpServer, fault

from newsletter.bounces.events import FeedbackEvent
from newsletter.bounces.policy import apply_events
from newsletter.campaign import send_issue
from newsletter.campaign.ledger import Ledger
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.issue import load_issue
from newsletter.mail.dkim import DkimSigner
from newsletter.subscribers import SubscriberStore
from newsletter.tokens import read_verp_token, secret_key, verp_token_from_address

VERP = re.compile(r"bounces\+([0-9a-z]+-[0-9a-f]{20})@news\.example\.org\Z")


@pytest.fixture(autouse=True)
def engine(project: Path, database: str) -> None:
    """Every test on each engine: the project's records in `database` (an SQLite file or a
    PostgreSQL URL)."""
    use_database(project, database)


def _configure(project: Path, extra: str = "") -> None:
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write("bounces:\n  address: bounces@news.example.org\n" + extra)


def _ledger_rows(config, issue: Path) -> dict[int, int]:
    """Ledger row id -> subscriber id for the issue's campaign."""
    conn = connect(config.database)
    try:
        ledger = Ledger(conn)
        campaign = ledger.find(load_issue(issue).slug, "default")
        return {r["id"]: r["subscriber_id"] for r in ledger.rows(campaign.id)}
    finally:
        conn.close()


def _secret(config) -> bytes:
    conn = connect(config.database)
    try:
        return secret_key(config, conn)
    finally:
        conn.close()


def test_verp_envelope_sender_names_each_ledger_row_and_feedback_id_is_dkim_signed(
    project: Path,
) -> None:
    write_key(project / "dkim.pem", "rsa")
    _configure(project, "  feedback_id: acme-mail\n")
    with open(project / "newsletter.yaml", "a", encoding="utf-8") as f:
        f.write("dkim:\n  domain: example.org\n  selector: s1\n  private_key: dkim.pem\n")
    config = load_config(project / "newsletter.yaml")
    signer = DkimSigner.from_config(config.dkim)
    issue = next((project / "issues").glob("*.yaml"))
    with SubscriberStore.for_config(config) as store:
        ids = {store.add(f"r{i}@example.net").id: f"r{i}@example.net" for i in range(5)}
    with SmtpServer() as server:
        assert send_issue(config, issue, transport=server.url(), concurrency=2).ok
        delivered = server.messages
    rows = _ledger_rows(config, issue)
    secret = _secret(config)
    senders = set()
    slug = load_issue(issue).slug
    for message in delivered:
        # MAIL FROM per recipient: the token verifies and names this recipient's ledger row.
        assert VERP.match(message.mail_from), message.mail_from
        token = verp_token_from_address(message.mail_from)
        assert ids[rows[read_verp_token(secret, token)]] == message.rcpt_tos[0]
        senders.add(message.mail_from)
        parsed = message.parsed()
        assert parsed["Feedback-ID"] == f"{slug}:default:test-letter:acme-mail"
        assert parsed["From"].addresses[0].addr_spec == "news@example.org"  # header unchanged
        assert verify(message.data, signer)
        signed = re.search(rb"\bh=([^;]+);", message.data.replace(b"\r\n\t", b"")).group(1)
        assert "feedback-id" in {h.strip().lower() for h in signed.decode().split(":")}
    assert len(senders) == 5


def test_without_a_bounce_address_the_envelope_sender_is_unchanged(project: Path) -> None:
    config = load_config(project / "newsletter.yaml")
    issue = next((project / "issues").glob("*.yaml"))
    with SubscriberStore.for_config(config) as store:
        store.add("plain@example.net")
    with SmtpServer() as server:
        assert send_issue(config, issue, transport=server.url()).ok
        [message] = server.messages
    assert message.mail_from == "news@example.org"
    # Feedback-ID is there regardless (its sender-id defaults to the sender domain).
    assert message.parsed()["Feedback-ID"].endswith(":default:test-letter:example.org")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("zz-0123456789abcdef0123", "forged MAC"),
        ("0{}", "leading zero"),
        ("{}x", "truncated/extended"),
    ],
)
def test_forged_or_non_canonical_verp_tokens_match_nobody(project: Path, token, why) -> None:
    _configure(project)
    config = load_config(project / "newsletter.yaml")
    issue = next((project / "issues").glob("*.yaml"))
    with SubscriberStore.for_config(config) as store:
        store.add("victim@example.net")
    assert send_issue(config, issue).ok
    [row_id] = _ledger_rows(config, issue)
    from newsletter.tokens import verp_token

    good = verp_token(_secret(config), row_id)
    bad = token.format(good) if "{}" in token else token
    event = FeedbackEvent("hard_bounce", "dsn", f"forged-{why}", verp_token=bad)
    [outcome] = apply_events(config, [event]).outcomes
    assert outcome.action == "no matching recipient", why
    with SubscriberStore.for_config(config) as store:
        assert store.get("victim@example.net").status == "active"


def test_a_5xx_while_sending_is_an_smtp_hard_bounce_in_history_and_events(
    project: Path,
) -> None:
    config = load_config(project / "newsletter.yaml")
    issue = next((project / "issues").glob("*.yaml"))
    with SubscriberStore.for_config(config) as store:
        store.add("ok@example.net")
        gone = store.add("gone@example.net")
    with SmtpServer(faults=[fault("550", "gone@*"), fault("451", "ok@*", times=1)]) as server:
        send_issue(config, issue, transport=server.url())
    with SubscriberStore.for_config(config) as store:
        assert store.get("gone@example.net").status == "bounced"
        assert store.get("ok@example.net").status == "active"  # a 4xx deferral is no bounce
        [bounced] = [e for e in store.events(gone.id) if e.kind == "bounced"]
        slug = load_issue(issue).slug
        assert bounced.detail.startswith(f"source smtp, status 5.1.1, campaign {slug}/default: 550")
        kinds = store.conn.execute(
            "SELECT source, kind, subscriber_id FROM feedback_events"
        ).fetchall()
    assert [tuple(k) for k in kinds] == [("smtp", "hard_bounce", gone.id)]


def test_end_to_end_send_with_verp_feed_back_and_the_next_campaign_skips_them(
    project: Path,
) -> None:
    _configure(project)
    config = load_config(project / "newsletter.yaml")
    example = next((project / "issues").glob("*.yaml"))
    issues = [example]
    for n in (2, 3, 4):  # four issues: a soft bounce counts once per message
        copy = project / "issues" / f"2026-12-0{n}-issue-{n}.yaml"
        shutil.copy(example, copy)
        issues.append(copy)
    readers = ["hard", "soft", "complain", "ok1", "ok2"]
    with SubscriberStore.for_config(config) as store:
        for name in readers:
            store.add(f"{name}@example.net")

    def send(issue: Path) -> dict[str, str]:
        """Send through the relay; each recipient's MAIL FROM."""
        with SmtpServer() as server:
            assert send_issue(config, issue, transport=server.url()).ok
            return {m.rcpt_tos[0]: m.mail_from for m in server.messages}

    def bounce(kind: str, mail_from: str, event_id: str, status: str) -> str:
        """A report that names only the VERP address it was sent to (a mangled DSN)."""
        event = FeedbackEvent(
            kind, "dsn", event_id, verp_token=verp_token_from_address(mail_from), status=status
        )
        return apply_events(config, [event]).outcomes[0].action

    first = send(issues[0])
    assert len(set(first.values())) == 5 and all(VERP.match(v) for v in first.values())
    assert bounce("hard_bounce", first["hard@example.net"], "h1", "5.1.1") == "bounced"
    assert bounce("complaint", first["complain@example.net"], "c1", "abuse") == (
        "unsubscribed (complained)"
    )
    soft = "soft@example.net"
    assert bounce("soft_bounce", first[soft], "s1", "4.2.2") == "soft bounce 1 of 3 in 30 days"
    # The same message reported delayed again: still one soft-bounced message.
    assert bounce("soft_bounce", first[soft], "s1b", "4.4.7") == "soft bounce 1 of 3 in 30 days"
    second = send(issues[1])
    assert set(second) == {"soft@example.net", "ok1@example.net", "ok2@example.net"}
    assert bounce("soft_bounce", second[soft], "s2", "4.2.2") == "soft bounce 2 of 3 in 30 days"
    third = send(issues[2])
    assert (
        bounce("soft_bounce", third[soft], "s3", "4.2.2") == "bounced (3 soft bounces in 30 days)"
    )
    last = send(issues[3])
    assert set(last) == {"ok1@example.net", "ok2@example.net"}
    with SubscriberStore.for_config(config) as store:
        status = {name: store.get(f"{name}@example.net").status for name in readers}
    assert status == {
        "hard": "bounced",
        "soft": "bounced",
        "complain": "complained",
        "ok1": "active",
        "ok2": "active",
    }


def test_verp_token_is_the_documented_hmac_and_only_its_canonical_spelling_verifies() -> None:
    import hashlib
    import hmac

    from newsletter.tokens import verp_token

    secret = b"k" * 32
    for row_id, body in ((0, "0"), (35, "z"), (36, "10"), (123456, "2n9c")):
        mac = hmac.new(secret, f"verp|{body}".encode(), hashlib.sha256).digest()[:10].hex()
        assert verp_token(secret, row_id) == f"{body}-{mac}"
        assert read_verp_token(secret, f"{body}-{mac}") == row_id
    good = verp_token(secret, 123456)
    from newsletter.errors import TokenError

    for bad in (good.upper(), "0" + good, good + "0", good.replace("-", "."), "", "x" * 200):
        with pytest.raises(TokenError):
            read_verp_token(secret, bad)
    with pytest.raises(TokenError):
        read_verp_token(b"another secret of 32 bytes......", good)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("bounces+{t}@news.example.org", True),
        ("<bounces+{t}@news.example.org>", True),
        ("Return-Path: <BOUNCES+{T}@NEWS.EXAMPLE.ORG>", True),  # a server upper-cased it
        ("mailto:bounces+{t}@news.example.org", True),
        ("bounces@news.example.org", False),
        ("bounces+notatoken@news.example.org", False),
        ("someone+tag@example.net", False),
        ("", False),
    ],
)
def test_verp_token_from_address(text: str, found: bool) -> None:
    from newsletter.tokens import verp_token

    token = verp_token(b"k" * 32, 4242)
    got = verp_token_from_address(text.format(t=token, T=token.upper()))
    assert got == (token if found else None)


def test_feedback_id_of_long_and_odd_names_stays_one_valid_header(project: Path) -> None:
    from newsletter.mail.message import feedback_id

    (project / "newsletter.yaml").write_text(
        'name: "Ünïcödé Letter: the very long name of a newsletter that goes on and on"\n'
        "from: X <x@a-very-long-subdomain-name-for-sending.mail.example.org>\n",
        encoding="utf-8",
    )
    config = load_config(project / "newsletter.yaml")
    value = feedback_id("2026-12-01-" + "word-" * 30, "weekly.digest_v2", config)
    fields = value.split(":")
    assert len(fields) == 4 and all(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", f) for f in fields)
    assert fields[1] == "weekly.digest_v2"
    issue = next((project / "issues").glob("*.yaml"))
    with SubscriberStore.for_config(config) as store:
        store.add("reader@example.net")
    with SmtpServer() as server:
        assert send_issue(config, issue, transport=server.url()).ok
        [message] = server.messages
    assert re.fullmatch(r"[^:\s]+:default:[^:\s]+:[^:\s]+", message.parsed()["Feedback-ID"])
