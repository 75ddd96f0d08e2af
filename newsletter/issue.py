"""The issue model (Issue, Story, Source, Image) and its strict YAML loader.

`load_issue` returns the model, or raises IssueInvalid carrying every error found, each with file,
line, column and field path. Warnings (style, deliverability) belong to `newsletter.lint`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter.diagnostics import Diagnostic, field_path
from newsletter.errors import IssueInvalid
from newsletter.images import ImageProblem, LocalImage, read_local_image
from newsletter.yamlsource import FieldPath, YamlDocument, YamlInvalid, read_yaml

# Text fields that end up in mail headers or one-line places: no line breaks or control chars.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Invisible format characters (Unicode Cf) that reorder or hide text: bidi overrides and
# isolates (U+202E shows "txt.exe" as "exe.txt"), zero-width spaces, word joiners, the BOM.
# The zero-width joiner and non-joiner (U+200D, U+200C: emoji sequences, Persian, Indic
# scripts) and the soft hyphen stay allowed.
_FORMAT = re.compile("[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


@dataclass(frozen=True)
class Source:
    title: str
    publisher: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Image:
    url: str  # a remote image; for a local one, compile_issue sets its published URL
    alt: str
    local: LocalImage | None = None  # `path:` a file beside the issue, read when loading


@dataclass(frozen=True)
class Story:
    headline: str
    summary: str  # Markdown
    why_it_matters: str  # Markdown
    sources: tuple[Source, ...]
    dek: str | None = None
    key_points: tuple[str, ...] = ()  # Markdown, one item each
    takeaway: str | None = None  # Markdown
    image: Image | None = None


@dataclass(frozen=True)
class Issue:
    title: str
    date: dt.date
    stories: tuple[Story, ...]
    subject: str  # may hold {{ placeholders }}; defaults to the title
    preheader: str | None = None  # may hold placeholders
    intro: str | None = None  # Markdown, may hold placeholders
    outro: str | None = None  # Markdown, may hold placeholders
    path: Path | None = None
    source: YamlDocument | None = field(default=None, compare=False, repr=False)

    @property
    def slug(self) -> str:
        """URL-safe name of the issue: its file name without extension."""
        if self.path is not None:
            return slugify(self.path.stem)
        return slugify(f"{self.date.isoformat()}-{self.title}")

    def locate(self, parts: FieldPath) -> tuple[int, int]:
        """Line and column of a field in the issue's file ((1, 1) for an issue built in code)."""
        return self.source.where(parts) if self.source else (1, 1)


# Letters NFKD does not decompose into an ASCII letter plus marks.
_TRANSLITERATE = str.maketrans(
    {"ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o",
     "đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "ł": "l", "Ł": "l", "þ": "th", "Þ": "th",
     "ı": "i"}
)  # fmt: skip
SLUG_MAX = 80


def slugify(text: str) -> str:
    """The one slug rule for issue files, titles and URLs: `[a-z0-9-]`, at most 80 characters.

    Latin letters are transliterated (NFKD, combining marks dropped, ß -> ss...), so `ä` and `ö`
    stay apart; an ASCII name keeps the slug it always had. Letters of other scripts drop out,
    so two names can still share a slug: `slug_collisions` finds those.
    """
    folded = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    ascii_text = folded.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-") or "issue"


def welcome_slug(welcome: Path | None) -> str | None:
    """The slug of the welcome issue (`Config.welcome`), None without one. That slug is only
    ever sent one by one on confirmation: never to a list, never scheduled, never published."""
    return slugify(welcome.stem) if welcome is not None else None


def slug_collisions(path: Path) -> list[Path]:
    """Other issue files beside `path` whose slug is the same as its slug (sorted).

    Two files with one slug would share one ledger campaign (the second is never sent) and one
    web page, so every command that loads an issue refuses them.
    """
    slug = slugify(path.stem)
    try:
        siblings = sorted(path.parent.glob("*.y*ml"))
    except OSError:
        return []
    own = path.resolve()
    return [
        p
        for p in siblings
        if p.suffix in (".yaml", ".yml") and p.resolve() != own and slugify(p.stem) == slug
    ]


