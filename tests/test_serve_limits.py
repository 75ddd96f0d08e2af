"""The sign-up rate limiter's cost and memory, the `lists:` setting, and `newsletter serve`'s
logs (run as the real command in a subprocess)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.web.public import SlidingWindowLimiter


def _cost_per_check(limiter: SlidingWindowLimiter, clients: int, clock: list[float]) -> float:
    for i in range(clients):  # fill the table with distinct clients, all inside the window
        limiter.check(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    started = time.perf_counter()
    for i in range(2000):
        clock[0] += 0.0001
        limiter.check(f"192.168.{i >> 8}.{i & 255}")
    return (time.perf_counter() - started) / 2000


def test_the_rate_limiter_costs_the_same_at_1000_and_50000_clients():
    clock = [0.0]
    small = _cost_per_check(SlidingWindowLimiter(5, 600, clock=lambda: clock[0]), 1_000, clock)
    clock = [0.0]
    large = _cost_per_check(SlidingWindowLimiter(5, 600, clock=lambda: clock[0]), 50_000, clock)
    # The old limiter rebuilt its whole table on every check past 10,000 clients (~9 ms).
    assert large < 20e-6 or large < 3 * small, (small, large)


def test_the_rate_limiter_forgets_old_clients_and_stays_bounded():
    clock = [0.0]
    limiter = SlidingWindowLimiter(2, 60, clock=lambda: clock[0], max_keys=1000)
    assert [limiter.check("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.check("a") > 0  # limited
    for i in range(5000):
        limiter.check(f"c{i}")
    assert len(limiter) <= 1000
    clock[0] = 61.0
    limiter.check("late")
    assert len(limiter) == 1  # everyone else left the window and was dropped
    assert limiter.check("a") == 0.0


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("lists: weekly\n", "'lists' must be a mapping", 5),
        (
            "lists:\n  weekly: {public: yes please}\n",
            "'lists.weekly.public' must be true or false",
            6,
        ),
        ("lists:\n  weekly: {publc: true}\n", "did you mean 'lists.weekly.public'", 6),
        ("lists:\n  'bad name': {public: true}\n", "invalid list name", 6),
        ("lists:\n  weekly: [public]\n", "'lists.weekly' must be a mapping", 6),
    ],
)
def test_a_bad_lists_setting_is_a_clear_error(project: Path, text, message, line):
    path = project / "newsletter.yaml"
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert info.value.line == line


def test_public_lists(project: Path):
    path = project / "newsletter.yaml"
    assert load_config(path).public_lists == {"default"}
    path.write_text(
        path.read_text(encoding="utf-8")
        + "lists:\n  default: {public: false}\n  weekly: {public: true}\n  staff:\n",
        encoding="utf-8",
    )
    assert load_config(path).public_lists == {"weekly"}


def test_serve_logs_no_tokens(project: Path):
    """The real command: uvicorn's access log shows the paths with the tokens redacted."""
    from serve_support import populate

    site = populate(load_config(project / "newsletter.yaml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", "0"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert port, first
        base = f"http://127.0.0.1:{port.group(1)}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(base + "/subscribe")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert httpx.get(f"{base}/unsubscribe/{site.unsubscribe}").status_code == 200
        assert httpx.get(f"{base}/confirm/{site.confirm}?x=1").status_code == 200
        assert httpx.head(f"{base}/unsubscribe/{site.unsubscribe}").status_code == 200
        # Mistyped case, other routes, query strings: a token-shaped value never reaches the log.
        for path in (
            f"/Unsubscribe/{site.unsubscribe}",
            f"/CONFIRM/{site.confirm}",
            f"/issues/{site.unsubscribe}/",
            f"/subscribe?token={site.confirm}",
            f"/x/{site.confirm}/y",
        ):
            assert httpx.get(base + path).status_code in (200, 404)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    log = first + err + out  # uvicorn's access log goes to stdout
    assert site.unsubscribe not in log and site.confirm not in log
    assert "GET /unsubscribe/[redacted] HTTP/1.1" in log
    assert "GET /confirm/[redacted]?x=1 HTTP/1.1" in log
    assert "GET /Unsubscribe/[redacted] HTTP/1.1" in log
    assert "GET /x/[redacted]/y HTTP/1.1" in log
