"""Local story images (`image: {path: ..., alt: ...}`): checked, built, served and previewed,
through the CLI, HTTP and Chromium, with real image files made by Pillow."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cli_support import elements, run
from click.testing import CliRunner
from db_support import use_database
from PIL import Image
from playwright.sync_api import Browser, expect
from serve_support import running
from test_preview import console_errors, frame, offline_page

from newsletter.config import load_config
from newsletter.publishing import publish_issue
from newsletter.web.preview import PreviewServer
from newsletter.web.public import create_app

SLUG = "2026-12-02-trains"
ISSUE = f"issues/{SLUG}.yaml"


def picture(
    path: Path, size: tuple[int, int] = (800, 450), kind: str = "JPEG", noise: bool = False
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (180, 70, 40))
    if noise:  # incompressible: a big file
        rng = random.Random(7)
        image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    image.save(path, kind)
    return path


def write_issue(project: Path, image: dict[str, Any]) -> Path:
    data = {
        "title": "Trains",
        "date": "2026-12-02",
        "preheader": "Night trains are back.",
        "stories": [
            {
                "headline": "The night train returns",
                "summary": "Sleepers run again.",
                "why_it_matters": "Fewer flights.",
                "image": image,
                "sources": [{"title": "Rail news", "url": "https://a.test/r"}],
            }
        ],
    }
    path = project / ISSUE
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def diagnostics(runner: CliRunner, project: Path) -> tuple[int, list[dict]]:
    code, output = run(runner, project, "check", "--format", "json", ISSUE)
    return code, json.loads(output)["diagnostics"]


def make_tiff(path: Path) -> None:
    picture(path, kind="TIFF")


def make_text(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a picture")


def make_truncated(path: Path) -> None:
    picture(path)
    path.write_bytes(path.read_bytes()[:300])


def make_folder(path: Path) -> None:
    path.mkdir(parents=True)


def make_symlink_out(path: Path) -> None:
    """images/out.jpg -> a real picture outside the project folder."""
    outside = picture(path.parents[3] / f"outside-{path.parents[2].name}.jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(outside)


def make_picture(path: Path) -> None:
    picture(path)


BAD_IMAGES = [
    ("images/missing.jpg", None, "does not exist"),
    ("images/notes.jpg", make_text, "is not a usable image (not an image file)"),
    ("images/broken.jpg", make_truncated, "is not a usable image"),
    ("images/scan.tif", make_tiff, "is a TIFF image; mail clients show JPEG, PNG, GIF"),
    ("images/folder.jpg", make_folder, "is a folder, not an image file"),
    ("https://a.test/x.jpg", None, "is a URL; write it as 'url:'"),
    ("/etc/hostname", None, "must be relative to the issue file's folder"),
    ("../../outside.jpg", make_picture, "is outside the project folder"),
    ("images/../../../outside.jpg", make_picture, "is outside the project folder"),
    ("images/out.jpg", make_symlink_out, "is outside the project folder"),
]


@pytest.mark.parametrize(("written", "make", "message"), BAD_IMAGES)
def test_bad_local_image_is_an_error_at_its_line(
    written: str, make: Any, message: str, runner: CliRunner, project: Path
) -> None:
    if make is not None:
        make(project / "issues" / written)
    path = write_issue(project, {"path": written, "alt": "A train"})
    code, found = diagnostics(runner, project)
    assert code == 1
    (error,) = [d for d in found if d["severity"] == "error"]
    assert error["field"] == "stories[0].image.path"
    assert message in error["message"] and f"image '{written}'" in error["message"]
    line = path.read_text().splitlines()[error["line"] - 1]
    assert line.strip().startswith("path:")
    code, _output = run(runner, project, "build", ISSUE)
    assert code == 1 and not (project / "build").exists()


def test_url_and_path_together_is_an_error(runner: CliRunner, project: Path) -> None:
    picture(project / "issues/images/train.jpg")
    write_issue(project, {"url": "https://a.test/t.jpg", "path": "images/train.jpg", "alt": "T"})
    code, found = diagnostics(runner, project)
    assert code == 1
    assert any("a url or a path, not both" in d["message"] for d in found)


@pytest.mark.parametrize(
    ("size", "noise", "warned"),
    [
        ((800, 450), False, []),
        ((1088, 600), False, []),  # exactly twice the 544 px it is shown at
        ((1089, 600), False, ["1089 px wide; the email shows it 544 px wide"]),
        ((700, 700), True, ["MB; above 1 MB it loads slowly"]),
    ],
)
def test_check_warns_about_heavy_images(
    size: tuple[int, int], noise: bool, warned: list[str], runner: CliRunner, project: Path
) -> None:
    picture(project / "issues/images/train.png", size, "PNG", noise=noise)
    write_issue(project, {"path": "images/train.png", "alt": "A train"})
    code, found = diagnostics(runner, project)
    assert code == 0
    messages = [d["message"] for d in found if d["field"] == "stories[0].image.path"]
    assert len(messages) == len(warned)
    for text, expected in zip(messages, warned, strict=True):
        assert expected in text


def test_build_copies_the_image_and_the_email_references_it(
    runner: CliRunner, project: Path
) -> None:
    source = picture(project / "issues/images/night-train.jpg", (1000, 500))
    write_issue(project, {"path": "images/night-train.jpg", "alt": "The night train"})
    code, output = run(runner, project, "build", ISSUE)
    assert code == 0, output
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:10]
    name = f"night-train-{digest}.jpg"
    copied = project / "build" / SLUG / name
    assert copied.read_bytes() == source.read_bytes()
    assert f"build/{SLUG}/{name}" in output
    raw = (project / "build" / SLUG / "message.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    (img,) = [i for i in elements(html, "img") if i.get("alt") == "The night train"]
    assert img["src"] == f"https://news.example.org/issues/{SLUG}/{name}"
    assert (img["width"], img["height"]) == ("544", "272")  # shown 544 px wide, same ratio
    web = (project / "build" / SLUG / "web.html").read_text(encoding="utf-8")
    assert f"/issues/{SLUG}/{name}" in web


def on(project: Path, database: str) -> None:
    """Keep the project's records in `database` (an SQLite file or a PostgreSQL URL)."""
    use_database(project, database)


