"""`newsletter serve` under pressure: a database locked by another writer, clients trickling a
body, and a reverse proxy in front. A real uvicorn on loopback, a real second SQLite connection
holding the write lock, raw sockets where a client misbehaves."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from serve_support import PUBLISHED, Site, dump, form_token, populate, running

from newsletter import tokens
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app
from newsletter.web.public.app import BUSY_TIMEOUT

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def site(project: Path) -> Site:
    return populate(load_config(project / "newsletter.yaml"))


@contextmanager
def write_locked(database: Path) -> Iterator[None]:
    """Another process's writer (a long `subscribers import`) holding the lock."""
    holder = sqlite3.connect(database, timeout=0, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def timed(call, *args, **kwargs) -> tuple[httpx.Response, float]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


# -- a busy database ---------------------------------------------------------------------------


def test_a_locked_database_never_hangs_the_public_side(site):
    config = site.config
    with SubscriberStore.for_config(config) as store:
        readers = [store.add(f"r{i}@example.com") for i in range(50)]
        secret = tokens.secret_key(config, store.conn)
        secret_tokens = [tokens.make_token(secret, tokens.UNSUBSCRIBE, r.id) for r in readers]
    app = create_app(config, rate_limit=(10_000, 60), signup_min_seconds=0)
    with running(app) as server:
        token = form_token(None, server)
        with write_locked(config.database):
            before = dump(config.database)  # reads never wait for the writer (WAL)
            # One-click unsubscribes are spooled at once, 50 of them in parallel, while the
            # web version and the pages stay quick.
            limits = httpx.Limits(max_connections=60)
            with ThreadPoolExecutor(50) as pool, httpx.Client(limits=limits, timeout=30) as client:
                started = time.monotonic()
                clicks = list(
                    pool.map(
                        lambda t: client.post(f"{server}/unsubscribe/{t}", data=ONE_CLICK),
                        secret_tokens,
                    )
                )
                page, page_took = timed(httpx.get, f"{server}/issues/{PUBLISHED}/")
                all_took = time.monotonic() - started
            assert [c.status_code for c in clicks] == [200] * 50
            # Waiting for the lock, 50 requests on 40 worker threads would take two rounds of
            # the busy timeout at least (30 s each before): spooled at once, far less.
            assert all_took < 2 * BUSY_TIMEOUT, f"{all_took:.1f} s"
            assert page.status_code == 200 and page_took < 1.5
            one, took = timed(
                httpx.post, f"{server}/unsubscribe/{site.unsubscribe}", data=ONE_CLICK
            )
            assert one.status_code == 200 and took < 1
            shown, took = timed(httpx.get, f"{server}/confirm/{site.confirm}")
            assert shown.status_code == 200 and took < 1
            # Sign-up and confirm: an honest "busy" page, not a hang and not a bare 500.
            answers = [
                timed(
                    httpx.post,
                    f"{server}/subscribe",
                    data={"email": "new@example.com", "form_token": token},
                ),
                timed(httpx.post, f"{server}/confirm/{site.confirm}"),
            ]
            for answer, took in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"].isdigit()
                assert "try again" in answer.text and took < BUSY_TIMEOUT + 1.5
            assert dump(config.database) == before  # nothing half-written
        # Once free: the spooled unsubscribes are applied, sign-ups work again.
        assert httpx.post(f"{server}/unsubscribe/{site.unsubscribe}", data=ONE_CLICK).is_success
        ok = httpx.post(
            f"{server}/subscribe", data={"email": "new@example.com", "form_token": token}
        )
        assert ok.status_code == 200
    with SubscriberStore.for_config(config) as store:
        assert store.get_by_id(site.ada_id).status == "unsubscribed"
        assert {store.get_by_id(r.id).status for r in readers} == {"unsubscribed"}
        assert store.get("new@example.com").status == "pending"


# -- slow bodies -------------------------------------------------------------------------------


def _post_routes(site: Site) -> list[str]:
    return ["/subscribe", f"/unsubscribe/{site.unsubscribe}", f"/confirm/{site.confirm}", "/"]


@pytest.mark.parametrize("route", range(4), ids=["subscribe", "unsubscribe", "confirm", "root"])
def test_a_trickled_body_gets_its_answer_and_then_the_connection_closes(site, route):
    path = _post_routes(site)[route]
    app = create_app(site.config, signup_min_seconds=0, body_timeout=1.0)
    with running(app) as server:
        before = dump(site.config.database)
        port = int(server.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
            )
            answer, closed, started = b"", False, time.monotonic()
            while time.monotonic() - started < 6:  # one byte every 0.2 s, as long as we can
                try:
                    sock.sendall(b"x")
                    sock.settimeout(0.2)
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
                if chunk == b"":
                    closed = True
                    break
                answer += chunk
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 "), answer[:80]
        assert closed and took < 4, f"still open after {took:.1f} s"
    assert dump(site.config.database) == before


# -- behind a reverse proxy --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "believed"),
    [("127.0.0.1", True), ("*", True), ("10.9.8.7", False), ("10.0.0.0/8", False)],
)
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(project, trusted, believed):
    config = load_config(project / "newsletter.yaml")
    app = create_app(config, rate_limit=(2, 600), signup_min_seconds=0)
    with running(app, forwarded_allow_ips=trusted) as server:

        def sign_up_from(client: str, address: str) -> httpx.Response:
            with httpx.Client(headers={"X-Forwarded-For": client}) as browser:
                token = form_token(browser, server)
                return browser.post(
                    f"{server}/subscribe", data={"email": address, "form_token": token}
                )

        first = [sign_up_from("203.0.113.5", f"a{i}@example.com") for i in range(3)]
        other = sign_up_from("198.51.100.7", "b@example.com")
    assert [r.status_code for r in first] == [200, 200, 429]
    # One client's sign-ups do not use up another's limit, when the proxy is believed.
    assert other.status_code == (200 if believed else 429)
    with SubscriberStore.for_config(config) as store:
        [origin] = [
            e for e in store.events(store.get("a0@example.com").id) if e.kind == "subscribed"
        ]
    assert ("form from 203.0.113.5" in origin.detail) == believed
    assert ("form from 127.0.0.1" in origin.detail) == (not believed)


def test_serve_takes_forwarded_allow_ips(project):
    """The real command accepts the option and documents it."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "serve", "--help"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--forwarded-allow-ips" in done.stdout and "X-Forwarded-For" in done.stdout


def test_the_lock_holder_helper_really_locks(site):
    """The tests above mean something only if the second connection holds the write lock."""
    with write_locked(site.config.database):
        other = sqlite3.connect(site.config.database, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
