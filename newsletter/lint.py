"""`newsletter check`: every problem of an issue at once, errors and warnings, each located.

`check_issue(path, config)` is the one entry point used by the CLI, the preview server and
`publish`; `inspect_issue` also hands on the parsed and compiled issue, so `send` (which refuses
an issue with errors) parses and compiles the file once. A check combines the loader's errors
(`issue.parse_issue`) with the checks here: deliverability and style warnings, leftover
`newsletter new` skeleton text, links and images inside Markdown, and the size of the final
inlined HTML against Gmail's clipping.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from newsletter.branding import theme_warnings
from newsletter.config import Config
from newsletter.diagnostics import Diagnostic, Severity, field_path
from newsletter.errors import ConfigError, NewsletterError
from newsletter.images import size_warnings
from newsletter.issue import Issue, is_http_url, locate_in_value, parse_issue
from newsletter.links import check_links, issue_urls, markdown_urls
from newsletter.render.markdown import display_width
from newsletter.textlint import literal_text_warnings
from newsletter.yamlsource import FieldPath, YamlDocument, YamlInvalid, read_yaml

if TYPE_CHECKING:
    from newsletter.render.compiled import CompiledIssue

# Gmail clips a message whose HTML passes ~102 KB: the rest, footer and unsubscribe link included,
# hides behind "[Message clipped]". KB here is 1024 bytes, as Gmail counts.
CLIP_BYTES = 102 * 1024
SIZE_WARN_BYTES = 90 * 1024
PREHEADER_MAX = 150
SUBJECT_MAX = 78  # RFC 5322's recommended line length; inboxes cut far earlier anyway
# What `newsletter new` writes where the editor's text goes (see newsletter.scaffold).
SKELETON_MARK = "TODO:"
SKELETON_URL = "https://example.com/TODO"
LINK_SCHEMES = ("http", "https", "mailto")
# A theme error located in its template: `templates/story.mjml:6: <mj-column has no closing >`.
_IN_TEMPLATE = re.compile(
    r"(?P<path>[^\s:][^:\n]*\.(?:mjml|css|txt|html)):(?P<line>\d+): (?P<message>.+)", re.S
)
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")


@dataclass(frozen=True)
class IssueCheck:
    """What `check` found in one issue file, and what it parsed and compiled on the way:
    `send` hands these on instead of parsing and compiling the file again."""

    diagnostics: list[Diagnostic]  # errors and warnings, in file order
    issue: Issue | None  # None when the file is not a valid issue
    compiled: CompiledIssue | None  # None when invalid, or when the theme cannot render it

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def inspect_issue(
    path: str | Path,
    config: Config,
    *,
    links: bool = False,
    link_timeout: float = 10.0,
    web_version: bool = True,
) -> IssueCheck:
    """Parse, lint and compile an issue file once; every problem is a diagnostic, none raises.
    `web_version`: as `compile_issue`'s (False: the mail has no link to a web version)."""
    parsed = parse_issue(path)
    found = list(parsed.errors)
    if parsed.doc is not None:
        found += lint_document(parsed.doc)
        if links:
            found += check_links(parsed.doc, timeout=link_timeout)
    compiled = None
    if parsed.issue is not None:
        compiled, size = compile_and_measure(parsed.issue, config, web_version=web_version)
        found += size + _image_diagnostics(parsed.issue)
    return IssueCheck(sort_diagnostics(found), parsed.issue, compiled)


def check_issue(
    path: str | Path, config: Config, *, links: bool = False, link_timeout: float = 10.0
) -> list[Diagnostic]:
    """Every error and warning for one issue file, in file order."""
    return inspect_issue(path, config, links=links, link_timeout=link_timeout).diagnostics


def _image_diagnostics(issue: Issue) -> list[Diagnostic]:
    """Local images that work but cost readers more than they should (size, pixel width)."""
    found = []
    path = str(issue.path) if issue.path else (issue.source.path if issue.source else "")
    for i, story in enumerate(issue.stories):
        local = story.image.local if story.image else None
        if local is None:
            continue
        parts: FieldPath = ("stories", i, "image", "path")
        line, col = issue.locate(parts)
        for message in size_warnings(local):
            found.append(Diagnostic(path, line, col, "warning", field_path(parts), message))
    return found


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = dict.fromkeys(diagnostics)  # the same problem found twice is reported once
    return sorted(unique, key=lambda d: (d.path, d.line, d.col, d.severity, d.field))