def test_serve_answers_the_image_of_a_published_issue_only(project: Path, database: str) -> None:
    on(project, database)
    source = picture(project / "issues/images/night-train.jpg")
    picture(project / "issues/images/secret.jpg")  # beside it, but named by no story
    write_issue(project, {"path": "images/night-train.jpg", "alt": "The night train"})
    config = load_config(project / "newsletter.yaml")
    name = f"night-train-{hashlib.sha256(source.read_bytes()).hexdigest()[:10]}.jpg"
    with running(create_app(config, signup_min_seconds=0)) as server:
        url = f"{server}/issues/{SLUG}/{name}"
        assert httpx.get(url).status_code == 404  # not published yet
        publish_issue(config, project / ISSUE)
        page = httpx.get(f"{server}/issues/{SLUG}/")
        assert page.status_code == 200 and f"/issues/{SLUG}/{name}" in page.text
        answer = httpx.get(url)
        assert answer.status_code == 200 and answer.content == source.read_bytes()
        assert answer.headers["content-type"] == "image/jpeg"
        assert "immutable" in answer.headers["cache-control"]
        again = httpx.get(url, headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert httpx.head(url).status_code == 200
        assert httpx.post(url).status_code == 405
        secret = hashlib.sha256((project / "issues/images/secret.jpg").read_bytes()).hexdigest()
        for other in (f"secret-{secret[:10]}.jpg", "night-train.jpg", "..%2Fnewsletter.yaml"):
            assert httpx.get(f"{server}/issues/{SLUG}/{other}").status_code == 404


# True once a frame of the page shows the story image at the given natural width.
NEW_WIDTH_SHOWN = """width => [...document.querySelectorAll('iframe')].some(frame => {
  const doc = frame.contentDocument;
  const img = doc && doc.querySelector('img[alt="The night train"]');
  return img && img.complete && img.naturalWidth === width;
})"""


@pytest.mark.browser
def test_preview_shows_the_local_image_at_once_and_follows_edits(
    browser: Browser, project: Path
) -> None:
    image = picture(project / "issues/images/night-train.jpg", (600, 300))
    issue = write_issue(project, {"path": "images/missing.jpg", "alt": "The night train"})
    with PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project) as srv:
        page = offline_page(browser)
        errors = console_errors(page)
        page.goto(srv.url)
        expect(page.locator("body")).to_have_attribute("data-state", "error")
        write_issue(project, {"path": "images/night-train.jpg", "alt": "The night train"})
        expect(page.locator("body")).to_have_attribute("data-state", "ok")
        shown = frame(page, "desktop-light").get_by_alt_text("The night train")
        expect(shown).to_be_visible()
        assert shown.evaluate("img => img.naturalWidth") == 600
        # The writer replaces the picture: the preview shows the new one without a save of
        # the issue file.
        picture(image, (400, 300))
        page.wait_for_function(NEW_WIDTH_SHOWN, arg=400, timeout=15000)
        page.context.close()
        assert errors == []


# [clientWidth, clientHeight] of the story image in a document.
SHOWN_SIZE = """() => { const img = document.querySelector('img[alt="The night train"]');
  return [img.clientWidth, img.clientHeight]; }"""


