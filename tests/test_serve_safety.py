"""`newsletter serve` against what link scanners and attackers send: only the one POST that acts
changes the database; nothing unpublished is served; Host headers, odd dates and slow clients
change nothing. Real uvicorn on loopback with `serve`'s own settings; the database is compared
row by row (`iterdump`) before and after."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from db_support import use_database
from serve_support import DRAFT, PUBLISHED, Site, dump, form_token, populate, running, sign_up
from webhook_support import (
    PROVIDERS,
    MailgunSigner,
    PostmarkSigner,
    ResendSigner,
    SendGridSigner,
    SesSigner,
    SnsCertServer,
)

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app

METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "POST"]
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def project(project: Path, database: str) -> Path:
    """Every test of this file on SQLite and on PostgreSQL (newsletter.yaml's `database:`)."""
    use_database(project, database)
    return project


@pytest.fixture
def webhooks_on(certs: SnsCertServer) -> dict[str, str]:
    """Every provider's webhook switched on, with test keys (tests/support/webhook_support)."""
    environ: dict[str, str] = {}
    for signer in (
        SendGridSigner(),
        MailgunSigner(),
        PostmarkSigner(),
        ResendSigner(),
        SesSigner(certs),
    ):
        environ.update(signer.environ)
    return environ


@pytest.fixture
def site(project: Path) -> Site:
    config = load_config(project / "newsletter.yaml")
    site = populate(config)
    # The archive's pages and feeds are served from what is published: make sure there is one.
    done = CliRunner().invoke(main, ["--config", str(config.path), "publish", PUBLISHED])
    assert done.exit_code == 0, done.output
    return site


@pytest.fixture
def server(site: Site, webhooks_on: dict[str, str]):
    app = create_app(
        site.config, rate_limit=(10_000, 60), signup_min_seconds=0, environ=webhooks_on
    )
    with running(app) as url:
        yield url


def routes(site: Site) -> list[tuple[str, bool]]:
    """(path, does a POST with the one-click body act on it?) for every route of `serve`."""
    forged = site.unsubscribe[:-2] + ("AA" if not site.unsubscribe.endswith("AA") else "BB")
    return [
        ("/", False),
        ("/subscribe", False),  # acting needs the form's token: never sent in this table
        ("/subscribe?list=default", False),
        (f"/unsubscribe/{site.unsubscribe}", True),
        (f"/unsubscribe/{forged}", False),
        ("/unsubscribe/test", False),
        ("/unsubscribe/", False),
        (f"/confirm/{site.confirm}", True),
        (f"/confirm/{site.confirm[:-1]}x", False),
        (f"/confirm/{site.unsubscribe}", False),  # cross-purpose
        (f"/issues/{PUBLISHED}/", False),
        (f"/issues/{PUBLISHED}/index.html", False),
        (f"/issues/{PUBLISHED}", False),
        (f"/issues/{DRAFT}/", False),
        (f"/issues/{DRAFT}/index.html", False),
        ("/issues/no-such-issue/", False),
        # The archive (newsletter.archive): index, feeds, sitemap, robots, the old address.
        ("/index.html", False),
        ("/issues/", False),
        ("/issues/index.html", False),
        ("/feed.xml", False),
        ("/feed.json", False),
        ("/sitemap.xml", False),
        ("/robots.txt", False),
        ("/archive", False),
        ("/nothing-here", False),
        # Every provider switched on (the `server` fixture): only a signed POST acts, and this
        # table never signs (signatures: test_webhooks.py).
        *((f"/webhooks/{provider}", False) for provider in PROVIDERS),
        ("/webhooks/no-such-provider", False),
    ]


def test_no_method_but_the_acting_post_changes_anything(site, server):
    """Every route x every method x (valid, forged) token, with the one-click body: the
    database is unchanged, except by a POST of a valid token (checked separately below)."""
    before = dump(site.config.database)
    failures = []
    with httpx.Client(timeout=10) as client:
        for path, acts in routes(site):
            for method in METHODS:
                if method == "POST" and acts:
                    continue
                response = client.request(
                    method, server + path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
                )
                if response.status_code >= 500 or dump(site.config.database) != before:
                    failures.append((method, path, response.status_code))
                if method == "OPTIONS" and response.status_code == 204:
                    assert "POST" not in response.headers["allow"] or path.startswith(
                        ("/subscribe", "/unsubscribe/", "/confirm/", "/webhooks/")
                    )
                if method not in ("GET", "HEAD", "OPTIONS", "POST"):
                    assert response.status_code in (404, 405), (method, path)
    assert failures == []


ARCHIVE = ["/", "/index.html", "/issues/", "/issues/index.html", "/feed.xml", "/feed.json"]
ARCHIVE += [
    "/sitemap.xml",
    "/robots.txt",
    f"/issues/{PUBLISHED}/",
    f"/issues/{PUBLISHED}/index.html",
]


def test_the_tables_routes_are_live(site, server):
    """The table above is only worth something if its routes answer: the archive's pages and
    feeds are served, and each provider's webhook is on (an unsigned POST is refused, not
    the 404 of a webhook that is off), changing nothing."""
    before = dump(site.config.database)
    with httpx.Client(timeout=10) as client:
        for path in ARCHIVE:
            assert client.get(server + path).status_code == 200, path
        assert client.get(server + "/archive").status_code in (301, 302, 307, 308)
        for provider in PROVIDERS:
            answer = client.post(server + f"/webhooks/{provider}", content=b"{}")
            assert answer.status_code in (400, 401, 403), (provider, answer.status_code)
    assert dump(site.config.database) == before


def test_head_of_a_list_unsubscribe_url_unsubscribes_nobody(site, server):
    """`curl -I <List-Unsubscribe URL>` used to unsubscribe: HEAD ran the POST branch."""
    url = f"{server}/unsubscribe/{site.unsubscribe}"
    for _ in range(3):
        assert httpx.head(url).status_code == 200
        assert httpx.get(url).status_code == 200
        assert httpx.options(url).status_code == 204
    with SubscriberStore.for_config(site.config) as store:
        assert store.get_by_id(site.ada_id).status == "active"
        assert [e.kind for e in store.events(site.ada_id)] == ["subscribed"]


def test_the_acting_posts_still_act(site, server):
    one_click = httpx.post(
        f"{server}/unsubscribe/{site.unsubscribe}",
        content=b"List-Unsubscribe=One-Click",
        headers={**ONE_CLICK, "Sec-Fetch-Site": "cross-site"},  # mail clients post from anywhere
    )
    assert one_click.status_code == 200 and "set-cookie" not in one_click.headers
    assert one_click.text == "Unsubscribed.\n"
    confirmed = httpx.post(f"{server}/confirm/{site.confirm}", data={"action": "confirm"})
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    with SubscriberStore.for_config(site.config) as store:
        assert store.get_by_id(site.ada_id).status == "unsubscribed"
        zed = store.get_by_id(site.zed_id)
        assert zed.status == "active" and zed.lists == ("default",) and zed.name == "Zed"


# -- published issues only ---------------------------------------------------------------------


def _same_404(responses: list[httpx.Response]) -> None:
    first = responses[0]
    assert first.status_code == 404
    for other in responses[1:]:
        assert other.status_code == 404
        assert other.content == first.content
        assert {k: v for k, v in other.headers.items() if k != "date"} == {
            k: v for k, v in first.headers.items() if k != "date"
        }


def test_unpublished_draft_and_unknown_issues_get_the_same_404(site, server, runner):
    unpublished = "2026-12-09-embargoed"
    text = (site.config.root / "issues" / f"{PUBLISHED}.yaml").read_text(encoding="utf-8")
    (site.config.root / "issues" / f"{unpublished}.yaml").write_text(text, encoding="utf-8")
    paths = [f"/issues/{unpublished}/", f"/issues/{DRAFT}/", "/issues/never-written/", "/x"]
    _same_404([httpx.get(server + p) for p in paths])
    assert httpx.get(f"{server}/issues/{PUBLISHED}/").status_code == 200
    # publish by slug, then unpublish by file: the page comes and goes.
    config = ["--config", str(site.config.path)]
    done = runner.invoke(main, [*config, "publish", unpublished])
    assert done.exit_code == 0, done.output
    assert f"Issue {unpublished} is published" in done.output
    assert httpx.get(f"{server}/issues/{unpublished}/").status_code == 200
    path = str(site.config.root / "issues" / f"{unpublished}.yaml")
    done = runner.invoke(main, [*config, "unpublish", path])
    assert done.exit_code == 0 and f"Issue {unpublished} is unpublished" in done.output
    again = runner.invoke(main, [*config, "unpublish", unpublished])
    assert "already unpublished" in again.output
    _same_404([httpx.get(server + p) for p in [*paths, f"/issues/{unpublished}/"]])


def test_publish_refuses_a_draft_and_an_unknown_slug(site, runner):
    config = ["--config", str(site.config.path)]
    draft = runner.invoke(main, [*config, "publish", DRAFT])
    assert draft.exit_code == 1 and "has errors; fix them before publishing" in draft.output
    assert "Traceback" not in draft.output
    unknown = runner.invoke(main, [*config, "publish", "no-such-slug"])
    assert unknown.exit_code == 1 and "no issue with slug 'no-such-slug'" in unknown.output
    odd = runner.invoke(main, [*config, "publish", "Not A Slug"])
    assert odd.exit_code == 1 and "neither an issue file nor an issue slug" in odd.output


def test_a_sent_issue_is_published_until_unpublished(project, runner):
    from newsletter.campaign import send_issue

    config = load_config(project / "newsletter.yaml")
    slug = "2026-11-25-microsoft-openai-partnership"
    with SubscriberStore.for_config(config) as store:
        store.add("ada@example.com")
    with running(create_app(config, signup_min_seconds=0)) as server:
        assert httpx.get(f"{server}/issues/{slug}/").status_code == 404  # not sent yet
        send_issue(config, project / "issues" / f"{slug}.yaml", transport="outbox:./outbox")
        assert httpx.get(f"{server}/issues/{slug}/").status_code == 200
        done = runner.invoke(main, ["--config", str(config.path), "unpublish", slug])
        assert "it was sent, but its web version is no longer served" in done.output
        assert httpx.get(f"{server}/issues/{slug}/").status_code == 404


# -- the Host header, dates, the test copy ----------------------------------------------------


def test_a_hostile_host_header_never_reaches_a_link_or_redirect(site, server):
    hostile = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    paths = [p for p, _ in routes(site)] + ["/subscribe/", f"/issues/{PUBLISHED}/x/"]
    with httpx.Client(timeout=10) as client:
        for path in paths:
            for method in ("GET", "POST"):
                response = client.request(method, server + path, headers=hostile)
                assert "evil.example" not in response.text, (method, path)
                assert "evil.example" not in str(response.headers), (method, path)
        redirect = client.get(f"{server}/issues/{PUBLISHED}", headers=hostile)
        assert redirect.status_code == 308
        assert redirect.headers["location"] == f"{site.config.base_url}/issues/{PUBLISHED}/"
        assert client.get(server + "/subscribe/", headers=hostile).status_code == 404


@pytest.mark.parametrize(
    "since",
    [
        "Mon, 01 Jan 99999 00:00:00 GMT",  # out of range: was a 500 with a traceback
        "Fri, 31 Dec 9999 23:59:59 GMT",  # far future: must be ignored, not a 304
        "Thu, 01 Jan 2099 00:00:00 GMT",
        "Sun, 00 Xyz 0000 99:99:99 GMT",
        "-1",
        "Mon, 32 Jan 2001 00:00:00 +9999",
    ],
)
def test_if_modified_since_that_is_invalid_or_in_the_future_is_ignored(server, since):
    response = httpx.get(f"{server}/issues/{PUBLISHED}/", headers={"If-Modified-Since": since})
    assert response.status_code == 200 and "<html" in response.text.lower()


def test_a_valid_if_modified_since_still_gives_304(server):
    first = httpx.get(f"{server}/issues/{PUBLISHED}/")
    since = {"If-Modified-Since": first.headers["last-modified"]}
    assert httpx.get(f"{server}/issues/{PUBLISHED}/", headers=since).status_code == 304


def test_the_test_copys_unsubscribe_link_answers_and_unsubscribes_nobody(site, server):
    before = dump(site.config.database)
    page = httpx.get(server + "/unsubscribe/test")
    assert page.status_code == 200 and "test copy" in page.text and "nobody" in page.text
    one_click = httpx.post(
        server + "/unsubscribe/test", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert one_click.status_code == 200 and "nobody was unsubscribed" in one_click.text
    button = httpx.post(server + "/unsubscribe/test", data={"action": "unsubscribe"})
    assert button.status_code == 200 and "nobody was unsubscribed" in button.text
    assert dump(site.config.database) == before


# -- slow clients ------------------------------------------------------------------------------


def test_slow_header_clients_are_dropped_and_others_are_served(site):
    app = create_app(site.config, signup_min_seconds=0)
    with running(app, header_timeout=1.0) as server:
        port = int(server.rsplit(":", 1)[1])
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        try:
            for sock in slow:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            started = time.monotonic()
            assert httpx.get(server + "/subscribe", timeout=5).status_code == 200
            assert time.monotonic() - started < 1.0
            time.sleep(1.5)
            closed = 0
            for sock in slow:
                sock.settimeout(2)
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                    closed += sock.recv(1) == b""
                except OSError:
                    closed += 1
            assert closed == len(slow)
        finally:
            for sock in slow:
                sock.close()


def test_a_stalled_form_body_is_cut_off_and_changes_nothing(site):
    app = create_app(site.config, signup_min_seconds=0, body_timeout=1.0)
    with running(app) as server:
        before = dump(site.config.database)
        port = int(server.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nemail=mal"
            )
            started = time.monotonic()
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
            assert time.monotonic() - started < 3
    assert dump(site.config.database) == before


# -- sign-up abuse ------------------------------------------------------------------------------


def _outbox(site: Site) -> list[email.message.EmailMessage]:
    time.sleep(0.05)
    folder = site.config.root / "outbox"
    files = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]  # type: ignore[misc]


def test_internal_and_unknown_lists_get_the_same_answer(project):
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text(encoding="utf-8")
        + "lists:\n  weekly: {public: true}\n  staff: {public: false}\n",
        encoding="utf-8",
    )
    config = load_config(project / "newsletter.yaml")
    with SubscriberStore.for_config(config) as store:
        store.add("boss@example.com", lists=["staff"])  # the list exists in the database
    with running(create_app(config, signup_min_seconds=0)) as server:
        before = dump(config.database)
        staff = sign_up(server, email="m@example.com", list="staff")
        nope = sign_up(server, email="m@example.com", list="nope")
        assert staff.status_code == nope.status_code == 400
        strip = lambda r: r.text.split('name="form_token"')[0]  # noqa: E731
        assert strip(staff) == strip(nope) and "not open for that list" in staff.text
        _same_404([httpx.get(f"{server}/subscribe?list={n}") for n in ("staff", "nope")])
        assert dump(config.database) == before
        assert sign_up(server, email="w@example.com", list="weekly").status_code == 200
    with SubscriberStore.for_config(config) as store:
        w = store.get("w@example.com")  # joins weekly only once the link is confirmed
        assert (w.status, w.lists) == ("pending", ())
        assert store.get("m@example.com") is None


