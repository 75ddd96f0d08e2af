"""What `send --at` and `schedule` tell a person: the segment, the full reason a schedule
failed, the subject as a reader sees it; and a send time needs a time of day (a date alone is
refused, not read as midnight) and whole seconds, which are kept and shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_schedule import Invoke, cli, issue_of, schedules  # noqa: F401 (fixture)

AT = ("--at", "2026-12-02 07:00", "--tz", "Europe/Berlin")


def test_the_listing_shows_the_segment(cli: Invoke, project: Path) -> None:  # noqa: F811
    code, out = cli("subscribers", "tag", "reader01@example.net", "pro")
    assert code == 0, out
    code, out = cli("send", issue_of(project), "--segment", '"pro" in tags', *AT)
    assert code == 0, out
    assert "segment" in out and '"pro" in tags' in out and "1 subscriber " in out, out
    code, listing = cli("schedule")
    assert '"pro" in tags' in listing, listing


def test_a_failed_schedule_shows_the_error_line(cli: Invoke, project: Path) -> None:  # noqa: F811
    issue = project / issue_of(project)
    code, out = cli("send", issue_of(project), *AT)
    assert code == 0, out
    issue.write_text(issue.read_text().replace("title: ", "title: TODO: ", 1))
    code, out = cli("send-due", now="2026-12-02T06:00:30Z")
    assert code == 1
    code, listing = cli("schedule")
    assert "fails `newsletter check`" in listing
    # the diagnostic itself: file, line, column and what is wrong
    assert f"{issue_of(project)}:" in listing and "TODO" in listing, listing


def test_the_confirmation_shows_the_subject_a_reader_gets(
    cli: Invoke,  # noqa: F811
    project: Path,
) -> None:
    issue = project / issue_of(project)
    lines = [
        "subject: \"Hello, {{ subscriber.name | default('reader') }}\""
        if line.startswith("subject:")
        else line
        for line in issue.read_text().splitlines()
    ]
    issue.write_text("\n".join(lines) + "\n")
    code, out = cli("send", issue_of(project), *AT)
    assert code == 0, out
    assert "{{" not in out, out
    assert "'Hello, Sample Reader' (as Sample Reader sees it)" in out, out


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2026-12-02", "no time of day"),
        ("2026-12-02 07:00:00.5", "whole seconds"),
        ("2026-12-02T07:00:30,25Z", "whole seconds"),
    ],
)
def test_a_send_time_needs_a_time_and_whole_seconds(
    cli: Invoke,  # noqa: F811
    project: Path,
    at: str,
    message: str,
) -> None:
    code, out = cli("send", issue_of(project), "--at", at, "--tz", "UTC")
    assert code != 0, out
    assert message in out, out
    assert schedules(project) == []


def test_seconds_are_kept_and_shown(cli: Invoke, project: Path) -> None:  # noqa: F811
    code, out = cli("send", issue_of(project), "--at", "2026-12-02 07:00:30", "--tz", "UTC")
    assert code == 0, out
    assert "2026-12-02 07:00:30 UTC" in out, out
    code, listing = cli("schedule")
    assert "07:00:30" in listing, listing
    [(due, *_)] = schedules(project)
    assert due.startswith("2026-12-02T07:00:30"), due
