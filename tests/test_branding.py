"""Branding without copying templates: `theme:` in newsletter.yaml applied by the default theme,
its contrast checked by `check` (WCAG AA, light and dark) and measured in Chromium, and the
built message scoring nothing on SpamAssassin's content rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import elements, run
from click.testing import CliRunner
from test_email_browser import CONTRAST_JS

from newsletter.branding import contrast
from newsletter.render.theme import BUILTIN_THEME

EXAMPLE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
SLUG = "2026-11-25-microsoft-openai-partnership"
BRANDED = """theme:
  accent: "#0f766e"
  background: "#f4f1ea"
  headings: sans
  logo: {url: "https://news.example.org/logo.png", alt: Test Letter logo, width: 140}
"""


def with_theme(project: Path, theme: str) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text() + theme, encoding="utf-8")


def with_links(project: Path) -> None:
    """Accent-coloured links on the page background (intro) and on a card (summary)."""
    issue = project / EXAMPLE
    text = issue.read_text(encoding="utf-8")
    text = text.replace("here is today's brief.", "see [the archive](https://a.test/).")
    text = text.replace("a notable update", "a [notable update](https://a.test/u)")
    issue.write_text(text, encoding="utf-8")


def built_html(runner: CliRunner, project: Path) -> str:
    code, output = run(runner, project, "build", EXAMPLE)
    assert code == 0, output
    return (project / "build" / SLUG / "email.html").read_text(encoding="utf-8")


def test_theme_is_applied_by_the_default_theme(runner: CliRunner, project: Path) -> None:
    with_theme(project, BRANDED)
    html = built_html(runner, project)
    (logo,) = [img for img in elements(html, "img") if "logo.png" in str(img.get("src"))]
    assert logo["alt"] == "Test Letter logo" and logo["width"] == "140"
    assert "background-color:#f4f1ea" in html.replace(" ", "")
    (headline,) = [h for h in elements(html, "h2") if h.get("class") == "nl-headline"]
    assert "Georgia" not in str(headline["style"]) and "Arial" in str(headline["style"])
    # The dark-mode accent is derived to stay readable on the dark cards.
    start = html.index("prefers-color-scheme: dark")
    dark = html[start : html.index("</style>", start)]
    assert "#0f766e" not in dark and re.search(r"\.nl-body a \{ color: #[0-9a-f]{6}", dark)
    (label,) = [d for d in elements(html, "div") if "nl-why-label" in str(d.get("class"))]
    assert "color:#0f766e" in str(label["style"])  # inlined, for clients without <style>
    (why,) = [td for td in elements(html, "td") if td.get("class") == "nl-why"]
    assert "solid #0f766e" in str(why["style"]) and why["bgcolor"] == "#ecf4f3"  # 8% tint
    _code, output = run(runner, project, "check", EXAMPLE)
    assert "theme." not in output  # a readable palette gets no contrast warning


def test_without_theme_the_default_look_is_kept(runner: CliRunner, project: Path) -> None:
    html = built_html(runner, project)
    assert "#4338ca" in html and "#f2f0eb" in html
    assert not [img for img in elements(html, "img") if "logo" in str(img.get("src"))]


# theme -> the keys `check` warns about (a warning per failing text/background pair).
CONTRAST_CASES = [
    ('  accent: "#ff0000"\n', {"accent"}),  # 4.0:1 on white
    ('  accent: "#0f766e"\n  background: "#1e293b"\n', {"accent", "background"}),
    ('  dark_accent: "#3730a3"\n', {"dark_accent"}),
    ('  dark_background: "#9ca3af"\n', {"dark_background"}),
    ('  accent: "#4338ca"\n  background: "#ffffff"\n', set()),
]


@pytest.mark.parametrize(("theme", "keys"), CONTRAST_CASES)
def test_check_warns_below_aa_contrast_at_the_key(
    theme: str, keys: set[str], runner: CliRunner, project: Path
) -> None:
    with_theme(project, "theme:\n" + theme)
    code, output = run(runner, project, "check", EXAMPLE)
    warned = re.findall(r"newsletter\.yaml:(\d+):\d+: warning: theme\.(\w+): (.*)", output)
    assert {key for _line, key, _msg in warned} == keys
    config = (project / "newsletter.yaml").read_text().splitlines()
    for line, key, message in warned:
        assert config[int(line) - 1].strip().startswith(f"{key}:")
        assert re.search(r"contrast \d+\.\d:1, below the 4\.5:1 WCAG AA", message)
    assert code == 0
    if keys:  # warnings only: --strict fails on them
        assert run(runner, project, "check", "--strict", EXAMPLE)[0] == 1


@pytest.mark.parametrize(
    ("theme", "message"),
    [
        ("theme:\n  accent: #0f766e\n", "'theme.accent' is empty; a colour must be in quotes"),
        ("theme:\n  accent: red\n", "'theme.accent' must be a hex colour"),
        ("theme:\n  background: '#12345'\n", "'theme.background' must be a hex colour"),
        ("theme:\n  headings: comic\n", "'theme.headings' must be serif or sans"),
        ("theme:\n  logo: {url: 'https://x.org/l.png'}\n", "'theme.logo.alt' is missing"),
        ("theme:\n  logo: {url: 'http://x.org/l.png', alt: L}\n", "must be an https:// URL"),
        ("theme:\n  logo: {url: 'https://x.org/l.png', alt: L, width: 5000}\n", "16 to 600"),
        ("theme:\n  accnet: '#000000'\n", "unknown key 'theme.accnet'"),
        ("theme: blue\n", "'theme' must be a mapping"),
    ],
)
def test_bad_theme_values_are_clear_errors(
    theme: str, message: str, runner: CliRunner, project: Path
) -> None:
    with_theme(project, theme)
    code, output = run(runner, project, "build", EXAMPLE)
    assert code != 0
    line = len((project / "newsletter.yaml").read_text().splitlines())
    assert re.search(rf"newsletter\.yaml:({line}|{line - 1}): ", output), output
    assert message in output
    assert not (project / "build").exists()


@pytest.mark.browser
@pytest.mark.parametrize("theme", ["", BRANDED, 'theme:\n  accent: "#92400e"\n'])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_palette_check_accepts_is_readable_in_chromium(
    theme: str, scheme: str, browser: Any, runner: CliRunner, project: Path
) -> None:
    with_theme(project, theme)
    with_links(project)
    assert "theme." not in run(runner, project, "check", EXAMPLE)[1]
    built_html(runner, project)
    page = browser.new_page(viewport={"width": 600, "height": 900}, color_scheme=scheme)
    try:
        page.route(re.compile(r"^https?://"), lambda route: route.abort())
        page.goto((project / "build" / SLUG / "email.html").as_uri())
        worst = page.evaluate(CONTRAST_JS)
        assert worst[0][0] >= 4.5, worst
    finally:
        page.close()


@pytest.mark.browser
def test_a_palette_check_warns_about_is_unreadable_in_chromium(
    browser: Any, runner: CliRunner, project: Path
) -> None:
    with_theme(project, 'theme:\n  accent: "#ff0000"\n')
    with_links(project)
    assert "theme.accent" in run(runner, project, "check", EXAMPLE)[1]
    built_html(runner, project)
    page = browser.new_page(viewport={"width": 600, "height": 900})
    try:
        page.route(re.compile(r"^https?://"), lambda route: route.abort())
        page.goto((project / "build" / SLUG / "email.html").as_uri())
        assert page.evaluate(CONTRAST_JS)[0][0] < 4.5
    finally:
        page.close()


SPAMASSASSIN = shutil.which("spamassassin")


@pytest.mark.skipif(SPAMASSASSIN is None, reason="make test installs Debian's spamassassin")
@pytest.mark.parametrize("theme", ["", BRANDED])
def test_spamassassin_content_rules_score_nothing(
    theme: str, runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    """Offline (-L: no DNS or network tests); the rules are those Debian's package ships."""
    with_theme(project, theme)
    built_html(runner, project)
    message = (project / "build" / SLUG / "message.eml").read_bytes()
    home = tmp_path / "sa-home"
    home.mkdir()
    result = subprocess.run(
        [str(SPAMASSASSIN), "-L", "-t"],
        input=message,
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(home)},
    )
    report = result.stdout.decode("utf-8", "replace")
    details = report[report.index("Content analysis details") :]
    scored = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", details, re.M)
    assert scored, details
    assert [(points, rule) for points, rule in scored if float(points) > 0] == [], details
    assert "HTML_FONT_LOW_CONTRAST" not in details


