"""A non-ASCII `base_url` (issue 15, QA): `https://news.bücher.de` or a path with é, `>` or `"`
passed check and doctor, then every reader failed ("unsubscribe URL must be ASCII"). The URL is
made ASCII when the configuration is loaded (the host as IDNA A-labels, the path
percent-encoded), or refused at its line; through check, build and send (SMTP, aiosmtpd).
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from api_messages import make_project
from cli_support import run
from click.testing import CliRunner
from smtp_servers import SmtpServer

CASES = [
    ("https://news.bücher.de", "https://news.xn--bcher-kva.de"),
    ("https://News.Bücher.de:8443/", "https://news.xn--bcher-kva.de:8443"),
    ("https://news.example.org/café", "https://news.example.org/caf%C3%A9"),
    ("https://news.example.org/a>b", "https://news.example.org/a%3Eb"),
    ('https://news.example.org/"x"', "https://news.example.org/%22x%22"),
    ("https://news.example.org/%C3%A9t%C3%A9", "https://news.example.org/%C3%A9t%C3%A9"),
]


def project_at(tmp_path: Path, base_url: str) -> Path:
    root = make_project(tmp_path)
    path = root / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    quoted = base_url.replace("\\", "\\\\").replace('"', '\\"')
    text = re.sub(r"(?m)^base_url: .*$", f'base_url: "{quoted}"', text)
    path.write_text(text, encoding="utf-8")
    return root


def issue_of(root: Path) -> str:
    return str(next((root / "issues").glob("*.yaml")))


@pytest.mark.parametrize(("written", "ascii_url"), CASES)
def test_a_non_ascii_base_url_is_sent_as_ascii(
    written: str, ascii_url: str, tmp_path: Path
) -> None:
    root = project_at(tmp_path, written)
    runner = CliRunner()
    code, output = run(runner, root, "check", issue_of(root))
    assert code == 0, output
    code, output = run(runner, root, "build", issue_of(root))
    assert code == 0, output
    (root / "subs.csv").write_text("email\nreader@example.net\n", encoding="utf-8")
    code, output = run(runner, root, "subscribers", "import", "subs.csv")
    assert code == 0, output
    with SmtpServer() as server:
        code, output = run(
            runner, root, "send", issue_of(root), "--transport", server.url(), "--yes"
        )
        assert code == 0, output
        [copy] = server.wait_for(1)
    msg = email.message_from_bytes(copy.data, policy=email.policy.default)
    unsubscribe = str(msg["List-Unsubscribe"])
    assert f"<{ascii_url}/unsubscribe/" in unsubscribe, unsubscribe
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"{ascii_url}/unsubscribe/" in html


@pytest.mark.parametrize("written", ["https://☃-⌘.example", "https://news.a\u0300b\u05d0.de"])
def test_a_host_idna_refuses_is_an_error_at_its_line(written: str, tmp_path: Path) -> None:
    root = project_at(tmp_path, written)
    line = next(
        n
        for n, text in enumerate((root / "newsletter.yaml").read_text().splitlines(), 1)
        if text.startswith("base_url:")
    )
    for command in ("check", "build"):
        code, output = run(CliRunner(), root, command, issue_of(root))
        assert code != 0
        assert f"newsletter.yaml:{line}" in output and "IDNA 2008" in output, output
        assert "Traceback" not in output
