"""The preview server without a browser: the command as a user runs it, builds, documents."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from newsletter.cli import main
from newsletter.web.livepreview.builder import Builder
from newsletter.web.livepreview.document import frame_document, pin_color_scheme
from newsletter.web.preview import PreviewServer

ISSUE = Path("issues") / "2026-11-25-microsoft-openai-partnership.yaml"


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_command_prints_the_url_serves_and_stops_cleanly_on_ctrl_c(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    # --open goes through the webbrowser module, which runs $BROWSER: record what it opens.
    opened = project / "opened.txt"
    record = f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])"
    env["BROWSER"] = f'{sys.executable} -c "{record}" %s'
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", str(ISSUE), "--open"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(
            rf"Previewing {re.escape(str(ISSUE))} at (http://127\.0\.0\.1:(\d+)/)", line
        )
        assert match, line
        url = match.group(1)
        status, _headers, body = get(url)
        assert status == 200
        assert b"Preview as" in body
        _status, _headers, state = get(url + "api/state")
        assert json.loads(state)["ok"] is True
        assert _wait_for(lambda: opened.is_file() and opened.read_text() == url, timeout=10)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "Preview stopped." in out
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(match.group(2))), timeout=1).close()


def test_port_in_use_is_a_clear_error(project: Path, runner, monkeypatch) -> None:
    monkeypatch.chdir(project)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["preview", str(ISSUE), "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_missing_issue_file_is_a_clear_error(project: Path, runner, monkeypatch) -> None:
    monkeypatch.chdir(project)
    result = runner.invoke(main, ["preview", "issues/nope.yaml"])
    assert result.exit_code == 1
    assert "issues/nope.yaml: issue file not found" in result.output


def test_email_document_is_script_free_and_pinned_to_its_scheme(project: Path) -> None:
    issue = project / ISSUE
    with PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project) as s:
        _status, headers, dark = get(s.url + "email?scheme=dark")
        _status, _headers, light = get(s.url + "email?scheme=light")
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none' applies
    assert "default-src 'none'" in headers["content-security-policy"]
    assert b"prefers-color-scheme" not in dark
    assert b"prefers-color-scheme" not in light
    assert b'<base target="_blank">' in dark


def test_pin_color_scheme_rewrites_conditions_both_ways() -> None:
    css = (
        "@media (prefers-color-scheme: dark) { a {} } "
        "@media screen and (prefers-color-scheme:light) { b {} }"
    )
    dark = pin_color_scheme(css, "dark")
    assert dark == "@media (min-width: 0px) { a {} } @media screen and (max-width: -1px) { b {} }"
    light = pin_color_scheme(css, "light")
    assert light.startswith("@media (max-width: -1px)")
    assert "(min-width: 0px) { b {} }" in light


def test_frame_document_without_head_still_gets_one() -> None:
    assert frame_document("<p>hi</p>", "light").startswith(
        '<!doctype html><head><base target="_blank">'
    )


def test_builder_reports_config_errors_with_file_and_line(project: Path) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    snapshot = Builder(project / ISSUE, config, project).build(1)
    assert not snapshot.ok
    [problem] = snapshot.problems
    assert problem.kind == "config"
    assert problem.line == 5
    assert "unknown key 'colour'" in problem.message
    assert [line.text for line in problem.excerpt if line.marked] == ["colour: blue"]


def test_builder_survives_a_missing_theme_folder(project: Path) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "templates: nothere\n", "utf-8")
    snapshot = Builder(project / ISSUE, config, project).build(1)
    assert not snapshot.ok
    assert "nothere" in snapshot.problems[0].message


def test_saving_newsletter_yaml_rebuilds_with_the_new_configuration(project: Path) -> None:
    config = project / "newsletter.yaml"
    with (
        PreviewServer(project / ISSUE, config_path=config, start_dir=project) as server,
        BuildEvents(server) as builds,
    ):
        assert server.snapshot.config is not None
        assert server.snapshot.config.name == "Test Letter"
        config.write_text(
            config.read_text("utf-8").replace("Test Letter", "Renamed Letter"), "utf-8"
        )
        builds.until(
            lambda: (
                server.snapshot.config is not None
                and server.snapshot.config.name == "Renamed Letter"
            )
        )
        _status, _headers, state = get(server.url + "api/state")
        assert json.loads(state)["email"]["from"] == "Renamed Letter <news@example.org>"


def _wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class BuildEvents:
    """The preview's Server-Sent Events stream, read as the page's script reads it: a test
    waits for the build event it expects, however long the watcher takes on a busy machine
    (`give_up` only ends a test whose event never comes)."""

    def __init__(self, server: PreviewServer, give_up: float = 60.0) -> None:
        self.server = server
        self.give_up = give_up
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=give_up)
        self.conn.request("GET", "/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.next()  # the stream opens with the current build

    def __enter__(self) -> BuildEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def next(self) -> dict:
        """The next build event's data (keep-alive comments skipped)."""
        deadline = time.monotonic() + self.give_up
        data = None
        while time.monotonic() < deadline:
            line = self.response.readline().decode().rstrip("\r\n")
            if not line and data is not None:
                return data
            if line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        raise AssertionError(f"no build event within {self.give_up:g}s")

    def until(self, predicate) -> None:  # type: ignore[no-untyped-def]
        """Read build events until `predicate()` holds (it may already)."""
        while not predicate():
            self.next()


def _first_headline(server: PreviewServer) -> str | None:
    compiled = server.snapshot.compiled
    return compiled.issue.stories[0].headline if compiled else None


def test_editor_style_saves_rename_and_delete_are_followed(project: Path) -> None:
    issue = project / ISSUE
    original = issue.read_text("utf-8")
    with (
        PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project) as s,
        BuildEvents(s) as builds,
    ):
        # vim, JetBrains and friends write a temporary file and rename it over the original.
        temporary = issue.with_name(".issue.yaml.swp~")
        temporary.write_text(original.replace("reset the partnership", "renamed it"), "utf-8")
        os.replace(temporary, issue)
        builds.until(lambda: "renamed it" in (_first_headline(s) or ""))
        issue.unlink()
        builds.until(lambda: not s.snapshot.ok)
        assert "file not found" in s.snapshot.problems[0].message
        issue.write_text(original, "utf-8")
        builds.until(lambda: s.snapshot.ok)
        assert "reset the partnership" in (_first_headline(s) or "")


def test_a_theme_folder_created_after_start_is_picked_up(project: Path) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text("utf-8") + "templates: theme\n", "utf-8")
    with (
        PreviewServer(project / ISSUE, config_path=config, start_dir=project) as server,
        BuildEvents(server) as builds,
    ):
        assert not server.snapshot.ok  # the folder is missing
        (project / "theme").mkdir()
        builds.until(lambda: server.snapshot.ok)
        # Now watched as a theme folder: an override template changes the email.
        (project / "theme" / "footer.mjml").write_text(
            '<mj-section><mj-column><mj-text css-class="nl-footer">Custom footer here'
            "</mj-text></mj-column></mj-section>\n",
            "utf-8",
        )
        builds.until(
            lambda: (
                server.snapshot.compiled is not None
                and "Custom footer here" in server.snapshot.compiled.web_html
            )
        )
