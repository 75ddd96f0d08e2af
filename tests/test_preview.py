"""`newsletter preview` in headless Chromium: what the page shows, and how it follows edits."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, Route, expect

from newsletter.render.theme import BUILTIN_THEME
from newsletter.subscribers.store import SubscriberStore
from newsletter.web.preview import PreviewServer

pytestmark = pytest.mark.browser

HEADLINE = "Microsoft and OpenAI reset the partnership for its next phase"
ISSUE_NAME = "2026-11-25-microsoft-openai-partnership.yaml"


@pytest.fixture
def issue(project: Path) -> Path:
    return project / "issues" / ISSUE_NAME


@pytest.fixture
def server(project: Path, issue: Path) -> Iterator[PreviewServer]:
    preview = PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project)
    preview.start()
    port = preview.port
    yield preview
    preview.stop()
    # Stopped means stopped: nothing listens on the port any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def offline_page(browser: Browser) -> Page:
    """A page whose requests never leave 127.0.0.1: remote resources an email links (web fonts,
    images) get an empty answer, as if the network were there but had nothing to say."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), _empty_response)
    return context.new_page()


def _empty_response(route: Route) -> None:
    kind = route.request.resource_type
    content_type = {"stylesheet": "text/css", "image": "image/gif"}.get(kind, "text/plain")
    route.fulfill(status=200, content_type=content_type, body=_GIF if kind == "image" else "")


_GIF = bytes.fromhex(
    "47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b"
)


