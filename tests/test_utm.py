"""UTM link tagging (`utm:` in newsletter.yaml): every kind of link in every output an issue
becomes (the HTML part, the text part, the web version, the message as sent), read back from what
`newsletter build` and `newsletter send` wrote. Off by default."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cli_support import elements, run

SLUG = "2026-11-25-microsoft-openai-partnership"
TAGS = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": SLUG}

# (kind, the link as written in the issue, what it must become: "tagged" or "kept")
LINKS = [
    ("intro link with query and fragment", "https://example.org/p?x=1&y=2#top", "tagged"),
    ("bare URL in a summary", "https://bare.example.org/a", "tagged"),
    ("key point link", "https://points.example.org/k", "tagged"),
    ("source URL", "https://source.example.com/story?id=7", "tagged"),
    ("outro link", "https://outro.example.org/", "tagged"),
    ("already tagged", "https://example.net/?utm_source=partner", "kept"),
    ("mailto", "mailto:editors@example.org", "kept"),
]


def write_issue(project: Path) -> None:
    path = project / "issues" / f"{SLUG}.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "here is today's brief.",
        "here is today's brief: [ours](https://example.org/p?x=1&y=2#top),"
        " [theirs](https://example.net/?utm_source=partner),"
        " [write to us](mailto:editors@example.org).",
    )
    text = text.replace(
        "      That makes any change here worth close attention.",
        "      That makes any change (https://bare.example.org/a) worth close attention.",
    )
    text = text.replace(
        "      - Microsoft and OpenAI say the partnership",
        "      - '[Read more](https://points.example.org/k): Microsoft and OpenAI say the"
        " partnership",
    )
    text = text.replace("moving into a new phase rather than ending.", "ending.'", 1)
    text = text.replace(
        "        publisher: OpenAI Blog",
        "        publisher: OpenAI Blog\n        url: https://source.example.com/story?id=7",
    )
    text = (
        re.sub(r"(?m)^outro: .*$", "outro: See [the outro](https://outro.example.org/).", text)
        if re.search(r"(?m)^outro:", text)
        else text + "outro: See [the outro](https://outro.example.org/).\n"
    )
    path.write_text(text, encoding="utf-8")


def urls_in(surface: str, text: str) -> list[str]:
    if surface == "text":
        return re.findall(r"(?:https?|mailto):[^\s\])]+", text)
    return [str(a["href"]) for a in elements(text, "a") if a.get("href")]


def outputs(project: Path, runner) -> dict[str, str]:
    code, out = run(runner, project, "build", f"issues/{SLUG}.yaml")
    assert code == 0, out
    folder = project / "build" / SLUG
    message = email.message_from_bytes(
        (folder / "message.eml").read_bytes(), policy=email.policy.default
    )
    return {
        "html": (folder / "email.html").read_text(encoding="utf-8"),
        "text": (folder / "email.txt").read_text(encoding="utf-8"),
        "web": (folder / "web.html").read_text(encoding="utf-8"),
        "message html": message.get_body(("html",)).get_content(),  # type: ignore[union-attr]
        "message text": message.get_body(("plain",)).get_content(),  # type: ignore[union-attr]
    }


def surface_kind(name: str) -> str:
    return "text" if name.endswith("text") else "html"


@pytest.fixture
def tagged(project: Path, runner) -> dict[str, str]:
    config = project / "newsletter.yaml"
    config.write_text(
        config.read_text() + "utm: {source: newsletter, medium: email}\n", encoding="utf-8"
    )
    write_issue(project)
    return outputs(project, runner)


SURFACES = ["html", "text", "web", "message html", "message text"]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("kind", "written", "becomes"), LINKS)
def test_links_are_tagged_once_and_kept_as_written(tagged, surface, kind, written, becomes):
    found = urls_in(surface_kind(surface), tagged[surface])
    if becomes == "kept":
        assert written in found, (kind, found)
        return
    parts = urlsplit(written)
    mine = [u for u in found if urlsplit(u).netloc == parts.netloc]
    assert mine, (kind, found)
    for url in mine:
        got = urlsplit(url)
        query = parse_qsl(got.query)
        assert query[: len(parse_qsl(parts.query))] == parse_qsl(parts.query)  # kept, in order
        assert dict(query[len(parse_qsl(parts.query)) :]) == TAGS
        assert (got.scheme, got.path, got.fragment) == (parts.scheme, parts.path, parts.fragment)


@pytest.mark.parametrize("surface", SURFACES)
def test_our_own_links_are_never_tagged(tagged, surface):
    ours = [u for u in urls_in(surface_kind(surface), tagged[surface]) if "/issues/" in u]
    ours += [u for u in urls_in(surface_kind(surface), tagged[surface]) if "/unsubscribe/" in u]
    assert all("utm_" not in u for u in ours)
    if surface != "web":  # the web version has no unsubscribe link and no "view in browser"
        assert any("/unsubscribe/" in u for u in ours) and any("/issues/" in u for u in ours)


def test_off_by_default(project, runner):
    write_issue(project)
    for surface, text in outputs(project, runner).items():
        assert "utm_campaign" not in text, surface


@pytest.mark.parametrize(
    ("block", "message", "line"),
    [
        ("utm: newsletter\n", "'utm' must be a mapping", 1),
        ("utm: {source: newsletter}\n", "'utm' needs 'medium'", 1),
        ("utm:\n  source: a\n  medium: b\n  campaing: c\n", "unknown key 'utm.campaing'", 4),
        ("utm: {source: '', medium: email}\n", "'utm.source' must be one line of text", 1),
    ],
)
def test_a_bad_utm_block_is_a_clear_error(project, runner, block, message, line):
    """The file and line of the mistake, exit 1, nothing built."""
    config = project / "newsletter.yaml"
    lines = config.read_text().count("\n")
    config.write_text(config.read_text() + block, encoding="utf-8")
    code, out = run(runner, project, "build", f"issues/{SLUG}.yaml")
    assert code == 1 and message in out
    assert f"newsletter.yaml:{lines + line}: " in out
    assert not (project / "build").exists()
