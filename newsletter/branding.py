"""Branding without copying templates: `theme:` in newsletter.yaml, and its contrast check.

    theme:
      accent: "#0f766e"        # links, labels, the accent bar; its tint fills the "why" box
      background: "#f4f1ea"    # the page around the cards
      headings: sans           # serif (default) or sans
      logo: {url: https://example.org/logo.png, alt: Example Weekly, width: 140}
      dark_accent: "#5eead4"   # optional: the accent in dark mode
      dark_background: "#101314"  # optional: the page in dark mode

The default theme reads these as `brand` (a `Brand`). Without `dark_accent`, the dark-mode accent
is the accent lightened until it reads on the dark card (WCAG AA). `contrast_problems` checks
every pair of text and background colour the theme shows, in light and dark mode, against WCAG
2.x's 4.5:1 for normal text; `check` reports them as warnings.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter.diagnostics import Diagnostic

THEME_KEYS = ("accent", "background", "headings", "logo", "dark_accent", "dark_background")
LOGO_KEYS = ("url", "alt", "width")
HEADINGS = {
    "serif": "Georgia, 'Times New Roman', serif",
    "sans": "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif",
}
AA_NORMAL_TEXT = 4.5  # WCAG 2.x success criterion 1.4.3, level AA
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")

# The default theme's fixed colours (templates/inline.css and style.css).
CARD = "#ffffff"
TEXT = "#27272a"
MUTED = "#6b6b73"
DARK_CARD = "#1c1c21"
DARK_TEXT = "#d9d9de"
DARK_MUTED = "#a1a1aa"
DARK_TINT = 0.16  # share of the dark accent in the dark "why" box


@dataclass(frozen=True)
class Brand:
    """What the default theme's templates see as `brand`; colours are `#rrggbb`."""

    accent: str = "#4338ca"
    background: str = "#f2f0eb"
    headings: str = "serif"
    logo_url: str | None = None
    logo_alt: str = ""
    logo_width: int = 160  # CSS pixels
    dark_accent: str = "#a5b4fc"
    dark_background: str = "#111113"
    # Where each key was written: (line, column) in newsletter.yaml, for check's warnings
    # ("" is the `theme:` key itself).
    lines: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)

    @property
    def heading_font(self) -> str:
        return HEADINGS[self.headings]

    @property
    def tint(self) -> str:
        """The "why it matters" box: the accent at 8% on the card."""
        return mix(self.accent, CARD, 0.08)

    @property
    def dark_tint(self) -> str:
        return mix(self.dark_accent, DARK_CARD, DARK_TINT)


class BrandError(ValueError):
    """A bad `theme:` value: `key` is the dotted key (`theme.accent`), `message` says why."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def parse_brand(raw: Any, where: Callable[[str], tuple[int, int]]) -> Brand:
    """The `theme:` mapping as a Brand; raises BrandError for unknown keys and bad values.

    `where(key)` gives the (line, column) of `theme.<key>` in the file."""
    if raw is None:
        return Brand()
    if not isinstance(raw, dict):
        raise BrandError("theme", "'theme' must be a mapping such as {accent: '#0f766e'}")
    for key in raw:
        if key not in THEME_KEYS:
            raise BrandError(
                f"theme.{key}",
                f"unknown key 'theme.{key}'; expected one of: {', '.join(THEME_KEYS)}",
            )
    for key, value in raw.items():
        if value is None:  # `accent: #0f766e` unquoted: YAML reads a comment, so nothing
            raise BrandError(
                f"theme.{key}",
                f"'theme.{key}' is empty; a colour must be in quotes ('#0f766e'), as YAML "
                "reads an unquoted # as the start of a comment",
            )
    values: dict[str, Any] = {"lines": {key: where(key) for key in ("", *raw)}}
    for key in ("accent", "background", "dark_accent", "dark_background"):
        if raw.get(key) is not None:
            values[key] = _colour(key, raw[key])
    headings = raw.get("headings")
    if headings is not None:
        if headings not in HEADINGS:
            raise BrandError(
                "theme.headings", f"'theme.headings' must be serif or sans, got {headings!r}"
            )
        values["headings"] = headings
    if raw.get("logo") is not None:
        values.update(_logo(raw["logo"]))
    if "accent" in values and "dark_accent" not in values:
        dark_background = values.get("dark_background", Brand.dark_background)
        values["dark_accent"] = readable_dark_accent(values["accent"], dark_background)
    return Brand(**values)


def _colour(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value.strip()):
        raise BrandError(
            f"theme.{key}",
            f"'theme.{key}' must be a hex colour such as '#0f766e' (in quotes: YAML reads # as "
            f"a comment), got {value!r}",
        )
    text = value.strip().lower()
    if len(text) == 4:
        text = "#" + "".join(ch * 2 for ch in text[1:])
    return text


def _logo(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BrandError("theme.logo", "'theme.logo' must be a mapping with url and alt")
    for key in raw:
        if key not in LOGO_KEYS:
            raise BrandError(
                f"theme.logo.{key}", f"unknown key 'theme.logo.{key}'; expected url, alt, width"
            )
    url = raw.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or any(c.isspace() for c in url)
    ):
        raise BrandError("theme.logo.url", f"'theme.logo.url' must be an https:// URL, got {url!r}")
    alt = raw.get("alt")
    if not isinstance(alt, str) or not alt.strip() or "\n" in alt.strip():
        raise BrandError(
            "theme.logo.alt",
            "'theme.logo.alt' is missing: one line naming the logo for readers who cannot see "
            "it (and for inboxes that block images)",
        )
    width = raw.get("width", Brand.logo_width)
    if isinstance(width, bool) or not isinstance(width, int) or not 16 <= width <= 600:
        raise BrandError(
            "theme.logo.width", f"'theme.logo.width' must be 16 to 600 pixels, got {width!r}"
        )
    return {"logo_url": url, "logo_alt": alt.strip(), "logo_width": width}


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def mix(colour: str, other: str, amount: float) -> str:
    """`amount` of `colour` over `other` (0..1), as #rrggbb."""
    a, b = _rgb(colour), _rgb(other)
    return "#" + "".join(
        f"{round(x * amount + y * (1 - amount)):02x}" for x, y in zip(a, b, strict=True)
    )


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of an sRGB colour, 0 (black) to 1 (white)."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: str, two: str) -> float:
    """WCAG 2.x contrast ratio, 1 to 21."""
    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def readable_dark_accent(accent: str, dark_background: str) -> str:
    """`accent` mixed with white just enough to reach 4.5:1 in dark mode: on the dark card, the
    dark page and its own tinted "why" box."""
    for step in range(21):
        candidate = mix("#ffffff", accent, step / 20)
        backgrounds = (DARK_CARD, dark_background, mix(candidate, DARK_CARD, DARK_TINT))
        if all(contrast(candidate, bg) >= AA_NORMAL_TEXT for bg in backgrounds):
            return candidate
    return "#ffffff"


