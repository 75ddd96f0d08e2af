"""`newsletter subscribers ...` and `newsletter serve` from the command line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from db_support import use_database

from newsletter.cli import main
from newsletter.subscribers import SubscriberStore


@pytest.fixture
def cli(project: Path, runner, monkeypatch):
    monkeypatch.chdir(project)

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args))
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "Error" in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_add_list_show_count_unsubscribe_remove(cli, project, database):
    use_database(project, database)
    out = cli("subscribers", "add", "Ada@Example.com", "--name", "Ada", "--field", "city=London")
    assert "added Ada@example.com" in out.output
    cli("subscribers", "add", "bob@example.com", "--list", "vip")
    again = cli("subscribers", "add", "ada@example.com", "--list", "vip")
    assert "updated" in again.output and "default, vip" in again.output
    table = cli("subscribers", "list").output.splitlines()
    assert table[0].split() == ["EMAIL", "NAME", "STATUS", "LISTS", "CREATED"]
    assert table[1].startswith("Ada@example.com") and "default,vip" in table[1]
    assert table[-1] == "2 subscribers"
    assert cli("subscribers", "list", "--list", "vip", "--limit", "1").output.count("@") == 1
    show = cli("subscribers", "show", "ADA@example.com").output
    assert "field:    city = London" in show and "subscribed  (added by cli)" in show
    assert "2 subscribers" in cli("subscribers", "count").output
    assert "2 subscribers in list vip" in cli("subscribers", "count", "--list", "vip").output
    assert "1 subscriber in list default" in cli("subscribers", "count", "--list", "default").output
    assert "unsubscribed" in cli("subscribers", "unsubscribe", "bob@example.com").output
    assert "already unsubscribed" in cli("subscribers", "unsubscribe", "bob@example.com").output
    assert "erased" in cli("subscribers", "remove", "bob@example.com").output
    assert_clean_error(cli("subscribers", "add", "bob@example.com", ok=False), "erased")
    with SubscriberStore.open(database) as store:
        assert store.count() == 1


def test_import_export_through_the_cli(cli, project, database):
    use_database(project, database)
    (project / "in.csv").write_text(
        "email;name\nada@example.com;Ada\nnope;X\n", encoding="utf-8-sig"
    )
    out = cli("subscribers", "import", "in.csv", "--list", "news").output
    assert "1 added, 0 updated, 0 unchanged, 1 rejected" in out
    assert "in.rejects.csv" in out and (project / "in.rejects.csv").is_file()
    exported = cli("subscribers", "export").output
    assert exported.splitlines()[1].startswith("ada@example.com,Ada,active,news,")
    result = cli("subscribers", "export", "-o", "out/all.csv", "--status", "active")
    assert "exported 1 subscribers" in result.output
    again = cli("subscribers", "import", "out/all.csv").output
    assert "0 added, 0 updated, 1 unchanged, 0 rejected" in again


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://news:hunter2-secret@127.0.0.1:1/letters",
        "postgresql://news@127.0.0.1:1/letters?password=hunter2-secret",
        "postgres://news@127.0.0.1:1/letters?sslmode=disable&PassWord=hunter2-secret",
    ],
    ids=["userinfo", "query", "query-mixed-case"],
)
@pytest.mark.parametrize("where", ["--db", "NEWSLETTER_DB", "newsletter.yaml"])
def test_a_password_in_a_database_url_is_refused_and_never_shown(
    cli, project, monkeypatch, where, url
):
    """The password belongs in NEWSLETTER_DB_PASSWORD (or PGPASSWORD, ~/.pgpass): a URL
    carrying one (as user:password@ or ?password=) is refused wherever it is given, before
    any connection, and not echoed."""
    args = ["subscribers", "count"]
    if where == "--db":
        args += ["--db", url]
    elif where == "NEWSLETTER_DB":
        monkeypatch.setenv("NEWSLETTER_DB", url)
    else:
        use_database(project, url)
    result = cli(*args, ok=False)
    assert_clean_error(result, "carries a password", "NEWSLETTER_DB_PASSWORD")
    assert "hunter2" not in result.output


def test_db_option_and_environment(cli, project, monkeypatch):
    cli("subscribers", "add", "a@example.com", "--db", "other.db")
    assert (project / "other.db").is_file() and not (project / "newsletter.db").exists()
    monkeypatch.setenv("NEWSLETTER_DB", str(project / "env.db"))
    cli("subscribers", "add", "b@example.com")
    assert (project / "env.db").is_file()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["subscribers", "import", "missing.csv"], ["missing.csv", "no such file"]),
        (["subscribers", "import", "noemail.csv"], ["no 'email' column"]),
        (["subscribers", "import", "huge.csv"], ["huge.csv:2", "longer than"]),
        (["subscribers", "add", "not-an-email"], ["not a valid email address"]),
        (["subscribers", "add", "a@example.com", "--name", "A\r\nB"], ["line break"]),
        (["subscribers", "add", "a@example.com", "--field", "novalue"], ["key=value"]),
        (["subscribers", "add", "a@example.com", "--field", "e mail=x"], ["field name"]),
        (["subscribers", "add", "a@example.com", "--list", "has space"], ["list name"]),
        (["subscribers", "import", "ok.csv", "--status", "bounced"], ["--status"]),
        (["subscribers", "show", "nobody@example.com"], ["no subscriber"]),
        (["subscribers", "show", "@@"], ["not a valid email address"]),
        (["subscribers", "list", "--db", "garbage.db"], ["garbage.db"]),
        (["subscribers", "count", "--db", "."], []),
        (["subscribers", "export", "-o", "ok.csv/inside.csv"], ["cannot write"]),
    ],
)
def test_bad_input_is_a_clear_error_never_a_traceback(cli, project, args, needles):
    (project / "noemail.csv").write_text("name\nAda\n", encoding="utf-8")
    (project / "huge.csv").write_bytes(b"email\n" + b"a" * (10 * 1024 * 1024) + b"\n")
    (project / "ok.csv").write_text("email\na@example.com\n", encoding="utf-8")
    (project / "garbage.db").write_bytes(b"not a database at all" * 50)
    cli("subscribers", "add", "zed@example.com")  # a database to read (see test_missing_database)
    assert_clean_error(cli(*args, ok=False), *needles)


def test_serve_refuses_a_busy_port_clearly(cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli("serve", "--port", str(port), ok=False)
    assert_clean_error(result, f"127.0.0.1:{port}", "another --port")


def test_serve_runs_uvicorn_as_a_process(project, tmp_path):
    """`newsletter serve` starts a real server that answers, then stops on SIGINT."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(200):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                import time

                time.sleep(0.05)
        else:
            raise AssertionError("the server never answered")
        assert response.status_code == 200 and "Subscribe to Test Letter" in response.text
        assert "server" not in response.headers  # no version banner
    finally:
        process.send_signal(2)
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert f"Serving Test Letter on http://127.0.0.1:{port}" in output
    assert "Traceback" not in output


ISSUE = "issues/2026-11-25-microsoft-openai-partnership.yaml"


@pytest.mark.parametrize(
    "command",
    [
        ("subscribers", "add", "b@example.com"),
        ("subscribers", "unsubscribe", "a@example.com"),
        ("publish", ISSUE),
        ("unpublish", ISSUE),
        ("status", ISSUE),
        ("send", ISSUE, "--yes", "--transport", "outbox:outbox"),
    ],
    ids=" ".join,
)
def test_a_locked_database_is_a_clear_error(cli, project, monkeypatch, command):
    """Every command that writes to the database reports a lock in one line, through the
    CLI's one error mapping (cli/common.py), never a traceback (WAL lets reads go on)."""
    import sqlite3

    from newsletter.db import connect

    cli("subscribers", "add", "a@example.com")
    monkeypatch.setitem(connect.__kwdefaults__, "timeout", 0.2)  # a short busy timeout
    holder = sqlite3.connect(project / "newsletter.db", timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the lock longer than that
    try:
        result = cli(*command, ok=False)
    finally:
        holder.rollback()
        holder.close()
    assert_clean_error(result, "database error", "locked")
