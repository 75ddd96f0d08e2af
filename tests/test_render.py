"""compile_issue: what a recipient gets in the HTML and text parts, escaping, personalisation,
theme overrides and template errors (the library as other parts of the tool use it)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from newsletter.config import Config, load_config
from newsletter.errors import ConfigError, RenderError
from newsletter.issue import load_issue
from newsletter.placeholders import SAMPLE_RECIPIENT, Recipient
from newsletter.render.compile import compile_issue
from newsletter.render.html import MJML_TAGS
from newsletter.render.theme import BUILTIN_THEME

LONG_URL = "https://example.com/" + "a1b2c3d4e5" * 18  # 200 characters
LONG_WORD = "Pneumono" + "x" * 112  # 120 characters


def story(**fields: Any) -> dict[str, Any]:
    base = {
        "headline": "A headline",
        "summary": "A summary paragraph.",
        "why_it_matters": "It matters.",
        "sources": [{"title": "A source", "publisher": "A publisher", "url": "https://a.test/"}],
    }
    base.update(fields)
    return base


def write_issue(folder: Path, name: str = "2026-12-02-test.yaml", **fields: Any) -> Path:
    """An issue file (YAML written by PyYAML, so any text survives)."""
    data: dict[str, Any] = {"title": "Test Issue", "date": "2026-12-02", "stories": [story()]}
    data.update(fields)
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class VisibleText(HTMLParser):
    """The text a reader sees: body text outside <style>, <script> and display:none elements."""

    VOID = frozenset(
        [
            "area",
            "base",
            "br",
            "col",
            "embed",
            "hr",
            "img",
            "input",
            "link",
            "meta",
            "source",
            "track",
            "wbr",
        ]
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[bool] = []  # per open element: hidden?
        self.in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
        if tag in self.VOID:
            return
        style = (dict(attrs).get("style") or "").replace(" ", "")
        hidden = tag in ("style", "script", "head", "title") or "display:none" in style
        self.stack.append(hidden)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.in_body and not any(self.stack):
            self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return normalise(" ".join(parser.parts))


def attributes(html: str, tag: str) -> list[dict[str, str | None]]:
    """alt and src (or href) of every `tag` element, decoded."""
    found: list[dict[str, str | None]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, name: str, attrs: list[tuple[str, str | None]]) -> None:
            if name == tag:
                keep = ("alt", "src") if tag == "img" else ("href",)
                found.append({k: v for k, v in attrs if k in keep})

    Collect().feed(html)
    return found


def normalise(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project / "newsletter.yaml")


def compiled_for(tmp: Path, config: Config, **fields: Any):  # type: ignore[no-untyped-def]
    return compile_issue(load_issue(write_issue(tmp, **fields)), config)


def test_markup_in_any_field_shows_as_text(project: Path, config: Config) -> None:
    fields = {
        "title": "<i>Title</i>",
        "intro": "Intro <script>alert('intro')</script>",
        "outro": "Bye <img src=x onerror=alert(1)>",
        "stories": [
            story(
                headline="<b>Bold</b> headline",
                dek="Dek <u>under</u>",
                summary="<script>alert('x')</script> and [link](javascript:alert(1))",
                why_it_matters="<div>why</div>",
                key_points=["<em>point</em>"],
                takeaway="<iframe src=x></iframe>",
                image={"url": "https://img.test/a.png", "alt": 'Alt "quoted" <tag>'},
                sources=[{"title": "<a href=x>src</a>", "publisher": "<p>pub"}],
            )
        ],
    }
    rendered = compiled_for(project, config, **fields).render_for(SAMPLE_RECIPIENT, "https://u/1")
    visible = VisibleText.of(rendered.html)
    for shown in (
        "Intro <script>alert('intro')</script>",
        "Bye <img src=x onerror=alert(1)>",
        "<b>Bold</b> headline",
        "Dek <u>under</u>",
        "<script>alert('x')</script>",
        "<div>why</div>",
        "<em>point</em>",
        "<iframe src=x></iframe>",
        "<p>pub — <a href=x>src</a>",
    ):
        assert shown in visible
    assert "<script" not in rendered.html
    assert "<iframe" not in rendered.html
    assert "javascript:" not in rendered.html.replace("[link](javascript:", "")
    assert attributes(rendered.html, "img") == [
        {"alt": 'Alt "quoted" <tag>', "src": "https://img.test/a.png"}
    ]
    # The text part is plain text: the same characters, unescaped.
    assert "<script>alert('x')</script>" in rendered.text
    assert "<b>Bold</b> headline" in rendered.text


def test_braces_in_story_text_are_printed_as_typed(project: Path, config: Config) -> None:
    literal = "Templates use {{ subscriber.email }} and {% raw %} tags"
    fields = {
        "stories": [story(headline="{{ x }} headline", summary=literal, key_points=["{{ a }}"])]
    }
    compiled = compiled_for(project, config, **fields)
    rendered = compiled.render_for(Recipient(email="eve@example.org"), "https://u/1")
    visible = VisibleText.of(rendered.html)
    assert literal in visible
    assert "{{ x }} headline" in visible
    assert "{{ a }}" in visible
    assert literal in normalise(rendered.text)
    assert visible.count("eve@example.org") == 1  # only the footer's address slot
    assert compiled.expressions == {}


def test_placeholders_are_filled_per_recipient_and_escaped_in_html(
    project: Path, config: Config
) -> None:
    fields = {
        "subject": "News for {{ subscriber.name | default('you') }}",
        "preheader": "Hi {{ subscriber.name | default('reader') }}",
        "intro": "Hello **{{ subscriber.name | default('there') }}** from "
        "{{ subscriber.fields.city }}.",
        "outro": "Bye {{ subscriber.name | default('there') }}.",
    }
    compiled = compiled_for(project, config, **fields)
    assert len(compiled.expressions) == 4  # the same expression twice is one slot
    eve = Recipient(email="eve@example.org", name="<b>Eve</b>", fields={"city": "Oslo & Bergen"})
    anon = Recipient(email="anon@example.org")
    values = compiled.values_for(eve, "https://news.example.org/unsubscribe/TOKEN")
    assert values["unsubscribe_url"] == "https://news.example.org/unsubscribe/TOKEN"
    assert values["email"] == "eve@example.org"

    mail = compiled.render_for(eve, "https://news.example.org/unsubscribe/TOKEN")
    assert mail.subject == "News for <b>Eve</b>"
    assert mail.preheader == "Hi <b>Eve</b>"
    assert "<b>Eve</b>" not in mail.html
    visible = VisibleText.of(mail.html)
    assert "Hello <b>Eve</b> from Oslo & Bergen." in visible
    assert "Bye <b>Eve</b>." in visible
    assert "eve@example.org" in visible
    assert 'href="https://news.example.org/unsubscribe/TOKEN"' in mail.html
    # The hidden preheader carries the recipient's value too, escaped.
    assert "Hi &lt;b&gt;Eve&lt;/b&gt;" in mail.html
    assert "Hello <b>Eve</b> from Oslo & Bergen." in normalise(mail.text)
    assert "https://news.example.org/unsubscribe/TOKEN" in mail.text

    other = compiled.render_for(anon, "https://news.example.org/unsubscribe/OTHER")
    assert other.subject == "News for you"
    assert "Hello there from ." in VisibleText.of(other.html)
    assert "TOKEN" not in other.html and "OTHER" in other.html


def test_web_version_has_no_unsubscribe_link_preheader_or_address(
    project: Path, config: Config
) -> None:
    fields = {
        "preheader": "Preview text here",
        "intro": "Hi {{ subscriber.name | default('there') }}",
    }
    compiled = compiled_for(project, config, **fields)
    web = compiled.web_html
    assert "Preview text here" not in web
    assert "unsubscribe" not in web.lower()
    assert "View in browser" not in web
    assert "NLSLOT" not in web
    visible = VisibleText.of(web)
    assert "Hi there" in visible
    assert "1 Test Street, Testville" in visible
    email = compiled.render_for(SAMPLE_RECIPIENT, "https://news.example.org/unsubscribe/s").html
    assert 'href="https://news.example.org/issues/2026-12-02-test/"' in email
    assert "Preview text here" in email


def test_layout_parts_and_headline_list(project: Path, config: Config) -> None:
    three = [story(headline=f"Story number {n}") for n in (1, 2, 3)]
    html = compiled_for(project, config, stories=three).render_for(SAMPLE_RECIPIENT, "u").html
    assert re.search(r"<h1\b[^>]*>Test Letter</h1>", html)
    for n in (1, 2, 3):
        assert re.search(rf'<h2\b[^>]*id="story-{n}"[^>]*>Story number {n}</h2>', html)
        assert f'<a href="#story-{n}"' in html
    assert "In this issue" in html
    assert '<html lang="en" dir="auto"' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert html.startswith("<!doctype html>")
    two = compiled_for(project, config, stories=three[:2]).render_for(SAMPLE_RECIPIENT, "u").html
    assert "In this issue" not in two


def test_css_is_inlined_but_media_queries_keep_important(project: Path, config: Config) -> None:
    html = compiled_for(project, config).render_for(SAMPLE_RECIPIENT, "u").html
    headline = re.search(r"<h2\b[^>]*>", html)
    assert headline and "font-family:Georgia" in headline.group().replace(" ", "")
    assert "!important" in html.split("prefers-color-scheme: dark", 1)[1]
    assert "data-premailer" not in html


def test_language_from_config_sets_lang(project: Path) -> None:
    (project / "newsletter.yaml").write_text(
        "name: Nachrichten\nfrom: N <n@example.org>\nlanguage: de\n", encoding="utf-8"
    )
    config = load_config(project / "newsletter.yaml")
    html = compiled_for(project, config).render_for(SAMPLE_RECIPIENT, "u").html
    assert '<html lang="de" dir="auto"' in html


def test_text_part_is_wrapped_with_numbered_references(project: Path, config: Config) -> None:
    fields = {
        "stories": [
            story(
                headline="First",
                summary="Read [the report](https://r.test/report) and "
                "[the data](https://r.test/data) "
                + "carefully because this sentence goes on well past the width "
                * 3,
                why_it_matters="See [the report](https://r.test/report) again.",
                key_points=["A point with [a link](https://r.test/point)"],
                sources=[{"title": "Report", "publisher": "R", "url": "https://r.test/source"}],
            ),
            story(headline="Second", summary="No links [here](https://s.test/only)."),
        ]
    }
    text = compiled_for(project, config, **fields).render_for(SAMPLE_RECIPIENT, "u").text
    first, second = text.split("\nSecond\n")
    assert "the report [1] and the data [2]" in normalise(first)
    assert "See the report [1] again." in normalise(first)
    assert "- A point with a link [3]" in first
    for line in (
        "[1] https://r.test/report",
        "[2] https://r.test/data",
        "[3] https://r.test/point",
    ):
        assert line in first.splitlines()
    assert "- R — Report" in first and "  https://r.test/source" in first.splitlines()
    assert "here [1]" in second and "[1] https://s.test/only" in second.splitlines()
    assert "Why it matters\n--------------" in first
    for line in text.splitlines():
        assert len(line) <= 72 or "://" in line, line


def test_text_part_footer(project: Path, config: Config) -> None:
    text = (
        compiled_for(project, config)
        .render_for(SAMPLE_RECIPIENT, "https://news.example.org/unsubscribe/abc")
        .text
    )
    footer = text.split("-" * 72)[-1]
    assert "Unsubscribe: https://news.example.org/unsubscribe/abc" in footer
    assert "View in your browser: https://news.example.org/issues/2026-12-02-test/" in footer
    assert "1 Test Street, Testville" in footer
    assert "reader@example.com" in footer


def test_builtin_theme_mjml_uses_only_known_tags(
    project: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mjml-python has no validator: an unknown tag would reach the reader literally."""
    import newsletter.render.compile as compile_module

    seen: list[str] = []
    real = compile_module.mjml_to_html

    def spy(mjml: str, env: Any) -> str:
        seen.append(mjml)
        return real(mjml, env)

    monkeypatch.setattr(compile_module, "mjml_to_html", spy)

    def full() -> dict[str, Any]:
        image = {"url": "https://i.test/a.png", "alt": "a"}
        return story(dek="d", key_points=["k"], takeaway="t", image=image)

    compiled_for(
        project,
        config,
        preheader="p",
        intro="i",
        outro="o",
        stories=[full() for _ in range(3)],
    )
    assert len(seen) == 2  # the email and the web version
    for mjml in seen:
        tags = set(re.findall(r"</?(mj[\w-]*)", mjml))
        assert {"mjml", "mj-body", "mj-section", "mj-text", "mj-image", "mj-wrapper"} <= tags
        assert tags <= MJML_TAGS, tags - MJML_TAGS
    # The hidden preheader is in the email only (not mj-preview: see email.mjml).
    assert "nl-preheader" in seen[0] and "nl-preheader" not in seen[1]