@dataclass
class CheckReport:
    files: int
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.severity == "warning" for d in self.diagnostics)

    def failed(self, *, strict: bool = False) -> bool:
        return self.errors > 0 or (strict and self.warnings > 0)

    def as_dict(self, *, strict: bool = False) -> dict[str, Any]:
        return {
            "ok": not self.failed(strict=strict),
            "files": self.files,
            "errors": self.errors,
            "warnings": self.warnings,
            "diagnostics": [d.as_dict() for d in self.diagnostics],
        }

    def summary(self) -> str:
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        return (
            f"{plural(self.files, 'file')} checked: "
            f"{plural(self.errors, 'error')}, {plural(self.warnings, 'warning')}"
        )


def check_paths(
    paths: Sequence[str | Path], config: Config, *, links: bool = False, link_timeout: float = 10.0
) -> CheckReport:
    report = CheckReport(files=len(paths))
    for path in paths:
        report.diagnostics += check_issue(path, config, links=links, link_timeout=link_timeout)
    report.diagnostics += theme_diagnostics(config)
    report.diagnostics += unsubscribe_diagnostics(config)
    return report


def unsubscribe_diagnostics(config: Config) -> list[Diagnostic]:
    """A warning for a plain-http `base_url` on a public host: RFC 8058 one-click unsubscribe
    needs an HTTPS URI, so every issue goes out without List-Unsubscribe-Post. A loopback or
    private host (the defaults, a machine-local setup) is left to `doctor`, which refuses it
    for real sends anyway."""
    from newsletter.config import CONFIG_NAME

    parts = urlsplit(config.base_url)
    if config.one_click or _local_host(parts.hostname or ""):
        return []
    where = os.path.relpath(config.path) if config.path is not None else CONFIG_NAME
    line = 1
    if config.path is not None:
        with contextlib.suppress(YamlInvalid, OSError):  # it loaded a moment ago
            line = read_yaml(config.path).where(("base_url",))[0] or 1
    return [
        Diagnostic(
            where,
            line,
            1,
            "warning",
            "base_url",
            f"{config.base_url} is plain http: one-click unsubscribe (RFC 8058) needs an "
            "https:// URI, so every issue is sent without List-Unsubscribe-Post and Gmail "
            "and Yahoo offer no one-click unsubscribe; serve it over https",
        )
    ]


def _local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def config_diagnostic(exc: ConfigError) -> Diagnostic:
    """A newsletter.yaml problem as a `check` error at its file and line (1 when unknown), so
    `check --format json` and the preview's check bar report it like any other."""
    where = os.path.relpath(exc.path) if exc.path is not None else "newsletter.yaml"
    message = str(exc)
    for prefix in (f"{exc.path}:{exc.line}: ", f"{exc.path}: "):
        message = message.removeprefix(prefix)
    return Diagnostic(where, exc.line or 1, 1, "error", "", message)


def config_report(exc: ConfigError, files: int) -> CheckReport:
    """What `check` reports when newsletter.yaml itself does not load: that one error."""
    return CheckReport(files=files, diagnostics=[config_diagnostic(exc)])


def theme_diagnostics(config: Config) -> list[Diagnostic]:
    """Warnings for the `theme:` of newsletter.yaml: colours below WCAG AA contrast, and
    overriding templates that ignore it."""
    return theme_warnings(config.brand, config.path, config.templates)


class _Linter:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.found: list[Diagnostic] = []

    def add(
        self,
        severity: Severity,
        parts: FieldPath,
        message: str,
        *,
        at: tuple[int, int] | None = None,
    ) -> None:
        line, col = at or self.doc.where(parts)
        self.found.append(
            Diagnostic(self.doc.path, line, col, severity, field_path(parts), message)
        )


def lint_document(doc: YamlDocument) -> list[Diagnostic]:
    """Warnings (and skeleton/link errors) from the raw YAML, so they appear even beside errors."""
    if not isinstance(doc.data, dict):
        return []  # the loader already reports that this is not an issue at all
    linter = _Linter(doc)
    data = doc.data
    _lint_header(linter, data)
    _lint_sources(linter, data)
    _lint_urls(linter)
    _lint_placeholder_urls(linter, data)
    _lint_skeleton(linter, (), data)
    return linter.found + literal_text_warnings(doc)


def _sample_text(value: str) -> str:
    """The text a sample reader sees: placeholders filled (left as typed if they are broken)."""
    from newsletter.placeholders import (
        SAMPLE_RECIPIENT,
        PlaceholderSyntaxError,
        render_placeholders,
    )

    try:
        return render_placeholders(value, SAMPLE_RECIPIENT)
    except PlaceholderSyntaxError:
        return value