def test_theme_ignored_by_copied_templates_is_a_warning(runner: CliRunner, project: Path) -> None:
    """A theme folder copied before `theme:` existed would silently ignore it."""
    theme = project / "theme"
    theme.mkdir()
    (theme / "inline.css").write_text("td.nl-prose a { color: #4338ca; }\n", encoding="utf-8")
    (theme / "footer.mjml").write_text(  # not a branded file: no warning for it
        (BUILTIN_THEME / "footer.mjml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with_theme(project, 'templates: theme\ntheme:\n  accent: "#0f766e"\n')
    _code, output = run(runner, project, "check", EXAMPLE)
    (warning,) = [line for line in output.splitlines() if ": theme: " in line]
    line = len((project / "newsletter.yaml").read_text().splitlines()) - 1
    assert warning.startswith(f"newsletter.yaml:{line}:1: warning: theme: inline.css in theme ")
    assert "do not use `brand`" in warning and "footer.mjml" not in warning
    (theme / "inline.css").write_text("td.nl-prose a { color: {{ brand.accent }}; }\n", "utf-8")
    assert ": theme: " not in run(runner, project, "check", EXAMPLE)[1]


def test_serve_pages_follow_the_theme(project: Path) -> None:
    from serve_support import running

    from newsletter.config import load_config
    from newsletter.web.public import create_app

    with_theme(project, BRANDED)
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, signup_min_seconds=0)) as server:
        page = httpx.get(f"{server}/subscribe").text
    assert re.search(r"button \{[^}]*background: #0f766e;", page)
    assert re.search(r"body \{[^}]*background: #f4f1ea;", page)


