"""Sending at the providers' limits, and telling an account problem from a bad address (issue 15).

Everything runs through `newsletter send ISSUE --transport ... --yes` as a user runs it, against
local stand-ins that throttle and refuse the way the providers document (SES without
Retry-After and with its MaxSendRate in GetAccount, Resend with `retry-after` and `ratelimit-*`
headers, SendGrid, Mailgun and Postmark 429s; Postmark refusing inside a 200) and an SMTP server
that answers rate and sender replies. The assertions read what each reader received (the
stand-ins record accepted messages) and the ledger in SQLite afterwards.
"""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_messages import make_project, many
from cli_support import run
from click.testing import CliRunner
from provider_servers import MailgunServer, PostmarkServer, ResendServer, SendGridServer, SesServer
from smtp_servers import SmtpServer, fault

from newsletter.transports import transport_class

KEY = "limits-Key-7c1d0e9f-do-not-print"
DOMAIN = "news.example.org"
AWS = {"AWS_ACCESS_KEY_ID": "AKIALIMITSTEST000001", "AWS_SECRET_ACCESS_KEY": KEY}
REGION = "eu-west-1"


# ------------------------------------------------------------------ project and helpers


def project_with(tmp_path: Path, readers: int) -> Path:
    root = make_project(tmp_path)
    with open(root / "subs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name"])
        for r in many(readers):
            writer.writerow([r.email, r.name or ""])
    code, output = run(CliRunner(), root, "subscribers", "import", "subs.csv")
    assert code == 0, output
    return root


def issue_of(root: Path) -> str:
    return str(next((root / "issues").glob("*.yaml")))


def send(root: Path, url: str, *extra: str) -> tuple[int, str]:
    return run(CliRunner(), root, "send", issue_of(root), "--transport", url, "--yes", *extra)


def ledger(root: Path) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(root / "newsletter.db")
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT s.email, r.status, r.attempts, r.reply FROM campaign_recipients r"
        " JOIN subscribers s ON s.id = r.subscriber_id"
    ).fetchall()
    conn.close()
    return {row["email"]: row for row in rows}


def campaign_state(root: Path) -> tuple[str, str | None]:
    conn = sqlite3.connect(root / "newsletter.db")
    state, reason = conn.execute("SELECT state, state_reason FROM campaigns").fetchone()
    conn.close()
    return state, reason


