"""Debian's Dovecot as a real IMAPS server on loopback, started by the test with a configuration
it writes: passdb from a file, Maildir under the test's folder, TLS with a certificate made with
`cryptography` (clients trust it through `?cafile=`). Nothing system-wide is read or changed.

Run as an ordinary user, every Dovecot process is that user. Run as root (CI), the master binds
the port and its services run as Debian's `dovecot`/`dovenull` users, the mail as `dovecot`.
If Dovecot is missing or does not start, `running_dovecot` fails with why: never a skip.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.smtp_servers import free_port, self_signed_cert

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces@news.example.org"
PASSWORD = "imap-test-password"


@dataclass
class Dovecot:
    port: int
    cafile: Path
    folder: Path

    def url(self, mailbox: str = "INBOX", user: str = USER) -> str:
        return f"imaps://{user}@127.0.0.1:{self.port}/{mailbox}?cafile={self.cafile}"

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in imaplib client (the test's own view of the mailbox)."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        imap.login(USER, PASSWORD)
        try:
            yield imap
        finally:
            imap.logout()

    def append(self, messages: list[bytes], mailbox: str = "INBOX") -> None:
        with self.client() as imap:
            for raw in messages:
                status, detail = imap.append(mailbox, "", None, raw)
                assert status == "OK", detail

    def create(self, mailbox: str) -> None:
        with self.client() as imap:
            status, detail = imap.create(mailbox)
            assert status == "OK", detail

    def state(self, mailbox: str = "INBOX") -> list[tuple[bytes, frozenset[str]]]:
        """(message bytes, flags) of every message in `mailbox`, in UID order; without
        \\Recent, which only says which session saw a message first."""
        with self.client() as imap:
            status, _ = imap.select(mailbox, readonly=True)
            assert status == "OK"
            _, data = imap.uid("SEARCH", "ALL")
            found = []
            for uid in data[0].split():
                _, parts = imap.uid("FETCH", uid.decode(), "(FLAGS BODY.PEEK[])")
                meta, body = parts[0]
                flags = meta.decode().split("FLAGS (", 1)[1].split(")", 1)[0].split()
                found.append((body, frozenset(flags) - {"\\Recent"}))
            return found


def _accounts() -> tuple[str, str, str, int, int]:
    """(internal user, login user, group, mail uid, mail gid) for this process."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return me.pw_name, me.pw_name, group, me.pw_uid, me.pw_gid
    dovecot = pwd.getpwnam("dovecot")
    return (
        "dovecot",
        "dovenull",
        grp.getgrgid(dovecot.pw_gid).gr_name,
        dovecot.pw_uid,
        (dovecot.pw_gid),
    )


def write_config(folder: Path, port: int) -> Path:
    cert, key = self_signed_cert(folder)
    internal, login, group, uid, gid = _accounts()
    (folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    for sub in ("run", "state", "mail"):
        (folder / sub).mkdir()
    if os.geteuid() == 0:
        os.chown(folder / "mail", uid, gid)
    config = folder / "dovecot.conf"
    config.write_text(
        f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{folder}/mail/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/mail/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""
    )
    return cert


@contextlib.contextmanager
def running_dovecot(folder: Path) -> Iterator[Dovecot]:
    """Start Dovecot in the foreground on a free loopback port; stop it afterwards."""
    assert shutil.which(DOVECOT) or Path(DOVECOT).exists(), (
        f"{DOVECOT} is missing: install Debian's dovecot-imapd (make system-packages)"
    )
    if os.geteuid() == 0:
        # Dovecot's services then run as `dovecot`, which cannot pass pytest's 0700 folders:
        # a world-traversable folder of its own, removed afterwards.
        folder = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        folder.chmod(0o755)
        cleanup = True
    else:
        folder.mkdir(parents=True, exist_ok=True)
        cleanup = False
    port = free_port()
    cafile = write_config(folder, port)
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(folder / "dovecot.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                log = (
                    (folder / "dovecot.log").read_text()
                    if (folder / "dovecot.log").exists()
                    else ""
                )
                raise AssertionError(f"dovecot did not start: {output}\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        "dovecot did not listen within 15 s: "
                        + (folder / "dovecot.log").read_text(errors="replace")
                    ) from None
                time.sleep(0.05)
        yield Dovecot(port, cafile, folder)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if cleanup:
            shutil.rmtree(folder, ignore_errors=True)