def test_a_stranger_cannot_change_a_pending_record(site, server):
    """Zed signed up (pending, default list). Mallory types Zed's address with another name
    and list: Zed's record is unchanged, and Zed's own link confirms only what Zed asked."""
    (site.config.root / "newsletter.yaml").write_text(
        site.config.path.read_text(encoding="utf-8") + "lists:\n  weekly: {public: true}\n",
        encoding="utf-8",
    )
    config = load_config(site.config.path)
    with running(create_app(config, signup_min_seconds=0)) as other:
        answer = sign_up(other, email="zed@example.com", name="Mallory", list="weekly")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    with SubscriberStore.for_config(config) as store:
        zed = store.get_by_id(site.zed_id)
        assert (zed.status, zed.name, zed.lists) == ("pending", None, ())
    confirmed = httpx.post(f"{server}/confirm/{site.confirm}")
    assert confirmed.status_code == 200
    with SubscriberStore.for_config(config) as store:
        zed = store.get_by_id(site.zed_id)
        assert (zed.status, zed.name, zed.lists) == ("active", "Zed", ("default",))


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_bounced_and_complained_readers_come_back_only_by_their_own_confirmation(
    site, server, status
):
    """A fresh double opt-in: the form answers as for anyone and mails the link; nothing
    changes until the person confirms; then they are active on the link's list."""
    with SubscriberStore.for_config(site.config) as store:
        gone = store.add("gone@example.com")
        (store.mark_bounced if status == "bounced" else store.mark_complained)(gone.id, "550")
    known = sign_up(server, email="gone@example.com", name="X")
    fresh = sign_up(server, email="fresh@example.com")
    assert known.status_code == fresh.status_code == 200 and known.text == fresh.text
    sent = {m["To"].addresses[0].addr_spec: m for m in _outbox(site)}
    assert set(sent) == {"gone@example.com", "fresh@example.com"}
    with SubscriberStore.for_config(site.config) as store:
        assert store.get("gone@example.com").status == status  # not before the click
    body = sent["gone@example.com"].get_body(("plain",)).get_content()
    link = body.split("/confirm/")[1].split()[0]
    assert httpx.post(f"{server}/confirm/{link}").status_code == 200
    with SubscriberStore.for_config(site.config) as store:
        back = store.get("gone@example.com")
        assert (back.status, back.lists) == ("active", ("default",))


