"""A spent quota is an account problem, not a throttle (issue 15, QA): a 429 that says the
day's or month's allowance is used up pauses the run with the provider's words and leaves the
readers due, instead of putting them back again and again. Through `newsletter send` against
the provider stand-ins (tests/support/provider_*.py). Also: `send --retry-failed --dry-run`
builds the failed readers a retry would put back (it ignored --retry-failed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_send_limits import (
    api_server,
    campaign_state,
    everyone_once,
    ledger,
    project_with,
    send,
    url_for,
)


@pytest.fixture
def servers() -> Iterator[list[object]]:
    started: list[object] = []
    yield started
    for server in started:
        server.stop()  # type: ignore[attr-defined]
        assert server.violations == []  # type: ignore[attr-defined]


QUOTA_REPLIES: list[tuple[str, Any, str]] = [
    (
        "resend",
        {
            "statusCode": 429,
            "name": "daily_quota_exceeded",
            "message": "You have reached your daily email sending quota.",
        },
        "daily email sending quota",
    ),
    (
        "resend",
        {
            "statusCode": 429,
            "name": "monthly_quota_exceeded",
            "message": "You have reached your monthly email sending quota.",
        },
        "monthly email sending quota",
    ),
    (
        "sendgrid",
        {"errors": [{"field": None, "message": "You have exceeded your messaging credits."}]},
        "exceeded your messaging credits",
    ),
]


@pytest.mark.parametrize(("provider", "body", "words"), QUOTA_REPLIES)
def test_a_spent_quota_pauses_the_run_with_readers_due(
    provider: str,
    body: Any,
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: list[object],
) -> None:
    root = project_with(tmp_path, 6)
    server = api_server(provider)
    server.fail_next(429, body=body)  # type: ignore[attr-defined]
    servers.append(server)
    url = url_for(provider, server.url, monkeypatch)  # type: ignore[attr-defined]
    code, output = send(root, url, "--concurrency", "1")
    assert code != 0
    assert words in output
    state, reason = campaign_state(root)
    assert state == "paused" and words in (reason or "")
    assert {r["status"] for r in ledger(root).values()} == {"due"}
    assert "throttled" not in output
    # The quota is back the next day: resuming sends to everyone once.
    code, output = send(root, url)
    assert code == 0, output
    everyone_once(root, server, 6)


def test_retry_failed_dry_run_builds_the_failed_readers_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, servers: list[object]
) -> None:
    root = project_with(tmp_path, 6)
    server = api_server("postmark")
    server.refuse("reader000002@example.net")  # type: ignore[attr-defined]
    server.refuse("reader000004@example.net")  # type: ignore[attr-defined]
    servers.append(server)
    url = url_for("postmark", server.url, monkeypatch)  # type: ignore[attr-defined]
    code, _ = send(root, url)
    assert code == 1
    code, output = send(root, url, "--dry-run")
    assert "built 0 messages" in output, output
    code, output = send(root, url, "--retry-failed", "--dry-run")
    assert code == 0, output
    assert "built 2 messages" in output and "nothing was sent" in output, output
    rows = ledger(root)
    assert rows["reader000002@example.net"]["status"] == "failed"  # nothing changed
    assert len(server.delivered) == 4  # type: ignore[attr-defined]