@dataclass(frozen=True)
class ContrastProblem:
    key: str  # the theme key to change: accent, background, dark_accent or dark_background
    message: str


def contrast_problems(brand: Brand) -> list[ContrastProblem]:
    """Every text/background pair of the default theme below WCAG AA (4.5:1), light then dark."""
    pairs = [
        ("accent", brand.accent, "links and labels", CARD, "the cards"),
        ("accent", brand.accent, "the 'why it matters' label", brand.tint, "its box"),
        ("accent", brand.accent, "links in the intro and outro", brand.background, "the page"),
        ("background", TEXT, "the intro and outro text", brand.background, "the background"),
        ("background", MUTED, "the date and footer text", brand.background, "the background"),
        ("dark_accent", brand.dark_accent, "links in dark mode", DARK_CARD, "the dark cards"),
        ("dark_accent", brand.dark_accent, "the dark 'why' label", brand.dark_tint, "its box"),
        ("dark_background", DARK_TEXT, "dark-mode text", brand.dark_background, "the page"),
        ("dark_background", DARK_MUTED, "the dark date and footer", brand.dark_background, "it"),
    ]
    problems = []
    for key, fg, what, bg, on in pairs:
        ratio = contrast(fg, bg)
        if ratio >= AA_NORMAL_TEXT:
            continue
        shown = math.floor(ratio * 10) / 10  # 4.49 is shown as 4.4, never as a passing 4.5
        if key.endswith("background"):  # the theme's text is dark in light mode, light in dark
            direction = "darker" if key.startswith("dark") else "lighter"
        else:
            direction = _accent_direction(fg, bg)
        problems.append(
            ContrastProblem(
                key,
                f"{what} ({fg}) on {on} ({bg}): contrast {shown}:1, below the "
                f"{AA_NORMAL_TEXT}:1 WCAG AA needs for text; choose a {direction} "
                f"{key.replace('_', ' ')}",
            )
        )
    return problems


def _accent_direction(accent: str, background: str) -> str:
    """ "lighter" or "darker": the way to move `accent` so that it can reach AA on `background`.
    Away from the background when that way gets there (white, the lightest, gets no lighter;
    #111111 on a dark card reaches 4.5:1 only by getting lighter); else the way that reaches the
    higher contrast."""
    reach = {"lighter": contrast("#ffffff", background), "darker": contrast("#000000", background)}
    away = "lighter" if luminance(accent) > luminance(background) else "darker"
    other = "darker" if away == "lighter" else "lighter"
    for direction in (away, other):
        if reach[direction] >= AA_NORMAL_TEXT and contrast(accent, background) < reach[direction]:
            return direction
    return max(reach, key=lambda direction: reach[direction])


# The default theme's files that apply `theme:` (as `brand`).
BRANDED_TEMPLATES = ("email.mjml", "header.mjml", "inline.css", "style.css")


def theme_warnings(
    brand: Brand, config_path: Path | None, templates: Path | None
) -> list[Diagnostic]:
    """`check`'s warnings about `theme:`, at its keys in newsletter.yaml: colours below WCAG AA
    contrast, and a theme folder whose copies of the branded files do not read `brand` (copied
    before `theme:` existed, say), where the setting would silently do nothing."""
    where = os.path.relpath(config_path) if config_path else "newsletter.yaml"
    found = []
    for problem in contrast_problems(brand):
        line, col = brand.lines.get(problem.key) or brand.lines.get("", (1, 1))
        found.append(
            Diagnostic(where, line, col, "warning", f"theme.{problem.key}", problem.message)
        )
    if brand.lines and templates is not None and templates.is_dir():
        ignored = [
            name
            for name in BRANDED_TEMPLATES
            if (templates / name).is_file()
            and "brand." not in (templates / name).read_text("utf-8", errors="replace")
        ]
        if ignored:
            line, col = brand.lines.get("", (1, 1))
            message = (
                f"{', '.join(ignored)} in {os.path.relpath(templates)} do not use `brand`, so "
                "theme: has no effect there: apply it in those copies, or delete them to use "
                "the default theme's"
            )
            found.append(Diagnostic(where, line, col, "warning", "theme", message))
    return found