def test_theme_overrides_one_file_and_template_errors_name_file_and_line(project: Path) -> None:
    theme = project / "theme"
    theme.mkdir()
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text() + "templates: theme\n", encoding="utf-8"
    )
    config = load_config(project / "newsletter.yaml")
    footer = (BUILTIN_THEME / "footer.mjml").read_text(encoding="utf-8")
    (theme / "footer.mjml").write_text(
        footer.replace("You are receiving this email", "Custom footer: you get this"), "utf-8"
    )
    html = compiled_for(project, config).render_for(SAMPLE_RECIPIENT, "u").html
    assert "Custom footer: you get this" in html
    assert "Why it matters" in html  # everything else still comes from the built-in theme

    (theme / "footer.mjml").write_text("<mj-section>\n\n{{ newsletter.nope.deeper }}\n", "utf-8")
    with pytest.raises(RenderError, match=r"theme/footer\.mjml:3: template error: .*nope"):
        compiled_for(project, config)
    (theme / "footer.mjml").write_text("\n{% if %}\n", "utf-8")
    with pytest.raises(RenderError, match=r"theme/footer\.mjml:2: template syntax error"):
        compiled_for(project, config)
    (theme / "footer.mjml").write_text(
        "<mj-section><mj-column>\n  <mj-txt>x</mj-txt>\n</mj-column></mj-section>", "utf-8"
    )
    with pytest.raises(
        RenderError,
        match=r"theme/footer\.mjml:2: unknown MJML tag <mj-txt> \(did you mean <mj-text>",
    ):
        compiled_for(project, config)


