"""One slug rule for issue files, titles and URLs, and no two issue files sharing a slug: a
shared slug would share one ledger campaign (the second never sent) and one web page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.cli_support import run

EXAMPLE = "2026-11-25-microsoft-openai-partnership"


def setup_outbox(project: Path) -> None:
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
        f.write("transport: outbox:./outbox\nlists:\n  weekly: {public: true}\n")


def copy_example(project: Path, stem: str) -> Path:
    target = project / "issues" / f"{stem}.yaml"
    shutil.copy(project / "issues" / f"{EXAMPLE}.yaml", target)
    return target


# Pairs of file names that the old rule (ASCII letters only, case folded, 80 characters) gave
# one slug.
PAIRS = [
    ("2026-11-16-ä", "2026-11-16-ö"),
    ("2026-11-16-Straße", "2026-11-16-strae"),
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_transliterated_names_get_their_own_slugs(
    project: Path, runner: CliRunner, first: str, second: str
) -> None:
    setup_outbox(project)
    for stem in (first, second):
        copy_example(project, stem)
    for stem in (first, second):
        code, out = run(runner, project, "publish", f"issues/{stem}.yaml")
        assert code == 0, out
    code, out = run(runner, project, "archive", "-o", "site")
    assert code == 0, out
    pages = sorted(p.parent.name for p in (project / "site" / "issues").glob("*/index.html"))
    assert len(pages) == 2, pages


COLLIDING = [
    ("2026-11-16-Hello", "2026-11-16-hello"),  # case only
    ("2026-11-16-" + "x" * 90 + "-a", "2026-11-16-" + "x" * 90 + "-b"),  # past 80 characters
    ("2026-11-16-日本", "2026-11-16-中文"),  # letters that have no Latin spelling
    ("2026-11-16-a b", "2026-11-16-a_b"),  # punctuation
]


@pytest.mark.parametrize(("first", "second"), COLLIDING)
@pytest.mark.parametrize(
    "command",
    [
        ("check", "{file}"),
        ("send", "{file}", "--list", "weekly", "--yes"),
        ("send", "{file}", "--list", "weekly", "--at", "2099-01-01 07:00", "--tz", "UTC"),
        ("publish", "{file}"),
        ("publish", "{slug}"),
        ("build", "{file}", "-o", "built"),
    ],
    ids=["check", "send", "send-at", "publish-file", "publish-slug", "build"],
)
def test_two_files_with_one_slug_are_refused_naming_both(
    project: Path, runner: CliRunner, first: str, second: str, command: tuple[str, ...]
) -> None:
    setup_outbox(project)
    a = copy_example(project, first)
    b = copy_example(project, second)
    code, out = run(runner, project, "subscribers", "add", "ada@example.net", "--list", "weekly")
    assert code == 0, out
    from newsletter.issue import slugify

    slug = slugify(first)
    args = [part.format(file=f"issues/{b.name}", slug=slug) for part in command]
    code, out = run(runner, project, *args)
    assert code != 0, out
    assert a.name in out and b.name in out, out
    assert not list(project.glob("outbox/*.eml"))
    code, out = run(runner, project, "schedule")
    assert "2099" not in out


def test_new_and_a_file_named_with_the_same_letters_agree(project: Path, runner: CliRunner) -> None:
    code, out = run(runner, project, "new", "Ünïcode Straße", "--date", "2026-11-16")
    assert code == 0, out
    made = project / "issues" / "2026-11-16-unicode-strasse.yaml"
    assert made.is_file(), out
    from newsletter.issue import slugify

    assert slugify("2026-11-16-Ünïcode Straße") == made.stem


@pytest.mark.parametrize(
    "stem",
    [
        EXAMPLE,
        "2026-11-16-Hello_World",
        "2026-11-16 weekly  #12",
        "--2026-11-16-x--",
        "2026-11-16-" + "long-" * 20,
    ],
)
def test_ascii_names_keep_the_slug_they_had(project: Path, runner: CliRunner, stem: str) -> None:
    """Already sent and published issues keep their ledger campaigns and web addresses."""
    import re

    old = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:80].rstrip("-") or "issue"
    setup_outbox(project)
    if stem != EXAMPLE:
        copy_example(project, stem)
    code, out = run(runner, project, "publish", f"issues/{stem}.yaml")
    assert code == 0, out
    assert f"/issues/{old}/" in out, out
