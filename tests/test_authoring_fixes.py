"""Authoring faults a QA pass found after issue #13, through the CLI as a writer meets them."""

from __future__ import annotations

import email
import email.policy
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main

CORPUS = Path(__file__).parent / "corpus"


def run(runner: CliRunner, project: Path, *args: str) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = runner.invoke(main, list(args))
    finally:
        os.chdir(cwd)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


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