def url_for(provider: str, server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    if provider == "ses":
        for name, value in AWS.items():
            monkeypatch.setenv(name, value)
        return f"ses:{REGION}?endpoint={server_url}"
    monkeypatch.setenv(transport_class(provider).secret_variable, KEY)  # type: ignore[arg-type]
    target = DOMAIN if provider == "mailgun" else ""
    return f"{provider}:{target}?endpoint={server_url}"


def received(server: object) -> Counter[str]:
    """How many copies each reader got."""
    if isinstance(server, SesServer):
        return Counter(d.to_email for d in server.sent())
    return Counter(d.to_email for d in server.delivered)  # type: ignore[attr-defined]


def ses_server(max_send_rate: float | None = None, *, verified: bool = True) -> SesServer:
    server = SesServer(AWS["AWS_ACCESS_KEY_ID"], REGION, max_send_rate=max_send_rate).start()
    httpx.post(server.url + "/moto-api/reset").raise_for_status()
    if verified:
        import boto3

        boto3.client(
            "sesv2",
            region_name=REGION,
            endpoint_url=server.url,
            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEY,
        ).create_email_identity(EmailIdentity="example.org")
    return server


def api_server(provider: str) -> object:
    return {
        "sendgrid": lambda: SendGridServer(KEY),
        "mailgun": lambda: MailgunServer(KEY, DOMAIN),
        "postmark": lambda: PostmarkServer(KEY),
        "resend": lambda: ResendServer(KEY),
    }[provider]().start()


@pytest.fixture
def stop_servers() -> Iterator[list[object]]:
    servers: list[object] = []
    yield servers
    for server in servers:
        server.stop()  # type: ignore[attr-defined]
        assert server.violations == []  # type: ignore[attr-defined]


def everyone_once(root: Path, server: object, readers: int) -> None:
    """Each reader received exactly one copy; the ledger has each sent after one attempt
    (throttled requests were put back, not counted)."""
    got = received(server)
    assert len(got) == readers
    assert set(got.values()) == {1}
    rows = ledger(root)
    assert {r["status"] for r in rows.values()} == {"sent"}
    assert {r["attempts"] for r in rows.values()} == {1}


# ------------------------------------------------------------------ 1. throttling is not failure


def test_ses_at_five_per_second_reaches_sixty_readers_in_one_default_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """The issue's figures: 5 sends/s, 60 readers; before, one run sent 24 and deferred 36."""
    root = project_with(tmp_path, 60)
    server = ses_server(max_send_rate=5)
    stop_servers.append(server)
    code, output = send(root, url_for("ses", server.url, monkeypatch))
    assert code == 0, output
    everyone_once(root, server, 60)
    assert "limit of 5 requests/s" in output or "(the provider's limit: 5/s)" in output
    assert KEY not in output


def test_resend_at_two_requests_per_second_reaches_450_readers_in_one_default_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """The issue's figures: Resend's default 2 requests/s, 450 readers (five batches)."""
    root = project_with(tmp_path, 450)
    server = api_server("resend")
    server.limit(2)  # type: ignore[attr-defined]
    stop_servers.append(server)
    code, output = send(root, url_for("resend", server.url, monkeypatch))  # type: ignore[attr-defined]
    assert code == 0, output
    everyone_once(root, server, 450)
    assert "2 requests/s" in output or "2/s" in output


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "resend"])
def test_a_throttling_api_slows_the_run_down_instead_of_deferring_readers(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """--rate 20/s makes batches of 5, each its own request (--rate limits requests too), at a
    provider allowing 2 requests a second: its 429s slow every worker down and the readers they
    carried are put back; one run reaches all, and the summary says how often and at what pace."""
    root = project_with(tmp_path, 40)
    server = api_server(provider)
    server.limit(2)  # type: ignore[attr-defined]
    stop_servers.append(server)
    url = url_for(provider, server.url, monkeypatch)  # type: ignore[attr-defined]
    code, output = send(root, url, "--rate", "20/s", "--concurrency", "4")
    assert code == 0, output
    everyone_once(root, server, 40)
    if server.throttled:  # type: ignore[attr-defined]
        assert "throttled" in output and "settled at" in output


def test_rate_limits_requests_as_well_as_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """`--rate 4/s` at a batching provider: never more than 4 requests in any second (before,
    batches of a quarter-second's worth still made about 4 requests per second at 1/s...)."""
    root = project_with(tmp_path, 12)
    server = api_server("sendgrid")
    stop_servers.append(server)
    code, output = send(root, url_for("sendgrid", server.url, monkeypatch), "--rate", "4/s")  # type: ignore[attr-defined]
    assert code == 0, output
    everyone_once(root, server, 12)
    assert len(server.requests) == 12  # type: ignore[attr-defined]


def test_smtp_rate_replies_are_throttles_not_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project_with(tmp_path, 12)
    with SmtpServer(faults=[fault("451-rate", "*", times=6)]) as server:
        code, output = send(root, server.url(), "--concurrency", "2")
        delivered = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert code == 0, output
    assert len(delivered) == 12 and set(delivered.values()) == {1}
    rows = ledger(root)
    assert {r["status"] for r in rows.values()} == {"sent"}
    assert {r["attempts"] for r in rows.values()} == {1}
    assert "throttled 6 requests" in output


# ------------------------------------------------------------------ 2. account problems pause


API_REFUSALS = {
    "sendgrid": "does not match a verified Sender Identity",
    "mailgun": "is not allowed to send",
    "postmark": "is not a Sender Signature on your account",
    "resend": "domain is not verified",
}


@pytest.mark.parametrize("provider", sorted(API_REFUSALS))
def test_an_unverified_sender_pauses_the_run_and_leaves_readers_due(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    root = project_with(tmp_path, 30)
    server = api_server(provider)
    server.sender_unverified = True  # type: ignore[attr-defined]
    stop_servers.append(server)
    url = url_for(provider, server.url, monkeypatch)  # type: ignore[attr-defined]
    code, output = send(root, url)
    assert code != 0
    assert API_REFUSALS[provider] in output  # the provider's words, printed
    state, reason = campaign_state(root)
    assert state == "paused" and API_REFUSALS[provider] in (reason or "")
    rows = ledger(root)
    assert "failed" not in {r["status"] for r in rows.values()}
    assert {r["status"] for r in rows.values()} <= {"due", "deferred"}
    assert {r["attempts"] for r in rows.values()} == {0}
    assert received(server) == Counter()
    code, shown = run(CliRunner(), root, "status", issue_of(root))
    assert code == 0 and "paused" in shown and API_REFUSALS[provider] in shown
    # The account is fixed: the same command sends to everyone.
    server.sender_unverified = False  # type: ignore[attr-defined]
    code, output = send(root, url)
    assert code == 0, output
    everyone_once(root, server, 30)


def test_postmark_missing_stream_inside_a_200_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """Postmark answers 200 with ErrorCode 1235 for every message: before, everyone failed in
    half a second, the campaign was marked done and could never be sent to that list."""
    root = project_with(tmp_path, 25)
    server = api_server("postmark")
    stop_servers.append(server)
    url = url_for("postmark", server.url, monkeypatch)  # type: ignore[attr-defined]
    code, output = send(root, url.replace("?", "?stream=no-such-stream&"))
    assert code != 0
    assert "The message stream was not found." in output
    state, reason = campaign_state(root)
    assert state == "paused" and "message stream was not found" in (reason or "")
    assert {r["status"] for r in ledger(root).values()} == {"due"}


def test_ses_unverified_sender_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    root = project_with(tmp_path, 10)
    server = ses_server(verified=False)
    stop_servers.append(server)
    code, output = send(root, url_for("ses", server.url, monkeypatch))
    assert code != 0
    state, reason = campaign_state(root)
    assert state == "paused" and "news@example.org" in (reason or "")
    assert {r["status"] for r in ledger(root).values()} <= {"due", "deferred"}
    assert "failed" not in output.split("Campaign")[0] or "0 failed" in output
    assert server.sent() == []


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("550-sender", "Sender address rejected"),
        ("554-relay", "Relay access denied"),
        ("530-auth", "Authentication required"),
    ],
)
def test_smtp_sender_and_auth_refusals_pause(kind: str, words: str, tmp_path: Path) -> None:
    root = project_with(tmp_path, 10)
    with SmtpServer(faults=[fault(kind, "*", times=1)]) as server:  # type: ignore[arg-type]
        code, output = send(root, server.url())
        assert code != 0
        assert words in output
        state, reason = campaign_state(root)
        assert state == "paused" and words in (reason or "")
        rows = ledger(root)
        assert "failed" not in {r["status"] for r in rows.values()}
        # Fixed (the fault was a one-off): resuming sends to everyone once.
        code, output = send(root, server.url())
        delivered = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert code == 0, output
    assert len(delivered) == 10 and set(delivered.values()) == {1}


