"""The preview answers only its own Host (DNS rebinding): raw HTTP over every route, and a real
browser opening the preview under a rebound domain."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, EXAMPLE

from newsletter.config import load_config
from newsletter.subscribers.store import SubscriberStore
from newsletter.web.preview import PreviewServer

ISSUE = "2026-11-25-microsoft-openai-partnership.yaml"
SECRET_NAME = "Ada Lovelace"
SECRET_ADDRESS = "ada.private@example.org"
ROUTES = [
    "/",
    "/api/state",
    "/api/state?as=" + SECRET_ADDRESS,
    "/api/recipients",
    "/email",
    "/email?as=" + SECRET_ADDRESS,
    "/events",
    "/static/preview.js",
    "/static/preview.css",
    "/no-such-page",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreviewServer]:
    """One preview for the whole table (it only reads), with one subscriber to leak."""
    project = tmp_path_factory.mktemp("hosts")
    (project / "issues").mkdir()
    shutil.copy(EXAMPLE, project / "issues" / ISSUE)
    config = project / "newsletter.yaml"
    config.write_text("name: Hosts\nfrom: Hosts <news@example.org>\n", encoding="utf-8")
    with SubscriberStore.for_config(load_config(config)) as store:
        store.add(SECRET_ADDRESS, name=SECRET_NAME)
    with PreviewServer(project / "issues" / ISSUE, config_path=config, start_dir=project) as s:
        yield s


def raw_get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    """Status and everything received within a moment (event streams never end)."""
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    request = "\r\n".join([*lines, "Connection: close", "", ""]).encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        conn.settimeout(1.5)
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1)), data


REFUSED_HOSTS = [
    "rebind.test:{port}",
    "evil.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "localhost.evil.example:{port}",
    "127.0.0.1:{other}",  # the right name on another port
    "localhost:{other}",
    "127.0.0.1",  # no port means 80
    "127.0.0.1:{port}@evil.example",
    "[::1]evil:{port}",
    "",
    None,  # no Host header at all
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_foreign_host_gets_421_and_no_data_on_every_route(
    server: PreviewServer, route: str, host: str | None
) -> None:
    value = None if host is None else host.format(port=server.port, other=server.port + 1)
    status, data = raw_get(server.port, route, value)
    assert status in (400, 421)
    for secret in (SECRET_NAME.encode(), SECRET_ADDRESS.encode(), b"Microsoft", b"event:"):
        assert secret not in data


ALLOWED_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}"]


@pytest.mark.parametrize("host", ALLOWED_HOSTS)
@pytest.mark.parametrize("route", ["/", "/api/recipients", "/email", "/static/preview.js"])
def test_our_own_host_names_are_answered(server: PreviewServer, host: str, route: str) -> None:
    status, data = raw_get(server.port, route, host.format(port=server.port))
    assert status == 200
    if route == "/api/recipients":
        assert SECRET_NAME.encode() in data


def test_the_event_stream_answers_its_own_host(server: PreviewServer) -> None:
    status, data = raw_get(server.port, "/events", f"127.0.0.1:{server.port}")
    assert status == 200 and b"event: build" in data


def test_the_host_given_with_host_is_answered_too(project: Path) -> None:
    issue = project / "issues" / ISSUE
    with PreviewServer(issue, config_path=project / "newsletter.yaml", host="127.0.0.2") as s:
        status, _ = raw_get_at("127.0.0.2", s.port, "/api/recipients", f"127.0.0.2:{s.port}")
        assert status == 200
        status, _ = raw_get_at("127.0.0.2", s.port, "/api/recipients", f"rebind.test:{s.port}")
        assert status == 421


def raw_get_at(address: str, port: int, path: str, host: str) -> tuple[int, bytes]:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((address, port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.browser
def test_a_page_under_a_rebound_domain_sees_no_subscriber(server: PreviewServer) -> None:
    """Chromium resolving rebind.test to 127.0.0.1, as a DNS-rebinding page would arrange."""
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            response = page.goto(f"http://rebind.test:{server.port}/")
            assert response is not None and response.status == 421
            # What a script of that origin could read: the API answers 421 with no data.
            api = page.evaluate(
                "async () => { const r = await fetch('/api/recipients');"
                " return [r.status, await r.text()]; }"
            )
            assert api[0] == 421
            content = page.content() + api[1]
            assert SECRET_NAME not in content and SECRET_ADDRESS not in content
            # The same browser under the preview's own name does see the subscriber: the
            # refusal above is the Host rule, not a broken server.
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#as option')]"
                f".some(o => o.textContent.includes({SECRET_NAME!r}))",
                timeout=15000,
            )
        finally:
            browser.close()
