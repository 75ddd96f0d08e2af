"""Authoring faults a QA pass found after issue #13, through the CLI as a writer meets them."""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
from pathlib import Path

import pytest
from cli_support import run
from click.testing import CliRunner
from playwright.sync_api import Browser, expect
from test_preview import offline_page

from newsletter.render.theme import BUILTIN_THEME
from newsletter.web.preview import PreviewServer

CORPUS = Path(__file__).parent / "corpus"


def delivered_text(project: Path, slug: str) -> str:
    raw = (project / "build" / slug / "message.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name", ["yaml_tab_between_words_accepted.yaml", "yaml_tab_at_line_end_accepted.yaml"]
)
def test_tab_inside_a_value_is_read_as_a_space(name: str, runner: CliRunner, project: Path) -> None:
    (project / "issues" / "tabs.yaml").write_bytes((CORPUS / name).read_bytes())
    code, output = run(runner, project, "build", "issues/tabs.yaml")
    assert code == 0, output
    slug = next(p.name for p in (project / "build").iterdir())
    assert "A sub headline" in delivered_text(project, slug)


@pytest.mark.parametrize("char", ["\u00a0", "\u2007", "\u202f", "\u3000", "\u200b", "\t"])
@pytest.mark.parametrize("where", ["    \x00dek: A sub headline", "\x00    dek: A sub headline"])
def test_space_look_alike_in_indentation_is_named_at_its_column(
    char: str, where: str, runner: CliRunner, project: Path
) -> None:
    base = (CORPUS / "yaml_tab_between_words_accepted.yaml").read_text(encoding="utf-8")
    lines = base.replace("\t", " ").splitlines()
    lines[5] = where.replace("\x00", char)  # line 6, the dek
    (project / "issues" / "odd.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, output = run(runner, project, "check", "issues/odd.yaml")
    assert code == 1
    col = where.index("\x00") + 1
    (error,) = [line for line in output.splitlines() if ": error: " in line]
    assert error.startswith(f"issues/odd.yaml:6:{col}: error: ")
    named = "tab character" if char == "\t" else f"(U+{ord(char):04X}) in indentation"
    assert named in error and "YAML accepts only" in error


def test_check_json_reports_a_newsletter_yaml_error_as_a_diagnostic(
    runner: CliRunner, project: Path
) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text().replace("name: Test Letter", 'name: "Test'), "utf-8")
    code, output = run(runner, project, "check", "--format", "json", "issues/x.yaml")
    assert code == 1
    report = json.loads(output)  # JSON, whatever went wrong: a tool reads it
    assert report["ok"] is False and report["errors"] == 1
    (diagnostic,) = report["diagnostics"]
    assert diagnostic["path"] == "newsletter.yaml" and diagnostic["line"] == 1
    assert diagnostic["severity"] == "error"
    assert 'the " that starts this name is never closed' in diagnostic["message"]


def test_missing_theme_folder_is_reported_at_its_newsletter_yaml_line(
    runner: CliRunner, project: Path
) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text() + "templates: nothere\n", "utf-8")
    line = config.read_text().splitlines().index("templates: nothere") + 1
    issue = next(p.relative_to(project) for p in (project / "issues").glob("*.yaml"))
    for command in ("check", "build"):
        code, output = run(runner, project, command, str(issue))
        assert code == 1
        assert f"newsletter.yaml:{line}:1: error: templates: theme folder " in output
        assert "nothere not found" in output
    assert not (project / "build").exists()


# (what is broken, the problem box's kind label, its location's start, the error it counts)
BROKEN_SETUPS = [
    ("config", "newsletter.yaml", "newsletter.yaml:1"),
    ("templates", "newsletter.yaml", "newsletter.yaml:5"),
    ("theme", "Template", "theme/story.mjml:"),
]


