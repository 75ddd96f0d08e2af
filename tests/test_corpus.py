"""A corpus of broken issue files, each checked through the CLI against its exact expected output.

Every `tests/corpus/NAME.yaml` has a sidecar `NAME.expected`: the exact lines `newsletter check`
must print for it (path:line:col: severity: field: message), in order, and nothing else but the
summary line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))


def test_corpus_is_large_enough_and_complete() -> None:
    assert len(CASES) >= 40
    # One file per kind of YAML mistake a writer makes (issue #13), explained in plain words.
    assert sum(name.startswith("yaml_") for name in CASES) >= 15
    for name in CASES:
        assert (CORPUS / name).with_suffix(".expected").is_file(), f"{name} has no .expected"


def _check(runner: CliRunner, project: Path, *args: str):
    return runner.invoke(main, ["--config", str(project / "newsletter.yaml"), "check", *args])


@pytest.mark.parametrize("name", CASES)
def test_broken_issue_reports_exact_problems(
    name: str, runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CORPUS)
    expected = (CORPUS / name).with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    result = _check(runner, project, name)
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert lines[:-1] == expected
    errors = sum(": error: " in line for line in expected)
    warnings = sum(": warning: " in line for line in expected)
    assert lines[-1] == (
        f"1 file checked: {errors} error{'s' * (errors != 1)}, "
        f"{warnings} warning{'s' * (warnings != 1)}"
    )
    assert result.exit_code == (1 if errors else 0)
    strict = _check(runner, project, "--strict", name)
    assert strict.exit_code == (1 if errors or warnings else 0)


def test_whole_corpus_at_once_reports_every_file(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CORPUS)
    result = _check(runner, project, *CASES)
    expected = [
        line
        for name in CASES
        for line in (CORPUS / name).with_suffix(".expected").read_text("utf-8").splitlines()
    ]
    assert result.output.splitlines()[:-1] == expected
    assert result.output.splitlines()[-1].startswith(f"{len(CASES)} files checked: ")
    assert result.exit_code == 1


def test_yaml_mistake_keeps_the_parser_words_for_experts(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain explanation comes first, at the mistake's line; PyYAML's words (and where it
    gave up, lines later) follow on a second line, and in the JSON output as `detail`."""
    monkeypatch.chdir(CORPUS)
    result = _check(runner, project, "--format", "json", "yaml_unclosed_quote.yaml")
    (entry,) = json.loads(result.output)["diagnostics"]
    assert (entry["line"], entry["col"]) == (11, 15)
    assert "never closed" in entry["message"]
    assert entry["detail"].startswith("YAML says: found unexpected end of stream")
    assert "at line 35" in entry["detail"]
