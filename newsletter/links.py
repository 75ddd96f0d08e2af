"""Every URL of an issue, where it is written, and `check --links`: do they answer over HTTP?

URLs come from source `url`s, image `url`s and the links and images inside Markdown fields. The
HTTP check sends HEAD (falling back to GET when a server refuses HEAD with 405 or 501), runs the
requests concurrently, and turns every failure (timeout, refused connection, 404, 500...) into a
warning on the line where the URL is written: a flaky website must never crash `check`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import httpx
from markdown_it import MarkdownIt

from newsletter import __version__
from newsletter.diagnostics import Diagnostic, field_path
from newsletter.issue import is_http_url, locate_in_value
from newsletter.render.markdown import new_parser
from newsletter.yamlsource import FieldPath, YamlDocument

MARKDOWN_ISSUE_FIELDS = ("intro", "outro")
MARKDOWN_STORY_FIELDS = ("summary", "why_it_matters", "takeaway")
USER_AGENT = f"newsletter-linkcheck/{__version__}"
T = TypeVar("T")


@dataclass(frozen=True)
class UrlRef:
    url: str
    parts: FieldPath  # the field holding it
    line: int
    col: int
    kind: str  # "source", "image", "link" (Markdown link), "markdown image"
    alt: str | None = None  # alt text of a Markdown image

    @property
    def field(self) -> str:
        return field_path(self.parts)


@cache
def _markdown() -> MarkdownIt:
    # The same flavour the renderer uses: CommonMark with raw HTML off, bare URLs linked.
    return new_parser()


def markdown_fields(data: Any) -> Iterator[tuple[FieldPath, str]]:
    """(field path, Markdown text) for every Markdown field of raw issue data, tolerating junk."""
    if not isinstance(data, dict):
        return
    for key in MARKDOWN_ISSUE_FIELDS:
        if isinstance(data.get(key), str):
            yield (key,), data[key]
    stories = data.get("stories")
    for i, story in enumerate(stories if isinstance(stories, list) else []):
        if not isinstance(story, dict):
            continue
        for key in MARKDOWN_STORY_FIELDS:
            if isinstance(story.get(key), str):
                yield ("stories", i, key), story[key]
        points = story.get("key_points")
        for j, point in enumerate(points if isinstance(points, list) else []):
            if isinstance(point, str):
                yield ("stories", i, "key_points", j), point


def markdown_urls(text: str) -> Iterator[tuple[str, str, str | None]]:
    """(kind, url, alt) for each link and image in a Markdown text."""
    for block in _markdown().parse(text):
        for token in block.children or ():
            if token.type == "link_open":
                yield "link", str(token.attrGet("href") or ""), None
            elif token.type == "image":
                yield "markdown image", str(token.attrGet("src") or ""), token.content


def issue_urls(doc: YamlDocument) -> list[UrlRef]:
    """Every URL written in an issue, in file order, with its line and column."""
    refs: list[UrlRef] = []
    data = doc.data
    stories = data.get("stories") if isinstance(data, dict) else None
    for i, story in enumerate(stories if isinstance(stories, list) else []):
        if not isinstance(story, dict):
            continue
        image = story.get("image")
        if isinstance(image, dict) and isinstance(image.get("url"), str):
            parts: FieldPath = ("stories", i, "image", "url")
            refs.append(UrlRef(image["url"].strip(), parts, *doc.where(parts), "image"))
        sources = story.get("sources")
        for j, source in enumerate(sources if isinstance(sources, list) else []):
            if isinstance(source, dict) and isinstance(source.get("url"), str):
                parts = ("stories", i, "sources", j, "url")
                refs.append(UrlRef(source["url"].strip(), parts, *doc.where(parts), "source"))
    for parts, text in markdown_fields(data):
        for kind, url, alt in markdown_urls(text):
            line, col = locate_in_value(doc, parts, url)
            refs.append(UrlRef(url, parts, line, col, kind, alt))
    return sorted(refs, key=lambda r: (r.line, r.col))


async def _probe(client: httpx.AsyncClient, url: str) -> str | None:
    """None when the URL answers with a success status, else what went wrong."""
    try:
        response = await client.head(url)
        if response.status_code in (405, 501):
            async with client.stream("GET", url) as streamed:
                response = streamed  # the status is enough: never download the body
        if response.status_code >= 400:
            reason = f" {response.reason_phrase}" if response.reason_phrase else ""
            return f"HTTP {response.status_code}{reason}"
        return None
    except httpx.TimeoutException:
        return f"no answer within {client.timeout.read:g} s"
    except httpx.TooManyRedirects:
        return "too many redirects"
    except httpx.ConnectError as exc:
        return f"unreachable ({_reason(exc)})"
    except Exception as exc:
        # Malformed responses, TLS failures, odd URLs the network stack refuses (an out-of-range
        # port surfaces as an ExceptionGroup from anyio): a remote site's fault is a warning on
        # its line, never a crash of `check`.
        return f"request failed ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


async def check_urls_async(
    urls: Sequence[str], *, timeout: float = 10.0, concurrency: int = 8
) -> dict[str, str | None]:
    """Probe each distinct URL once; map URL -> None (fine) or the problem found."""
    distinct = list(dict.fromkeys(urls))
    limit = asyncio.Semaphore(max(1, concurrency))
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        max_redirects=10,
        headers={"User-Agent": USER_AGENT},
    ) as client:

        async def one(url: str) -> str | None:
            async with limit:
                return await _probe(client, url)

        results = await asyncio.gather(*(one(url) for url in distinct))
    return dict(zip(distinct, results, strict=True))


def check_links(
    doc: YamlDocument, *, timeout: float = 10.0, concurrency: int = 8
) -> list[Diagnostic]:
    """Warnings for every http(s) URL of the issue that does not answer successfully."""
    refs = [r for r in issue_urls(doc) if is_http_url(r.url)]  # the rest are errors already
    if not refs:
        return []
    results = _run_coroutine(
        check_urls_async([r.url for r in refs], timeout=timeout, concurrency=concurrency)
    )
    return [
        Diagnostic(doc.path, r.line, r.col, "warning", r.field, f"{r.url}: {results[r.url]}")
        for r in refs
        if results[r.url] is not None
    ]


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread whose event loop is already running (Jupyter, the
    Playwright sync API): then the coroutine runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
