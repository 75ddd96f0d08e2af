"""The archive as a reader sees it, in headless Chromium: opened from the file system and through
`newsletter serve`, at 320 px nothing scrolls sideways and every link of ours resolves; the web
version's sign-up form leads to a double opt-in whose confirmation reaches the outbox."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from cli_support import run
from click.testing import CliRunner
from serve_support import free_port, running
from test_archive import write_issue

from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app

pytestmark = pytest.mark.browser
OLDER = "2026-11-25-microsoft-openai-partnership"


def publish_two(project: Path, runner: CliRunner, base_url: str) -> str:
    """Point base_url at `base_url`, publish the example and a newer issue; the newer slug."""
    config = project / "newsletter.yaml"
    config.write_text(
        config.read_text().replace("https://news.example.org", base_url), encoding="utf-8"
    )
    newer = write_issue(
        project,
        "2026-12-02",
        "Second brief",
        "A rather long headline about semiconductor export rules and supply chains",
        preheader="Export rules, explained.",
    )
    for slug in (OLDER, newer):
        code, out = run(runner, project, "publish", f"issues/{slug}.yaml")
        assert code == 0, out
    return newer


def overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no horizontal scrolling)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def hrefs(page) -> list[str]:
    return page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")


def check_file_links(page, site: Path, base_url: str) -> int:
    """Every link into the site (relative, or absolute under base_url) names a file there.
    The relative ones are what the reader follows from disk; Chromium resolved them."""
    checked = 0
    for href in hrefs(page):
        parts = urlsplit(href)
        if href == f"{base_url}/subscribe":
            continue  # serve's sign-up page, the one dynamic page (checked through serve)
        if href.startswith(base_url + "/"):
            path = site / parts.path.removeprefix(urlsplit(base_url).path).lstrip("/")
        elif parts.scheme == "file":
            path = Path(unquote(parts.path))
        else:
            continue  # a story's source on another site: not ours to check offline
        if path.is_dir():
            path = path / "index.html"
        assert path.is_file(), href
        checked += 1
    return checked


@pytest.fixture
def phone(browser):
    page = browser.new_page(viewport={"width": 320, "height": 720})
    yield page
    page.close()


def test_the_archive_from_the_file_system(project, runner, phone):
    base_url = "https://news.example.org"
    newer = publish_two(project, runner, base_url)
    code, out = run(runner, project, "archive", "-o", "site")
    assert code == 0, out
    site = project / "site"
    phone.goto((site / "index.html").as_uri())
    assert overflow(phone) == 0
    assert check_file_links(phone, site, base_url) >= 4
    phone.get_by_role("link", name="Second brief").click()
    phone.wait_for_url(f"**/issues/{newer}/index.html")
    assert overflow(phone) == 0
    assert check_file_links(phone, site, base_url) >= 3
    phone.get_by_role("link", name="All issues", exact=True).click()
    phone.wait_for_url("**/site/index.html")
    phone.get_by_role("link", name="AI Brief — November 25, 2026").click()
    phone.wait_for_url(f"**/issues/{OLDER}/index.html")
    assert overflow(phone) == 0
    phone.get_by_role("link", name="Second brief →").click()
    phone.wait_for_url(f"**/issues/{newer}/index.html")


def check_served_links(page, server: str) -> int:
    checked = 0
    for href in hrefs(page):
        if not href.startswith(server + "/"):
            continue
        answer = httpx.get(href.split("#")[0], follow_redirects=True)
        assert answer.status_code == 200, href
        checked += 1
    return checked


def wait_for_mail(outbox: Path, timeout: float = 10.0) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + timeout
    while not (files := sorted(outbox.glob("*.eml")) if outbox.is_dir() else []):
        assert time.monotonic() < deadline, "no mail in the outbox"
        time.sleep(0.05)
    policy = email.policy.default
    return [email.message_from_bytes(f.read_bytes(), policy=policy) for f in files]  # type: ignore[misc]


def test_the_archive_through_serve_and_its_sign_up_form(project, runner, phone):
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    newer = publish_two(project, runner, server)
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, signup_min_seconds=0), port=port):
        for path in ("/", "/issues/", f"/issues/{newer}/", f"/issues/{OLDER}/"):
            phone.goto(server + path)
            assert overflow(phone) == 0, path
            assert check_served_links(phone, server) >= 3, path
        phone.goto(f"{server}/issues/{newer}/")
        phone.fill("#nl-email", "reader@example.com")
        phone.get_by_role("button", name="Subscribe").click()
        # serve's own sign-up page, the address filled in: one click to confirm the wish.
        phone.wait_for_url(f"{server}/subscribe")
        assert phone.input_value("#email") == "reader@example.com"
        with SubscriberStore.for_config(config) as store:
            assert store.get("reader@example.com") is None  # nothing stored before that click
        phone.get_by_role("button", name="Subscribe").click()
        phone.wait_for_selector("text=Check your inbox")
    [mail] = wait_for_mail(config.root / "outbox")
    assert mail["To"].addresses[0].addr_spec == "reader@example.com"
    body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{server}/confirm/" in body
    with SubscriberStore.for_config(config) as store:
        reader = store.get("reader@example.com")
        assert reader is not None and reader.status == "pending"
