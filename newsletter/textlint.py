"""Warnings for text readers would not get as typed: placeholders and HTML tags typed in fields,
and text YAML silently dropped or joined.

Placeholders (`{{ subscriber.name }}`, `{% if %}`) are evaluated only in the subject, preheader,
intro and outro; anywhere else every reader gets the braces as typed. Raw HTML is off in issue
Markdown (and headlines are plain text), so a typed `<b>` is shown as `<b>`. Code spans and
fenced code blocks are left alone: text there is meant literally. In an unquoted value, ` #`
starts a YAML comment (`headline: Paris #1 city` gives "Paris"), and a `- ` line indented more
than the list items above it is joined to the item before it ("One - Two"): both parse, so only
a look at the source lines finds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from newsletter.diagnostics import Diagnostic, field_path
from newsletter.issue import PLACEHOLDER_FIELDS, REQUIRED_TEXT, comment_lost, locate_in_value
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
# The fields rendered as Markdown; every other text field (title, subject, preheader, headline,
# dek, a source's title and publisher, an image's alt) is plain text, shown as typed.
_MARKDOWN_TOP = ("intro", "outro")
_MARKDOWN_STORY = ("summary", "why_it_matters", "takeaway", "key_points")
# Markdown typed in a plain-text field: emphasis, a link, a code span.
_MARKDOWN_SYNTAX = re.compile(
    r"(?<![\w*])\*\*?(?=[^\s*])[^*\n]*?(?<=[^\s*])\*\*?(?![\w*])"
    r"|(?<![\w_])__?(?=[^\s_])[^_\n]*?(?<=[^\s_])__?(?![\w_])"
    r"|\[[^\]\n]+\]\([^)\s]+\)"
    r"|`[^`\n]+`"
)


def is_markdown_field(parts: FieldPath) -> bool:
    """Whether the text at `parts` (("stories", 0, "dek"), ...) is rendered as Markdown."""
    if len(parts) == 1:
        return parts[0] in _MARKDOWN_TOP
    return len(parts) >= 3 and parts[0] == "stories" and parts[2] in _MARKDOWN_STORY


def literal_text_warnings(doc: YamlDocument) -> list[Diagnostic]:
    """One warning per placeholder outside the placeholder fields and per HTML tag typed in any
    text field, at the line and column where it is written."""
    found: list[Diagnostic] = []
    for parts, value in _strings(doc.data, ()):
        if not is_markdown_field(parts):
            found += _plain_text_warnings(doc, parts, value)
            continue
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
    return found + _yaml_surprises(doc) + _block_indentation(doc) + _comments_as_values(doc)


def _plain_text_warnings(doc: YamlDocument, parts: FieldPath, value: str) -> list[Diagnostic]:
    """Placeholders outside the placeholder fields, and HTML or Markdown typed in a plain-text
    field (`headline: <i>Paris</i>` or `*Paris*`): all reach readers as typed."""
    found: list[Diagnostic] = []
    what = _name(parts)
    if parts[-1] in ("url", "path"):
        return found  # addresses, not text: `_` and `*` are ordinary characters there
    if parts not in ((key,) for key in PLACEHOLDER_FIELDS):
        for match in _PLACEHOLDER.finditer(value):
            text = match.group()
            message = (
                f"{text} is sent literally to every reader: placeholders work only in {_WHERE}"
            )
            found.append(_warning(doc, parts, text, message))
    for pattern, kind in ((_TAG, "HTML"), (_MARKDOWN_SYNTAX, "Markdown")):
        for match in pattern.finditer(value):
            text = match.group()
            message = (
                f"{text} is shown to readers as typed: the {what} is plain text (no HTML, no "
                f"Markdown), so {kind} here is not formatted: write the words alone"
            )
            found.append(_warning(doc, parts, text, message))
    return found


def _yaml_surprises(doc: YamlDocument) -> list[Diagnostic]:
    lines = doc.text.splitlines()
    starts = sorted({*doc.value_locations.values(), *doc.key_locations.values()})
    found = []
    for parts, value in _strings(doc.data, ()):
        line, col = doc.value_locations.get(parts, (0, 0))
        if not line or lines[line - 1][col - 1 : col] in ("'", '"', "|", ">"):
            continue  # quoted or a block: YAML keeps what is typed
        later = [loc[0] for loc in starts if loc > (line, col)]
        end = min(later) - 1 if later else len(lines)
        what = _name(parts)
        # `Paris #1 city`, `news #AI`: text; `value  # note` (a space after #) is a comment.
        comment = re.search(r"(?<=\S) #(?=\S)", lines[line - 1][col - 1 :])
        note = re.search(r"(?<=\S) +# ", lines[line - 1][col - 1 :])
        if note and not comment and "#" not in value.split("\n")[0]:
            at = (line, col + note.end() - 2)  # the column of the #
            found.append(
                _warning_at(
                    doc,
                    parts,
                    at,
                    f"the text from ' #' on is a YAML comment, so readers get '{value.strip()}' "
                    f"only: put the {what} in quotes if it belongs to it (a note for yourself "
                    "goes on a line of its own)",
                )
            )
        if comment and "#" not in value.split("\n")[0]:
            at = (line, col + comment.start() + 1)  # the column of the #
            found.append(
                _warning_at(
                    doc,
                    parts,
                    at,
                    f"the text from ' #' on is a YAML comment, so readers get '{value.strip()}' "
                    f"only: put the {what} in quotes",
                )
            )
        for number in range(line + 1, end + 1):
            text = lines[number - 1]
            if text.lstrip().startswith("- ") and not _blank(text):
                at = (number, len(text) - len(text.lstrip()) + 1)
                found.append(
                    _error_at(
                        doc,
                        parts,
                        at,
                        f"this '- ' line is indented more than the item above it, so YAML joined "
                        f"it to that {what} ('{value.strip()[:60]}'): indent it like the other "
                        "items to make it an item of its own",
                    )
                )
    return found


def _comments_as_values(doc: YamlDocument) -> list[Diagnostic]:
    """`dek: #1 story`: an optional field YAML reads as empty, its text taken as a comment
    (a required one is the loader's error, with the same explanation)."""
    found = []
    for parts, at in doc.key_locations.items():
        if not parts or parts[-1] in REQUIRED_TEXT or _value_at(doc.data, parts) is not None:
            continue
        comment = doc.comment_as_value(parts)
        if comment:
            message = f"'{parts[-1]}' is read as empty: {comment_lost(str(parts[-1]), comment)}"
            found.append(_warning_at(doc, parts, at, message))
    return found


def _value_at(data: Any, parts: FieldPath) -> Any:
    for part in parts:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d{1,9}[.)])(?:\s|$)")