ISSUE_KEYS = ("title", "date", "subject", "preheader", "intro", "stories", "outro")
STORY_KEYS = (
    "headline",
    "dek",
    "summary",
    "why_it_matters",
    "key_points",
    "takeaway",
    "image",
    "sources",
)
SOURCE_KEYS = ("title", "publisher", "url")
IMAGE_KEYS = ("url", "path", "alt")
# Fields rendered per recipient through the Jinja2 sandbox; everything else is literal text.
PLACEHOLDER_FIELDS = ("subject", "preheader", "intro", "outro")
# Text fields the loader requires: an empty one is its error, not a `check` warning.
REQUIRED_TEXT = ("title", "headline", "summary", "why_it_matters")


def comment_lost(key: str, comment: str) -> str:
    """Why a value written after `key: #` is lost, and the fix (shared with `check`'s warning)."""
    short = comment if len(comment) <= 40 else comment[:37] + "..."
    return (
        f"YAML reads '{short}' as a comment (a # at the start of a value or after a space "
        f'starts one): put the {key} in quotes ({key}: "{short}")'
    )


def load_issue(path: str | Path) -> Issue:
    """Load and validate an issue file; raise IssueInvalid listing every error."""
    parsed = parse_issue(path)
    if parsed.issue is None:
        raise IssueInvalid(parsed.errors)
    return parsed.issue


@dataclass
class ParsedIssue:
    """Everything `check` needs: the model (None when invalid), the YAML, every error found."""

    issue: Issue | None
    doc: YamlDocument | None  # None when the file could not be parsed as YAML at all
    errors: list[Diagnostic]


def parse_issue(path: str | Path) -> ParsedIssue:
    """Like load_issue, but returns the errors (and the parsed YAML) instead of raising."""
    try:
        doc = read_yaml(path, keep_going=True)
    except YamlInvalid as exc:
        return ParsedIssue(None, None, [exc.diagnostic])
    validator = _Validator(doc)
    issue = validator.issue(Path(path))
    errors = doc.problems + validator.errors + _collision_errors(Path(path))
    if errors:
        return ParsedIssue(None, doc, errors)
    return ParsedIssue(issue, doc, [])


def _collision_errors(path: Path) -> list[Diagnostic]:
    others = slug_collisions(path)
    if not others:
        return []
    names = ", ".join(str(p) for p in others)
    return [
        Diagnostic(
            str(path), 1, 1, "error", "",
            f"has the slug {slugify(path.stem)!r}, as does {names}: one slug names one issue "
            "(its ledger campaign and its web page); rename one of the files",
        )
    ]  # fmt: skip


def locate_in_value(doc: YamlDocument, parts: FieldPath, snippet: str) -> tuple[int, int]:
    """Line and column of `snippet` inside the value at `parts` (e.g. a line of a `|` block).

    Searches the source text between the value's start and the next located node, so a problem
    deep inside a multi-line block scalar is reported where it is, not at the block's first line.
    Falls back to the value's own location.
    """
    start = doc.where(parts)
    first_line = snippet.split("\n", 1)[0].strip()
    if parts not in doc.value_locations or not first_line:
        return start
    starts = _line_starts(doc.text)
    begin = _offset(starts, start)
    later = [
        loc for loc in (*doc.value_locations.values(), *doc.key_locations.values()) if loc > start
    ]
    end = _offset(starts, min(later)) if later else len(doc.text)
    found = doc.text.find(first_line, begin, end)
    if found < 0:
        return start
    line = doc.text.count("\n", 0, found) + 1
    return line, found - starts[line - 1] + 1


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n")
    return starts


def _offset(starts: list[int], loc: tuple[int, int]) -> int:
    line, col = loc
    return starts[min(line, len(starts)) - 1] + col - 1


_STATEMENT_START = re.compile(r"\{%|\{#")
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)


SUBSCRIBER_ATTRIBUTES = ("name", "email", "fields")


