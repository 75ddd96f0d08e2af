"""`newsletter build` as a user runs it: the files it writes, what they contain, and refusals."""

from __future__ import annotations

import email
import email.policy
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_render import VisibleText, normalise, story, write_issue

from newsletter.cli import main

SEED = Path("/work/shared/seeds/000_69037071e0042d4c.txt")
EXAMPLE_NAME = "2026-11-25-microsoft-openai-partnership.yaml"
SLUG = "2026-11-25-microsoft-openai-partnership"
FILES = ("email.html", "email.txt", "web.html", "message.eml")


def seed_texts() -> list[str]:
    """Every paragraph, bullet and source of the seed article (bullets without their '- ')."""
    lines = [line.strip() for line in SEED.read_text(encoding="utf-8").splitlines()]
    return [line.removeprefix("- ") for line in lines if line]


def build(runner: CliRunner, project: Path, *args: str) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(project)  # the config is found from the working directory, as for a user
    try:
        result = runner.invoke(main, ["build", *args], catch_exceptions=False)
    finally:
        os.chdir(cwd)
    return result.exit_code, result.output


def test_example_issue_holds_every_paragraph_bullet_and_source(
    runner: CliRunner, project: Path
) -> None:
    code, output = build(runner, project, f"issues/{EXAMPLE_NAME}")
    assert code == 0, output
    folder = project / "build" / SLUG
    for name in FILES:
        assert re.search(rf"build/{SLUG}/{re.escape(name)}\s+\d+(\.\d)? (KB|bytes)", output)
        assert (folder / name).stat().st_size > 0
    visible_html = VisibleText.of((folder / "email.html").read_text(encoding="utf-8")).casefold()
    text = normalise((folder / "email.txt").read_text(encoding="utf-8")).casefold()
    texts = seed_texts()
    assert len(texts) > 20
    for expected in texts:
        assert normalise(expected).casefold() in visible_html, expected
        assert normalise(expected).casefold() in text, expected


