"""`newsletter init` and `newsletter new` as a user runs them, followed by `check`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.lint import SKELETON_MARK, SKELETON_URL
from newsletter.scaffold import default_theme_dir

TODAY = dt.date.today().isoformat()


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_init_then_check_passes_cleanly(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["init", "my-letter"])
    assert result.exit_code == 0, result.output
    issue = f"issues/{TODAY}-welcome.yaml"
    assert result.output.splitlines() == [
        "created my-letter/newsletter.yaml",
        f"created my-letter/{issue}",
        f"next: cd my-letter && newsletter check {issue}",
    ]
    monkeypatch.chdir(tmp_path / "my-letter")
    checked = runner.invoke(main, ["check", "--strict", issue])
    assert checked.output == "1 file checked: 0 errors, 0 warnings\n"
    assert checked.exit_code == 0
    config = load_config()  # found by walking up from the new project
    assert config.path == tmp_path / "my-letter" / "newsletter.yaml"
    assert config.name == "My Letter"
    assert str(config.sender) == "My Letter <newsletter@example.com>"
    text = config.path.read_text("utf-8")
    assert text.count("\n# ") >= 8, "the configuration explains its keys"


def test_init_name_with_special_characters_gives_a_valid_config(
    runner: CliRunner, tmp_path: Path
) -> None:
    name = 'Dr. "Chips", & Co: #1 Weekly'
    result = runner.invoke(main, ["init", str(tmp_path / "x"), "--name", name])
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "x" / "newsletter.yaml", environ={})
    assert config.name == name
    assert config.sender.display_name == name
    assert config.sender.addr_spec == "newsletter@example.com"
    issue = load_issue(tmp_path / "x" / "issues" / f"{TODAY}-welcome.yaml")
    assert issue.title.startswith(name + " — ")


def test_init_copy_theme_copies_the_default_theme(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "letter"
    result = runner.invoke(main, ["init", str(target), "--copy-theme"])
    assert result.exit_code == 0, result.output
    theme = files_under(default_theme_dir())
    assert theme, "the built-in theme folder has files"
    assert files_under(target / "templates") == theme
    for name in theme:
        assert f"created {target / 'templates' / name}" in result.output
    config = load_config(target / "newsletter.yaml", environ={})
    assert config.templates == (target / "templates").resolve()


def test_init_copied_theme_passes_check(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "letter"
    runner.invoke(main, ["init", str(target), "--copy-theme"])
    issue = next((target / "issues").glob("*.yaml"))
    checked = runner.invoke(
        main, ["--config", str(target / "newsletter.yaml"), "check", "--strict", str(issue)]
    )
    assert checked.exit_code == 0, checked.output


def test_init_never_overwrites(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "letter"
    assert runner.invoke(main, ["init", str(target)]).exit_code == 0
    config = target / "newsletter.yaml"
    config.write_text(config.read_text("utf-8") + "# my edit\n", encoding="utf-8")
    before = files_under(target)
    again = runner.invoke(main, ["init", str(target), "--copy-theme"])
    assert again.exit_code == 1
    assert again.output.startswith("Error: already exists, not overwriting: ")
    assert str(config) in again.output
    assert files_under(target) == before, "nothing written, not even the theme"


def test_init_refuses_a_file_as_directory(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    result = runner.invoke(main, ["init", str(tmp_path / "file")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert (tmp_path / "file").read_text("utf-8") == "x"


def test_new_in_a_project_subfolder_writes_beside_the_config(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "drafts" / "deep").mkdir(parents=True)
    monkeypatch.chdir(project / "drafts" / "deep")
    result = runner.invoke(main, ["new", "Chip export rules", "--date", "2026-12-02"])
    assert result.exit_code == 0, result.output
    path = project / "issues" / "2026-12-02-chip-export-rules.yaml"
    assert result.output == f"created {path}\n"
    issue_text = path.read_text("utf-8")
    assert 'title: "Chip export rules"\ndate: 2026-12-02\n' in issue_text


def test_new_skeleton_fails_check_until_every_placeholder_is_replaced(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    assert runner.invoke(main, ["new", "Chip export rules", "--date", "2026-12-02"]).exit_code == 0
    name = "issues/2026-12-02-chip-export-rules.yaml"
    path = project / name
    result = runner.invoke(main, ["check", name])
    assert result.exit_code == 1
    text = path.read_text("utf-8")
    flagged = [line for line in result.output.splitlines() if ": error: " in line]
    marked_lines = [
        n
        for n, line in enumerate(text.splitlines(), 1)
        if (SKELETON_MARK in line or SKELETON_URL in line) and not line.startswith("#")
    ]
    assert [int(line.split(":")[1]) for line in flagged] == marked_lines
    assert all("placeholder text from `newsletter new` is still here" in f for f in flagged)
    assert len(flagged) >= 8

    # Replace the placeholders one kind at a time: still an error while any is left.
    filled = text.replace(f'"{SKELETON_MARK} the story\'s headline"', "Rules tighten")
    path.write_text(filled, encoding="utf-8")
    assert runner.invoke(main, ["check", name]).exit_code == 1
    filled = filled.replace(SKELETON_URL, "https://example.org/rules")
    filled = filled.replace(SKELETON_MARK + " ", "Real text: ")
    path.write_text(filled, encoding="utf-8")
    result = runner.invoke(main, ["check", "--strict", name])
    assert result.exit_code == 0, result.output


def test_new_without_project_uses_cwd_issues(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["new", "Hello"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "issues" / f"{TODAY}-hello.yaml").is_file()


def test_new_with_config_option_uses_its_folder(runner: CliRunner, project: Path) -> None:
    result = runner.invoke(
        main, ["--config", str(project / "newsletter.yaml"), "new", "X", "--date", "2026-01-02"]
    )
    assert result.exit_code == 0, result.output
    assert (project / "issues" / "2026-01-02-x.yaml").is_file()


def test_new_never_overwrites(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    args = ["new", "Same title", "--date", "2026-12-02"]
    assert runner.invoke(main, args).exit_code == 0
    path = project / "issues" / "2026-12-02-same-title.yaml"
    path.write_text("my draft\n", encoding="utf-8")
    again = runner.invoke(main, args)
    assert again.exit_code == 1
    assert again.output == f"Error: already exists, not overwriting: {path}\n"
    assert path.read_text("utf-8") == "my draft\n"


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ('Chips: "export" rules #2 & more', "chips-export-rules-2-more"),
        ("Übersicht: KI-Regeln", "ubersicht-ki-regeln"),
        ("日本のAI", "ai"),
        ("!!!", "issue"),
    ],
)
def test_new_title_round_trips_exactly(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, title: str, slug: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["new", title, "--date", "2026-12-02"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "issues" / f"2026-12-02-{slug}.yaml"
    from newsletter.issue import parse_issue

    parsed = parse_issue(path)
    assert parsed.doc is not None and parsed.doc.data["title"] == title


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "two\nlines"], "Error: the title must be one line without control characters"),
        (["new", "   "], "Error: the title is empty"),
    ],
)
def test_new_bad_title(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert not (tmp_path / "issues").exists() or not any((tmp_path / "issues").iterdir())


def test_new_bad_date_is_a_usage_error(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["new", "X", "--date", "2026-13-01"])
    assert result.exit_code == 2
    assert "'2026-13-01' is not a calendar date (month must be in 1..12)" in result.output
    assert "Traceback" not in result.output
