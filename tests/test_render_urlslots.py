"""Subscriber values inside link and image URLs: `check` refuses them as a scheme or host, and
what the recipient receives (the parsed message) never carries a hostile URL.

The table: hostile field values x positions (the whole URL, a path segment, a query value).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from click.testing import CliRunner

from newsletter.campaign.campaign import Campaign
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import Recipient
from newsletter.render.compile import compile_issue
from newsletter.subscribers import SubscriberStore

ISSUE = """\
title: Links issue
date: 2026-11-25
subject: Links for you
preheader: A short preview.
intro: |
  Hello {{ subscriber.name | default("there") }}.

  {LINKS}
stories:
  - headline: A story
    summary: |
      What happened.
    why_it_matters: |
      Why it matters.
    sources:
      - title: A source
        url: https://example.com/a
outro: |
  {OUTRO}
"""
V = "{{ subscriber.fields.v }}"
PART_LINKS = (
    f"[in the path](https://example.com/u/{V}/more) and "
    f"[in the query](https://example.com/s?q={V}&x=1)"
)
WHOLE_LINKS = f"[the whole link]({V}) and ![the picture]({V})"

HOSTILE = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "  javascript:alert(1)",
    " \t\n javascript:alert(1)",
    "java\tscript:alert(1)",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "evil.example",
    '"><script>alert(1)</script>',
    "a?b=c#frag&d=e f",
    "100% / 50%",
    "é ü 山",
    "",
]
ALLOWED = ["https://ok.example/p?a=1&b=2", "http://ok.example/", "mailto:me@example.org"]


class Elements(HTMLParser):
    """Every <a> (href, text) and <img> src of an HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self._open: list[str] | None = None
        self._href = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a":
            self._open, self._href = [], found.get("href") or ""
        elif tag == "img":
            self.images.append(found.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append((self._href, "".join(self._open).strip()))
            self._open = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open is not None:
            self._open.append(data)


def write_project(root: Path, links: str, outro: str = "Bye.") -> Path:
    (root / "issues").mkdir(parents=True, exist_ok=True)
    (root / "newsletter.yaml").write_text(
        "name: Test Letter\nfrom: Test Letter <news@example.org>\n"
        "base_url: https://news.example.org\npostal_address: 1 Test Street, Testville\n"
        "transport: outbox:outbox\n",
        encoding="utf-8",
    )
    issue = root / "issues" / "2026-11-25-links.yaml"
    issue.write_text(ISSUE.replace("{LINKS}", links).replace("{OUTRO}", outro), encoding="utf-8")
    return issue


def delivered(root: Path, issue: Path, value: str) -> tuple[Elements, str]:
    """(the HTML part's elements, the text part) one recipient receives, parsed from the bytes."""
    config = load_config(root / "newsletter.yaml")
    template = MessageTemplate(compile_issue(load_issue(issue), config), config, campaign_key="k")
    data = template.bytes_for(
        Recipient("r@example.com", "R", {"v": value}),
        unsubscribe_url="https://news.example.org/u/x",
        message_id="m@example.org",
    )
    message = email.message_from_bytes(data, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return Elements(html), text


def references(text: str) -> list[str]:
    return re.findall(r"^\[\d+\] (\S*)$", text.replace("\r\n", "\n"), re.M)


@pytest.mark.parametrize("value", HOSTILE + ALLOWED)
def test_a_value_in_a_path_or_query_is_one_encoded_component(tmp_path: Path, value: str) -> None:
    issue = write_project(tmp_path, PART_LINKS)
    page, text = delivered(tmp_path, issue, value)
    links = dict((label, href) for href, label in page.links)
    path_url, query_url = urlsplit(links["in the path"]), urlsplit(links["in the query"])
    for url in (path_url, query_url):
        assert (url.scheme, url.netloc) == ("https", "example.com")
    segments = path_url.path.split("/")
    assert len(segments) == 4 and segments[:2] == ["", "u"] and segments[3] == "more"
    assert unquote(segments[2]) == value
    assert parse_qs(query_url.query, keep_blank_values=True) == {"q": [value], "x": ["1"]}
    assert not query_url.fragment and not path_url.fragment and not path_url.query
    assert references(text) == [links["in the path"], links["in the query"]]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_whole_url_that_is_not_http_or_mailto_is_dropped(tmp_path: Path, value: str) -> None:
    issue = write_project(tmp_path, WHOLE_LINKS)
    page, text = delivered(tmp_path, issue, value)
    assert "the whole link" not in [label for _, label in page.links]
    assert "the whole link" in "".join(page.text)  # the link text stays, as plain text
    assert page.images == []  # the picture went with its URL
    for href, _ in page.links:  # only the issue's own links are left
        assert href == "https://example.com/a" or href.startswith("https://news.example.org/")
    assert references(text) == [""]  # the reference keeps its number, without the URL
    assert "the whole link [1] and [the picture] [1]" in text


@pytest.mark.parametrize("value", ALLOWED)
def test_a_whole_url_that_is_http_or_mailto_stays_a_link(tmp_path: Path, value: str) -> None:
    issue = write_project(tmp_path, WHOLE_LINKS)
    page, text = delivered(tmp_path, issue, value)
    assert value in [href for href, label in page.links if label == "the whole link"]
    assert page.images == [value]
    assert value in references(text)


def test_the_send_summary_says_how_many_recipients_had_a_link_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` refuses such an issue, so `send` never meets one; a caller of the Python API
    that skips the check still sends no hostile link, and is told."""
    monkeypatch.chdir(tmp_path)
    clean = write_project(tmp_path, PART_LINKS)
    hostile = clean.with_name("2026-11-25-hostile.yaml")
    hostile.write_text(
        ISSUE.replace("{LINKS}", WHOLE_LINKS).replace("{OUTRO}", "Bye."), encoding="utf-8"
    )
    config = load_config(tmp_path / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("ok@example.com", fields={"v": "https://ok.example/"})
        store.add("bad@example.com", fields={"v": "javascript:alert(1)"})
        store.add("worse@example.com", fields={"v": "data:text/html,x"})
    campaign = Campaign.prepare(config, clean, transport="outbox:outbox")
    issue = load_issue(hostile)  # the campaign sends what it holds compiled: swap both
    campaign = dataclasses.replace(campaign, issue=issue, compiled=compile_issue(issue, config))
    report = campaign.run()
    assert report.tally.sent == 3
    assert "2 recipients had a link dropped: 'javascript:alert(1)', 'data:text/html,x'" in (
        report.summary()
    )
    for eml in (tmp_path / "outbox").glob("*.eml"):
        raw = eml.read_bytes().decode()
        assert "javascript:" not in raw and "data:text" not in raw


@pytest.mark.parametrize(
    ("link", "where"),
    [
        (f"[x]({V})", "link"),
        (f"![x]({V})", "image"),
        (f"[x](https://{V}/p)", "link"),
        (f"[x](https://{V}.example.com/)", "link"),
        (f"[x](https://user@{V}/)", "link"),
        (f"[x](https:{V})", "link"),
        (f"[x]({V}://example.com/)", "link"),
        (f"[x](//{V}/p)", "link"),
        (f"<https://{V}/>", "link"),
    ],
)
@pytest.mark.parametrize("field", ["intro", "outro", "preheader", "subject"])
def test_check_refuses_a_placeholder_as_scheme_or_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str, where: str, field: str
) -> None:
    monkeypatch.chdir(tmp_path)
    sentence = f"See {link} now."
    issue = write_project(
        tmp_path,
        sentence if field == "intro" else "Nothing here.",
        sentence if field == "outro" else "Bye.",
    )
    text = issue.read_text(encoding="utf-8")
    if field in ("subject", "preheader"):
        text = re.sub(rf"^{field}: .*$", f"{field}: '{sentence}'", text, flags=re.M)
        issue.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(issue.relative_to(tmp_path))])
    assert result.exit_code == 1, result.output
    line_no = next(i for i, line in enumerate(text.splitlines(), 1) if link in line)
    col = text.splitlines()[line_no - 1].index(V) + 1
    expected = f"issues/2026-11-25-links.yaml:{line_no}:{col}: error: {field}: {V} is "
    assert expected in result.output, result.output
    kind = "an image's" if where == "image" else "a link's"
    assert f"{V} is {kind} scheme or host" in result.output


@pytest.mark.parametrize(
    "link",
    [
        f"[x](https://example.com/{V})",
        f"[x](https://example.com/p?q={V})",
        f"[x](https://example.com/#{V})",
        f"[x](mailto:{V})",
        f"[{V}](https://example.com/)",
    ],
)
def test_check_allows_a_placeholder_after_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, f"See {link} now.")
    result = CliRunner().invoke(main, ["check", "issues/2026-11-25-links.yaml"])
    assert "scheme or host" not in result.output
    assert result.exit_code == 0, result.output


def test_a_link_whose_title_is_also_personal_still_never_carries_a_hostile_url(
    tmp_path: Path,
) -> None:
    """A second slot in the same tag: the element cannot be cut out whole, so its URL is left
    empty instead (`href=""`), never the subscriber's value."""
    issue = write_project(tmp_path, f'[titled]({V} "{{{{ subscriber.name }}}}")')
    page, text = delivered(tmp_path, issue, "javascript:alert(1)")
    assert ("", "titled") in page.links
    assert "javascript" not in text
    page, _ = delivered(tmp_path, issue, "https://ok.example/")
    assert ("https://ok.example/", "titled") in page.links
