"""Issue Markdown (CommonMark, raw HTML disabled) rendered two ways: HTML and wrapped plain text.

Raw HTML is off, so `<script>` in any field is shown as text. A bare `http(s)://` URL is a link
exactly as typed (markdown-it's linkify with linkify-it-py, run while parsing inline text, so
the `_` and `*` of `#object.__init__` stay in the URL instead of becoming emphasis); URLs without
a scheme (`example.com`) stay text, so a file name such as `setup.py` is never linked.

The plain-text rendering is not a conversion of the HTML: it walks the same Markdown tokens
and turns links into numbered references (`text [1]`) collected per story by a `References` object.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_inline.linkify import SCHEME_RE, linkify
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token
from markupsafe import Markup

from newsletter.render.linktags import LinkTags

WIDTH = 72


def new_parser() -> MarkdownIt:
    """The issue flavour of Markdown: CommonMark, raw HTML off, bare http(s) URLs linked."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": True}).enable("linkify")
    md.linkify.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    md.linkify = _TrailingPunctuationLeftOut(md.linkify)
    md.inline.ruler.at("linkify", _linkify_after_emphasis)
    return md


def _linkify_after_emphasis(state: StateInline, silent: bool) -> bool:
    """markdown-it's linkify rule, telling the matcher whether the URL follows a `_` (opens
    emphasis), which only then also closes it: `_https://x.org/j_`."""
    scheme = SCHEME_RE.search(state.pending)
    start = state.pos - len(scheme.group(1)) if scheme else 0
    state.md.linkify.after_underscore = start > 0 and state.src[start - 1] == "_"
    return linkify(state, silent)