def _break(project: Path, what: str) -> None:
    config = project / "newsletter.yaml"
    if what == "config":
        config.write_text(config.read_text().replace("name: Test Letter", 'name: "Test'), "utf-8")
    elif what == "templates":
        config.write_text(config.read_text() + "templates: nothere\n", "utf-8")
    else:
        theme = project / "theme"
        shutil.copytree(BUILTIN_THEME, theme)
        story = theme / "story.mjml"
        story.write_text(story.read_text().replace('border-radius="12px"', 'border-radius="12px'))
        config.write_text(config.read_text() + "templates: theme\n", "utf-8")


@pytest.mark.browser
@pytest.mark.parametrize(("what", "kind", "where"), BROKEN_SETUPS)
def test_preview_of_a_broken_setup_names_the_file_and_never_says_passed(
    what: str, kind: str, where: str, browser: Browser, project: Path
) -> None:
    issue = next((project / "issues").glob("*.yaml"))
    _break(project, what)
    with PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project) as srv:
        page = offline_page(browser)
        page.goto(srv.url)
        expect(page.locator("body")).to_have_attribute("data-state", "error")
        problem = page.locator("#problem-list")
        expect(problem.locator(".kind").first).to_have_text(kind)
        expect(problem.locator("code").first).to_contain_text(where)
        expect(page.locator("#checks-summary")).to_have_text(re.compile(r"^1 error"))
        page.context.close()


def _issue_with_alt(alt: str) -> str:
    return (
        "title: Trains\ndate: 2026-12-02\npreheader: Night trains are back.\nstories:\n"
        "  - headline: The night train returns\n    summary: Sleepers run again.\n"
        "    why_it_matters: Fewer flights.\n"
        f"    image: {{url: 'https://a.test/t.jpg'{alt}}}\n"
        "    sources:\n      - title: Rail news\n        url: https://a.test/r\n"
    )


# (the alt as written, the one error `check` must give for it)
ALTS = [
    (', alt: "x\\ny"', "contains a line break"),
    (", alt: [a, b]", "expected text, got a list"),
    (", alt: {a: b}", "expected text, got a mapping"),
    (', alt: "  "', "image has no alt text"),
    (", alt: ", "image has no alt text"),
    ("", "image has no alt text"),
]


@pytest.mark.parametrize(("alt", "message"), ALTS)
def test_a_bad_alt_gets_one_error(alt: str, message: str, runner: CliRunner, project: Path) -> None:
    (project / "issues" / "alt.yaml").write_text(_issue_with_alt(alt), encoding="utf-8")
    code, output = run(runner, project, "check", "--format", "json", "issues/alt.yaml")
    assert code == 1
    errors = [d for d in json.loads(output)["diagnostics"] if d["severity"] == "error"]
    assert len(errors) == 1, errors
    assert message in errors[0]["message"]


# (summary as typed, the link target): a trailing `:`, and a `_` closing emphasis, stay out.
BARE_URLS = [
    ("See https://example.org/h: yes.", "https://example.org/h"),
    ("_https://example.org/j_", "https://example.org/j"),
    ("*https://example.org/k*", "https://example.org/k"),
    ("Read https://example.org/a_b_ now", "https://example.org/a_b_"),
    ("Read https://example.org/object.__init__ now", "https://example.org/object.__init__"),
    ("Read https://example.org:8080/p:q now", "https://example.org:8080/p:q"),
    ("Read https://example.org/snake_case now", "https://example.org/snake_case"),
]