def test_a_bad_address_still_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """Only errors about one address fail that address; the run goes on."""
    root = project_with(tmp_path, 10)
    server = api_server("postmark")
    server.refuse("reader000003@example.net")  # type: ignore[attr-defined]
    stop_servers.append(server)
    code, _ = send(root, url_for("postmark", server.url, monkeypatch))  # type: ignore[attr-defined]
    assert code == 1
    rows = ledger(root)
    assert rows["reader000003@example.net"]["status"] == "failed"
    assert Counter(r["status"] for r in rows.values()) == {"sent": 9, "failed": 1}
    assert campaign_state(root)[0] == "done"


# ------------------------------------------------------------------ 3. send --retry-failed


def test_retry_failed_puts_failed_readers_back_after_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    root = project_with(tmp_path, 10)
    server = api_server("postmark")
    server.refuse("reader000003@example.net")  # type: ignore[attr-defined]
    server.refuse("reader000005@example.net")  # type: ignore[attr-defined]
    stop_servers.append(server)
    url = url_for("postmark", server.url, monkeypatch)  # type: ignore[attr-defined]
    code, output = send(root, url)
    assert code == 1
    assert Counter(r["status"] for r in ledger(root).values()) == {"sent": 8, "failed": 2}
    code, output = run(CliRunner(), root, "subscribers", "unsubscribe", "reader000005@example.net")
    assert code == 0, output
    # A plain resume does not just say "Nothing left to send": it says who failed and how.
    code, output = send(root, url)
    assert code == 0, output
    assert "Nothing left to send" in output
    assert "1 reader failed" in output and "--retry-failed" in output
    # Fixed: --retry-failed says how many, asks, and sends to the one still subscribed.
    server.refused.clear()  # type: ignore[attr-defined]
    monkeypatch.chdir(root)
    from newsletter.cli import main

    answer_no = CliRunner().invoke(
        main, ["send", issue_of(root), "--transport", url, "--retry-failed"], input="n\n"
    )
    assert answer_no.exit_code != 0 and "putting back 1 reader" in answer_no.output
    assert ledger(root)["reader000003@example.net"]["status"] == "failed"  # nothing changed
    result = CliRunner().invoke(
        main, ["send", issue_of(root), "--transport", url, "--retry-failed"], input="y\n"
    )
    assert result.exit_code == 0, result.output
    assert "putting back 1 reader whose delivery failed" in result.output
    rows = ledger(root)
    assert rows["reader000003@example.net"]["status"] == "sent"
    assert rows["reader000005@example.net"]["status"] == "failed"  # unsubscribed: left alone
    got = received(server)
    assert got["reader000003@example.net"] == 1 and "reader000005@example.net" not in got
    assert campaign_state(root)[0] == "done"


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (451, "4.7.1 Sending rate limit exceeded, slow down", "throttled"),
        (421, "4.7.0 Throttled: too many requests", "throttled"),
        (450, "4.7.1 Client sending too fast, slow down", "throttled"),
        (421, "4.7.0 Too many messages on this connection, closing", "deferred"),
        (452, "4.2.2 Mailbox full, quota exceeded", "deferred"),
        (451, "4.3.0 Temporary local problem", "deferred"),
        (550, "5.7.1 <news@example.org>: Sender address rejected: not owned by user", "account"),
        (553, "5.7.1 <news@example.org>: Sender address rejected: not logged in", "account"),
        (554, "5.7.1 <reader@example.net>: Relay access denied", "account"),
        (530, "5.7.0 Authentication required", "account"),
        (535, "5.7.8 Authentication credentials invalid", "account"),
        (550, "5.7.1 <reader@example.net>: Recipient address rejected: Access denied", "failed"),
        (554, "5.7.1 Message rejected as spam", "failed"),
        (550, "5.1.1 <reader@example.net>: User unknown", "bounced"),
    ],
)
def test_smtp_replies_are_read_as_throttle_account_or_address(
    code: int, text: str, kind: str
) -> None:
    """The SMTP side of the one classification every transport maps its replies onto."""
    from newsletter.transports.smtp import reply_result

    result = reply_result(code, text)
    got = "throttled" if result.throttled else "account" if result.account else result.status
    assert got == kind
    assert result.reply == f"{code} {text}"