_FENCE = re.compile(r"\s*(?:`{3,}|~{3,})")


def _block_indentation(doc: YamlDocument) -> list[Diagnostic]:
    """A `|` or `>` block whose later line is indented more than its first line: YAML keeps the
    extra spaces in the text, and 4 or more turn that paragraph into a code block. Lines under a
    Markdown list item (its continuation or a nested list) and inside a code fence are indented
    on purpose and left alone."""
    lines = doc.text.splitlines()
    found = []
    for parts, _value in _strings(doc.data, ()):
        line, col = doc.value_locations.get(parts, (0, 0))
        header = lines[line - 1][col - 1 :] if line else ""
        if not re.match(r"[|>][+-]?(?:\s|#|$)", header):
            continue  # not a block, or one with an explicit indentation indicator (`|2`)
        found += _first_deeper_line(doc, parts, lines, line)
    return found


def _first_deeper_line(
    doc: YamlDocument, parts: FieldPath, lines: list[str], header: int
) -> list[Diagnostic]:
    width, in_list, fenced = -1, False, False
    for number in range(header + 1, len(lines) + 1):
        text = lines[number - 1]
        if not text.strip():
            continue
        indent = len(text) - len(text.lstrip(" "))
        if width < 0:
            width = indent
        if indent < width:
            break  # the block ended
        if indent == width:
            fenced = fenced != bool(_FENCE.match(text))
            in_list = in_list if fenced else bool(_LIST_ITEM.match(text))
            continue
        if in_list or fenced:
            continue
        what, extra = _name(parts), indent - width
        effect = "turn this paragraph into a code block" if extra >= 4 else "stay in the text"
        message = (
            f"this line of the {what} (a | block) is indented {indent} spaces, more than the "
            f"block's first line ({width}): the {extra} extra spaces {effect}; indent it by "
            f"{width} spaces like the first line"
        )
        return [_warning_at(doc, parts, (number, indent + 1), message)]
    return []


def _blank(text: str) -> bool:
    return not text.strip() or text.lstrip().startswith("#")


def _name(parts: FieldPath) -> str:
    """`key point`, `headline`, ...: how a message calls the value at `parts`."""
    if len(parts) >= 2 and isinstance(parts[-1], int):
        return {"key_points": "key point", "stories": "story", "sources": "source"}.get(
            str(parts[-2]), "item"
        )
    return str(parts[-1]) if parts else "value"


def _warning_at(
    doc: YamlDocument, parts: FieldPath, at: tuple[int, int], message: str
) -> Diagnostic:
    return Diagnostic(doc.path, at[0], at[1], "warning", field_path(parts), message)


def _error_at(doc: YamlDocument, parts: FieldPath, at: tuple[int, int], message: str) -> Diagnostic:
    """An error: readers would get a mangled text ("One point - Another point")."""
    return Diagnostic(doc.path, at[0], at[1], "error", field_path(parts), message)


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