@pytest.mark.parametrize(("summary", "target"), BARE_URLS)
def test_bare_url_leaves_trailing_punctuation_out(
    summary: str, target: str, runner: CliRunner, project: Path
) -> None:
    text = (
        "title: Links\ndate: 2026-12-02\npreheader: Bare links in the summary.\nstories:\n"
        f"  - headline: Links\n    summary: {json.dumps(summary)}\n"
        "    why_it_matters: Readers click them.\n"
        "    sources:\n      - title: Rail news\n        url: https://a.test/r\n"
    )
    (project / "issues" / "links.yaml").write_text(text, encoding="utf-8")
    code, output = run(runner, project, "build", "issues/links.yaml")
    assert code == 0, output
    raw = (project / "build" / "links" / "message.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    hrefs = re.findall(r'<a href="(https://example\.org[^"]*)"', html)
    assert hrefs == [target]


@pytest.mark.parametrize("typed", ["3.10", "007", "1e3", "0x1F", "1_000"])
def test_a_number_in_a_text_field_keeps_what_was_typed(
    typed: str, runner: CliRunner, project: Path
) -> None:
    text = (
        "title: Numbers\ndate: 2026-12-02\npreheader: Numbers as typed.\nstories:\n"
        f"  - headline: {typed}\n    dek: {typed}\n    summary: Sleepers run again.\n"
        f"    why_it_matters: Fewer flights.\n    key_points:\n      - {typed}\n"
        "    sources:\n      - title: Rail news\n        url: https://a.test/r\n"
    )
    (project / "issues" / "numbers.yaml").write_text(text, encoding="utf-8")
    code, output = run(runner, project, "build", "issues/numbers.yaml")
    assert code == 0, output
    plain = delivered_text(project, "numbers")
    shown = [line.strip(" -*") for line in plain.splitlines() if line.strip(" -*") == typed]
    assert len(shown) >= 3, plain  # headline, dek and key point, each as typed


def _q(text: str) -> str:
    """A YAML double-quoted value; format characters escaped, other characters as typed."""
    return json.dumps(text, ensure_ascii=False).translate(
        {ord(c): f"\\u{ord(c):04x}" for c in "\u202e\u202d\u2066\u200f\u200b\u2060\ufeff"}
    )


def _issue_with(field: str, value: str) -> str:
    fields = {"title": "Formats", "preheader": "Invisible characters.", "headline": "Trains"}
    fields["dek"] = "Night trains are back"
    fields[field] = value
    return (
        f"title: {_q(fields['title'])}\ndate: 2026-12-02\n"
        f"preheader: {_q(fields['preheader'])}\nstories:\n"
        f"  - headline: {_q(fields['headline'])}\n    dek: {_q(fields['dek'])}\n"
        "    summary: Sleepers run again.\n    why_it_matters: Fewer flights.\n"
        "    sources:\n      - title: Rail news\n        url: https://a.test/r\n"
    )


FORMAT_CHARACTERS = ["\u202e", "\u202d", "\u2066", "\u200f", "\u200b", "\u2060", "\ufeff"]


@pytest.mark.parametrize("char", FORMAT_CHARACTERS)
@pytest.mark.parametrize("field", ["title", "preheader", "headline", "dek"])
def test_invisible_format_characters_are_refused_in_one_line_fields(
    field: str, char: str, runner: CliRunner, project: Path
) -> None:
    path = project / "issues" / "formats.yaml"
    path.write_text(_issue_with(field, f"Paris{char}lane"), encoding="utf-8")
    code, output = run(runner, project, "check", "--format", "json", "issues/formats.yaml")
    assert code == 1
    (error,) = [d for d in json.loads(output)["diagnostics"] if d["severity"] == "error"]
    assert error["field"].endswith(field)
    assert f"invisible formatting character (U+{ord(char):04X}" in error["message"]
    assert run(runner, project, "build", "issues/formats.yaml")[0] == 1


@pytest.mark.parametrize("text", ["Family 👨\u200d👩\u200d👧", "می\u200cخواهم", "long\u00adword"])
def test_joiners_and_soft_hyphens_stay_allowed(text: str, runner: CliRunner, project: Path) -> None:
    path = project / "issues" / "formats.yaml"
    path.write_text(_issue_with("headline", text), encoding="utf-8")
    code, output = run(runner, project, "check", "issues/formats.yaml")
    assert code == 0, output
