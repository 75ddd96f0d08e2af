"""`newsletter check` as a user runs it: exit codes, --strict, --format json, sizes, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.lint import check_issue

EXAMPLE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
SOURCE_WARNING = (
    f"{EXAMPLE}:44:9: warning: stories[0].sources[0]: source has no URL; "
    "readers cannot follow it to the original"
)


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


VALID = """\
title: Test issue
date: 2026-11-25
preheader: A short preview.
stories:
  - headline: A story
    summary: |
      What happened.
    why_it_matters: |
      Why it matters.
    sources:
      - title: A source
        url: https://example.com/a
"""


def test_example_issue_passes_with_its_honest_warning(runner: CliRunner, in_project: Path) -> None:
    result = runner.invoke(main, ["check", EXAMPLE])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [SOURCE_WARNING, "1 file checked: 0 errors, 1 warning"]


def test_strict_fails_on_warnings(runner: CliRunner, in_project: Path) -> None:
    result = runner.invoke(main, ["check", "--strict", EXAMPLE])
    assert result.exit_code == 1
    assert SOURCE_WARNING in result.output


def test_clean_issue_has_no_problems_even_strict(runner: CliRunner, in_project: Path) -> None:
    write(in_project / "issues" / "clean.yaml", VALID)
    result = runner.invoke(main, ["check", "--strict", "issues/clean.yaml"])
    assert result.exit_code == 0, result.output
    assert result.output == "1 file checked: 0 errors, 0 warnings\n"


def test_json_format_for_tools(runner: CliRunner, in_project: Path) -> None:
    bad = write(in_project / "bad.yaml", VALID.replace("date: 2026-11-25", "date: soon"))
    result = runner.invoke(main, ["check", "--format", "json", EXAMPLE, str(bad.name)])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    assert (report["files"], report["errors"], report["warnings"]) == (2, 1, 1)
    assert report["diagnostics"] == [
        {
            "path": EXAMPLE,
            "line": 44,
            "col": 9,
            "severity": "warning",
            "field": "stories[0].sources[0]",
            "message": "source has no URL; readers cannot follow it to the original",
        },
        {
            "path": "bad.yaml",
            "line": 2,
            "col": 7,
            "severity": "error",
            "field": "date",
            "message": "expected an ISO date like 2026-11-25, got 'soon'",
        },
    ]
    ok = json.loads(runner.invoke(main, ["check", "--format", "json", EXAMPLE]).output)
    assert ok["ok"] is True
    strict = runner.invoke(main, ["check", "--format", "json", "--strict", EXAMPLE])
    assert strict.exit_code == 1 and json.loads(strict.output)["ok"] is False


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("missing.yaml", "missing.yaml:1:1: error: file not found"),
        ("issues", "issues:1:1: error: is a directory, expected a YAML file"),
    ],
)
def test_unreadable_paths_are_diagnostics(
    runner: CliRunner, in_project: Path, arg: str, message: str
) -> None:
    result = runner.invoke(main, ["check", arg])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == message
    assert "Traceback" not in result.output


def test_no_arguments_is_a_usage_error(runner: CliRunner, in_project: Path) -> None:
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_all_problems_in_one_run_in_file_order(runner: CliRunner, in_project: Path) -> None:
    text = VALID.replace("title: Test issue", "title: 42\ntagline: x").replace(
        "    summary: |\n      What happened.\n", "    summary: 7.5\n    headline2: y\n"
    )
    write(in_project / "many.yaml", text)
    result = runner.invoke(main, ["check", "many.yaml"])
    lines = result.output.splitlines()
    assert lines == [
        "many.yaml:2:1: error: tagline: unknown key 'tagline'; expected one of: title, date, "
        "subject, preheader, intro, stories, outro",
        "many.yaml:8:5: error: stories[0].headline2: unknown key 'headline2' (did you mean "
        "'headline'?); expected one of: headline, dek, summary, why_it_matters, key_points, "
        "takeaway, image, sources",
        "1 file checked: 2 errors, 0 warnings",
    ]


def test_block_scalar_problems_point_at_their_own_line(tmp_path: Path) -> None:
    issue = write(
        tmp_path / "x.yaml",
        VALID.replace(
            "      Why it matters.\n",
            "      Why it matters.\n\n      See [the old page](http://example.org/old).\n",
        ).replace(
            "preheader: A short preview.\n",
            "preheader: A short preview.\nintro: >\n  Folded text\n  with {{ subscriber.nam }}\n",
        ),
    )
    found = [d.format() for d in check_issue(issue, load_config(None, environ={}, start=tmp_path))]
    assert found == [
        f"{issue}:6:11: error: intro: 'subscriber.nam' does not exist (it would always be "
        "empty); use subscriber.name, subscriber.email or subscriber.fields.NAME",
        f"{issue}:14:26: warning: stories[0].why_it_matters: plain http link "
        "'http://example.org/old'; use https:// if the site supports it",
    ]


def _sized_issue(folder: Path, paragraph_words: int) -> Path:
    body = " ".join(f"word{i % 97}" for i in range(paragraph_words))
    return write(
        folder / "big.yaml",
        VALID.replace("      What happened.\n", f"      {body}\n"),
    )


def _built_html_size(runner: CliRunner, path: Path) -> int:
    """Bytes of the HTML part a sample recipient gets, as `newsletter build` writes it."""
    out = path.parent / "build"
    result = runner.invoke(main, ["build", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return (out / "big" / "email.html").stat().st_size


def _reported_kb(output: str) -> float | None:
    found = re.search(r"the email's HTML is (\d+\.\d) KB", output)
    return float(found.group(1)) if found else None


# Gmail clips a message whose HTML passes 102 KB (KB of 1024 bytes): the values are pinned
# here, not derived from the code's constants, so a changed constant fails this test.
@pytest.mark.parametrize(
    ("target_kb", "exit_code", "expected"),
    [
        (80, 0, None),
        (96, 0, "warning: the email's HTML is {kb} KB as written, "),
        (105, 1, "error: the email's HTML is {kb} KB as written, "),
        (110, 1, "error: the email's HTML is {kb} KB as written, "),
    ],
)
def test_size_warning_and_gmail_clipping_error(
    runner: CliRunner, tmp_path: Path, target_kb: int, exit_code: int, expected: str | None
) -> None:
    # The HTML grows linearly with the text: two sizes give the words for the target size.
    small = _built_html_size(runner, _sized_issue(tmp_path, 100))
    large = _built_html_size(runner, _sized_issue(tmp_path, 2100))
    words = int(100 + (target_kb * 1024 - small) / ((large - small) / 2000))
    path = _sized_issue(tmp_path, words)
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == exit_code, result.output
    kb = _reported_kb(result.output)
    if expected is None:
        assert kb is None and abs(_built_html_size(runner, path) / 1024 - target_kb) < 1.5
        return
    assert kb is not None and abs(kb - target_kb) < 1.5, result.output
    assert f"{path}:1:1: " + expected.format(kb=kb) in result.output
    # ... and as sent: quoted-printable for English, a little larger than written.
    sent = re.search(r"KB as written, (\d+\.\d) KB as sent \(quoted-printable\)", result.output)
    assert sent and kb < float(sent.group(1)) < kb * 1.15, result.output
    clip = "Gmail clips messages above 102 KB" if exit_code else "close to Gmail's 102 KB"
    assert clip in result.output
    if exit_code == 0:
        assert runner.invoke(main, ["check", "--strict", str(path)]).exit_code == 1


def test_broken_theme_is_an_error_not_a_traceback(runner: CliRunner, project: Path) -> None:
    theme = project / "theme"
    source = Path(__file__).resolve().parent.parent / "templates"
    shutil.copytree(source, theme)
    target = theme / "email.mjml"  # the theme's entry template
    target.write_text(target.read_text("utf-8") + "\n{% if %}\n", encoding="utf-8")
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as config:
        config.write("templates: theme\n")
    result = runner.invoke(
        main, ["--config", str(project / "newsletter.yaml"), "check", str(project / EXAMPLE)]
    )
    assert result.exit_code == 1
    # Reported at the template's line, where the fault is, not at the issue's first line.
    lines = target.read_text("utf-8").splitlines()
    located = re.search(rf"(\S*{target.name}):(\d+):1: error: ", result.output)
    assert located is not None, result.output
    assert lines[int(located.group(2)) - 1] == "{% if %}"
    assert "Traceback" not in result.output


def test_check_issue_is_usable_from_python(tmp_path: Path) -> None:
    issue = write(tmp_path / "ok.yaml", VALID)
    assert check_issue(issue, load_config(None, environ={}, start=tmp_path)) == []


MUTATIONS = [
    b"{{", b"}}", b"{%", b"\t", b":", b"- ", b"&a ", b"*a", b"!!binary ", b"!foo ", b"\x00",
    b"\xff", b"\r", b"[", b"]", b"'", b'"', b"|", b">", b"#", b"\n  ", b"\n", b"? ", b"<<: ",
    b"---\n", b"\xe2\x80\xa8", b"[x](y)", b"![](z)", b"<http://a>", b"{{ subscriber.x }}",
    b"2026-02-30", b"null", b"~", b"[]", b"{}", b"1e400", b".nan", b"TODO: x",
    b"url: http://[::1\n", b"\n      - title: t\n        url: http://a:99999\n", b"[l](http://[x)",
]  # fmt: skip


def test_randomly_damaged_issues_never_crash(tmp_path: Path) -> None:
    """Whatever the bytes, check returns located diagnostics: never an exception."""
    import random

    rng = random.Random(20261125)
    config = load_config(None, environ={}, start=tmp_path)
    base = (Path(__file__).resolve().parent.parent / EXAMPLE).read_bytes()
    for n in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            if rng.random() < 0.6:
                data[pos:pos] = rng.choice(MUTATIONS)
            else:
                del data[pos : pos + rng.randint(1, 40)]
        path = tmp_path / f"damaged-{n}.yaml"
        path.write_bytes(bytes(data))
        for diagnostic in check_issue(path, config):
            assert diagnostic.line >= 1 and diagnostic.col >= 1
            assert diagnostic.path == str(path)