def _lint_header(linter: _Linter, data: dict) -> None:
    preheader = data.get("preheader")
    if preheader is None or (isinstance(preheader, str) and not preheader.strip()):
        linter.add(
            "warning",
            ("preheader",),
            "missing; inboxes will preview whatever text comes first instead: "
            "add one line summing up the issue",
            at=None if "preheader" in data else (1, 1),
        )
    elif isinstance(preheader, str) and len(text := _sample_text(preheader).strip()) > (
        PREHEADER_MAX
    ):
        linter.add(
            "warning",
            ("preheader",),
            f"preheader is {len(text)} characters; inboxes show about {PREHEADER_MAX} at most",
        )
    key = "subject" if isinstance(data.get("subject"), str) else "title"
    subject = data.get(key)
    text = _sample_text(subject).strip() if isinstance(subject, str) else ""
    # Inboxes cut by width: a CJK character takes two columns (UAX #11).
    if (width := display_width(text)) > SUBJECT_MAX:
        what = "subject" if key == "subject" else "subject (the title, as no subject is set)"
        size = (
            f"{len(text)} characters"
            if width == len(text)
            else f"{len(text)} characters, {width} columns wide (CJK characters count two)"
        )
        linter.add(
            "warning",
            (key,),
            f"{what} is {size}; keep it under {SUBJECT_MAX} columns so inboxes do not cut it off",
        )


def _stories(data: dict) -> Iterator[tuple[int, dict]]:
    stories = data.get("stories")
    for i, story in enumerate(stories if isinstance(stories, list) else []):
        if isinstance(story, dict):
            yield i, story


def _lint_sources(linter: _Linter, data: dict) -> None:
    for i, story in _stories(data):
        sources = story.get("sources")
        for j, source in enumerate(sources if isinstance(sources, list) else []):
            if isinstance(source, dict) and source.get("url") in (None, ""):
                linter.add(
                    "warning",
                    ("stories", i, "sources", j),
                    "source has no URL; readers cannot follow it to the original",
                )


def _lint_urls(linter: _Linter) -> None:
    for ref in issue_urls(linter.doc):
        at = (ref.line, ref.col)
        scheme_match = _SCHEME.match(ref.url)
        scheme = scheme_match.group(1).lower() if scheme_match else ""
        web = scheme in ("http", "https")
        valid = web and is_http_url(ref.url)
        if ref.kind in ("link", "markdown image") and web and not valid:
            linter.add(
                "error",
                ref.parts,
                f"link target '{ref.url}' is not a valid URL; check its host and port",
                at=at,
            )
        elif ref.kind in ("link", "markdown image") and scheme not in LINK_SCHEMES:
            linter.add(
                "error",
                ref.parts,
                f"link target '{ref.url or '(empty)'}' is not an absolute http:// or https:// "
                "URL; relative links do not work in an email",
                at=at,
            )
        elif scheme == "http" and valid:
            linter.add(
                "warning",
                ref.parts,
                f"plain http link '{ref.url}'; use https:// if the site supports it",
                at=at,
            )
        if ref.kind == "markdown image" and not (ref.alt or "").strip():
            linter.add(
                "error",
                ref.parts,
                f"image '{ref.url}' has no alt text; write it between the brackets: ![alt](url)",
                at=at,
            )


PLACEHOLDER_FIELDS = ("subject", "preheader", "intro", "outro")
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.S)
_SPECIAL_SCHEMES = ("http", "https", "ftp", "ws", "wss", "file")  # WHATWG: slashes optional


def _lint_placeholder_urls(linter: _Linter, data: dict) -> None:
    """A placeholder may fill a path segment or query value of a link, never its scheme or host:
    `[site]({{ subscriber.fields.site }})` would let a subscriber's field become a `javascript:`
    or `data:` link, or send every reader to a host of the subscriber's choosing."""
    from newsletter.render.fill import MARKER, marker

    for key in PLACEHOLDER_FIELDS:
        value = data.get(key)
        if not isinstance(value, str) or "{{" not in value:
            continue
        written = [m.group() for m in _PLACEHOLDER.finditer(value)]
        pieces = _PLACEHOLDER.split(value)
        marked = "".join(p + (marker(i) if i < len(written) else "") for i, p in enumerate(pieces))
        for kind, url, _alt in markdown_urls(marked):
            for found in MARKER.finditer(url):
                if not _in_scheme_or_host(url[: found.start()]):
                    continue
                placeholder = written[int(found.group(1))]
                what = "an image's" if kind == "markdown image" else "a link's"
                linter.add(
                    "error",
                    (key,),
                    f"{placeholder} is {what} scheme or host; a subscriber's value there could "
                    "make a javascript: link or point at any site: write the address yourself "
                    "and put placeholders only in its path or query",
                    at=_nth_location(linter.doc, key, placeholder, written[: int(found.group(1))]),
                )


def _nth_location(
    doc: YamlDocument, key: str, placeholder: str, earlier: list[str]
) -> tuple[int, int]:
    """Line and column of this occurrence of `placeholder` (it may be written more than once)."""
    line, col = locate_in_value(doc, (key,), placeholder)
    lines = doc.text.split("\n")
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + col - 1
    for _ in range(earlier.count(placeholder)):
        following = doc.text.find(placeholder, offset + 1)
        if following < 0:
            break
        offset = following
    line = doc.text.count("\n", 0, offset) + 1
    return line, offset - (doc.text.rfind("\n", 0, offset) + 1) + 1