def test_an_unsubscribed_reader_may_sign_up_again(site, server):
    httpx.post(f"{server}/unsubscribe/{site.unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert sign_up(server, email="ada@example.com").status_code == 200
    [mail] = _outbox(site)
    link = mail.get_body(("plain",)).get_content().split("/confirm/")[1].split()[0]
    assert httpx.post(f"{server}/confirm/{link}").status_code == 200
    with SubscriberStore.for_config(site.config) as store:
        assert store.get_by_id(site.ada_id).status == "active"


def test_sign_up_without_the_forms_token_or_from_another_site_is_refused(site, server):
    before = dump(site.config.database)
    bare = httpx.post(server + "/subscribe", data={"email": "v@example.com"})
    assert bare.status_code == 400 and "this site's own page" in bare.text
    token = form_token(None, server)
    foreign = httpx.post(
        server + "/subscribe",
        data={"email": "v@example.com", "form_token": token},
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 400 and "this site's own page" in foreign.text
    assert dump(site.config.database) == before and _outbox(site) == []
    # The form's own page posts with same-origin and its token: accepted.
    ok = httpx.post(
        server + "/subscribe",
        data={"email": "v@example.com", "form_token": token},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 200 and len(_outbox(site)) == 1


def test_a_form_token_is_bound_to_the_client_and_expires():
    from newsletter.web.public.guard import FormTokens

    forms = FormTokens(b"k" * 32, max_age=3600)
    token = forms.issue("198.51.100.7", now=1_000_000)
    assert forms.valid("198.51.100.7", token, now=1_000_100)
    assert not forms.valid("203.0.113.9", token, now=1_000_100)  # another visitor's browser
    assert not forms.valid("198.51.100.7", token, now=1_000_000 + 3601)
    assert not forms.valid("198.51.100.7", token[:-1] + "A", now=1_000_100)
    assert not forms.valid("198.51.100.7", "", now=1_000_100)


def test_when_the_confirmation_cannot_be_sent_the_page_says_so(project):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text(encoding="utf-8")
        + f"transport: smtp://127.0.0.1:{port}?tls=none&timeout=2\n",
        encoding="utf-8",
    )
    config = load_config(project / "newsletter.yaml")
    with running(create_app(config, signup_min_seconds=0)) as server:
        answer = sign_up(server, email="new@example.com")
    assert answer.status_code == 503
    assert "no confirmation email went out" in answer.text and "Check your inbox" not in answer.text
    with SubscriberStore.for_config(config) as store:
        new = store.get("new@example.com")
        assert new.status == "pending"
        assert "confirmation_sent" not in [e.kind for e in store.events(new.id)]


def test_every_sign_up_answer_takes_the_same_minimum_time(site):
    with SubscriberStore.for_config(site.config) as store:
        store.add("known@example.com")
    with running(create_app(site.config, signup_min_seconds=0.6)) as server:
        took = {}
        for address in ("new@example.com", "known@example.com", "not an address"):
            token = form_token(None, server)
            started = time.monotonic()
            httpx.post(server + "/subscribe", data={"email": address, "form_token": token})
            took[address] = time.monotonic() - started
    assert all(t >= 0.6 for t in took.values()), took
    # The known address (no mail) is not answered noticeably faster than the new one (whose
    # send raised the floor); the margin covers the new one's database work on a busy machine.
    assert took["known@example.com"] > took["new@example.com"] - 0.5, took


def test_the_confirmation_link_comes_from_base_url_whatever_the_host_header(site, server):
    hostile = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    with httpx.Client(headers=hostile) as client:
        token = form_token(client, server)
        answer = client.post(
            server + "/subscribe", data={"email": "h@example.com", "form_token": token}
        )
    assert answer.status_code == 200
    [mail] = _outbox(site)
    text = mail.get_body(("plain",)).get_content()
    assert f"{site.config.base_url}/confirm/" in text and "evil" not in mail.as_string()


# -- in the browser: the theme's pages, translated, and their buttons ---------------------------


@pytest.mark.browser
def test_translated_pages_from_the_theme_folder_in_the_browser(project, browser):
    """A `templates:` folder replaces single pages (here two, in German); `lang` follows
    `language`; the sign-up and the confirmation button work from the pages themselves."""
    theme = project / "theme" / "pages"
    theme.mkdir(parents=True)
    (theme / "subscribe-sent.html").write_text(
        '{% extends "pages/base.html" %}{% block title %}Bitte Posteingang prüfen{% endblock %}'
        "{% block content %}<p>Wir haben Ihnen einen Link geschickt.</p>{% endblock %}",
        encoding="utf-8",
    )
    (theme / "confirmed.html").write_text(
        '{% extends "pages/base.html" %}{% block title %}Sie sind angemeldet{% endblock %}',
        encoding="utf-8",
    )
    path = project / "newsletter.yaml"
    path.write_text(
        path.read_text(encoding="utf-8") + "language: de\ntemplates: theme\n", encoding="utf-8"
    )
    config = load_config(path)
    with running(create_app(config, signup_min_seconds=0)) as server:
        page = browser.new_page()
        try:
            page.goto(server + "/subscribe")
            assert page.locator("html").get_attribute("lang") == "de"
            page.fill("#email", "leser@example.com")
            page.get_by_role("button", name="Subscribe").click()
            page.wait_for_selector("text=Bitte Posteingang prüfen")
            folder = project / "outbox"
            mails = [
                email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
                for f in sorted(folder.glob("*.eml"))
            ]
            link = mails[0].get_body(("plain",)).get_content().split("/confirm/")[1].split()[0]  # type: ignore[union-attr]
            page.goto(f"{server}/confirm/{link}")
            with SubscriberStore.for_config(config) as store:
                assert store.get("leser@example.com").status == "pending"  # opening is not enough
            page.get_by_role("button", name="Confirm my subscription").click()
            page.wait_for_selector("text=Sie sind angemeldet")
        finally:
            page.close()
    with SubscriberStore.for_config(config) as store:
        assert store.get("leser@example.com").status == "active"


def test_publish_with_db_records_in_that_database(site, runner, tmp_path):
    from newsletter.db import connect
    from newsletter.publishing import is_published, published_slugs

    other = tmp_path / "other.db"
    done = runner.invoke(
        main, ["--config", str(site.config.path), "publish", PUBLISHED, "--db", str(other)]
    )
    assert done.exit_code == 0, done.output
    conn = connect(other)
    try:
        assert is_published(conn, PUBLISHED) and published_slugs(conn) == {PUBLISHED}
        assert not is_published(conn, DRAFT)
    finally:
        conn.close()


def test_a_slow_mail_server_raises_every_sign_up_answers_floor(project):
    """When the confirmation takes longer than the minimum, answers for known addresses (no
    mail) wait as long as the recent sends did, so timing still tells nothing."""
    from smtp_servers import SmtpServer, fault

    with SmtpServer(faults=[fault("slow", "slow@*", delay=1.0)]) as smtp:
        path = project / "newsletter.yaml"
        path.write_text(
            path.read_text(encoding="utf-8") + f"transport: {smtp.url()}\n", encoding="utf-8"
        )
        config = load_config(path)
        with SubscriberStore.for_config(config) as store:
            store.add("known@example.com")
        with running(create_app(config, signup_min_seconds=0.2)) as server:
            took = {}
            for address in ("slow@example.com", "known@example.com"):
                token = form_token(None, server)
                started = time.monotonic()
                answer = httpx.post(
                    server + "/subscribe", data={"email": address, "form_token": token}
                )
                took[address] = time.monotonic() - started
                assert answer.status_code == 200 and "Check your inbox" in answer.text
        assert [m.rcpt_tos for m in smtp.messages] == [["slow@example.com"]]
    assert took["slow@example.com"] >= 1.0 and took["known@example.com"] >= 1.0, took


def test_a_confirmation_link_from_before_sign_up_requests_confirms_nobody(site, server):
    """Old links named a subscriber id under the purpose "confirm"; the same number now names
    a sign-up request, so such a link must not confirm whoever's request has that number."""
    from newsletter import tokens

    with SubscriberStore.for_config(site.config) as store:
        secret = tokens.secret_key(site.config, store.conn)
    before = dump(site.config.database)
    for number in range(1, 4):
        old = tokens.make_token(secret, "confirm", number, issued_at=int(time.time()))
        answer = httpx.post(f"{server}/confirm/{old}")
        assert answer.status_code == 400 and "does not work" in answer.text
    assert dump(site.config.database) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/subscribe"), ("HEAD", "/unsubscribe/"), ("PUT", "/"), ("GET", "/nothing-here")],
)
def test_a_body_left_unread_closes_the_connection_and_says_so(server, method, path):
    """uvicorn cannot reuse a connection whose request body nobody read: the answer must say
    `Connection: close`, or the client's next request on it meets a reset."""
    with httpx.Client(timeout=10) as client:
        with_body = client.request(method, server + path, content=b"x=1", headers=ONE_CLICK)
        assert with_body.headers.get("connection") == "close"
        without = client.request(method, server + path)
        assert without.headers.get("connection") != "close"