def _unknown_subscriber_field(source: str) -> str | None:
    """`nmae` for `subscriber.nmae`: a typo the sandbox would silently render as nothing."""
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

    tree = SandboxedEnvironment().parse("{{ " + source + " }}")
    for node in tree.find_all(nodes.Getattr):
        if (
            isinstance(node.node, nodes.Name)
            and node.node.name == "subscriber"
            and node.attr not in SUBSCRIBER_ATTRIBUTES
        ):
            return str(node.attr)
    return None


def _placeholder_problems(value: str) -> list[tuple[str, str]]:
    """(snippet to point at, message) for each broken placeholder in a field."""
    from newsletter.placeholders import PlaceholderSyntaxError, parse_placeholders

    problems: list[tuple[str, str]] = []
    for match in _EXPRESSION.finditer(value):
        try:
            pieces = parse_placeholders(match.group())
        except PlaceholderSyntaxError as exc:
            problems.append((match.group(), str(exc)))
            continue
        for piece in pieces:
            attribute = None if isinstance(piece, str) else _unknown_subscriber_field(piece.source)
            if attribute:
                problems.append(
                    (
                        f"subscriber.{attribute}",
                        f"'subscriber.{attribute}' does not exist (it would always be empty); "
                        "use subscriber.name, subscriber.email or subscriber.fields.NAME",
                    )
                )
    # What remains outside the {{ }} pairs: statements, comments, stray braces.
    try:
        parse_placeholders(_EXPRESSION.sub(" ", value))
    except PlaceholderSyntaxError as exc:
        problems.append((_stray_snippet(value), str(exc)))
    return problems


def _stray_snippet(value: str) -> str:
    statement = _STATEMENT_START.search(value)
    if statement:
        return statement.group()
    outside = _EXPRESSION.sub(lambda m: " " * len(m.group()), value)
    stray = min((i for i in (outside.find("{{"), outside.find("}}")) if i >= 0), default=-1)
    return value[stray:] if stray >= 0 else ""