def test_missing_theme_folder_is_a_clear_error(project: Path) -> None:
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text() + "templates: nowhere\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"newsletter\.yaml:5: templates: .*nowhere.*not found"):
        compiled_for(project, load_config(project / "newsletter.yaml"))


def test_reserved_marker_text_is_refused(project: Path, config: Config) -> None:
    with pytest.raises(RenderError, match=r"NLSLOT0001X.*reserved"):
        compiled_for(project, config, stories=[story(summary="oops NLSLOT0001X")])


def test_per_recipient_rendering_runs_no_template_engine(
    project: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compile once per issue; each recipient is only a join of the compiled pieces."""
    import newsletter.render.compile as compile_module

    compiled = compiled_for(project, config, intro="Hi {{ subscriber.name | default('you') }}")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the render pipeline ran for a recipient")

    for name in ("mjml_to_html", "inline_css", "tidy_text"):
        monkeypatch.setattr(compile_module, name, forbidden)
    monkeypatch.setattr(compile_module.theme, "render", forbidden)
    names = [f"Reader {n}" for n in range(200)]
    mails = [
        compiled.render_for(Recipient(f"r{n}@example.org", name), "u")
        for n, name in enumerate(names)
    ]
    assert all(
        f"Hi {name}" in VisibleText.of(mail.html) for name, mail in zip(names, mails, strict=True)
    )


def test_markdown_blocks_in_the_text_part(project: Path, config: Config) -> None:
    summary = (
        "Intro with `code` and **strong** text.\n\n"
        "1. first\n2. second\n\n"
        "- outer\n  - inner\n\n"
        "> quoted words\n\n"
        "# A heading"
    )
    html_text = compiled_for(project, config, stories=[story(summary=summary)]).render_for(
        SAMPLE_RECIPIENT, "u"
    )
    lines = html_text.text.splitlines()
    for expected in ("Intro with code and strong text.", "1. first", "2. second", "- outer"):
        assert expected in lines
    assert "  - inner" in lines and "> quoted words" in lines and "A heading" in lines
    assert re.search(r"<h3 dir=\"auto\"[^>]*>A heading</h3>", html_text.html)
    assert "<blockquote" in html_text.html and '<ol dir="auto"' in html_text.html
