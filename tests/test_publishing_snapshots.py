"""What `newsletter serve` shows at /issues/<slug>/: only issues sent to a public list or
published explicitly, as the snapshot taken then, whatever happens to the file afterwards.
Real commands (CLI), a real uvicorn, the database as the archive will read it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from serve_support import running

from newsletter.cli import main
from newsletter.config import Config, load_config
from newsletter.db import connect
from newsletter.publishing import published_slugs
from newsletter.web.public import create_app

SLUG = "2026-11-25-microsoft-openai-partnership"


@pytest.fixture
def config(project: Path, database: str) -> Config:
    """The project on each engine (the `database` fixture: an SQLite file, a PostgreSQL URL)."""
    path = project / "newsletter.yaml"
    path.write_text(
        path.read_text(encoding="utf-8") + "transport: outbox:./outbox\n"
        "lists:\n  weekly: {public: true}\n  secret: {public: false}\n"
        f"database: {database}\n",
        encoding="utf-8",
    )
    return load_config(path)


@pytest.fixture
def server(config: Config):
    with running(create_app(config, signup_min_seconds=0)) as url:
        yield url


def cli(config: Config, *args: str) -> str:
    done = CliRunner().invoke(main, ["--config", str(config.path), *args])
    assert done.exit_code == 0, done.output
    return done.output


def issue_file(config: Config) -> Path:
    return config.root / "issues" / f"{SLUG}.yaml"


def slugs(config: Config) -> set[str]:
    conn = connect(config.database)
    try:
        return published_slugs(conn)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("list_name", "published"),
    [("secret", False), ("weekly", True), ("default", True)],
)
def test_only_a_send_to_a_public_list_publishes(config, server, list_name, published):
    cli(config, "subscribers", "add", "ann@example.com", "--list", list_name)
    assert httpx.get(f"{server}/issues/{SLUG}/").status_code == 404
    cli(config, "send", str(issue_file(config)), "--list", list_name, "--yes")
    assert httpx.get(f"{server}/issues/{SLUG}/").status_code == (200 if published else 404)
    assert (SLUG in slugs(config)) == published  # the archive's notion agrees with serve


def test_a_private_send_then_an_explicit_publish(config, server):
    cli(config, "subscribers", "add", "ann@example.com", "--list", "secret")
    cli(config, "send", str(issue_file(config)), "--list", "secret", "--yes")
    assert httpx.get(f"{server}/issues/{SLUG}/").status_code == 404
    assert "snapshot of the file as it is now" in cli(config, "publish", SLUG)
    assert httpx.get(f"{server}/issues/{SLUG}/").status_code == 200


def test_the_web_version_is_a_snapshot_until_published_again(config, server):
    cli(config, "subscribers", "add", "ann@example.com")
    cli(config, "send", str(issue_file(config)), "--yes")
    sent = httpx.get(f"{server}/issues/{SLUG}/")
    assert sent.status_code == 200 and "SECRETEDIT" not in sent.text
    etag, modified = sent.headers["etag"], sent.headers["last-modified"]
    # Work in progress on the sent issue stays private...
    path = issue_file(config)
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("title: ", "title: SECRETEDIT draft ", 1), encoding="utf-8")
    edited = httpx.get(f"{server}/issues/{SLUG}/")
    assert edited.content == sent.content and edited.headers["etag"] == etag
    cached = httpx.get(f"{server}/issues/{SLUG}/", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    # ...and a broken file cannot break the page.
    path.write_text("title: [unclosed\n", encoding="utf-8")
    broken = httpx.get(f"{server}/issues/{SLUG}/")
    assert broken.status_code == 200 and broken.content == sent.content
    # `publish` refuses the broken file and keeps the snapshot; once fixed, refreshes it.
    refused = CliRunner().invoke(main, ["--config", str(config.path), "publish", str(path)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert httpx.get(f"{server}/issues/{SLUG}/").content == sent.content
    path.write_text(original.replace("title: ", "title: SECRETEDIT draft ", 1), encoding="utf-8")
    time.sleep(1.1)  # Last-Modified has one-second resolution
    assert "refreshed" in cli(config, "publish", str(path))
    fresh = httpx.get(f"{server}/issues/{SLUG}/", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and "SECRETEDIT" in fresh.text
    assert fresh.headers["etag"] != etag and fresh.headers["last-modified"] != modified


def test_an_issue_file_outside_issues_can_be_published_and_served(config, server, tmp_path):
    outside = tmp_path / "elsewhere" / "2026-12-09-outside.yaml"
    outside.parent.mkdir()
    shutil.copy(issue_file(config), outside)
    said = cli(config, "publish", str(outside))
    assert "Issue 2026-12-09-outside is published" in said
    page = httpx.get(f"{server}/issues/2026-12-09-outside/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    # By slug alone (no file in issues/): the snapshot is kept, and said so.
    assert "snapshot taken earlier" in cli(config, "publish", "2026-12-09-outside")
    cli(config, "unpublish", "2026-12-09-outside")
    assert httpx.get(f"{server}/issues/2026-12-09-outside/").status_code == 404
    # A slug never published, with no file: a clear refusal.
    refused = CliRunner().invoke(main, ["--config", str(config.path), "publish", "2026-01-01-x"])
    assert refused.exit_code == 1 and "no issue with slug '2026-01-01-x'" in refused.output
