"""Every "Subscribe" / "Sign up" link, in the static archive and on serve's own pages, leads to
the sign-up page of a public list, or is left out when no list is public (never a 404)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from db_support import use_database

from newsletter.config import load_config
from newsletter.web.public import create_app
from tests.support.cli_support import elements, run
from tests.support.serve_support import free_port, running

SLUG = "2026-11-25-microsoft-openai-partnership"
LISTS = {
    "default-public": "",
    "default-private": "lists:\n  default: {public: false}\n  weekly: {public: true}\n",
    "none-public": "lists:\n  default: {public: false}\n  staff: {public: false}\n",
}


@pytest.fixture
def project(project: Path, database: str) -> Path:
    """Every test of this file on SQLite and on PostgreSQL (newsletter.yaml's `database:`)."""
    use_database(project, database)
    return project


def signup_links(html: str) -> list[str]:
    return [str(a["href"]) for a in elements(html, "a") if "/subscribe" in str(a.get("href") or "")]


@pytest.mark.parametrize("lists", list(LISTS), ids=list(LISTS))
def test_subscribe_links_answer_or_are_left_out(
    project: Path, runner: CliRunner, lists: str
) -> None:
    port = free_port()
    config_path = project / "newsletter.yaml"
    config_path.write_text(
        config_path.read_text().replace(
            "base_url: https://news.example.org", f"base_url: http://127.0.0.1:{port}"
        )
        + LISTS[lists]
    )
    for args in (("publish", SLUG), ("archive", "-o", "site")):
        code, out = run(runner, project, *args)
        assert code == 0, out
    index = (project / "site" / "index.html").read_text(encoding="utf-8")
    with running(create_app(load_config(config_path), signup_min_seconds=0), port=port) as url:
        pages = {
            "archive index": index,
            "serve 404": httpx.get(f"{url}/no-such-page").text,
        }
        found = {name: signup_links(html) for name, html in pages.items()}
        if lists == "none-public":
            assert found == {name: [] for name in pages}, found
            return
        for name, links in found.items():
            assert links, f"{name} has no sign-up link"
            for link in links:
                answer = httpx.get(link if link.startswith("http") else url + link)
                assert answer.status_code == 200, (name, link)
                assert "<form" in answer.text


@pytest.mark.parametrize("published", [True, False])
def test_every_sitemap_url_answers_through_serve(
    project: Path, runner: CliRunner, published: bool
) -> None:
    """The sitemap names both index pages (/ and /issues/) and every issue page; each answers."""
    import re

    port = free_port()
    config_path = project / "newsletter.yaml"
    config_path.write_text(
        config_path.read_text().replace(
            "base_url: https://news.example.org", f"base_url: http://127.0.0.1:{port}"
        )
    )
    if published:
        code, out = run(runner, project, "publish", SLUG)
        assert code == 0, out
    else:
        code, out = run(runner, project, "subscribers", "add", "a@example.net")
    code, out = run(runner, project, "archive", "-o", "site")
    assert code == 0, out
    sitemap = (project / "site" / "sitemap.xml").read_text(encoding="utf-8")
    urls = re.findall(r"<loc>([^<]+)</loc>", sitemap)
    base = f"http://127.0.0.1:{port}"
    assert {f"{base}/", f"{base}/issues/"} <= set(urls), urls
    assert (f"{base}/issues/{SLUG}/" in urls) == published
    with running(create_app(load_config(config_path), signup_min_seconds=0), port=port):
        for url in urls:
            assert httpx.get(url).status_code == 200, url


def test_an_emptied_archive_feed_is_updated_when_its_last_issue_went(
    project: Path, runner: CliRunner
) -> None:
    import datetime as dt

    import feedparser

    for args in (("publish", SLUG), ("unpublish", SLUG), ("archive", "-o", "site")):
        code, out = run(runner, project, *args)
        assert code == 0, out
    feed = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    assert feed.entries == []
    updated = dt.datetime(*feed.feed.updated_parsed[:6], tzinfo=dt.UTC)
    assert abs(dt.datetime.now(dt.UTC) - updated) < dt.timedelta(minutes=5), updated