def test_one_refusal_for_every_message_of_a_batch_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_servers: list[object]
) -> None:
    """A 400 for the whole request that names no recipient (here SendGrid refusing the
    content) would fail every reader alike: the run pauses instead, readers due."""
    root = project_with(tmp_path, 20)
    server = api_server("sendgrid")
    words = "The content value must be a string at least one character in length."
    server.fail_next(  # type: ignore[attr-defined]
        400, body={"errors": [{"message": words, "field": "content.0.value"}]}
    )
    stop_servers.append(server)
    url = url_for("sendgrid", server.url, monkeypatch)  # type: ignore[attr-defined]
    code, output = send(root, url, "--concurrency", "1")
    assert code != 0 and words in output
    state, reason = campaign_state(root)
    assert state == "paused" and words in (reason or "")
    assert {r["status"] for r in ledger(root).values()} == {"due"}
    code, output = send(root, url)
    assert code == 0, output
    everyone_once(root, server, 20)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_pace_starts_at_the_published_limit_cuts_on_a_throttle_and_probes_back_up() -> None:
    from newsletter.campaign.ratelimit import RateLimiter, parse_rate

    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.provider_limit(5.0)
    started = clock.now
    for _ in range(10):
        limiter.wait_for_request()
    assert clock.now - started == pytest.approx(9 / 5)  # evenly at 5/s, never faster
    limiter.throttled()  # at the published limit: a mild cut
    assert limiter.request_rate() == pytest.approx(4.25)
    limiter.throttled()  # the same burst: no second cut
    assert limiter.request_rate() == pytest.approx(4.25)
    clock.now += 1.5
    limiter.throttled()  # a second later, still refused: 70% of the pace refused
    assert limiter.request_rate() == pytest.approx(4.25 * 0.7)
    for _ in range(40):  # clean seconds under demand: up by a tenth each, never above 5
        limiter.wait_for_request()
    assert limiter.request_rate() == pytest.approx(5.0)
    assert limiter.throttles == 3
    # Without demand (a request now and then), the pace does not climb on its own.
    limiter.throttled()
    cut = limiter.request_rate()
    for _ in range(5):
        clock.now += 3.0
        limiter.wait_for_request()
    assert limiter.request_rate() == cut
    # --rate is a ceiling on requests too, whatever the provider allows.
    capped = RateLimiter(parse_rate("2/s"), clock=clock, sleep=clock.sleep)
    capped.provider_limit(14.0)
    assert capped.request_rate() == 2.0