@pytest.mark.browser
@pytest.mark.parametrize("document", ["email.html", "web.html"])
def test_built_image_keeps_its_aspect_ratio_at_every_width(
    document: str, browser: Browser, runner: CliRunner, project: Path
) -> None:
    # A circle must stay a circle on a phone: width and height attributes stay for Outlook,
    # but no fixed CSS height may squash the picture where the column is narrower.
    picture(project / "issues/images/night-train.jpg", (800, 400))
    write_issue(project, {"path": "images/night-train.jpg", "alt": "The night train"})
    code, output = run(runner, project, "build", ISSUE)
    assert code == 0, output
    built = project / "build" / SLUG / document
    html = built.read_text(encoding="utf-8")
    (img,) = [i for i in elements(html, "img") if i.get("alt") == "The night train"]
    assert (img["width"], img["height"]) == ("544", "272")
    for width in (320, 375, 600):
        page = offline_page(browser)
        page.set_viewport_size({"width": width, "height": 900})
        # The email points at the public site; answer with the file build wrote.
        copied = project / "build" / SLUG / str(img["src"]).rsplit("/", 1)[1]
        page.route(str(img["src"]), lambda route: route.fulfill(path=copied))  # noqa: B023
        page.goto(built.as_uri())
        page.wait_for_function("document.querySelector('img').complete")
        shown_width, shown_height = page.evaluate(SHOWN_SIZE)
        assert shown_width <= min(width, 544)
        assert abs(shown_height - shown_width / 2) <= 1, (width, shown_width, shown_height)
        page.context.close()


@pytest.mark.browser
def test_preview_phone_frame_keeps_the_image_aspect_ratio(browser: Browser, project: Path) -> None:
    picture(project / "issues/images/night-train.jpg", (800, 400))
    issue = write_issue(project, {"path": "images/night-train.jpg", "alt": "The night train"})
    with PreviewServer(issue, config_path=project / "newsletter.yaml", start_dir=project) as srv:
        page = offline_page(browser)
        page.goto(srv.url)
        expect(page.locator("body")).to_have_attribute("data-state", "ok")
        shown = frame(page, "phone-light").get_by_alt_text("The night train")
        expect(shown).to_be_visible()
        width, height = shown.evaluate("img => [img.clientWidth, img.clientHeight]")
        assert width < 544  # the phone column is narrower than the desktop one
        assert abs(height - width / 2) <= 1, (width, height)
        page.context.close()


def _replace_or_delete(path: Path, how: str) -> None:
    if how == "replaced":
        picture(path, (300, 300))  # other bytes under the same file name
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["replaced", "deleted"])
@pytest.mark.parametrize("went_out", ["published", "sent"])
def test_an_image_that_went_out_keeps_answering_with_its_bytes(
    went_out: str, how: str, runner: CliRunner, project: Path, database: str
) -> None:
    # A sent email cannot change: the hashed URL it names must keep answering with the bytes it
    # was sent with, whatever the writer does with the file afterwards.
    on(project, database)
    source = picture(project / "issues/images/night-train.jpg")
    original = source.read_bytes()
    write_issue(project, {"path": "images/night-train.jpg", "alt": "The night train"})
    name = f"night-train-{hashlib.sha256(original).hexdigest()[:10]}.jpg"
    if went_out == "published":
        code, output = run(runner, project, "publish", ISSUE)
    else:
        assert run(runner, project, "subscribers", "add", "reader@example.org")[0] == 0
        code, output = run(runner, project, "send", "--yes", ISSUE)
        (mailed,) = (project / "outbox").glob("*.eml")
        message = email.message_from_bytes(mailed.read_bytes(), policy=email.policy.default)
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        srcs = [img.get("src") for img in elements(html, "img")]
        assert f"https://news.example.org/issues/{SLUG}/{name}" in srcs
    assert code == 0, output
    _replace_or_delete(source, how)
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, signup_min_seconds=0)) as server:
        answer = httpx.get(f"{server}/issues/{SLUG}/{name}")
        assert answer.status_code == 200 and answer.content == original
        assert answer.headers["content-type"] == "image/jpeg"
        # The web version is the snapshot taken when the issue went out: it still names the
        # image it went out with, which answers.
        assert name in httpx.get(f"{server}/issues/{SLUG}/").text
        if how == "replaced":  # publishing again takes the new file, which answers too
            assert run(runner, project, "publish", ISSUE)[0] == 0
            page = httpx.get(f"{server}/issues/{SLUG}/").text
            new = f"night-train-{hashlib.sha256(source.read_bytes()).hexdigest()[:10]}.jpg"
            assert new in page and httpx.get(f"{server}/issues/{SLUG}/{new}").status_code == 200
            assert httpx.get(f"{server}/issues/{SLUG}/{name}").content == original
        run(runner, project, "unpublish", SLUG)  # nothing unpublished is served
        assert httpx.get(f"{server}/issues/{SLUG}/{name}").status_code == 404
