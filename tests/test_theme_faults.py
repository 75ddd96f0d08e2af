"""Theme mistakes that mjml-python would let through silently, or report without a file: each is
refused by `build` and `check`, naming the template file (of the theme in use) and its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import run
from click.testing import CliRunner

from newsletter.render.theme import BUILTIN_THEME

EXAMPLE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
PARTIALS = ["header.mjml", "story.mjml", "footer.mjml", "contents.mjml"]


def theme_with(project: Path, name: str, source: str) -> None:
    theme = project / "theme"
    theme.mkdir(exist_ok=True)
    (theme / name).write_text(source, encoding="utf-8")
    config = project / "newsletter.yaml"
    config.write_text(config.read_text() + "templates: theme\n", encoding="utf-8")


def line_of(source: str, needle: str) -> int:
    return source[: source.index(needle)].count("\n") + 1


def three_stories(project: Path) -> None:
    """The example issue with three stories, so contents.mjml is used too."""
    path = project / EXAMPLE
    text = path.read_text(encoding="utf-8")
    stories = text[text.index("  - headline:") :]
    path.write_text(text + stories + stories, encoding="utf-8")


@pytest.mark.parametrize("name", PARTIALS)
@pytest.mark.parametrize("command", ["build", "check"])
def test_truncated_tag_is_reported_in_the_file_that_holds_it(
    name: str, command: str, runner: CliRunner, project: Path
) -> None:
    builtin = (BUILTIN_THEME / name).read_text(encoding="utf-8")
    # <mj-colum>: a prefix of a tag every template uses (the last one: outside any {% if %}).
    tag, truncated = "mj-column", "mj-colum"
    at = builtin.rindex(f"<{tag}>")
    source = builtin[:at] + f"<{truncated}>" + builtin[at + len(tag) + 2 :]
    theme_with(project, name, source)
    three_stories(project)
    code, output = run(runner, project, command, EXAMPLE)
    assert code == 1
    where = f"theme/{name}:{line_of(source, f'<{truncated}>')}"
    assert f"{where}:1: error: unknown MJML tag <{truncated}> (did you mean <{tag}>?)" in output


@pytest.mark.parametrize("command", ["build", "check"])
def test_inline_mj_style_is_refused_with_the_fix(
    command: str, runner: CliRunner, project: Path
) -> None:
    builtin = (BUILTIN_THEME / "email.mjml").read_text(encoding="utf-8")
    source = builtin.replace("<mj-style>", '<mj-style inline="inline">')
    theme_with(project, "email.mjml", source)
    code, output = run(runner, project, command, EXAMPLE)
    assert code == 1
    where = f"theme/email.mjml:{line_of(source, '<mj-style inline')}"
    assert f'{where}:1: error: <mj-style inline="inline"> is ignored by mjml-python' in output
    assert "inline.css" in output
    assert not (project / "build").exists()


@pytest.mark.parametrize("name", PARTIALS)
def test_unclosed_tag_names_its_file_and_line(name: str, runner: CliRunner, project: Path) -> None:
    builtin = (BUILTIN_THEME / name).read_text(encoding="utf-8")
    closing = list(re.finditer(r"</(mj-column)>", builtin))[-1]
    source = builtin[: closing.start()] + builtin[closing.end() :]
    theme_with(project, name, source)
    three_stories(project)
    code, output = run(runner, project, "build", EXAMPLE)
    assert code == 1
    opened = source.rfind(f"<{closing.group(1)}", 0, closing.start())
    line = source[:opened].count("\n") + 1
    assert (
        f"theme/{name}:{line}:1: error: invalid MJML: <{closing.group(1)}> is never closed"
        in output
    )


def _unclosed_quote(source: str) -> tuple[str, re.Match[str]]:
    """The last `attr="value"` of an mj- tag (outside any {% if %}) without its closing quote."""
    match = list(re.finditer(r'<mj-[\w-]+[^>]*?\w="([^"{}]+)"', source))[-1]
    return source[: match.end() - 1] + source[match.end() :], match


def _missing_bracket(source: str) -> tuple[str, re.Match[str]]:
    """The last attribute-less mj- tag (`<mj-column>`, outside any {% if %}) without its `>`."""
    match = list(re.finditer(r"<mj-[\w-]+>", source))[-1]
    return source[: match.end() - 1] + source[match.end() :], match


# (how the tag is broken, what `check` and `build` must say about it)
BROKEN_TAGS = [
    (_unclosed_quote, "a quote of an attribute of <{tag}> is never closed"),
    (_missing_bracket, "<{tag} has no closing >"),
]


@pytest.mark.parametrize("name", PARTIALS)
@pytest.mark.parametrize(("breaks", "message"), BROKEN_TAGS)
@pytest.mark.parametrize("command", ["build", "check"])
def test_broken_tag_is_named_at_its_file_and_line(
    name: str, breaks: object, message: str, command: str, runner: CliRunner, project: Path
) -> None:
    builtin = (BUILTIN_THEME / name).read_text(encoding="utf-8")
    source, broken = breaks(builtin)  # type: ignore[operator]
    theme_with(project, name, source)
    three_stories(project)
    code, output = run(runner, project, command, EXAMPLE)
    assert code == 1
    tag = re.match(r"<(mj-[\w-]+)", broken.group(0)).group(1)  # type: ignore[union-attr]
    line = source.count("\n", 0, broken.start()) + 1
    assert f"theme/{name}:{line}:1: error: invalid MJML: {message.format(tag=tag)}" in output
    assert "never closed" not in output or "quote" in message  # not blamed on a closing tag
    assert not (project / "build").exists()
