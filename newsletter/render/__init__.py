"""Rendering: an issue compiled once into HTML, text and web version with per-recipient slots.

`compile_issue(issue, config) -> CompiledIssue` and `build_issue(path, config, out_dir)` are
imported lazily: `newsletter.render.placeholders` is needed by the issue loader and must not pull
in MJML, premailer and lxml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newsletter.render.build import build_issue
    from newsletter.render.compile import compile_issue
    from newsletter.render.compiled import CompiledIssue, RenderedEmail
    from newsletter.render.theme import theme_dirs

__all__ = ["CompiledIssue", "RenderedEmail", "build_issue", "compile_issue", "theme_dirs"]

_LAZY = {
    "build_issue": "newsletter.render.build",
    "compile_issue": "newsletter.render.compile",
    "CompiledIssue": "newsletter.render.compiled",
    "RenderedEmail": "newsletter.render.compiled",
    "theme_dirs": "newsletter.render.theme",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'newsletter.render' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