def console_errors(page: Page) -> list[str]:
    """Every console error and uncaught exception of the page, as it happens."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@pytest.fixture
def page(browser: Browser, server: PreviewServer) -> Iterator[Page]:
    page = offline_page(browser)
    context = page.context
    problems = console_errors(page)
    page.goto(server.url)
    expect(page.locator("body")).to_have_attribute("data-state", "ok")
    yield page
    context.close()
    assert problems == [], f"console errors: {problems}"


def frame(page: Page, name: str) -> FrameLocator:
    return page.frame_locator(f"#{name} iframe.current")


def headline(page: Page, name: str, text: str = HEADLINE):
    return frame(page, name).get_by_role("heading", name=text)


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_page_shows_the_email_in_desktop_and_phone_frames(page: Page) -> None:
    expect(headline(page, "desktop-light")).to_be_visible()
    expect(headline(page, "phone-light")).to_be_visible()
    widths = page.evaluate(
        "['desktop-light', 'phone-light'].map(id =>"
        " document.querySelector(`#${id} iframe.current`).contentWindow.innerWidth)"
    )
    assert widths[0] >= 600
    assert widths[1] == 375
    # The intro is personalised for the sample reader, the check results are listed.
    expect(frame(page, "desktop-light").get_by_text("Hello Sample Reader")).to_be_visible()
    expect(page.locator("#checks-summary")).to_contain_text("1 warning")
    page.locator("#checks summary").click()
    expect(page.locator("#checks-list")).to_contain_text("line 44:9")
    expect(page.locator("#checks-list")).to_contain_text("source has no URL")


def test_saving_the_issue_updates_the_open_page_and_keeps_scroll(page: Page, issue: Path) -> None:
    expect(headline(page, "desktop-light")).to_be_visible()
    page.evaluate(
        "document.querySelector('#desktop-light iframe.current').contentWindow.scrollTo(0, 900)"
    )
    started = time.monotonic()
    replace_in(issue, f"  - headline: {HEADLINE}", "  - headline: Chip export rules tighten again")
    expect(headline(page, "desktop-light", "Chip export rules tighten again")).to_be_visible(
        timeout=2000
    )
    expect(headline(page, "phone-light", "Chip export rules tighten again")).to_be_visible(
        timeout=2000
    )
    assert time.monotonic() - started < 2.0
    scroll = page.evaluate(
        "document.querySelector('#desktop-light iframe.current').contentWindow.scrollY"
    )
    assert scroll == pytest.approx(900, abs=2)


def test_broken_yaml_shows_the_error_with_its_line_and_recovers(page: Page, issue: Path) -> None:
    good = issue.read_text(encoding="utf-8")
    lines = good.splitlines(keepends=True)
    bad_line = next(i for i, line in enumerate(lines, 1) if line.startswith("preheader:"))
    lines[bad_line - 1] = "preheader: colons: inside: a value\n"
    issue.write_text("".join(lines), encoding="utf-8")

    problem = page.locator("#problem")
    expect(problem).to_be_visible(timeout=2000)
    expect(page.locator("body")).to_have_attribute("data-state", "error")
    expect(problem).to_contain_text(re.compile(rf"{ISSUE_NAME}:{bad_line}\b"))
    expect(problem.locator(".excerpt .marked")).to_contain_text("colons: inside: a value")
    # The last good version stays in the frames meanwhile.
    expect(headline(page, "desktop-light")).to_be_attached()

    issue.write_text(good, encoding="utf-8")
    expect(page.locator("body")).to_have_attribute("data-state", "ok", timeout=2000)
    expect(problem).to_be_hidden()
    expect(headline(page, "desktop-light")).to_be_visible()


def test_a_failing_check_is_shown_with_its_line(page: Page, issue: Path) -> None:
    text = issue.read_text(encoding="utf-8")
    line = text.splitlines().index("stories:") + 1
    issue.write_text(text.replace("stories:", "stories: []\nstoires:", 1), encoding="utf-8")
    problem = page.locator("#problem")
    expect(problem).to_be_visible(timeout=2000)
    expect(problem).to_contain_text(f"{ISSUE_NAME}:{line + 1}")
    expect(problem).to_contain_text("did you mean 'stories'")
    expect(page.locator("#checks-summary")).to_contain_text("error")


def test_template_error_in_the_projects_theme_names_file_and_line(
    browser: Browser, project: Path, issue: Path
) -> None:
    theme = project / "theme"
    theme.mkdir()
    original = (BUILTIN_THEME / "footer.mjml").read_text(encoding="utf-8")
    (theme / "footer.mjml").write_text(original, encoding="utf-8")
    config = project / "newsletter.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "templates: theme\n", encoding="utf-8")
    with PreviewServer(issue, config_path=config, start_dir=project) as server:
        page = offline_page(browser)
        errors = console_errors(page)
        page.goto(server.url)
        expect(page.locator("body")).to_have_attribute("data-state", "ok")
        (theme / "footer.mjml").write_text("{% if %}\n" + original, encoding="utf-8")
        problem = page.locator("#problem")
        expect(problem).to_be_visible(timeout=2000)
        expect(problem).to_contain_text("theme/footer.mjml:1")
        (theme / "footer.mjml").write_text(original, encoding="utf-8")
        expect(page.locator("body")).to_have_attribute("data-state", "ok", timeout=2000)
        page.context.close()
        assert errors == []


def test_text_dark_and_headers_views(page: Page) -> None:
    page.locator("#tab-text").click()
    text = page.locator("#text")
    expect(text).to_be_visible()
    expect(text).to_contain_text(HEADLINE)
    expect(text).to_contain_text("Why it matters")

    page.locator("#tab-dark").click()
    expect(headline(page, "desktop-dark")).to_be_visible()
    expect(headline(page, "phone-dark")).to_be_visible()
    backgrounds = page.evaluate(
        "['desktop-light', 'desktop-dark'].map(id => getComputedStyle("
        "document.querySelector(`#${id} iframe.current`).contentDocument.body).backgroundColor)"
    )
    assert _luminance(backgrounds[0]) > 0.8  # the light view stays light whatever the OS says
    assert _luminance(backgrounds[1]) < 0.2

    page.locator("#tab-headers").click()
    headers = page.locator("#headers")
    expect(headers).to_contain_text("From")
    expect(headers).to_contain_text("Test Letter <news@example.org>")
    expect(headers).to_contain_text("List-Unsubscribe")
    expect(headers).to_contain_text("https://news.example.org/unsubscribe/")
    expect(page.locator("#meter-text")).to_contain_text(re.compile(r"\d+\.\d KB"))
    expect(page.locator(".inbox-row")).to_contain_text("One of the most important relationships")
    expect(page.locator("#preheader")).to_contain_text(
        "One of the most important relationships in the AI industry is entering a new chapter."
    )


def test_preview_as_a_subscriber_from_the_database(
    browser: Browser, project: Path, issue: Path
) -> None:
    with SubscriberStore.open(project / "newsletter.db") as store:
        store.add("ada@example.org", name="Ada Lovelace")
    with PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project) as srv:
        page = offline_page(browser)
        errors = console_errors(page)
        page.goto(srv.url)
        expect(page.locator("#as option")).to_have_count(2)
        page.locator("#as").select_option("ada@example.org")
        expect(frame(page, "desktop-light").get_by_text("Hello Ada Lovelace")).to_be_visible()
        expect(frame(page, "phone-light").get_by_text("Hello Ada Lovelace")).to_be_visible()
        # Someone subscribes while the preview is open: the picker offers them on next use.
        with SubscriberStore.open(project / "newsletter.db") as store:
            store.add("grace@example.org", name="Grace Hopper")
        page.locator("#as").focus()
        expect(page.locator("#as option")).to_have_count(3)
        page.locator("#as").select_option("grace@example.org")
        expect(frame(page, "desktop-light").get_by_text("Hello Grace Hopper")).to_be_visible()
        page.locator("#tab-headers").click()
        expect(page.locator("#headers")).to_contain_text("Grace Hopper <grace@example.org>")
        expect(page.locator("[data-subject]").first).to_contain_text("Microsoft and OpenAI")
        page.context.close()
        assert errors == []


def test_coalesces_a_burst_of_saves(server: PreviewServer, issue: Path) -> None:
    text = issue.read_text(encoding="utf-8")
    for n in range(15):
        issue.write_text(text.replace(HEADLINE, f"Headline draft {n}"), encoding="utf-8")
        time.sleep(0.01)
    deadline = time.monotonic() + 3
    while "Headline draft 14" not in _headline_of(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert "Headline draft 14" in _headline_of(server)
    assert 1 <= server.builds <= 3


def _headline_of(server: PreviewServer) -> str:
    compiled = server.snapshot.compiled
    return compiled.issue.stories[0].headline if compiled else ""


def _luminance(css_color: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
