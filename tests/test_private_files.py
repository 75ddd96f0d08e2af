"""Files holding secrets or subscriber data are created 0600 (folders 0700) whatever the umask,
after the real commands that make them; `doctor` reports wider modes with the chmod to run."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def umask(request) -> Iterator[int]:
    """The most permissive umask (and the usual one): our modes must not depend on it."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture
def cli(project: Path, runner: CliRunner):
    config = project / "newsletter.yaml"
    config.write_text(
        config.read_text() + "database: data/private/newsletter.db\ntransport: outbox:mail/out\n"
    )

    def invoke(*args: str):
        result = runner.invoke(main, ["--config", str(config), *args])
        assert "Traceback" not in result.output
        return result

    return invoke


def test_the_database_its_folders_and_wal_files_are_private(project, cli, umask) -> None:
    assert cli("subscribers", "add", "ada@example.net", "--name", "Ada").exit_code == 0
    database = project / "data" / "private" / "newsletter.db"
    assert mode(database) == 0o600
    assert mode(project / "data") == 0o700 and mode(project / "data" / "private") == 0o700
    # While a connection has it open in WAL mode, SQLite's -wal and -shm files exist: the
    # database file's mode is theirs.
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("UPDATE subscribers SET name = 'Ada L.'")
        conn.commit()
        for suffix in ("-wal", "-shm"):
            assert mode(database.with_name(database.name + suffix)) == 0o600
    finally:
        conn.close()


def test_outbox_messages_and_their_folder_are_private(project, cli, umask) -> None:
    assert cli("subscribers", "add", "ada@example.net").exit_code == 0
    assert cli("subscribers", "add", "grace@example.net").exit_code == 0
    issue = next((project / "issues").glob("*.yaml"))
    assert cli("send", str(issue), "--yes").exit_code == 0
    files = list((project / "mail" / "out").glob("*.eml"))
    assert len(files) == 2
    assert {mode(f) for f in files} == {0o600}
    assert mode(project / "mail" / "out") == 0o700 and mode(project / "mail") == 0o700


def test_a_dkim_key_is_private(project, cli, umask) -> None:
    assert cli("dkim", "keygen", "--selector", "s1").exit_code == 0
    key = project / "dkim" / "s1.example.org.pem"
    assert mode(key) == 0o600 and mode(key.parent) == 0o700


def test_existing_folders_keep_their_mode(project, cli, umask) -> None:
    shared = project / "data"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    assert cli("subscribers", "add", "ada@example.net").exit_code == 0
    assert mode(shared) == 0o755  # not ours to change; the folder we made inside it is 0700
    assert mode(shared / "private") == 0o700


def test_doctor_reports_wider_modes_with_the_chmod_that_fixes_them(project, cli) -> None:
    assert cli("subscribers", "add", "ada@example.net").exit_code == 0
    issue = next((project / "issues").glob("*.yaml"))
    assert cli("send", str(issue), "--yes").exit_code == 0
    assert cli("dkim", "keygen", "--selector", "s1").exit_code == 0
    before = cli("doctor").output
    assert "mode 0" not in before and "chmod" not in before
    database = project / "data" / "private" / "newsletter.db"
    key = project / "dkim" / "s1.example.org.pem"
    outbox = project / "mail" / "out"
    os.chmod(database, 0o644)
    os.chmod(key, 0o640)
    os.chmod(outbox, 0o755)
    for eml in outbox.glob("*.eml"):
        os.chmod(eml, 0o644)
    output = cli("doctor").output
    expected = {
        "database": (database, "0644", "600"),
        "dkim.private_key": (key, "0640", "600"),
    }
    for key_name, (path, was, want) in expected.items():
        assert f"{path}: warning: {key_name}: mode {was}:" in output, output
        assert f"`chmod {want} {path}`" in output
    assert (
        f"{outbox}: warning: transport: mode 0755" in output and f"`chmod 700 {outbox}`" in output
    )
    assert "1 message file readable by other users" in output
    assert f"`chmod 600 {outbox}/*.eml`" in output
    # Running what doctor says leaves nothing to report.
    for command in re.findall(r"`(chmod [^`]+)`", output):
        subprocess.run(command, shell=True, check=True, cwd=project)
    assert "chmod" not in cli("doctor").output


def test_a_config_file_holding_the_secret_must_be_private_too(project, cli) -> None:
    config = project / "newsletter.yaml"
    config.write_text(config.read_text() + "secret_key: a-long-enough-secret-0123456789\n")
    os.chmod(config, 0o644)
    output = cli("doctor").output
    assert f"{config}: warning: secret_key: mode 0644:" in output
    assert f"`chmod 600 {config}`" in output
    os.chmod(config, 0o600)
    assert "mode 0644" not in cli("doctor").output
