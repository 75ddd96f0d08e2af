"""A mail to a private list of an issue that is not published has no "View in browser" link
(its /issues/<slug>/ page answers 404); every http link a delivered mail carries to our site
answers through a running serve, for list sends, test copies and published issues alike."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from newsletter.config import load_config
from newsletter.web.public import create_app
from tests.support.cli_support import run
from tests.support.serve_support import free_port, running

ISSUE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
SLUG = "2026-11-25-microsoft-openai-partnership"


def our_links(message: email.message.EmailMessage, port: int) -> set[str]:
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    links = set(re.findall(r'href="(http[^"]+)"', html))
    links |= set(re.findall(r"https?://\S+", text))
    links |= set(re.findall(r"<(http[^>]+)>", str(message["List-Unsubscribe"] or "")))
    return {link.replace("&amp;", "&") for link in links if f"127.0.0.1:{port}" in link}


@pytest.mark.parametrize(
    ("how", "published", "web_link"),
    [
        (("send", ISSUE, "--list", "secret", "--yes"), False, False),
        (("send", ISSUE, "--list", "secret", "--test", "me@example.net"), False, False),
        (("send", ISSUE, "--list", "secret", "--yes"), True, True),
        (("send", ISSUE, "--list", "weekly", "--yes"), False, True),
    ],
    ids=["private", "private-test", "private-published", "public"],
)
def test_every_link_of_a_delivered_mail_answers(
    project: Path, runner: CliRunner, how: tuple[str, ...], published: bool, web_link: bool
) -> None:
    port = free_port()
    config_path = project / "newsletter.yaml"
    config_path.write_text(
        config_path.read_text().replace(
            "base_url: https://news.example.org", f"base_url: http://127.0.0.1:{port}"
        )
        + "transport: outbox:./outbox\n"
        "lists:\n  weekly: {public: true}\n  secret: {public: false}\n  default: {public: false}\n"
    )
    for address, name in (("ada@example.net", "secret"), ("bo@example.net", "weekly")):
        code, out = run(runner, project, "subscribers", "add", address, "--list", name)
        assert code == 0, out
    if published:
        code, out = run(runner, project, "publish", ISSUE)
        assert code == 0, out
    code, out = run(runner, project, *how)
    assert code == 0, out
    [path] = sorted((project / "outbox").glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    links = our_links(message, port)  # type: ignore[arg-type]
    assert bool([link for link in links if f"/issues/{SLUG}/" in link]) == web_link, links
    assert links, "no link to our site at all"
    with running(create_app(load_config(config_path), signup_min_seconds=0), port=port):
        for link in sorted(links):
            assert httpx.get(link).status_code != 404, link


def test_a_test_copy_for_a_public_list_links_the_page_the_send_will_publish(
    project: Path, runner: CliRunner
) -> None:
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as f:
        f.write("transport: outbox:./outbox\nlists:\n  weekly: {public: true}\n")
    code, out = run(runner, project, "send", ISSUE, "--list", "weekly", "--test", "me@x.net")
    assert code == 0, out
    [path] = sorted((project / "outbox").glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    assert f"https://news.example.org/issues/{SLUG}/" in html