def _in_scheme_or_host(before: str) -> bool:
    """True when a value right after `before` (the start of a URL) is in its scheme or host."""
    scheme = _SCHEME.match(before)
    if scheme is None:
        return True  # the scheme itself, or a relative URL the value would make absolute
    rest = before[scheme.end() :]
    if scheme.group(1).lower() in _SPECIAL_SCHEMES:
        return not re.search(r"[/?#\\]", rest.lstrip("/\\"))
    return rest.startswith("//") and not re.search(r"[/?#]", rest[2:])


def _lint_skeleton(linter: _Linter, parts: FieldPath, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _lint_skeleton(linter, (*parts, key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _lint_skeleton(linter, (*parts, i), item)
    elif isinstance(value, str):
        if value.strip() == SKELETON_URL:
            snippet = SKELETON_URL
        elif any(line.strip().startswith(SKELETON_MARK) for line in value.splitlines()):
            snippet = SKELETON_MARK
        else:
            return
        linter.add(
            "error",
            parts,
            "placeholder text from `newsletter new` is still here; replace it (or delete "
            "the field if it is optional)",
            at=locate_in_value(linter.doc, parts, snippet),
        )


def compile_and_measure(
    issue: Issue, config: Config, *, web_version: bool = True
) -> tuple[CompiledIssue | None, list[Diagnostic]]:
    """The compiled issue (None when the theme cannot render it) and Gmail clipping: the final
    inlined HTML a sample recipient gets, measured in bytes."""
    from newsletter.placeholders import SAMPLE_RECIPIENT
    from newsletter.render.compile import compile_issue

    path = str(issue.path) if issue.path else (issue.source.path if issue.source else "")
    unsubscribe = _sample_unsubscribe_url(config)
    try:
        compiled = compile_issue(issue, config, web_version=web_version)
        html = compiled.render_for(SAMPLE_RECIPIENT, unsubscribe).html
    except ConfigError as exc:  # the theme folder named in newsletter.yaml, say
        return None, [config_diagnostic(exc)]
    except NewsletterError as exc:
        located = _IN_TEMPLATE.match(str(exc))
        if located is not None:  # a theme file's fault: point at it, not at the issue
            line = int(located["line"])
            return None, [Diagnostic(located["path"], line, 1, "error", "", located["message"])]
        return None, [Diagnostic(path, 1, 1, "error", "", f"the issue cannot be rendered: {exc}")]
    return compiled, _size_diagnostics(path, len(html.encode()), _sent_size(compiled, config))


def _sent_size(compiled: CompiledIssue, config: Config) -> tuple[int, str] | None:
    """(octets, transfer encoding) of the HTML part as a sample reader's message carries it, from
    the very MessageTemplate that sends; None when the configuration cannot make a message (the
    send reports that itself)."""
    from newsletter.mail.message import MessageTemplate
    from newsletter.placeholders import SAMPLE_RECIPIENT

    try:
        template = MessageTemplate(compiled, config, campaign_key="check")
        return template.html_part_size(SAMPLE_RECIPIENT, _sample_unsubscribe_url(config))
    except NewsletterError:
        return None


def _size_diagnostics(path: str, written: int, sent: tuple[int, str] | None) -> list[Diagnostic]:
    """Gmail clipping, on the HTML as written (what Gmail is documented to count) and as sent
    (encoded: quoted-printable or base64, which some clients and gateways count instead)."""
    encoded, encoding = sent if sent is not None else (written, "")
    if max(written, encoded) <= SIZE_WARN_BYTES:
        return []
    kb = f"{written / 1024:.1f} KB as written"
    if sent is not None:
        kb += f", {encoded / 1024:.1f} KB as sent ({encoding})"
    if max(written, encoded) > CLIP_BYTES:
        return [
            Diagnostic(
                path,
                1,
                1,
                "error" if written > CLIP_BYTES else "warning",
                "",
                f"the email's HTML is {kb}; Gmail clips messages above 102 KB, hiding the rest "
                "and the unsubscribe link: shorten the issue or split it",
            )
        ]
    return [
        Diagnostic(
            path,
            1,
            1,
            "warning",
            "",
            f"the email's HTML is {kb}, close to Gmail's 102 KB clipping limit",
        )
    ]


def _sample_unsubscribe_url(config: Config) -> str:
    """A link shaped and sized like a real one; the secret changes its letters, not its length."""
    from newsletter.tokens import unsubscribe_url

    return unsubscribe_url(config, 10**9, bytes(32))  # a large id: the longest likely token
