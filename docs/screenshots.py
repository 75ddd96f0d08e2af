"""Regenerate the README screenshots from `newsletter preview` in headless Chromium.

    python docs/screenshots.py            # or: make screenshots

Starts the preview server on the example issue, opens it in Debian's chromium (through
Playwright, never a downloaded browser) and saves into docs/screenshots/:

    preview.png   the whole preview page (desktop and phone frames, check results)
    desktop.png   the email in the desktop frame (720 px)
    phone.png     the email in the phone frame (375 px)
    dark.png      both frames in dark mode

Requests for anything but the local server get an empty answer, so the run is offline and the
images do not depend on the network (web fonts fall back to the theme's font stack).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from playwright.sync_api import Page, Route, sync_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.web.preview import PreviewServer  # noqa: E402

EXAMPLE = REPO / "issues" / "2026-11-25-microsoft-openai-partnership.yaml"
OUT = REPO / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT = {"width": 1320, "height": 1060}
MARGIN = 14  # px of page around an element screenshot
REMOTE = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")


def _offline(route: Route) -> None:
    kind = route.request.resource_type
    route.fulfill(status=200, content_type="text/css" if kind == "stylesheet" else "text/plain")


def _settle(page: Page) -> None:
    """Wait until every visible frame shows the current build and the fonts are laid out."""
    page.wait_for_function(
        "() => document.body.dataset.state === 'ok' && Array.from("
        "document.querySelectorAll('.view:not([hidden]) .frame iframe.current'))"
        ".every(f => f.dataset.version === document.body.dataset.version)"
    )
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(150)


def take(out: Path, issue: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with PreviewServer(issue, start_dir=REPO) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2)
        context.route(REMOTE, _offline)
        page = context.new_page()
        page.goto(server.url + "?view=email")
        _settle(page)

        def save(name: str, selector: str | None = None) -> None:
            path = out / name
            clip = None
            if selector is not None:
                # The element plus a margin, so rounded corners and shadows sit on the page.
                box = page.locator(selector).bounding_box()
                assert box is not None, selector
                clip = {
                    "x": max(0, box["x"] - MARGIN),
                    "y": max(0, box["y"] - MARGIN),
                    "width": box["width"] + 2 * MARGIN,
                    "height": box["height"] + 2 * MARGIN,
                }
            page.screenshot(path=str(path), clip=clip, animations="disabled")
            saved.append(path)

        save("preview.png")
        save("desktop.png", "#view-email .device.desktop")
        save("phone.png", "#view-email .device.phone")
        page.locator("#tab-dark").click()
        _settle(page)
        save("dark.png", "#view-dark")
        browser.close()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    parser.add_argument("--issue", type=Path, default=EXAMPLE, help="issue file to show")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print("chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 1
    for path in take(args.out, args.issue):
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