class _TrailingPunctuationLeftOut:
    """linkify-it keeps a trailing `:` in a bare URL (`https://x.org/h: yes` links `.../h:`),
    and a trailing `_` that closes emphasis (`_https://x.org/j_` links `.../j_`); both are left
    out, as GitHub does (markdown-it already drops a trailing `*`). A `_` that ends a URL not
    opened by one stays: `...datamodel.html#object.__init__`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.after_underscore = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def match_at_start(self, text: str) -> Any:
        found = self._inner.match_at_start(text)
        if found is not None:
            trimmed = found.url.rstrip(":_" if self.after_underscore else ":")
            if not trimmed.endswith("://"):
                found.url = trimmed
        return found


_MD = new_parser()
# The same flavour without linkify, for text that holds no "://" and so no bare http(s) URL to
# link: linkify-it's scan of every text run was a fifth of compiling an issue.
_NO_URLS = MarkdownIt("commonmark", {"html": False})


def _parser(source: str) -> MarkdownIt:
    return _MD if "://" in source else _NO_URLS


# Block elements that get dir="auto", so a right-to-left paragraph reads right to left even
# inside a left-to-right newsletter. List items inherit their list's direction: the auto
# detection skips any descendant with its own dir attribute.
_DIRECTIONAL = {
    "paragraph_open",
    "heading_open",
    "bullet_list_open",
    "ordered_list_open",
    "blockquote_open",
}


@functools.lru_cache(maxsize=1024)
def _parse(source: str) -> tuple[Token, ...]:
    """Tokens of one Markdown text, shared by the HTML and text renderings: never mutate them."""
    return tuple(_parser(source).parse(source))


def _tagged(tokens: Sequence[Token], tags: LinkTags | None) -> Sequence[Token]:
    """`tokens` with every link's href tagged (newsletter.render.linktags); copies, never
    changes, the cached tokens."""
    if tags is None:
        return tokens
    out = []
    for token in tokens:
        children = token.children or []
        if token.type == "inline" and any(c.type == "link_open" for c in children):
            children = [
                c.copy(attrs={**c.attrs, "href": tags.apply(str(c.attrs.get("href", "")))})
                if c.type == "link_open"
                else c
                for c in children
            ]
            token = token.copy(children=children)
        out.append(token)
    return out


@functools.lru_cache(maxsize=512)  # the email and the web version render the same Markdown
def to_html(
    source: str, heading_offset: int = 2, deepest: int = 4, tags: LinkTags | None = None
) -> Markup:
    """Render Markdown to HTML. `# Heading` becomes <h3> by default and deeper ones <h4>: h1 and
    h2 belong to the theme, and an email needs no more levels. `tags`: UTM link tagging."""
    tokens = []
    for token in _tagged(_parse(source), tags):
        heading = token.type in ("heading_open", "heading_close")
        directional = token.type in _DIRECTIONAL and not token.hidden
        if heading or directional:
            token = token.copy(attrs=dict(token.attrs))
            if heading:
                token.tag = f"h{min(deepest, int(token.tag[1]) + heading_offset)}"
            if directional:
                token.attrSet("dir", "auto")
        tokens.append(token)
    # markdown-it escapes all text and drops unsafe link schemes, so its output is safe markup.
    return Markup(_MD.renderer.render(tokens, _MD.options, {}))


def clear_caches() -> None:
    """Forget rendered Markdown (benchmarks measure a first render)."""
    _parse.cache_clear()
    to_html.cache_clear()


def to_html_inline(source: str, tags: LinkTags | None = None) -> Markup:
    """Render one line of Markdown (a key point) without a surrounding <p>."""
    md = _parser(source)
    tokens = _tagged(md.parseInline(source), tags)
    return Markup(md.renderer.render(tokens, md.options, {}))


@dataclass
class References:
    """Numbered link references of one section of the plain-text part: `[1] https://...`."""

    urls: list[str] = field(default_factory=list)

    def add(self, url: str) -> int:
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url) + 1

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(enumerate(self.urls, start=1))

    def __len__(self) -> int:
        return len(self.urls)


def wrap(text: str, indent: str = "", first: str | None = None, width: int = WIDTH) -> str:
    """Wrap one paragraph at `width` columns of DISPLAY width (a CJK character takes two, see
    `display_width`); URLs and long words are never broken (they may exceed the width), while a
    line may break between two CJK characters, which need no space (UAX #14), never before
    closing punctuation such as 。 or ）."""
    lines: list[str] = []
    lead = indent if first is None else first
    for raw in text.split("\n"):
        line, used, empty = lead, display_width(lead), True
        for unit, spaced in _units(raw):
            size = display_width(unit)
            gap = 1 if spaced and not empty else 0
            if not empty and used + gap + size > width:
                lines.append(line)
                line, used, gap = indent, display_width(indent), 0
            line += " " * gap + unit
            used += gap + size
            empty = False
        lines.append(line.rstrip() if empty else line)
        lead = indent
    return "\n".join(lines)


def display_width(text: str) -> int:
    """Terminal columns `text` takes: East Asian Wide and Fullwidth characters count two
    (Unicode UAX #11), combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


# Closing punctuation that must not start a line (kinsoku): it stays with the character before.
_NO_BREAK_BEFORE = frozenset("、。，．,.！？!?）」』】》〉〕］｝：；:;・ー…")


def _units(line: str) -> Iterator[tuple[str, bool]]:
    """Pieces a line may break between, each with whether a space precedes it: a word, or in
    CJK text each wide character (with any closing punctuation after it)."""
    for word in line.split():
        spaced = True
        unit = ""
        for ch in word:
            wide = _breaks_anywhere(ch)
            if unit and (wide or _wide_end(unit)) and ch not in _NO_BREAK_BEFORE:
                yield unit, spaced
                unit, spaced = "", False
            unit += ch
        if unit:
            yield unit, spaced


def _wide_end(unit: str) -> bool:
    return _breaks_anywhere(unit[-1])


def _breaks_anywhere(ch: str) -> bool:
    """A wide character a line may break before or after (Chinese and Japanese ideographs,
    kana, fullwidth forms): UAX #14 class ID. Hangul is wide too, but Korean puts spaces
    between words and breaks only there (UAX #14 keeps H2/H3/JL/JV/JT syllables of a word
    together)."""
    return unicodedata.east_asian_width(ch) in "WF" and not _hangul(ch)


def _hangul(ch: str) -> bool:
    code = ord(ch)
    return (
        0xAC00 <= code <= 0xD7A3  # syllables
        or 0x1100 <= code <= 0x11FF  # jamo
        or 0x3130 <= code <= 0x318F  # compatibility jamo
        or 0xA960 <= code <= 0xA97F  # jamo extended-A
        or 0xD7B0 <= code <= 0xD7FF  # jamo extended-B
    )


def to_text(
    source: str,
    refs: References,
    indent: str = "",
    first: str | None = None,
    width: int = WIDTH,
    tags: LinkTags | None = None,
) -> str:
    """Render Markdown as wrapped plain text; links become `[n]` entries of `refs`.

    `first` replaces `indent` at the start of the first line (a bullet: indent="  ", first="- ").
    `tags`: UTM link tagging (a bare URL is shown tagged, as its link goes).
    """
    text = _TextWriter(refs, width, tags).render(_parse(source), indent)
    if first is not None and text.startswith(indent):
        text = first + text[len(indent) :]
    return text


class _TextWriter:
    def __init__(self, refs: References, width: int, tags: LinkTags | None = None) -> None:
        self.refs = refs
        self.width = width
        self.tags = tags

    def render(self, tokens: Sequence[Token], indent: str) -> str:
        out: list[str] = []
        lists: list[list[int | None]] = []  # per open list: [next number] or [None] for bullets
        quote = ""
        marker: str | None = None  # list marker waiting for the item's first line
        for i, token in enumerate(tokens):
            kind = token.type
            if kind in ("bullet_list_open", "ordered_list_open"):
                start = token.attrGet("start")
                lists.append(
                    [int(start) if start else 1] if kind == "ordered_list_open" else [None]
                )
            elif kind in ("bullet_list_close", "ordered_list_close"):
                lists.pop()
            elif kind == "list_item_open":
                number = lists[-1][0]
                marker = "- " if number is None else f"{number}. "
                if number is not None:
                    lists[-1][0] = number + 1
            elif kind == "blockquote_open":
                quote += "> "
            elif kind == "blockquote_close":
                quote = quote[:-2]
            elif kind == "inline":
                depth = "  " * max(0, len(lists) - 1)
                base = indent + quote + depth
                text = self.inline(token.children or [])
                lead = base + marker if marker else base
                hang = base + " " * len(marker) if marker else base
                joined = "\n" if out and _tight(tokens, i) else ""
                out.append(joined + wrap(text, hang, lead, self.width))
                marker = None
            elif kind in ("code_block", "fence"):
                code = "\n".join(
                    indent + "    " + line for line in token.content.rstrip().split("\n")
                )
                out.append(code)
            elif kind == "hr":
                out.append(indent + "-" * 20)
        return _join(out)

    def inline(self, children: Sequence[Token]) -> str:
        parts: list[str] = []
        links: list[tuple[str, int]] = []  # (href, position where the link text started)
        for child in children:
            kind = child.type
            if kind in ("text", "code_inline"):
                parts.append(child.content)
            elif kind == "softbreak":
                parts.append(" ")
            elif kind == "hardbreak":
                parts.append("\n")
            elif kind == "link_open":
                links.append((str(child.attrGet("href") or ""), len(parts)))
            elif kind == "link_close" and links:
                href, start = links.pop()
                label = "".join(parts[start:])
                tagged = self.tags.apply(href) if self.tags and href else href
                if href == label and tagged != href:
                    parts[start:] = [tagged]  # a bare URL: the reader copies what is shown
                elif href and href not in (label, f"mailto:{label}"):
                    parts.append(f" [{self.refs.add(tagged)}]")
            elif kind == "image":
                src = str(child.attrGet("src") or "")
                parts.append(f"[{child.content or 'image'}] [{self.refs.add(src)}]")
        return "".join(parts)


def _tight(tokens: Sequence[Token], i: int) -> bool:
    """True when the line at tokens[i] follows the previous one without a blank line: the
    items of a tight list, except the first item of a list that follows a normal paragraph."""
    if i < 2 or tokens[i - 1].type != "paragraph_open" or not tokens[i - 1].hidden:
        return False
    if tokens[i - 2].type != "list_item_open" or i < 3:
        return True
    if tokens[i - 3].type not in ("bullet_list_open", "ordered_list_open"):
        return True
    # First item of a list: tight only when nested in a tight list item.
    return i >= 4 and tokens[i - 4].type == "paragraph_close" and tokens[i - 4].hidden


def _join(blocks: list[str]) -> str:
    text = ""
    for block in blocks:
        if block.startswith("\n"):
            text += block
        else:
            text += ("\n\n" if text else "") + block
    return text
