"""The built email in headless Chromium: phones without horizontal scrolling, visible headlines,
dark mode, readable contrast, right-to-left text, and the seed article's text on screen."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_build import EXAMPLE_NAME, SLUG, seed_texts
from test_render import LONG_URL, LONG_WORD, normalise, story, write_issue

from newsletter.cli import main

pytestmark = pytest.mark.browser
ARABIC = "هذه فقرة باللغة العربية تشرح لماذا يهم هذا الخبر للقراء."

# Relative luminance contrast of each text element against the nearest opaque background.
CONTRAST_JS = """
() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  for (const el of document.querySelectorAll('body p, body li, body h1, body h2, body a')) {
    if (!el.offsetParent || !el.innerText.trim()) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    worst.push([ratio, el.innerText.slice(0, 40)]);
  }
  return worst.sort((x, y) => x[0] - y[0]).slice(0, 3);
}
"""


def _build(project: Path, issue: str) -> Path:
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = CliRunner().invoke(main, ["build", issue], catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return project / "build"


@pytest.fixture
def hard_issue(project: Path) -> Path:
    """Three stories: a 200-character URL, a 120-character word, an image, Arabic text."""
    write_issue(
        project / "issues",
        intro="Hi {{ subscriber.name | default('there') }}",
        stories=[
            story(
                headline="A story with a very long link",
                summary=f"Read it at {LONG_URL} or [here]({LONG_URL}).\n\n{LONG_WORD}",
                key_points=[f"Also {LONG_URL}", LONG_WORD],
                sources=[{"title": LONG_WORD, "url": LONG_URL}],
                image={"url": "https://images.test/wide.png", "alt": "A wide chart"},
            ),
            story(
                headline="قصة باللغة العربية",
                summary=ARABIC,
                why_it_matters=ARABIC,
                key_points=[ARABIC],
            ),
            story(headline="A third story so the headline list shows", dek=LONG_WORD),
        ],
    )
    return _build(project, "issues/2026-12-02-test.yaml") / "2026-12-02-test" / "email.html"


def open_page(browser: Any, path: Path, width: int, scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    # Only the file itself loads: remote images would mean network access.
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort(),
    )
    page.goto(path.as_uri())
    return page


@pytest.fixture
def pages(browser: Any) -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for page in opened:
        page.close()


@pytest.mark.parametrize("width", [320, 375, 600])
def test_no_horizontal_scrolling_and_headlines_visible(
    browser: Any, hard_issue: Path, pages: list[Any], width: int
) -> None:
    page = open_page(browser, hard_issue, width)
    pages.append(page)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner, f"{scroll}px of content in a {inner}px window"
    headlines = page.locator("h2")
    assert headlines.count() == 3
    for i in range(3):
        box = headlines.nth(i).bounding_box()
        assert headlines.nth(i).is_visible()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    assert page.locator("h1").inner_text() == "Test Letter"
    assert page.get_by_text("In this issue", exact=False).first.is_visible()


def test_dark_mode_turns_the_background_dark_and_keeps_text_readable(
    browser: Any, hard_issue: Path, pages: list[Any]
) -> None:
    luminance = (
        "el => { const [r, g, b] = getComputedStyle(el).backgroundColor.match(/\\d+/g)"
        ".map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }"
    )
    light = open_page(browser, hard_issue, 600, "light")
    dark = open_page(browser, hard_issue, 600, "dark")
    pages.extend([light, dark])
    assert light.locator("body").evaluate(luminance) > 0.8
    assert dark.locator("body").evaluate(luminance) < 0.15
    for page in (light, dark):
        worst = page.evaluate(CONTRAST_JS)
        assert worst[0][0] >= 4.5, worst


def test_right_to_left_text_reads_right_to_left(
    browser: Any, hard_issue: Path, pages: list[Any]
) -> None:
    page = open_page(browser, hard_issue, 375)
    pages.append(page)
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == [
        "en",
        "auto",
    ]
    arabic = page.locator("p", has_text=ARABIC[:20]).first
    assert arabic.evaluate("el => getComputedStyle(el).direction") == "rtl"
    point = page.locator("li", has_text=ARABIC[:20]).first
    assert point.evaluate("el => getComputedStyle(el).direction") == "rtl"
    english = page.locator("h2", has_text="A third story").first
    assert english.evaluate("el => getComputedStyle(el).direction") == "ltr"


def test_seed_article_is_visible_on_screen(browser: Any, project: Path, pages: list[Any]) -> None:
    folder = _build(project, f"issues/{EXAMPLE_NAME}") / SLUG
    page = open_page(browser, folder / "email.html", 375)
    pages.append(page)
    shown = normalise(page.locator("body").inner_text()).casefold()
    for expected in seed_texts():
        assert normalise(expected).casefold() in shown, expected
    # The preheader is in the HTML but hidden.
    assert page.get_by_text("entering a new chapter").count() >= 1
    web = open_page(browser, folder / "web.html", 375)
    pages.append(web)
    assert "Hello there" in web.locator("body").inner_text()
