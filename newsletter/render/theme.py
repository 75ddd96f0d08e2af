"""The theme: Jinja2 templates found in the built-in `templates/` folder, overridable file by file.

A newsletter's `templates:` folder comes first in a ChoiceLoader, so it may replace any single
file (say `footer.mjml`) and inherit the rest. MJML and HTML templates are autoescaped; the
plain-text template and the CSS files are not. Every template failure becomes a RenderError that
names the template file and line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    BytecodeCache,
    ChoiceLoader,
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import Markup

import newsletter
from newsletter.config import Config
from newsletter.errors import ConfigError, NewsletterError, RenderError
from newsletter.render import markdown

# `newsletter/_theme` is a link to the repository's top-level templates/ folder (so a wheel
# carries the theme as package data); resolved, so messages name templates/<file>.
BUILTIN_THEME = (Path(newsletter.__file__).resolve().parent / "_theme").resolve()
EMAIL_TEMPLATE = "email.mjml"
TEXT_TEMPLATE = "email.txt"
INLINE_CSS = "inline.css"

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_ENVIRONMENTS: dict[tuple[str, ...], Environment] = {}
FILTERS_GENERATION = 2  # raise when a filter's calling convention changes (see the cache)


def theme_dirs(config: Config) -> list[Path]:
    """The folders searched for templates, first match wins (the preview server watches them)."""
    dirs = [BUILTIN_THEME]
    if config.templates is not None:
        if not config.templates.is_dir():
            raise ConfigError(
                f"templates: theme folder {config.templates} not found: create it "
                "(`newsletter init --copy-theme` copies the default theme) or fix the path",
                config.path,
                _key_line(config.path, "templates"),
            )
        dirs.insert(0, config.templates)
    return dirs


def _key_line(path: Path | None, key: str) -> int | None:
    """The line of a top-level `key:` in newsletter.yaml, to point the writer at it."""
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    pattern = re.compile(rf"{re.escape(key)}\s*:")
    return next((n for n, line in enumerate(lines, start=1) if pattern.match(line)), None)


def environment(config: Config) -> Environment:
    dirs = theme_dirs(config)
    key = tuple(str(d) for d in dirs)
    env = _ENVIRONMENTS.get(key)
    if env is None:
        env = _ENVIRONMENTS[key] = _make_environment(dirs)
    return env


def _make_environment(dirs: list[Path]) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in dirs]),
        autoescape=select_autoescape(enabled_extensions=("mjml", "html"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,  # the preview server edits templates while running
        bytecode_cache=_bytecode_cache(),
    )
    env.filters.update(
        markdown=_markdown,
        markdown_inline=_markdown_inline,
        md_text=_md_text,
        wrap=markdown.wrap,
        long_date=long_date,
        underline=underline,
    )
    env.globals.update(references=markdown.References, width=markdown.WIDTH)
    return env


# The Markdown filters tag links when the context holds `link_tags` (compile_issue puts the
# issue's LinkTags there when newsletter.yaml has `utm:`), so a copied theme needs no change.
@pass_context
def _markdown(context: Context, source: str, *args: Any) -> Markup:
    return markdown.to_html(source, *args, tags=context.get("link_tags"))


@pass_context
def _markdown_inline(context: Context, source: str) -> Markup:
    return markdown.to_html_inline(source, tags=context.get("link_tags"))


@pass_context
def _md_text(context: Context, source: str, *args: Any) -> str:
    return markdown.to_text(source, *args, tags=context.get("link_tags"))


class _QuietBytecodeCache(FileSystemBytecodeCache):
    """Compiled templates kept between runs (Jinja checks each template's source checksum), so a
    `newsletter build` process does not compile the theme every time. Best effort only."""

    def dump_bytecode(self, bucket: Any) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        # Jinja keys compiled code by template source only, yet the code depends on our filters
        # (a `pass_context` filter is called differently): name their generation in the key.
        return super().get_cache_key(f"{name}|filters-{FILTERS_GENERATION}", filename)


def _bytecode_cache() -> BytecodeCache | None:
    try:
        return _QuietBytecodeCache()  # a private per-user folder under the temp directory
    except (OSError, RuntimeError):
        return None


def long_date(date: dt.date) -> str:
    """`Wednesday, November 25, 2026`, independent of the machine's locale."""
    return f"{_WEEKDAYS[date.weekday()]}, {_MONTHS[date.month - 1]} {date.day}, {date.year}"


def underline(text: str, char: str = "=") -> str:
    """`text` wrapped at the text part's width, ruled as wide as its widest line (display
    width: a CJK headline of 20 characters takes 40 columns)."""
    wrapped = markdown.wrap(text)
    widest = max(map(markdown.display_width, wrapped.split("\n")))
    return f"{wrapped}\n{char * min(widest, markdown.WIDTH)}"


def render(env: Environment, name: str, context: Mapping[str, Any]) -> str:
    """Render one template; any failure is a RenderError naming template file and line."""
    try:
        return env.get_template(name).render(context)
    except TemplateSyntaxError as exc:
        where = display_path(exc.filename or exc.name or name)
        raise RenderError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from None
    except TemplateNotFound as exc:
        raise RenderError(f"template '{exc.name}' not found (needed by '{name}')") from None
    except NewsletterError:
        raise
    except UnicodeDecodeError as exc:  # raised while loading, so no template frame names it
        where = _undecodable(env, exc.object) or name
        raise RenderError(
            f"{where}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save the template as UTF-8"
        ) from None
    except (TemplateError, Exception) as exc:
        where = _template_frame(exc, env) or name
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise RenderError(f"{where}: template error: {message}") from None


def _template_frame(exc: BaseException, env: Environment) -> str | None:
    """`file:line` of the innermost template frame of the error (Jinja rewrites tracebacks so
    template code appears with the template's own file name and line)."""
    roots = [str(Path(p)) for p in _search_paths(env)]
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if any(frame.filename.startswith(root + os.sep) for root in roots):
            found = f"{display_path(frame.filename)}:{frame.lineno}"
    return found


def _undecodable(env: Environment, data: bytes) -> str | None:
    """The theme file whose bytes are `data` (the one that failed to decode)."""
    for root in _search_paths(env):
        for path in sorted(Path(root).rglob("*")):
            with contextlib.suppress(OSError):
                same_size = path.is_file() and path.stat().st_size == len(data)
                if same_size and path.read_bytes() == data:
                    return display_path(str(path))
    return None


def _search_paths(env: Environment) -> list[str]:
    loader = env.loader
    loaders = loader.loaders if isinstance(loader, ChoiceLoader) else [loader]
    return [p for sub in loaders if isinstance(sub, FileSystemLoader) for p in sub.searchpath]


def display_path(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def template_location(env: Environment, needle: str | re.Pattern[str]) -> str | None:
    """`file:line` of the first .mjml template (the one in use: the config's folder before the
    built-in theme) whose source contains `needle`, a string or a pattern (for errors found in
    the rendered MJML, where Jinja's line information is gone)."""
    assert env.loader is not None
    for name in sorted(env.loader.list_templates()):
        if not name.endswith(".mjml"):
            continue
        source, filename, _ = env.loader.get_source(env, name)
        if isinstance(needle, str):
            index = source.find(needle)
        else:
            found = needle.search(source)
            index = found.start() if found else -1
        if index >= 0:
            return f"{display_path(filename or name)}:{source.count(chr(10), 0, index) + 1}"
    return None
