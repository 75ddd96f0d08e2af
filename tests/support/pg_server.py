"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, `initdb` and `pg_ctl`
into a temporary folder, listening on loopback and a unix socket in that folder only.

initdb refuses to run as root: as root the server runs as the `postgres` user the Debian
package creates (or `nobody`), through `runuser`. Durability is off (fsync, full-page writes):
these databases live for one test run.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "newsletter"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: apt-get install postgresql (make test does it as root)"
        )
    return Path(found[-1]).parent


def _version(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name.split(".")[0])
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """`start()` a private cluster; `create_database()` gives a fresh database's URL."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._user: str | None = None

    def _run(self, *args: str) -> None:
        command = [str(a) for a in args]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self, *, durable: bool = False) -> PostgresServer:
        """`durable`: fsync on (commits still acknowledged before they are flushed, as SQLite's
        WAL with synchronous=NORMAL does), for benchmarks; the tests run with no durability."""
        bins = bin_dir()
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            self._user = "postgres" if _has_user("postgres") else "nobody"
            os.chmod(self.root, 0o755)
            shutil.chown(self.socket_dir, self._user)
            self.data.mkdir()
            shutil.chown(self.data, self._user)
        self._run(
            bins / "initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.socket_dir} -c synchronous_commit=off"
            " -c max_connections=300 -c shared_buffers=64MB"
        )
        if not durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            bins / "pg_ctl", "-D", self.data, "-o", options, "-l", self.socket_dir / "server.log",
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL (no password: the test cluster trusts loopback)."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(bin_dir() / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
