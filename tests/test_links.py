"""`check --links` against a real HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.links import check_urls_async

RELEASE = threading.Event()  # lets slow handlers finish at once when the test ends


class Site(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]]
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _answer(self, body: bool) -> None:
        cls = type(self)
        with cls.lock:
            cls.requests.append((self.command, self.path))
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        try:
            self._route(body)
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def _route(self, body: bool) -> None:
        path = self.path
        if path.startswith("/slow"):
            RELEASE.wait(5)
            return self._send(200, body)
        if path == "/no-head" and self.command == "HEAD":
            return self._send(405, body)
        if path == "/no-head-501" and self.command == "HEAD":
            return self._send(501, body)
        if path == "/moved":
            return self._send(301, body, {"Location": "/ok"})
        if path == "/moved-to-missing":
            return self._send(302, body, {"Location": "/missing"})
        if path == "/loop":
            return self._send(302, body, {"Location": "/loop"})
        if path == "/broken":
            return self._send(500, body)
        if path in ("/ok", "/no-head", "/no-head-501", "/image.png", "/page"):
            return self._send(200, body)
        return self._send(404, body)

    def _send(self, status: int, body: bool, headers: dict[str, str] | None = None) -> None:
        payload = b"hello" * 10
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the default 5 drops concurrent connects, and SYN retries take 1 s


@pytest.fixture
def site() -> Iterator[str]:
    Site.requests = []
    Site.in_flight = Site.max_in_flight = 0
    RELEASE.clear()
    server = Server(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        RELEASE.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def write_issue(folder: Path, base: str, dead: str) -> Path:
    path = folder / "links.yaml"
    path.write_text(
        f"""\
title: Links
date: 2026-11-25
preheader: Links of every kind.
stories:
  - headline: A story with links
    summary: |
      A [fine page]({base}/page) and a [moved one]({base}/moved).

      Then a [missing page]({base}/missing).
    why_it_matters: |
      A [slow site]({base}/slow-1) and [another]({base}/slow-2).
    image:
      url: {base}/image.png
      alt: A chart
    sources:
      - title: HEAD refused
        url: {base}/no-head
      - title: HEAD not implemented
        url: {base}/no-head-501
      - title: Broken server
        url: {base}/broken
      - title: Redirect to nowhere
        url: {base}/moved-to-missing
      - title: Redirect loop
        url: {base}/loop
      - title: Nobody home
        url: {dead}/ok
      - title: Fine again, listed twice
        url: {base}/page
""",
        encoding="utf-8",
    )
    return path


def test_links_reports_each_failure_on_its_line(
    runner: CliRunner, tmp_path: Path, site: str, closed_port: int
) -> None:
    dead = f"http://127.0.0.1:{closed_port}"
    issue = write_issue(tmp_path, site, dead)
    started = time.monotonic()
    result = runner.invoke(main, ["check", "--links", "--timeout", "0.5", str(issue)])
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.output
    link_warnings = [
        line.split(": warning: ", 1)[1]
        for line in result.output.splitlines()
        if ": warning: " in line and "plain http link" not in line
    ]
    assert link_warnings == [
        f"stories[0].summary: {site}/missing: HTTP 404 Not Found",
        f"stories[0].why_it_matters: {site}/slow-1: no answer within 0.5 s",
        f"stories[0].why_it_matters: {site}/slow-2: no answer within 0.5 s",
        f"stories[0].sources[2].url: {site}/broken: HTTP 500 Internal Server Error",
        f"stories[0].sources[3].url: {site}/moved-to-missing: HTTP 404 Not Found",
        f"stories[0].sources[4].url: {site}/loop: too many redirects",
        link_warnings[-1],
    ]
    assert link_warnings[-1].startswith(f"stories[0].sources[5].url: {dead}/ok: unreachable (")
    lines = {
        line.split(": warning: ")[1]: line.split(":")[1]
        for line in result.output.splitlines()
        if ": warning: " in line
    }
    assert lines[f"stories[0].summary: {site}/missing: HTTP 404 Not Found"] == "9"
    assert (
        lines[f"stories[0].sources[2].url: {site}/broken: HTTP 500 Internal Server Error"] == "21"
    )
    # Warnings only: the issue itself is fine, so check passes unless --strict.
    assert result.exit_code == 0, result.output
    # HEAD first; GET only where HEAD was refused; each distinct URL requested once.
    assert ("HEAD", "/no-head") in Site.requests and ("GET", "/no-head") in Site.requests
    assert ("GET", "/no-head-501") in Site.requests
    assert ("GET", "/page") not in Site.requests
    assert Site.requests.count(("HEAD", "/page")) == 1
    assert ("HEAD", "/ok") in Site.requests  # the redirect was followed
    # Concurrent: both slow URLs waited at the same time, not one after the other.
    assert Site.max_in_flight >= 2
    assert elapsed < 5


def test_links_with_strict_fails(runner: CliRunner, tmp_path: Path, site: str) -> None:
    issue = tmp_path / "one.yaml"
    issue.write_text(
        "title: T\ndate: 2026-11-25\npreheader: P.\nstories:\n  - headline: H\n    summary: S.\n"
        "    why_it_matters: W.\n    sources:\n      - title: Gone\n"
        f"        url: {site}/gone\n",
        encoding="utf-8",
    )
    result = runner.invoke(main, ["check", "--links", "--strict", str(issue)])
    assert result.exit_code == 1
    assert f"{issue}:10:14: warning: stories[0].sources[0].url: {site}/gone: HTTP 404" in (
        result.output
    )
    # Without --links nothing is requested.
    Site.requests.clear()
    runner.invoke(main, ["check", str(issue)])
    assert Site.requests == []


def test_check_urls_async_usable_from_python(site: str) -> None:
    import asyncio

    results = asyncio.run(check_urls_async([f"{site}/ok", f"{site}/missing", f"{site}/ok"]))
    assert results == {f"{site}/ok": None, f"{site}/missing": "HTTP 404 Not Found"}
