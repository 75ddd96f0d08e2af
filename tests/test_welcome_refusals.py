"""The welcome issue goes to each subscriber once on confirmation: never to a list, never
scheduled, never published; and `unpublish` of a slug nobody knows is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from db_support import use_database
from welcome_issue import WELCOME

from tests.support.cli_support import run


@pytest.fixture(params=["default-file", "welcome-key"])
def welcoming(project: Path, request: pytest.FixtureRequest) -> Path:
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
        f.write("transport: outbox:./outbox\nlists:\n  weekly: {public: true}\n")
        if request.param == "welcome-key":
            f.write("welcome: hello.yaml\n")
    where = project / ("issues/_welcome.yaml" if request.param == "default-file" else "hello.yaml")
    where.write_text(WELCOME, encoding="utf-8")
    code, out = run(runner := CliRunner(), project, "subscribers", "add", "a@example.net")
    assert code == 0, out
    code, out = run(runner, project, "subscribers", "add", "b@example.net", "--list", "weekly")
    assert code == 0, out
    project.joinpath("welcome-file").write_text(str(where.relative_to(project)))
    return project


@pytest.fixture
def project(project: Path, database: str) -> Path:
    """Every test of this file on SQLite and on PostgreSQL (newsletter.yaml's `database:`)."""
    use_database(project, database)
    return project


def welcome_file(project: Path) -> str:
    return project.joinpath("welcome-file").read_text()


@pytest.mark.parametrize(
    "command",
    [
        ("send", "{file}", "--yes"),
        ("send", "{file}", "--list", "weekly", "--yes"),
        ("send", "{file}", "--list", "weekly", "--dry-run"),
        ("send", "{file}", "--list", "weekly", "--at", "2099-01-01 07:00", "--tz", "UTC"),
        ("publish", "{file}"),
        ("publish", "{slug}"),
        ("send", "{slug}", "--yes"),
        ("send", "{stem}", "--yes"),
        ("publish", "{stem}"),
    ],
    ids=[
        *("send", "send-list", "dry-run", "send-at", "publish-file", "publish-slug"),
        *("send-slug", "send-base-name", "publish-base-name"),
    ],
)
def test_the_welcome_never_goes_to_a_list_or_the_web(
    welcoming: Path, runner: CliRunner, command: tuple[str, ...]
) -> None:
    slug = "welcome" if welcome_file(welcoming).startswith("issues") else "hello"
    file = welcome_file(welcoming)
    args = [part.format(file=file, slug=slug, stem=Path(file).stem) for part in command]
    code, out = run(runner, welcoming, *args)
    assert code != 0, out
    assert "welcome issue" in out, out
    assert not list(welcoming.glob("outbox/*.eml"))
    code, out = run(runner, welcoming, "schedule")
    assert "2099" not in out, out
    code, out = run(runner, welcoming, "archive", "-o", "site")
    assert code == 0, out
    assert not (welcoming / "site" / "issues" / slug).exists()
    code, out = run(runner, welcoming, "status", slug)
    assert "Traceback" not in out


def test_a_test_copy_of_the_welcome_still_goes(welcoming: Path, runner: CliRunner) -> None:
    code, out = run(runner, welcoming, "send", welcome_file(welcoming), "--test", "me@example.net")
    assert code == 0, out
    assert len(list(welcoming.glob("outbox/*.eml"))) == 1


def test_status_of_the_welcome_after_welcomes(welcoming: Path, runner: CliRunner) -> None:
    code, out = run(runner, welcoming, "subscribers", "add", "c@example.net", "--welcome")
    assert code == 0, out
    slug = "welcome" if welcome_file(welcoming).startswith("issues") else "hello"
    code, out = run(runner, welcoming, "status", slug)
    assert code == 0, out
    assert "list (welcome): done" in out and "sent 1," in out, out


@pytest.mark.parametrize("with_database", [False, True])
def test_unpublish_of_an_unknown_slug_is_an_error(
    project: Path, runner: CliRunner, with_database: bool
) -> None:
    if with_database:
        code, out = run(runner, project, "subscribers", "add", "a@example.net")
        assert code == 0, out
    code, out = run(runner, project, "unpublish", "no-such-issue")
    assert code != 0, out
    # Without a database nothing was ever published: that is the error (test_missing_database):
    # no SQLite file there, or a PostgreSQL database with no newsletter tables yet.
    if with_database:
        assert "no issue with slug 'no-such-issue'" in out, out
    else:
        assert "no database at" in out or "holds no newsletter tables yet" in out, out
    code, out = run(runner, project, "unpublish", "2026-11-25-microsoft-openai-partnership")
    assert (code == 0) == with_database, out  # a known issue: "already unpublished"
