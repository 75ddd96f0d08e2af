"""Markdown keeps what was typed: bare URLs linked as typed, and `check` warns about text that
readers would get literally (placeholders outside the placeholder fields, typed HTML tags)."""

from __future__ import annotations

import email
import email.policy
import json
from html import escape as html_escape
from pathlib import Path

import pytest
from cli_support import run
from click.testing import CliRunner
from test_render import attributes, story, write_issue

URLS = [
    "https://docs.python.org/3/reference/datamodel.html#object.__init__",
    "https://example.org/_private_/x",
    "https://example.org/a*b*c/d",
    "https://example.org/__dunder__/and_under_",
    "https://example.org/path?q=a_b_c&r=*x*y",
]


def delivered_parts(project: Path, slug: str) -> tuple[str, str]:
    """(HTML, text) of the built sample message, as a recipient's mail client decodes them."""
    raw = (project / "build" / slug / "message.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("field", ["summary", "why_it_matters", "takeaway", "key_points"])
def test_bare_url_is_linked_exactly_as_typed(
    url: str, field: str, runner: CliRunner, project: Path
) -> None:
    typed = f"Read {url} before Monday."
    value: object = [typed] if field == "key_points" else typed
    write_issue(project / "issues", stories=[story(**{field: value})])
    code, output = run(runner, project, "build", "issues/2026-12-02-test.yaml")
    assert code == 0, output
    html, text = delivered_parts(project, "2026-12-02-test")
    links = [a for a in attributes(html, "a") if a.get("href") == url]
    assert links, f"no link to {url} in the HTML"
    # The link text is the URL as typed, no <strong>/<em> inside.
    assert f">{html_escape(url, quote=False)}</a>" in html
    assert url in text  # the text part keeps the underscores and stars


def test_text_without_a_scheme_is_not_linked(runner: CliRunner, project: Path) -> None:
    write_issue(project / "issues", stories=[story(summary="Edit setup.py on example.com.")])
    assert run(runner, project, "build", "issues/2026-12-02-test.yaml")[0] == 0
    html, _text = delivered_parts(project, "2026-12-02-test")
    assert not [a for a in attributes(html, "a") if "example.com" in str(a.get("href"))]
    assert "setup.py on example.com" in html


# (field path in the YAML data, how `check` names it); every text field outside the four
# placeholder fields.
LITERAL_FIELDS = [
    ("title", "title"),
    ("stories.0.headline", "stories[0].headline"),
    ("stories.0.dek", "stories[0].dek"),
    ("stories.0.summary", "stories[0].summary"),
    ("stories.0.why_it_matters", "stories[0].why_it_matters"),
    ("stories.0.takeaway", "stories[0].takeaway"),
    ("stories.0.key_points.0", "stories[0].key_points[0]"),
    ("stories.0.sources.0.title", "stories[0].sources[0].title"),
    ("stories.0.sources.0.publisher", "stories[0].sources[0].publisher"),
    ("stories.0.image.alt", "stories[0].image.alt"),
]

MARKDOWN_PATHS = {
    "stories.0.summary",
    "stories.0.why_it_matters",
    "stories.0.takeaway",
    "stories.0.key_points.0",
    "intro",
}


def issue_with(path: str, value: str) -> dict:
    data: dict = {
        "title": "Test Issue",
        "date": "2026-12-02",
        "preheader": "The week in one line.",
        "stories": [
            story(
                dek="A dek.",
                takeaway="A takeaway.",
                key_points=["A point."],
                image={"url": "https://a.test/i.png", "alt": "A picture"},
            )
        ],
    }
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return data


def check_json(runner: CliRunner, project: Path, data: dict) -> list[dict]:
    import yaml

    path = project / "issues" / "2026-12-02-test.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    _code, output = run(runner, project, "check", "--format", "json", str(path))
    return json.loads(output)["diagnostics"]


@pytest.mark.parametrize(("path", "field"), LITERAL_FIELDS)
@pytest.mark.parametrize("placeholder", ["{{ subscriber.name }}", "{% if subscriber.name %}"])
def test_placeholder_outside_placeholder_fields_is_a_warning(
    path: str, field: str, placeholder: str, runner: CliRunner, project: Path
) -> None:
    found = check_json(runner, project, issue_with(path, f"Hello {placeholder} there"))
    (warning,) = [d for d in found if placeholder in d["message"]]
    assert warning["severity"] == "warning"
    assert warning["field"] == field
    assert "placeholders work only in subject, preheader, intro and outro" in warning["message"]
    source = (project / "issues" / "2026-12-02-test.yaml").read_text().splitlines()
    assert source[warning["line"] - 1][warning["col"] - 1 :].startswith(placeholder)


@pytest.mark.parametrize("field", ["subject", "preheader", "intro", "outro"])
def test_placeholder_in_placeholder_fields_is_fine(
    field: str, runner: CliRunner, project: Path
) -> None:
    found = check_json(runner, project, issue_with(field, "Hello {{ subscriber.name }}"))
    assert not [d for d in found if "literally" in d["message"]], found


@pytest.mark.parametrize(("path", "field"), [*LITERAL_FIELDS, ("intro", "intro")])
@pytest.mark.parametrize(("tag", "advice"), [("<b>", "**bold**"), ("<a href='x'>", "[text]")])
def test_typed_html_tag_is_a_warning(
    path: str, field: str, tag: str, advice: str, runner: CliRunner, project: Path
) -> None:
    found = check_json(runner, project, issue_with(path, f"Big {tag}news"))
    (warning,) = [d for d in found if d["message"].startswith(tag)]
    assert warning["field"] == field
    if path in MARKDOWN_PATHS:
        assert "shown to readers as text" in warning["message"] and advice in warning["message"]
    else:  # Markdown would be shown as typed too: no Markdown advice where it does not work
        assert f"the {field.split('.')[-1].split('[')[0]} is plain text" in warning["message"]
        assert advice not in warning["message"]


PLAIN_FIELDS = [(path, field) for path, field in LITERAL_FIELDS if path not in MARKDOWN_PATHS]


@pytest.mark.parametrize(("path", "field"), LITERAL_FIELDS)
@pytest.mark.parametrize("markup", ["*Paris*", "**Paris**", "_Paris_", "[Paris](https://a.test/p)"])
def test_markdown_in_a_plain_text_field_is_a_warning(
    path: str, field: str, markup: str, runner: CliRunner, project: Path
) -> None:
    found = check_json(runner, project, issue_with(path, f"Big {markup} news"))
    warned = [d for d in found if d["message"].startswith(markup)]
    if path in MARKDOWN_PATHS:  # Markdown works there
        assert warned == []
        return
    (warning,) = warned
    assert warning["severity"] == "warning" and warning["field"] == field
    assert "plain text (no HTML, no Markdown)" in warning["message"]
    source = (project / "issues" / "2026-12-02-test.yaml").read_text().splitlines()
    assert source[warning["line"] - 1][warning["col"] - 1 :].startswith(markup)


@pytest.mark.parametrize(("path", "field"), PLAIN_FIELDS)
@pytest.mark.parametrize("text", ["snake_case_name", "2*3*4", "a * b", "Q&A [live]"])
def test_plain_text_that_only_looks_like_markdown_is_fine(
    path: str, field: str, text: str, runner: CliRunner, project: Path
) -> None:
    found = check_json(runner, project, issue_with(path, f"Big {text} news"))
    assert not [d for d in found if "plain text" in d["message"]], found


def test_code_and_autolinks_are_not_flagged(runner: CliRunner, project: Path) -> None:
    summary = (
        "Type `{{ name }}` or `<b>` in code.\n\n```\n{% raw %}<i>x</i>\n```\n\n"
        "See <https://example.org/x> and <editors@example.org>, and 3 < 4 > 2."
    )
    found = check_json(runner, project, issue_with("stories.0.summary", summary))
    assert not [d for d in found if d["severity"] == "warning"], found
