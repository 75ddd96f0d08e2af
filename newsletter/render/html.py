"""MJML -> HTML (mjml-python) -> CSS inlining (premailer), with the pitfalls of both handled.

Only the theme's `inline.css` is inlined. MJML's own <style> blocks, the responsive rules and the
dark-mode rules stay in <head> untouched (marked `data-premailer="ignore"`), so media queries keep
their `!important` and nothing is inlined twice.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
import sys
import types
from typing import Any

from jinja2 import Environment

from newsletter.errors import RenderError
from newsletter.render.theme import display_path, template_location

# Every tag mjml-python renders; anything else would pass through to the HTML literally.
MJML_TAGS = frozenset(
    [
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-raw",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    ]
)
_TAG = re.compile(r"</?\s*(mj[\w-]*)")
_STYLE_OPEN = re.compile(r"<style(?![^>]*data-premailer)")
_DOCTYPE = "<!doctype html>"
_IGNORED = '<style data-premailer="ignore"'


# `<mj-style inline="inline">`: MJML inlines such a block; mjml-python silently ignores it.
_INLINE_STYLE = re.compile(r"<mj-style\b[^>]*\binline\s*=")


def check_mjml(mjml: str, env: Environment) -> None:
    """Refuse what mjml-python would silently get wrong (it has no validator of its own): tags
    it does not know, `<mj-style inline="inline">`, which it ignores, and a tag whose `>` or
    attribute quote is missing, which it may swallow with what follows."""
    if _tag_fault(mjml, balance=False) is not None:
        fault = _mjml_fault(env, balance=False)
        path, line, what = fault if fault is not None else ("theme", 0, "a broken mj- tag")
        raise RenderError(f"{path}:{line}: invalid MJML: {what}" if line else f"{path}: {what}")
    for match in _TAG.finditer(mjml):
        tag = match.group(1)
        if tag not in MJML_TAGS:
            where = template_location(env, _tag_pattern(tag)) or "theme"
            hint = difflib.get_close_matches(tag, MJML_TAGS, n=1)
            suggestion = f" (did you mean <{hint[0]}>?)" if hint else ""
            raise RenderError(f"{where}: unknown MJML tag <{tag}>{suggestion}")
    if _INLINE_STYLE.search(mjml):
        where = template_location(env, _INLINE_STYLE) or "theme"
        raise RenderError(
            f'{where}: <mj-style inline="inline"> is ignored by mjml-python, so its CSS would '
            "never reach the elements: put that CSS in the theme's inline.css (inlined into "
            'every element) and drop inline="inline"'
        )


def _tag_pattern(tag: str) -> re.Pattern[str]:
    """An opening or closing `tag`, not a longer tag it begins (`<mj-colum` in `<mj-column`)."""
    return re.compile(rf"</?\s*{re.escape(tag)}(?![\w-])")


def mjml_to_html(mjml: str, env: Environment) -> str:
    from mjml import mjml2html

    check_mjml(mjml, env)
    try:
        html = mjml2html(mjml)
    except ValueError as exc:  # mjml-python reports MJML errors as ValueError
        fault = _mjml_fault(env)
        if fault is None:
            raise RenderError(
                f"the theme produced invalid MJML: {exc}{_excerpt(mjml, exc)}"
            ) from None
        path, line, what = fault
        raise RenderError(
            f"{path}:{line}: invalid MJML: {what} (mjml-python says: {exc})"
        ) from None
    return _IMG_TAG.sub(_fluid_height, html)


_IMG_TAG = re.compile(r"<img\b[^>]*>")
_FIXED_HEIGHT = re.compile(r"(?<![\w-])height\s*:\s*\d+(?:\.\d+)?px")


def _fluid_height(match: re.Match[str]) -> str:
    """An `<mj-image height=...>` renders `width:100%` with a fixed `height:Npx` inline, which
    squashes the picture wherever the column is narrower than its width (a phone). The height
    attribute stays for Outlook, which sizes images by attributes; CSS readers get height:auto,
    so the picture keeps its aspect ratio at every width."""
    tag = match.group(0)
    style = re.search(r'style="([^"]*)"', tag)
    if style is None or not re.search(r"(?<![\w-])width\s*:\s*100%", style.group(1)):
        return tag
    fluid = _FIXED_HEIGHT.sub("height:auto", style.group(1))
    return tag[: style.start(1)] + fluid + tag[style.end(1) :]


def _mjml_fault(env: Environment, *, balance: bool = True) -> tuple[str, int, str] | None:
    """(template file, line, what is wrong) for the first MJML template whose tags are broken:
    mjml-python's own messages ("unable to parse next template") name no file."""
    assert env.loader is not None
    for name in sorted(env.loader.list_templates()):
        if not name.endswith(".mjml"):
            continue
        source, filename, _ = env.loader.get_source(env, name)
        fault = _tag_fault(source, balance=balance)
        if fault is not None:
            return display_path(filename or name), fault[0], fault[1]
    return None


_MJ_TAG_START = re.compile(r"<(/?)\s*(mj[\w-]*)")