def test_the_confirmation_email_takes_the_accent(project: Path) -> None:
    """The double opt-in mail, as delivered to the outbox, has the theme's accent button."""
    import email
    import email.policy

    from newsletter.config import load_config
    from newsletter.subscribers import SubscriberStore
    from newsletter.transactional import send_confirmation

    with_theme(project, BRANDED + "transport: outbox:./mail-out\n")
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        ada = store.add("ada@example.com", status="pending")
    assert send_confirmation(config, ada, "https://news.example.org/confirm/x").status == "sent"
    [path] = (project / "mail-out").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    links = [
        a for a in elements(html, "a") if a.get("href") == "https://news.example.org/confirm/x"
    ]
    assert links and all("background:#0f766e" in str(a["style"]) for a in links)


# Accents on both sides of their backgrounds, white and near-black included.
ACCENTS = ["#ffffff", "#f5f5f5", "#ffff00", "#ff0000", "#777777", "#3730a3", "#111111", "#000000"]


@pytest.mark.parametrize("key", ["accent", "dark_accent"])
@pytest.mark.parametrize("colour", ACCENTS)
def test_contrast_advice_points_the_way_that_reaches_aa(
    key: str, colour: str, runner: CliRunner, project: Path
) -> None:
    # Following the advice to its end (white for lighter, black for darker) must reach 4.5:1 on
    # the background the warning names: the advice never points where AA cannot be had.
    with_theme(project, f'theme:\n  {key}: "{colour}"\n')
    _code, output = run(runner, project, "check", EXAMPLE)
    advice = re.findall(
        rf"warning: theme\.{key}: .*? on .*?\((#[0-9a-f]{{6}})\): .*choose a (lighter|darker) ",
        output,
    )
    assert len(advice) == output.count(f"warning: theme.{key}: ")
    for background, direction in advice:
        extreme = "#ffffff" if direction == "lighter" else "#000000"
        assert contrast(extreme, background) >= 4.5, (colour, background, direction)
        assert extreme != colour  # white is never told to get lighter, black never darker