def test_message_eml_is_the_complete_sample_message(runner: CliRunner, project: Path) -> None:
    code, output = build(runner, project, f"issues/{EXAMPLE_NAME}", "-o", "out")
    assert code == 0, output
    folder = project / "out" / SLUG
    raw = (folder / "message.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "Sample Reader <reader@example.com>"
    assert message["From"] == "Test Letter <news@example.org>"
    assert message["Subject"] == "Microsoft and OpenAI reset the partnership for its next phase"
    assert message["List-Unsubscribe"] == "<https://news.example.org/unsubscribe/sample>"
    assert message["Message-ID"] and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.get_payload()
    assert text_part.get_content_type() == "text/plain"  # the preferred (HTML) part comes last
    # MIME bodies travel with CRLF line ends.
    html = html_part.get_content().replace("\r\n", "\n")
    assert html == (folder / "email.html").read_text(encoding="utf-8")
    text = text_part.get_content().replace("\r\n", "\n")
    assert text == (folder / "email.txt").read_text(encoding="utf-8")


def test_same_yaml_gives_byte_identical_files(runner: CliRunner, project: Path) -> None:
    assert build(runner, project, f"issues/{EXAMPLE_NAME}", "-o", "one")[0] == 0
    assert build(runner, project, f"issues/{EXAMPLE_NAME}", "-o", "two")[0] == 0
    for name in FILES:
        first = (project / "one" / SLUG / name).read_bytes()
        assert first == (project / "two" / SLUG / name).read_bytes(), name


def test_sample_and_web_versions(runner: CliRunner, project: Path) -> None:
    assert build(runner, project, f"issues/{EXAMPLE_NAME}")[0] == 0
    folder = project / "build" / SLUG
    html = (folder / "email.html").read_text(encoding="utf-8")
    web = (folder / "web.html").read_text(encoding="utf-8")
    assert "Hello Sample Reader, here is today's brief." in VisibleText.of(html)
    assert 'href="https://news.example.org/unsubscribe/sample"' in html
    assert f'href="https://news.example.org/issues/{SLUG}/"' in html
    assert "Hello there, here is today's brief." in VisibleText.of(web)
    assert "unsubscribe" not in web.lower() and "reader@example.com" not in web
    assert "NLSLOT" not in html + web + (folder / "email.txt").read_text(encoding="utf-8")


def test_invalid_issue_is_refused_with_diagnostics_and_nothing_written(
    runner: CliRunner, project: Path
) -> None:
    bad = project / "issues" / "bad.yaml"
    bad.write_text(
        "title: Bad\ndate: 2026-13-01\nstories:\n  - headline: H\n    sumary: x\n", "utf-8"
    )
    code, output = build(runner, project, "issues/bad.yaml")
    assert code == 1
    assert "Traceback" not in output
    assert "issues/bad.yaml:2:7: error: date: expected an ISO date" in output
    assert "issues/bad.yaml:5:5: error: stories[0].sumary: unknown key 'sumary'" in output
    assert "did you mean 'summary'" in output
    assert not (project / "build").exists()


def test_broken_theme_leaves_previous_build_untouched(runner: CliRunner, project: Path) -> None:
    issue = f"issues/{EXAMPLE_NAME}"
    assert build(runner, project, issue)[0] == 0
    folder = project / "build" / SLUG
    before = {name: (folder / name).read_bytes() for name in FILES}
    (project / "theme").mkdir()
    (project / "theme" / "story.mjml").write_text("<mj-wrapper>\n{{ story.nope() }}\n", "utf-8")
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as config:
        config.write("templates: theme\n")
    code, output = build(runner, project, issue)
    assert code == 1
    assert re.search(r"theme/story\.mjml:2:1: error: template error", output), output
    assert {name: (folder / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # no temp files left


def test_escaping_and_literal_braces_through_the_cli(runner: CliRunner, project: Path) -> None:
    write_issue(
        project / "issues",
        intro="Hi {{ subscriber.name }}",
        stories=[story(headline="<script>alert(1)</script>", summary="Literal {{ braces }} here")],
    )
    code, output = build(runner, project, "issues/2026-12-02-test.yaml")
    assert code == 0, output
    folder = project / "build" / "2026-12-02-test"
    html = (folder / "email.html").read_text(encoding="utf-8")
    text = (folder / "email.txt").read_text(encoding="utf-8")
    visible = VisibleText.of(html)
    assert "<script>alert(1)</script>" in visible and "<script>" not in html
    assert "Literal {{ braces }} here" in visible and "Literal {{ braces }} here" in text
    assert "Hi Sample Reader" in visible and "Hi Sample Reader" in text


def test_help_describes_the_command(runner: CliRunner) -> None:
    result = runner.invoke(main, ["build", "--help"])
    assert result.exit_code == 0
    assert "email.html" in result.output and "--output" in result.output


def _issue_with_story(**fields: str) -> str:
    story_fields = {
        "headline": "Paris gives buses a lane",
        "summary": "The ring road gets a lane.",
        "why_it_matters": "Commutes change on Monday.",
        **fields,
    }
    body = "".join(f"    {key}: {value}\n" for key, value in story_fields.items())
    return (
        "title: Build refusals\ndate: 2026-12-02\npreheader: What changed in the city.\n"
        f"stories:\n  - {body.lstrip()}"
        "    sources:\n      - title: City hall\n        url: https://a.test/n\n"
    )


LONG = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40
MANY_LONG_STORIES = "".join(
    f'  - headline: Story {n}\n    summary: "{LONG}"\n    why_it_matters: "{LONG}"\n'
    f"    sources:\n      - title: S\n        url: https://a.test/{n}\n"
    for n in range(12)
)
# Each kind of error `check` finds after the issue loads: build must refuse all of them.
CHECK_ERRORS = {
    "ftp link": _issue_with_story(summary='"See [the file](ftp://example.org/f)."'),
    "relative link": _issue_with_story(summary='"See [the page](/x)."'),
    "skeleton text": _issue_with_story(why_it_matters='"TODO: write why it matters"'),
    "skeleton url": _issue_with_story().replace("https://a.test/n", "https://example.com/TODO"),
    "gmail clipping": _issue_with_story().replace("stories:\n", "stories:\n" + MANY_LONG_STORIES),
}


@pytest.mark.parametrize("kind", sorted(CHECK_ERRORS))
def test_build_refuses_every_error_check_reports_and_writes_nothing(
    kind: str, runner: CliRunner, project: Path
) -> None:
    (project / "issues" / "bad.yaml").write_text(CHECK_ERRORS[kind], encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(project)
    try:
        checked = runner.invoke(main, ["check", "issues/bad.yaml"])
    finally:
        os.chdir(cwd)
    check_errors = [line for line in checked.output.splitlines() if ": error: " in line]
    assert checked.exit_code == 1 and check_errors, checked.output
    code, output = build(runner, project, "issues/bad.yaml")
    assert code == 1
    assert "Traceback" not in output
    for line in check_errors:  # the same diagnostics, word for word
        assert line in output
    assert not (project / "build").exists()
