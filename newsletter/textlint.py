"""Warnings for text that readers would get literally: placeholders and HTML tags typed in fields.

Placeholders (`{{ subscriber.name }}`, `{% if %}`) are evaluated only in the subject, preheader,
intro and outro; anywhere else every reader gets the braces as typed. Raw HTML is off in issue
Markdown (and headlines are plain text), so a typed `<b>` is shown as `<b>`. Code spans and
fenced code blocks are left alone: text there is meant literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from newsletter.diagnostics import Diagnostic, field_path
from newsletter.issue import PLACEHOLDER_FIELDS, locate_in_value
from newsletter.yamlsource import FieldPath, YamlDocument

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{\{|\{%", re.S)
# A start or end tag (`<b>`, `</a>`, `<br/>`, `<img src=...>`): a letter right after `<`, then
# whitespace, `/` or `>`. Markdown autolinks (`<https://...>`, `<a@b.org>`) do not match.
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)(?:\s[^<>]*)?/?>")
# Fenced code blocks and code spans: masked before looking for placeholders and tags.
_CODE = re.compile(
    r"^ {0,3}(`{3,}|~{3,}).*?(?:^ {0,3}\1[`~]*[ \t]*$|\Z)|(`+)(?!`).+?(?<!`)\2", re.S | re.M
)
_MARKDOWN_FOR = {
    "b": "**bold**",
    "strong": "**bold**",
    "i": "*italics*",
    "em": "*italics*",
    "a": "[text](https://...)",
    "br": "a blank line between paragraphs",
    "p": "a blank line between paragraphs",
    "img": "the story's image field or ![alt](https://...)",
    "ul": "lines starting with '- '",
    "li": "lines starting with '- '",
    "h1": "'# ' headings",
    "h2": "'## ' headings",
    "h3": "'### ' headings",
}
_WHERE = ", ".join(PLACEHOLDER_FIELDS[:-1]) + " and " + PLACEHOLDER_FIELDS[-1]


def literal_text_warnings(doc: YamlDocument) -> list[Diagnostic]:
    """One warning per placeholder outside the placeholder fields and per HTML tag typed in any
    text field, at the line and column where it is written."""
    found: list[Diagnostic] = []
    for parts, value in _strings(doc.data, ()):
        prose = _CODE.sub(lambda m: " " * len(m.group()), value)
        if parts not in ((key,) for key in PLACEHOLDER_FIELDS):
            for match in _PLACEHOLDER.finditer(prose):
                text = value[match.start() : match.end()]
                found.append(
                    _warning(
                        doc,
                        parts,
                        text,
                        f"{text} is sent literally to every reader: placeholders work only in "
                        f"{_WHERE}",
                    )
                )
        for match in _TAG.finditer(prose):
            tag = match.group()
            instead = _MARKDOWN_FOR.get(match.group(1).lower())
            advice = f": write {instead} instead" if instead else ": describe it in words"
            found.append(
                _warning(
                    doc,
                    parts,
                    tag,
                    f"{tag} is shown to readers as text, not as HTML (HTML is off in issues)"
                    + advice,
                )
            )
    return found


def _strings(value: Any, parts: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*parts, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*parts, i))
    elif isinstance(value, str):
        yield parts, value


def _warning(doc: YamlDocument, parts: FieldPath, snippet: str, message: str) -> Diagnostic:
    line, col = locate_in_value(doc, parts, snippet)
    return Diagnostic(doc.path, line, col, "warning", field_path(parts), message)
