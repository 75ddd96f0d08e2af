"""Fixtures shared by every test module: a project folder, the CLI runner, headless Chromium."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
# The fakes and stand-in servers (SMTP, email APIs, the recording transport) live in
# tests/support/ and are imported by name, as `from smtp_servers import SmtpServer`.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
EXAMPLE = REPO / "issues" / "2026-11-25-microsoft-openai-partnership.yaml"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's NEWSLETTER_* settings or secrets."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A newsletter project folder with a config and the example issue."""
    (tmp_path / "issues").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "issues" / EXAMPLE.name)
    (tmp_path / "newsletter.yaml").write_text(
        "name: Test Letter\n"
        "from: Test Letter <news@example.org>\n"
        "base_url: https://news.example.org\n"
        "postal_address: 1 Test Street, Testville\n",
        encoding="utf-8",
    )
    return tmp_path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (never a downloaded browser).

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it
    is active, which would make asyncio.run() fail in every later test of the session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install chromium (see .ci/run)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local HTTPS server for SNS signing certificates (webhook_support.SnsCertServer)."""
    from webhook_support import SnsCertServer

    with SnsCertServer(tmp_path_factory.mktemp("sns")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL server for the whole run (pg_server.PostgresServer)."""
    from pg_server import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test: its postgresql:// URL. Afterwards
    this process's connections to it are closed (else a long run exhausts max_connections)."""
    url = str(postgres_server.create_database())
    yield url
    from newsletter.db import parse_database
    from newsletter.db.postgres import close_pool

    close_pool(parse_database(url))  # type: ignore[arg-type]


ENGINES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using `database` runs once per engine; `@pytest.mark.engine("sqlite")`
    keeps one (a test about SQLite's file lock, or PostgreSQL's answer to it)."""
    if "database" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("engine")
    engines = ENGINES if marker is None else marker.args
    assert set(engines) <= set(ENGINES), engines
    metafunc.parametrize("database", engines, indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store under test, once per engine: an SQLite file path or a fresh PostgreSQL
    database's URL (as `database:` / `--db` take either)."""
    if request.param == "sqlite":
        return str(tmp_path / "newsletter.db")
    return str(request.getfixturevalue("postgres_url"))