class _Validator:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.errors: list[Diagnostic] = []

    def error(self, parts: FieldPath, message: str, *, key: bool = False) -> None:
        line, col = self.doc.where(parts, key=key)
        self.errors.append(
            Diagnostic(self.doc.path, line, col, "error", field_path(parts), message)
        )

    def not_text(self, value: Any, parts: FieldPath, what: str) -> str:
        """Why a value that should be text is not, in the writer's terms: a one-line mapping
        (`- Note: reserved lane`) or list (`[Update]`) is text YAML read as structure."""
        line, col = self.doc.where(parts)
        typed = self.doc.text.splitlines()[line - 1][col - 1 :].strip()
        if isinstance(value, list | dict) and typed[:1] in ("[", "{"):
            quoted = typed.replace('"', '\\"')
            return (
                f"expected text, got {_kind(value)}: a value that starts with {typed[0]} is "
                f'{_kind(value)} in YAML; put it in quotes: "{quoted}"'
            )
        one_line = isinstance(value, dict) and len(value) == 1
        if one_line and self.doc.where((*parts, *value), key=True)[0] == line:
            quoted = typed.replace('"', '\\"')
            return (
                f"expected text, got a mapping: a colon followed by a space makes YAML read "
                f'this {what} as a key and a value; put it in quotes: "{quoted}"'
            )
        return f"expected text, got {_kind(value)}"

    def mapping(self, value: Any, parts: FieldPath, allowed: tuple[str, ...], what: str) -> dict:
        if not isinstance(value, dict):
            self.error(parts, f"expected a mapping ({what}), got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                expected = ", ".join(allowed)
                self.error(
                    (*parts, key),
                    f"unknown key '{key}'{suggestion}; expected one of: {expected}",
                    key=True,
                )
        return value

    def text(
        self,
        data: dict,
        key: str,
        parts: FieldPath,
        *,
        required: bool = False,
        single_line: bool = False,
    ) -> str | None:
        here = (*parts, key)
        if key not in data or data[key] is None:
            if required and key in data and self.doc.comment_as_value(here):
                comment = self.doc.comment_as_value(here)
                self.error(here, f"'{key}' is empty: {comment_lost(key, str(comment))}")
            elif required:
                where = "" if key in data else " is missing"
                self.error(here if key in data else parts, f"'{key}'{where or ' is empty'}")
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(here, self.not_text(value, here, key))
            return None
        value = self.doc.typed_numbers.get(here, str(value))
        if not value.strip():
            if required:
                self.error(here, f"'{key}' is empty")
            return None
        pattern = _CONTROL if single_line else _CONTROL_MULTILINE
        bad = pattern.search(value.strip() if single_line else value)
        if bad is None and single_line:
            bad = _FORMAT.search(value)
        if bad:
            what = "a line break" if bad.group() in "\r\n\u2028\u2029" else "a control character"
            if _FORMAT.match(bad.group()):
                name = unicodedata.name(bad.group(), "format character")
                what = f"an invisible formatting character (U+{ord(bad.group()):04X} {name})"
            advice = "this field must be one line" if single_line else "remove it"
            if _FORMAT.match(bad.group()):
                advice = "remove it (it can reorder or hide what readers see)"
            line, col = locate_in_value(self.doc, here, bad.group())
            self.errors.append(
                Diagnostic(
                    self.doc.path,
                    line,
                    col,
                    "error",
                    field_path(here),
                    f"contains {what} ({bad.group()!r}); {advice}",
                )
            )
            return None
        return value.strip() if single_line else value.strip("\n")

    def url(self, data: dict, key: str, parts: FieldPath, *, required: bool = False) -> str | None:
        value = self.text(data, key, parts, required=required, single_line=True)
        if value is None:
            return None
        if any(ch.isspace() for ch in value):
            # Clients cut a URL at a space (a no-break or ideographic one too, pasted from a
            # page); the Markdown links percent-encode it, a URL field holds the URL as the
            # writer means it to be fetched.
            self.error((*parts, key), f"contains a space: write %20, got {value!r}")
            return None
        if not is_http_url(value):
            self.error((*parts, key), f"expected an http:// or https:// URL, got {value!r}")
            return None
        return value

    def issue(self, path: Path) -> Issue | None:
        data = self.mapping(self.doc.data, (), ISSUE_KEYS, "the issue")
        if not isinstance(self.doc.data, dict):
            return None
        title = self.text(data, "title", (), required=True, single_line=True)
        date = self.date(data)
        subject = self.text(data, "subject", (), single_line=True)
        preheader = self.text(data, "preheader", (), single_line=True)
        intro = self.text(data, "intro", ())
        outro = self.text(data, "outro", ())
        for key, value in (
            ("subject", subject),
            ("preheader", preheader),
            ("intro", intro),
            ("outro", outro),
        ):
            if value is not None:
                self.placeholders(key, value)
        if subject is None and title is not None:
            self.placeholders("title", title)  # it is the subject then: the same rules apply
        stories = self.sequence(data, "stories", (), self.story, required=True)
        if self.errors or title is None or date is None:
            return None
        return Issue(
            title=title,
            date=date,
            stories=tuple(stories),
            subject=subject or title,
            preheader=preheader,
            intro=intro,
            outro=outro,
            path=path,
            source=self.doc,
        )

    def date(self, data: dict) -> dt.date | None:
        if "date" not in data or data["date"] is None:
            self.error(() if "date" not in data else ("date",), "'date' is missing")
            return None
        value = data["date"]
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.error(("date",), f"expected an ISO date like 2026-11-25, got {value!r}")
        return None

    def placeholders(self, key: str, value: str) -> None:
        for snippet, message in _placeholder_problems(value):
            line, col = locate_in_value(self.doc, (key,), snippet)
            self.errors.append(Diagnostic(self.doc.path, line, col, "error", key, message))

    def sequence(
        self,
        data: dict,
        key: str,
        parts: FieldPath,
        item: Callable[[Any, FieldPath], Any],
        *,
        required: bool = False,
    ) -> list:
        here = (*parts, key)
        value = data.get(key)
        if value is None:
            if required:
                self.error(parts if key not in data else here, f"'{key}' is missing")
            return []
        if not isinstance(value, list):
            self.error(here, f"expected a list, got {_kind(value)}")
            return []
        if required and not value:
            self.error(here, f"'{key}' is empty; at least one is required")
        results = [item(entry, (*here, i)) for i, entry in enumerate(value)]
        return [r for r in results if r is not None]

    def story(self, value: Any, parts: FieldPath) -> Story | None:
        before = len(self.errors)
        data = self.mapping(value, parts, STORY_KEYS, "a story")
        if not isinstance(value, dict):
            return None
        headline = self.text(data, "headline", parts, required=True, single_line=True)
        dek = self.text(data, "dek", parts, single_line=True)
        summary = self.text(data, "summary", parts, required=True)
        why = self.text(data, "why_it_matters", parts, required=True)
        key_points = self.sequence(data, "key_points", parts, self.key_point)
        takeaway = self.text(data, "takeaway", parts)
        image = self.image(data.get("image"), (*parts, "image")) if "image" in data else None
        sources = self.sequence(data, "sources", parts, self.source, required=True)
        if len(self.errors) > before:
            return None
        return Story(
            headline=headline or "",
            dek=dek,
            summary=summary or "",
            why_it_matters=why or "",
            key_points=tuple(key_points),
            takeaway=takeaway,
            image=image,
            sources=tuple(sources),
        )

    def key_point(self, value: Any, parts: FieldPath) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(parts, self.not_text(value, parts, "key point"))
            return None
        if not str(value).strip():
            self.error(parts, "key point is empty")
            return None
        return self.doc.typed_numbers.get(parts, str(value)).strip()

    def image(self, value: Any, parts: FieldPath) -> Image | None:
        data = self.mapping(value, parts, IMAGE_KEYS, "an image with url (or path) and alt")
        if not isinstance(value, dict):
            return None
        local = None
        if "path" in data and "url" in data:
            self.error((*parts, "path"), "give the image a url or a path, not both", key=True)
            return None
        if "path" in data:
            local = self.local_image(data, parts)
            url = "" if local is not None else None
        else:
            url = self.url(data, "url", parts, required=True)
        alt = self.text(data, "alt", parts, single_line=True)
        written = data.get("alt")
        # An alt that is there but invalid (a line break, a list) has its own error already.
        if alt is None and (written is None or (isinstance(written, str) and not written.strip())):
            self.error(
                parts, "image has no alt text; describe it for readers who cannot see it", key=True
            )
        if url is None or alt is None:
            return None
        return Image(url=url, alt=alt, local=local)

    def local_image(self, data: dict, parts: FieldPath) -> LocalImage | None:
        written = self.text(data, "path", parts, required=True, single_line=True)
        if written is None:
            return None
        try:
            return read_local_image(self.doc.path, written.strip())
        except ImageProblem as exc:
            self.error((*parts, "path"), f"image '{written.strip()}' {exc}")
            return None

    def source(self, value: Any, parts: FieldPath) -> Source | None:
        data = self.mapping(value, parts, SOURCE_KEYS, "a source")
        if not isinstance(value, dict):
            return None
        title = self.text(data, "title", parts, required=True, single_line=True)
        publisher = self.text(data, "publisher", parts, single_line=True)
        url = self.url(data, "url", parts)
        if title is None:
            return None
        return Source(title=title, publisher=publisher, url=url)


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, a valid port and no spaces: what clients can fetch."""
    try:
        split = urlsplit(value)
        split.port  # noqa: B018 - raises ValueError for a port like :99999 or :abc
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return (
        split.scheme in ("http", "https")
        and bool(split.hostname)
        and not any(ch.isspace() or ord(ch) < 32 for ch in value)
    )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false (put it in quotes if you mean the word)"
    if isinstance(value, dt.date):
        return "a date (put it in quotes if you mean it as text)"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    return "text"