@pytest.mark.parametrize("rate", [None, "200/s"])
def test_without_a_published_limit_the_first_throttle_measures_the_refused_pace(
    rate: str | None,
) -> None:
    """Whether or not a --rate far above the provider's limit was given."""
    from newsletter.campaign.ratelimit import RateLimiter, parse_rate

    clock = FakeClock()
    limiter = RateLimiter(parse_rate(rate) if rate else None, clock=clock, sleep=clock.sleep)
    for _ in range(10):  # 10 requests in 0.9 s
        limiter.wait_for_request()
        clock.now += 0.1
    limiter.throttled()
    rate = limiter.request_rate()
    assert rate is not None and 0.7 * 9 <= rate <= 0.7 * 10  # 70% of about 10 a second
    for _ in range(100):  # probing back up stops at the pace that was refused
        limiter.wait_for_request()
    assert limiter.request_rate() <= 10


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (400, "Sender signature not found", "account"),
        (401, "Sender signature not confirmed", "account"),
        (405, "Not allowed to send: you have run out of credits", "account"),
        (412, "Account is pending approval", "account"),
        (413, "Account may not send", "account"),
        (1235, "The message stream was not found.", "account"),
        (
            300,
            "Invalid 'From' address: news@example.org is not a verified sender signature.",
            "account",
        ),
        (429, "Rate limit exceeded.", "throttled"),
        (406, "You tried to send to recipient(s) that have been marked as inactive.", "bounced"),
        (300, "Invalid 'To' address.", "failed"),
    ],
)
def test_postmark_errorcodes_inside_a_200_are_read_as_documented(
    code: int, message: str, kind: str, tmp_path: Path
) -> None:
    """Postmark's documented per-message ErrorCodes: sender and account codes are account
    problems, 429 a throttle, 406 a bounce; only an address error fails the address."""
    from api_messages import campaign

    from newsletter.transports import transport_from_url

    camp = campaign(make_project(tmp_path))
    with PostmarkServer(KEY) as server:
        server.message_error = (code, message)
        url = f"postmark:?endpoint={server.url}"
        with transport_from_url(url, camp.config, {"POSTMARK_SERVER_TOKEN": KEY}) as t:
            results = t.send(camp.outgoing(many(3)))
    kinds = {"throttled" if r.throttled else "account" if r.account else r.status for r in results}
    assert kinds == {kind}
    assert all(message in r.reply for r in results)


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (429, "Throttling", "Maximum sending rate exceeded.", "throttled"),
        (429, "TooManyRequestsException", "Too many requests", "throttled"),
        (400, "Throttling", "Daily message quota exceeded.", "account"),
        (
            400,
            "MessageRejected",
            "Email address is not verified. The following identities "
            "failed the check in region EU-WEST-1: news@example.org",
            "account",
        ),
        (
            400,
            "MessageRejected",
            "Email address is not verified. The following identities "
            "failed the check in region EU-WEST-1: reader000001@example.net (recipient)",
            "failed",
        ),
        (503, "ServiceUnavailable", "Service unavailable", "deferred"),
    ],
)
def test_ses_errors_are_read_as_documented(
    status: int, code: str, message: str, kind: str, tmp_path: Path, stop_servers: list[object]
) -> None:
    from api_messages import campaign

    from newsletter.errors import TransportConfigError
    from newsletter.transports import transport_from_url

    camp = campaign(make_project(tmp_path))
    server = ses_server()
    stop_servers.append(server)
    server.fail_next(status, code, message=message)
    url = f"ses:{REGION}?endpoint={server.url}"
    with transport_from_url(url, camp.config, AWS) as t:
        try:
            [result] = t.send(camp.outgoing(many(1)))
        except TransportConfigError as exc:  # stops the run: the runner pauses with the words
            assert kind == "account" and message in str(exc)
            return
    got = "throttled" if result.throttled else "account" if result.account else result.status
    assert got == kind
    assert message in result.reply