def _tag_fault(source: str, *, balance: bool = True) -> tuple[int, str] | None:
    """(line, what) of the first broken mj- tag of a template: a tag without its `>`, an
    attribute quote never closed, and with `balance` a tag never closed or closed out of order
    (a theme may open a tag in one file and close it in another, so that is looked for only
    once mjml-python failed). Runs on every compile: lines are counted only for a fault."""

    def line(at: int) -> int:
        return source.count("\n", 0, at) + 1

    open_tags: list[tuple[str, int]] = []
    for match in _MJ_TAG_START.finditer(source):
        closing, tag = match.groups()
        end, problem = _tag_end(source, match.end())
        if problem == "quote":
            return line(match.start()), f"a quote of an attribute of <{tag}> is never closed"
        if problem == "bracket":
            return line(match.start()), f"<{tag} has no closing >"
        if not balance or source[end - 2 : end] == "/>":
            continue
        if not closing:
            open_tags.append((tag, match.start()))
        elif open_tags and open_tags[-1][0] == tag:
            open_tags.pop()
        elif open_tags:
            inner, opened = open_tags[-1]
            return line(opened), (
                f"<{inner}> is never closed; </{tag}> on line {line(match.start())} comes first"
            )
        else:
            return line(match.start()), f"</{tag}> closes nothing"
    if open_tags:
        tag, at = open_tags[-1]
        return line(at), f"<{tag}> is never closed"
    return None


# The rest of a well-formed tag: text, or quoted values that stay on one line without a `<`.
_TAG_REST = re.compile(r"""(?:[^"'<>]|"[^"<\n]*"|'[^'<\n]*')*>""")


def _tag_end(source: str, i: int) -> tuple[int, str]:
    """(index after the `>` ending the tag whose attributes start at i, problem): problem is ""
    or "quote" (a quoted value runs into a new line or tag) or "bracket" (no `>` first)."""
    well_formed = _TAG_REST.match(source, i)
    if well_formed is not None:  # the common case, without a Python loop over each character
        return well_formed.end(), ""
    quote = ""
    while i < len(source):
        char = source[i]
        if quote:
            if char == quote:
                quote = ""
            elif char in "<\n":
                return i, "quote"
        elif char in "\"'":
            quote = char
        elif char == ">":
            return i + 1, ""
        elif char == "<":
            return i, "bracket"
        i += 1
    return i, "quote" if quote else "bracket"


def _excerpt(mjml: str, exc: ValueError) -> str:
    """The text at `position A:B` of an mjml-python error, to find it in the templates."""
    match = re.search(r"position (\d+)", str(exc))
    if not match:
        return ""
    start = int(match.group(1))
    snippet = mjml[max(0, start - 40) : start + 40].replace("\n", " ").strip()
    return f" near {snippet!r}"


def inline_css(html: str, css: str) -> str:
    """Inline `css` into `html`; every <style> already in the document stays as it is."""
    marked = _STYLE_OPEN.sub(_IGNORED, html)
    try:
        out = _premailer_class()(
            marked,
            css_text=css,
            allow_network=False,
            strip_important=False,
            # The document's own <style> blocks are skipped (marked "ignore") and kept verbatim;
            # True here would only add a second copy of inline.css to <head>.
            keep_style_tags=False,
            disable_validation=True,
            remove_classes=False,
            align_floating_images=False,  # re-parses every <img> style with cssutils: slow
            cssutils_logging_level=logging.CRITICAL,
        ).transform(pretty_print=False)
    except Exception as exc:  # premailer surfaces lxml and cssutils errors untyped
        raise RenderError(f"inlining the theme's inline.css failed: {exc}") from None
    # premailer drops the doctype; lxml writes `<html>` first in its place.
    body = out[out.index("<html") :] if "<html" in out else out
    # Styles inside Outlook's conditional comments were invisible to premailer: unmark them.
    body = body.replace(_IGNORED, "<style")
    return f"{_DOCTYPE}{body}"


_PREMAILER: type | None = None


def _premailer_class() -> type:
    """Premailer that parses a given stylesheet once per process, not once per document
    (cssutils parsing is most of its cost, and the theme's CSS rarely changes)."""
    global _PREMAILER
    if _PREMAILER is None:
        Premailer = _import_premailer()

        cache: dict[tuple[str, int], tuple[list, list]] = {}

        class CachedPremailer(Premailer):  # type: ignore[misc]
            def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
                key = (css_body, ruleset_index)
                if key not in cache:
                    if len(cache) > 16:  # edited themes (the preview server) must not pile up
                        cache.clear()
                    cache[key] = super()._parse_style_rules(css_body, ruleset_index)
                return cache[key]

        _PREMAILER = CachedPremailer
    return _PREMAILER


def _import_premailer() -> type:
    """premailer imports `requests` at load time only to fetch remote stylesheets, which we never
    let it do (allow_network=False); importing requests is a third of the start-up cost of
    `newsletter build`. Give premailer a stand-in that loads the real module on first use."""
    if "requests" in sys.modules:
        from premailer import Premailer

        return Premailer

    class _LazyRequests(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(importlib.import_module("requests"), name)

    stand_in = _LazyRequests("requests")
    sys.modules["requests"] = stand_in
    try:
        from premailer import Premailer
    finally:
        if sys.modules.get("requests") is stand_in:
            del sys.modules["requests"]  # anyone else importing requests gets the real one
    return Premailer
