"""compile_issue: the whole render pipeline, run once per issue.

Per-recipient values never pass through a template. Each `{{ expression }}` of subject, preheader,
intro and outro, the unsubscribe URL and the recipient's address are replaced by a slot marker
BEFORE Markdown, MJML and premailer run; the finished output is cut at the markers into `Fill`s,
so filling for one recipient is a join.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, StrictUndefined

from newsletter.config import Config
from newsletter.errors import RenderError
from newsletter.issue import Issue, Story
from newsletter.placeholders import Expression, Recipient, parse_placeholders
from newsletter.render import fill, theme
from newsletter.render.compiled import EMAIL, UNSUBSCRIBE_URL, CompiledIssue
from newsletter.render.fill import Fill
from newsletter.render.html import inline_css, mjml_to_html
from newsletter.render.linktags import LinkTags

ANONYMOUS = Recipient(email="")  # the reader of the web version


class SlotTable:
    """Names of the per-recipient slots; marker N in the output stands for names[N]."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.expressions: dict[str, Expression] = {}
        self._by_source: dict[str, str] = {}

    def marker(self, name: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return fill.marker(self.names.index(name))

    def mark(self, text: str | None) -> str | None:
        """`text` with each placeholder expression replaced by its slot marker."""
        if text is None:
            return None
        out = []
        for piece in parse_placeholders(text):
            if isinstance(piece, str):
                out.append(piece)
                continue
            name = self._by_source.get(piece.source)
            if name is None:
                name = self._by_source[piece.source] = f"expr:{len(self.expressions)}"
                self.expressions[name] = piece
            out.append(self.marker(name))
        return "".join(out)

    def fill(self, text: str, escape: fill.Escape, *, body: bool = False) -> Fill:
        """`text` cut at its markers; in a body, expression slots inside URLs are found."""
        return Fill.from_marked(text, self.names, escape, self.expressions if body else ())


@dataclass(frozen=True)
class IssueView:
    """What templates see as `issue`: the model, with placeholders turned into slot markers."""

    title: str
    date: dt.date
    slug: str
    subject: str
    preheader: str | None
    intro: str | None
    outro: str | None
    stories: tuple[Story, ...]


@dataclass(frozen=True)
class NewsletterView:
    name: str
    language: str
    base_url: str
    postal_address: tuple[str, ...]  # lines


def compile_issue(issue: Issue, config: Config, *, web_version: bool = True) -> CompiledIssue:
    """Render the issue's HTML part, text part and web version once, with per-recipient slots.

    `web_version` False: the mail has no "View in browser" link (`web_url` is falsy), for a
    send to a private list of an issue that is not published (its page would answer 404)."""
    _refuse_markers(issue, config)
    env = theme.environment(config)
    slots = SlotTable()
    base = _context(issue, config, slots, web_version=web_version)
    email = {
        **base,
        "web": False,
        "unsubscribe_url": slots.marker(UNSUBSCRIBE_URL),
        "recipient_email": slots.marker(EMAIL),
    }
    web = {**base, "web": True, "unsubscribe_url": None, "recipient_email": None}
    css = theme.render(env, theme.INLINE_CSS, base)
    html = inline_css(mjml_to_html(theme.render(env, theme.EMAIL_TEMPLATE, email), env), css)
    web_html = _web_html(env, web, css)
    text = tidy_text(theme.render(env, theme.TEXT_TEMPLATE, email))

    anonymous = {
        name: expr.evaluate(ANONYMOUS.context()) for name, expr in slots.expressions.items()
    }
    anonymous.update({UNSUBSCRIBE_URL: "", EMAIL: ""})
    view: IssueView = base["issue"]
    html_fill, text_fill = slots.fill(html, "html", body=True), slots.fill(text, "text", body=True)
    return CompiledIssue(
        issue=issue,
        config=config,
        subject=slots.fill(view.subject, "text"),
        preheader=slots.fill(view.preheader or "", "text"),
        html=html_fill,
        text=text_fill,
        web_html=slots.fill(web_html, "html", body=True).render(anonymous),
        expressions=dict(slots.expressions),
        url_slots=frozenset(html_fill.url_slots | text_fill.url_slots),
    )


def _context(
    issue: Issue, config: Config, slots: SlotTable, *, web_version: bool = True
) -> dict[str, Any]:
    """What every template sees: `issue`, `newsletter`, `web_url`, `brand` (the config's
    `theme:` branding) and `link_tags` (UTM tagging, None when off; the Markdown filters read
    it)."""
    tags = LinkTags.for_issue(config, issue.slug)
    view = IssueView(
        title=issue.title,
        date=issue.date,
        slug=issue.slug,
        subject=slots.mark(issue.subject) or "",
        preheader=slots.mark(issue.preheader),
        intro=slots.mark(issue.intro),
        outro=slots.mark(issue.outro),
        stories=tuple(
            _tagged_sources(_published_images(story, config, issue.slug), tags)
            for story in issue.stories
        ),
    )
    newsletter = NewsletterView(
        name=config.name,
        language=config.language,
        base_url=config.base_url,
        postal_address=tuple((config.postal_address or "").splitlines()),
    )
    return {
        "issue": view,
        "newsletter": newsletter,
        "web_url": _web_url(issue, config) if web_version else _NOT_PUBLISHED,
        "brand": config.brand,
        "link_tags": tags,
    }


class NoWebVersion(StrictUndefined):
    """`web_url` of an issue that has none: false in `{% if web_url %}`, and printing it is a
    template error naming the theme file and line (a theme copied before the welcome lost its
    link would otherwise put `href="None"`, a dead link, into every welcome)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


_NOT_PUBLISHED = NoWebVersion(
    hint="web_url: this send goes to a private list and the issue is not published, so it has "
    "no web version; show the link only {% if web_url %}",
    name="web_url",
)


def _web_url(issue: Issue, config: Config) -> str | NoWebVersion:
    """Where the issue's web version is served; none for the welcome issue (`welcome:`), which
    is never published: its mail must not link to a page that answers 404. Themes leave the
    "View in browser" link out `{% if web_url %}`."""
    welcome, path = config.welcome, issue.path
    if welcome is not None and path is not None and path.resolve() == welcome.resolve():
        return NoWebVersion(
            hint="web_url: the welcome issue has no web version (it is never published); "
            "show the link only {% if web_url %}",
            name="web_url",
        )
    return f"{config.base_url}/issues/{issue.slug}/"


def _tagged_sources(story: Story, tags: LinkTags | None) -> Story:
    """The story with its sources' URLs tagged (UTM), when tagging is on."""
    if tags is None or not any(s.url for s in story.sources):
        return story
    sources = tuple(
        dataclasses.replace(s, url=tags.apply(s.url)) if s.url else s for s in story.sources
    )
    return dataclasses.replace(story, sources=sources)


def _published_images(story: Story, config: Config, slug: str) -> Story:
    """The story with its local image's `url` set to where it is published."""
    image = story.image
    if image is None or image.local is None:
        return story
    url = image.local.url(config.base_url, slug)
    return dataclasses.replace(story, image=dataclasses.replace(image, url=url))


def _web_html(env: Environment, context: dict[str, Any], css: str) -> str:
    """The browser version: browsers honour <style> in <head>, so inline.css goes there instead
    of through premailer (the cascade is the same: element styles written by MJML win either
    way), which halves the compile time."""
    page = mjml_to_html(theme.render(env, theme.EMAIL_TEMPLATE, context), env)
    head_end = page.find("</head>")
    if head_end < 0:
        raise RenderError("the theme's MJML produced no <head>")
    style = f'<style type="text/css">\n{css}</style>'
    return page[:head_end] + style + page[head_end:]


def tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _refuse_markers(issue: Issue, config: Config) -> None:
    """Slot markers are plain words; one typed into the issue would be taken for a slot."""
    texts = [issue.title, issue.subject, issue.preheader, issue.intro, issue.outro, config.name]
    texts.append(config.postal_address)
    for story in issue.stories:
        texts.extend((story.headline, story.dek, story.summary, story.why_it_matters))
        texts.extend((story.takeaway, *story.key_points))
        texts.extend(s.title for s in story.sources)
        texts.extend(s.publisher for s in story.sources)
        texts.extend(s.url for s in story.sources)
        if story.image is not None:
            texts.extend((story.image.url, story.image.alt))
    for text in texts:
        if text and fill.MARKER.search(text):
            found = fill.MARKER.search(text).group()  # type: ignore[union-attr]
            where = issue.path or issue.title
            raise RenderError(f"{where}: the text '{found}' is reserved; please reword it")
