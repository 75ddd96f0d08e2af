""" "Preview as" reaches every subscriber: the picker searches the whole list, not the first 200."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from db_support import use_database
from playwright.sync_api import Browser, expect
from test_preview import ISSUE_NAME, console_errors, frame, offline_page

from newsletter.subscribers.store import SubscriberStore
from newsletter.web.preview import PreviewServer

COUNT = 450


@pytest.fixture
def crowded(project: Path, database: str) -> Path:
    """A list far longer than the picker's first page; one address with LIKE's wildcards. On
    SQLite and on PostgreSQL (same answers, Unicode case folding included)."""
    use_database(project, database)
    with SubscriberStore.open(database) as store, store.transaction():
        for i in range(COUNT):
            store.add(f"reader{i:04d}@example.org", name=f"Reader Number {i}")
        store.add("last_100%@example.net", name="Grace Hopper")
        store.add("zoe@example.org", name="Zoë Ångström")
        store.add("strasse@example.org", name="Straße Öffner")
    return project


def recipients(url: str, query: str) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{url}api/recipients?q={quote(query)}", timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("reader0449@example.org", ["reader0449@example.org"]),  # the very last reader
        ("READER0449", ["reader0449@example.org"]),  # any case
        ("Number 449", ["reader0449@example.org"]),  # by name
        ("grace", ["last_100%@example.net"]),
        ("_100%", ["last_100%@example.net"]),  # LIKE wildcards are matched literally
        ("100%", ["last_100%@example.net"]),
        ("nobody-here", []),
        # Unicode letters in any case (case folding, not only ASCII).
        ("ZOË", ["zoe@example.org"]),
        ("zoë ång", ["zoe@example.org"]),
        ("ÅNGSTRÖM", ["zoe@example.org"]),
        ("ÖFFNER", ["strasse@example.org"]),
        ("STRASSE ö", ["strasse@example.org"]),  # ß folds to ss
    ],
)
def test_search_covers_the_whole_list(crowded: Path, query: str, expected: list[str]) -> None:
    issue = crowded / "issues" / ISSUE_NAME
    with PreviewServer(issue, config_path=crowded / "newsletter.yaml", start_dir=crowded) as srv:
        found = recipients(srv.url, query)
        assert found[0]["key"] == "sample"
        assert [r["key"] for r in found[1:]] == expected
        first_page = recipients(srv.url, "")
        assert len(first_page) == 201 and "reader0449@example.org" not in str(first_page)


@pytest.mark.browser
def test_find_a_subscriber_beyond_the_first_page_and_preview_as_them(
    browser: Browser, crowded: Path
) -> None:
    issue = crowded / "issues" / ISSUE_NAME
    with PreviewServer(issue, config_path=crowded / "newsletter.yaml", start_dir=crowded) as srv:
        page = offline_page(browser)
        errors = console_errors(page)
        page.goto(srv.url)
        expect(page.locator("#as option")).to_have_count(201)
        page.locator("#as-search").fill("number 449")
        expect(page.locator("#as option")).to_have_count(2)
        page.locator("#as").select_option("reader0449@example.org")
        expect(frame(page, "desktop-light").get_by_text("Hello Reader Number 449")).to_be_visible()
        # A rebuild (the issue saved) keeps the search results and the chosen reader.
        issue.write_text(issue.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        page.wait_for_timeout(500)
        expect(page.locator("#as option")).to_have_count(2)
        expect(page.locator("#as")).to_have_value("reader0449@example.org")
        page.locator("#tab-headers").click()
        expect(page.locator("#headers")).to_contain_text("reader0449@example.org")
        page.context.close()
        assert errors == []
