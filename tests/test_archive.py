"""`newsletter archive` and the archive pages of `newsletter serve`: the static site of every
published issue, its Atom and JSON feeds read back with an independent parser (feedparser), and
never a trace of an unpublished issue. Everything through the CLI and real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import feedparser
import httpx
import pytest
from cli_support import elements, run
from click.testing import CliRunner
from db_support import use_database
from serve_support import running

from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app

EXAMPLE_SLUG = "2026-11-25-microsoft-openai-partnership"
BASE = "https://news.example.org"


def write_issue(
    project: Path,
    date: str,
    title: str,
    headline: str,
    *,
    preheader: str | None = None,
    image: str | None = None,
) -> str:
    """A copy of the example issue with its own date, title, headline (and preheader, image);
    returns its slug."""
    text = (project / "issues" / f"{EXAMPLE_SLUG}.yaml").read_text(encoding="utf-8")
    text = text.replace("title: AI Brief — November 25, 2026", f"title: {title}", 1)
    text = text.replace("date: 2026-11-25", f"date: {date}", 1)
    text = re.sub(r"(?m)^  - headline: .*$", f"  - headline: {headline}", text, count=1)
    if preheader is not None:
        text = re.sub(r"(?m)^preheader: .*$", f"preheader: {preheader}", text, count=1)
    else:
        text = re.sub(r"(?m)^preheader: .*\n", "", text, count=1)
    if image is not None:
        line = rf"\1\n    image: {{url: {image}, alt: A harbour}}"
        text = re.sub(r"(?m)^(    dek: .*)$", line, text, count=1)
    slug = f"{date}-{title.lower().replace(' ', '-')}"
    (project / "issues" / f"{slug}.yaml").write_text(text, encoding="utf-8")
    return slug


@pytest.fixture
def site(project: Path, runner: CliRunner, database: str) -> dict[str, str]:
    """Four issues: two published, one never published (a draft), one published then
    unpublished, in the `database` of each engine. Returns their slugs by role."""
    use_database(project, database)
    slugs = {
        "older": EXAMPLE_SLUG,
        "newer": write_issue(
            project,
            "2026-12-02",
            "Second brief",
            "Chips cross the border",
            preheader="Export rules, explained.",
            image="https://images.example.org/harbour.jpg",
        ),
        "draft": write_issue(project, "2026-12-09", "Secret draft", "DRAFTHEADLINE"),
        "withdrawn": write_issue(project, "2026-11-18", "Withdrawn brief", "WITHDRAWNHEADLINE"),
    }
    for role in ("older", "newer", "withdrawn"):
        code, out = run(runner, project, "publish", f"issues/{slugs[role]}.yaml")
        assert code == 0, out
    code, out = run(runner, project, "unpublish", slugs["withdrawn"])
    assert code == 0, out
    return slugs


def build(runner: CliRunner, project: Path, *args: str) -> str:
    code, out = run(runner, project, "archive", *args)
    assert code == 0, out
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".newsletter-archive"
    }


def test_the_site_holds_every_published_issue_newest_first(project, runner, site):
    out = build(runner, project, "-o", "site")
    assert "Archive of 2 published issue(s)" in out
    files = tree(project / "site")
    assert set(files) == {
        "index.html",
        "issues/index.html",
        f"issues/{site['newer']}/index.html",
        f"issues/{site['older']}/index.html",
        "feed.xml",
        "feed.json",
        "sitemap.xml",
        "robots.txt",
    }
    index = files["index.html"].decode()
    links = [a["href"] for a in elements(index, "a") if "/issues/" in f"/{a['href']}"]
    assert links == [f"issues/{site['newer']}/index.html", f"issues/{site['older']}/index.html"]
    assert index.index("Chips cross the border") < index.index("Microsoft and OpenAI reset")
    assert 'datetime="2026-12-02"' in index and "Wednesday, December 2, 2026" in index
    [canonical] = [x for x in elements(index, "link") if x.get("rel") == "canonical"]
    assert canonical["href"] == f"{BASE}/"
    nested = files["issues/index.html"].decode()
    assert (
        f'href="../issues/{site["newer"]}/index.html"' in nested and 'href="../feed.xml"' in nested
    )
    robots = files["robots.txt"].decode()
    assert f"Sitemap: {BASE}/sitemap.xml" in robots
    sitemap = files["sitemap.xml"].decode()
    assert f"<loc>{BASE}/issues/{site['newer']}/</loc>" in sitemap


def test_the_atom_feed_read_by_feedparser(project, runner, site):
    build(runner, project, "-o", "site")
    feed = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title == "Test Letter"
    assert {link.rel: link.href for link in feed.feed.links} == {
        "alternate": f"{BASE}/",
        "self": f"{BASE}/feed.xml",
    }
    newer, older = feed.entries
    assert newer.title == "Second brief" and older.title == "AI Brief — November 25, 2026"
    assert newer.link == f"{BASE}/issues/{site['newer']}/"
    assert newer.id == f"tag:news.example.org,2026-12-02:issues/{site['newer']}"
    assert newer.published_parsed[:3] == (2026, 12, 2)
    assert time.mktime(newer.updated_parsed) >= time.mktime(newer.published_parsed)
    # The summary is the preheader, else the first story's dek.
    assert newer.summary == "Export rules, explained."
    assert older.summary.startswith("One of the most important relationships")
    assert "Chips cross the border" in newer.content[0].value
    assert feed.feed.updated_parsed == max(e.updated_parsed for e in feed.entries)


def test_the_json_feed_matches_the_atom_feed(project, runner, site):
    build(runner, project, "-o", "site")
    data = json.loads((project / "site" / "feed.json").read_text(encoding="utf-8"))
    atom = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert data["feed_url"] == f"{BASE}/feed.json" and data["home_page_url"] == f"{BASE}/"
    assert [i["id"] for i in data["items"]] == [e.id for e in atom.entries]
    assert [i["url"] for i in data["items"]] == [e.link for e in atom.entries]
    assert [i["summary"] for i in data["items"]] == [e.summary for e in atom.entries]
    first = data["items"][0]
    assert first["date_published"] == "2026-12-02T00:00:00Z"
    assert first["image"] == "https://images.example.org/harbour.jpg"
    assert "image" not in data["items"][1]


def test_same_inputs_same_bytes_and_only_changes_are_rewritten(project, runner, site, monkeypatch):
    build(runner, project, "-o", "one")
    build(runner, project, "-o", "two")
    assert tree(project / "one") == tree(project / "two")
    mtimes = {p: p.stat().st_mtime_ns for p in (project / "one").rglob("*") if p.is_file()}
    time.sleep(0.05)
    # Publishing an unchanged file again changes nothing: not even `updated`.
    run(runner, project, "publish", site["newer"])
    assert "0 file(s) written, 8 unchanged, 0 removed" in build(runner, project, "-o", "one")
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # An edit to the older issue, once published, rewrites its page and the lists only.
    path = project / "issues" / f"{site['older']}.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("ripple", "RIPPLE"), "utf-8")
    # An hour later (the feeds' `updated` has whole seconds; the edit must not share one).
    monkeypatch.setenv(
        "NEWSLETTER_NOW", (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    )
    run(runner, project, "publish", site["older"])
    monkeypatch.delenv("NEWSLETTER_NOW")
    out = build(runner, project, "-o", "one")
    assert "4 file(s) written" in out, out
    changed = {
        str(p.relative_to(project / "one")) for p in mtimes if p.stat().st_mtime_ns != mtimes[p]
    }
    assert changed == {f"issues/{site['older']}/index.html", "feed.xml", "feed.json", "sitemap.xml"}


def test_entry_ids_survive_a_new_base_url(project, runner, site):
    build(runner, project, "-o", "site")
    before = [e.id for e in feedparser.parse((project / "site" / "feed.xml").read_bytes()).entries]
    config = project / "newsletter.yaml"
    config.write_text(config.read_text().replace(BASE, "https://letters.example.net"), "utf-8")
    run(runner, project, "publish", site["newer"])
    build(runner, project, "-o", "site")
    feed = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    assert [e.id for e in feed.entries] == before
    assert feed.entries[0].link.startswith("https://letters.example.net/issues/")


def test_unpublishing_removes_the_issue_and_clean_starts_over(project, runner, site):
    build(runner, project, "-o", "site")
    (project / "site" / "CNAME").write_text("news.example.org\n")  # the user's own file
    run(runner, project, "unpublish", site["newer"])
    out = build(runner, project, "-o", "site")
    assert "1 removed" in out
    assert not (project / "site" / "issues" / site["newer"]).exists()
    assert b"Second brief" not in b"".join(tree(project / "site").values())
    out = build(runner, project, "-o", "site", "--clean")
    assert "0 unchanged" in out and (project / "site" / "CNAME").is_file()


def test_a_folder_not_made_by_the_archive_is_refused(project, runner, site):
    (project / "notes").mkdir()
    (project / "notes" / "todo.txt").write_text("mine\n")
    code, out = run(runner, project, "archive", "-o", "notes")
    assert code == 1 and "not made by `newsletter archive`" in out
    assert [p.name for p in (project / "notes").iterdir()] == ["todo.txt"]


def test_the_web_version_brings_readers(project, runner, site):
    build(runner, project, "-o", "site")
    page = (project / "site" / "issues" / site["newer"] / "index.html").read_text()
    meta = {m.get("property") or m.get("name"): m.get("content") for m in elements(page, "meta")}
    assert meta["og:title"] == meta["twitter:title"] == "Second brief"
    assert meta["og:description"] == meta["description"] == "Export rules, explained."
    assert meta["og:image"] == meta["twitter:image"] == "https://images.example.org/harbour.jpg"
    assert meta["og:url"] == f"{BASE}/issues/{site['newer']}/"
    assert meta["twitter:card"] == "summary_large_image"
    [canonical] = [x for x in elements(page, "link") if x.get("rel") == "canonical"]
    assert canonical["href"] == f"{BASE}/issues/{site['newer']}/"
    anchors = {a.get("rel"): a["href"] for a in elements(page, "a") if a.get("rel")}
    assert anchors == {"prev": f"../{site['older']}/index.html"}  # the newest has no next
    assert any(a["href"] == "../../index.html" for a in elements(page, "a"))
    [form] = [f for f in elements(page, "form") if f.get("class") == "nl-signup"]
    assert form["action"] == f"{BASE}/subscribe" and form["method"] == "post"
    older = (project / "site" / "issues" / site["older"] / "index.html").read_text()
    anchors = {a.get("rel"): a["href"] for a in elements(older, "a") if a.get("rel")}
    assert anchors == {"next": f"../{site['newer']}/index.html"}
    meta = {m.get("property") or m.get("name"): m.get("content") for m in elements(older, "meta")}
    assert meta["og:description"].startswith("One of the most important")  # the first dek
    assert "og:image" not in meta and meta["twitter:card"] == "summary"


# -- nothing unpublished, anywhere --------------------------------------------------------------

FILES = ["index.html", "issues/index.html", "feed.xml", "feed.json", "sitemap.xml"]
ROUTES = ["/", "/index.html", "/issues/", "/issues/index.html", "/feed.xml", "/feed.json"]
ROUTES += ["/sitemap.xml"]


@pytest.mark.parametrize("name", FILES)
def test_no_file_names_an_unpublished_issue(project, runner, site, name):
    build(runner, project, "-o", "site")
    text = (project / "site" / name).read_text(encoding="utf-8")
    for role in ("draft", "withdrawn"):
        assert site[role] not in text
    assert "Secret draft" not in text and "Withdrawn brief" not in text
    assert not (project / "site" / "issues" / site["draft"]).exists()
    assert not (project / "site" / "issues" / site["withdrawn"]).exists()


@pytest.fixture
def server(project, site):
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, signup_min_seconds=0)) as url:
        yield url


@pytest.mark.parametrize("route", ROUTES)
def test_no_route_names_an_unpublished_issue(server, site, route):
    answer = httpx.get(server + route)
    assert answer.status_code == 200
    for role in ("draft", "withdrawn"):
        assert site[role] not in answer.text
    assert "Secret draft" not in answer.text and "Withdrawn brief" not in answer.text


@pytest.mark.parametrize("role", ["draft", "withdrawn"])
@pytest.mark.parametrize("suffix", ["/", "/index.html", ""])
def test_an_unpublished_issue_page_is_not_found(server, site, role, suffix):
    answer = httpx.get(f"{server}/issues/{site[role]}{suffix}")
    assert answer.status_code in (404, 308)
    if answer.status_code == 308:  # /issues/<slug> -> /issues/<slug>/, which is 404
        assert httpx.get(f"{server}/issues/{site[role]}/").status_code == 404


@pytest.mark.parametrize(
    ("route", "name"),
    [
        ("/", "index.html"),
        ("/index.html", "index.html"),
        ("/issues/", "issues/index.html"),
        ("/issues/index.html", "issues/index.html"),
        ("/feed.xml", "feed.xml"),
        ("/feed.json", "feed.json"),
        ("/sitemap.xml", "sitemap.xml"),
        ("/robots.txt", "robots.txt"),
        ("/issues/{newer}/", "issues/{newer}/index.html"),
        ("/issues/{older}/index.html", "issues/{older}/index.html"),
    ],
)
def test_serve_answers_the_archive_files(project, runner, site, server, route, name):
    build(runner, project, "-o", "site")
    answer = httpx.get(server + route.format(**site))
    assert answer.status_code == 200
    assert answer.content == (project / "site" / name.format(**site)).read_bytes()
    expected = {"xml": "application/", "json": "application/feed+json", "html": "text/html"}
    assert answer.headers["content-type"].startswith(expected.get(name.rsplit(".", 1)[1], "text/"))
    if name == "feed.xml":
        assert answer.headers["content-type"] == "application/atom+xml"
    again = httpx.get(
        server + route.format(**site), headers={"If-None-Match": answer.headers["etag"]}
    )
    assert again.status_code == 304
    assert httpx.head(server + route.format(**site)).status_code == 200
    assert httpx.post(server + route.format(**site)).status_code == 405


def test_old_addresses_lead_to_the_archive(server, site):
    answer = httpx.get(f"{server}/?list=default")  # `/` was the sign-up form
    assert answer.status_code == 308
    assert answer.headers["location"] == f"{BASE}/subscribe?list=default"
    answer = httpx.get(f"{server}/archive")
    assert answer.status_code == 308 and answer.headers["location"] == f"{BASE}/"
    answer = httpx.get(f"{server}/issues/{site['newer']}")
    assert answer.status_code == 308
    assert answer.headers["location"] == f"{BASE}/issues/{site['newer']}/"


@pytest.mark.parametrize("cross_site", [False, True])
def test_the_web_version_form_only_fills_in_the_sign_up_form(project, server, cross_site):
    """A static page cannot carry the anti-forgery token: its post shows serve's form with the
    address filled in and stores nothing, sends nothing, from any site."""
    headers = {"Sec-Fetch-Site": "cross-site" if cross_site else "same-origin"}
    answer = httpx.post(
        f"{server}/subscribe",
        data={"email": "reader@example.com", "list": "default", "source": "web-version"},
        headers=headers,
    )
    assert answer.status_code == 200
    [field] = [i for i in elements(answer.text, "input") if i.get("name") == "email"]
    assert field["value"] == "reader@example.com"
    assert any(i.get("name") == "form_token" and i["value"] for i in elements(answer.text, "input"))
    with SubscriberStore.for_config(load_config(project / "newsletter.yaml")) as store:
        assert store.get("reader@example.com") is None
    assert not (project / "outbox").exists()


@pytest.mark.browser
def test_local_images_travel_with_the_archive(project, runner, browser):
    """A story's local image is copied beside its page (the bytes published) and shown from
    disk: the page names it relatively; the preview card keeps the absolute URL."""
    from PIL import Image

    Image.new("RGB", (400, 225), (180, 70, 40)).save(project / "issues" / "train.jpg", "JPEG")
    issue = project / "issues" / f"{EXAMPLE_SLUG}.yaml"
    text = issue.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(    dek: .*)$", r"\1\n    image: {path: train.jpg, alt: A train}", text)
    issue.write_text(text, encoding="utf-8")
    run(runner, project, "publish", EXAMPLE_SLUG)
    build(runner, project, "-o", "site")
    folder = project / "site" / "issues" / EXAMPLE_SLUG
    [image] = [p for p in folder.iterdir() if p.suffix == ".jpg"]
    assert image.read_bytes() == (project / "issues" / "train.jpg").read_bytes()
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert [i["src"] for i in elements(page, "img")] == [image.name]
    meta = {m.get("property"): m.get("content") for m in elements(page, "meta")}
    assert meta["og:image"] == f"{BASE}/issues/{EXAMPLE_SLUG}/{image.name}"
    tab = browser.new_page()
    try:
        tab.goto((folder / "index.html").as_uri())
        assert tab.evaluate("document.images[0].complete && document.images[0].naturalWidth") == 400
    finally:
        tab.close()


def test_a_restyled_theme_and_a_broken_one(project, runner, site):
    """A `templates:` folder restyles the archive file by file; a template that cannot render
    is an error with its file and line: nothing written, and serve answers its error page."""
    theme = project / "theme" / "archive"
    theme.mkdir(parents=True)
    (theme / "issue-top.html").write_text('<nav class="mine">{{ newsletter.name }} home</nav>\n')
    config = project / "newsletter.yaml"
    config.write_text(config.read_text() + "templates: theme\n", encoding="utf-8")
    build(runner, project, "-o", "site")
    page = (project / "site" / "issues" / site["newer"] / "index.html").read_text()
    assert '<nav class="mine">Test Letter home</nav>' in page
    broken = project / "broken" / "archive"
    broken.mkdir(parents=True)
    (broken / "index.html").write_text("<ul>\n{% for e in entries %}\n{{ e.title }\n</ul>\n")
    config.write_text(config.read_text().replace("templates: theme", "templates: broken"))
    code, out = run(runner, project, "archive", "-o", "other")
    assert code == 1 and "archive/index.html:3" in out
    assert not (project / "other").exists()
    with running(create_app(load_config(config), signup_min_seconds=0)) as server:
        answer = httpx.get(server + "/")
        assert answer.status_code == 500 and "Traceback" not in answer.text
        assert httpx.get(f"{server}/issues/{site['newer']}/").status_code == 200


def test_an_issue_published_before_the_archive_existed(project, runner, site):
    """A database from before snapshots kept their meta (simulated by emptying it): the issue
    is still served as it was, and the archive names the command that lists it."""
    from newsletter import db

    conn = db.connect(load_config(project / "newsletter.yaml").database)
    conn.execute("UPDATE issue_snapshots SET meta = '' WHERE issue_slug = ?", (site["older"],))
    conn.close()
    out = build(runner, project, "-o", "site")
    assert "Archive of 1 published issue(s)" in out
    assert f"run `newsletter publish {site['older']}` to list it" in out
    with running(create_app(load_config(project / "newsletter.yaml"))) as server:
        assert httpx.get(f"{server}/issues/{site['older']}/").status_code == 200
    run(runner, project, "publish", site["older"])
    assert "Archive of 2 published issue(s)" in build(runner, project, "-o", "site")
