"""`newsletter serve`: real HTTP requests to the public app running under uvicorn on loopback.

Every test checks what the database holds afterwards (through the store or an export), not just
the status code.
"""

from __future__ import annotations

import email
import email.policy
import io
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from db_support import use_database
from serve_support import running

from newsletter import tokens
from newsletter.config import Config, load_config
from newsletter.db import connect
from newsletter.publishing import publish_issue, set_published
from newsletter.subscribers import SubscriberStore, export_csv
from newsletter.web.public import create_app

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(project: Path, database: str) -> Path:
    """Every test of this file on SQLite and on PostgreSQL (newsletter.yaml's `database:`)."""
    use_database(project, database)
    return project


def wait_for_mail(outbox: Path, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(outbox.glob("*.eml")) if outbox.is_dir() else []
        if len(files) >= count or time.monotonic() > deadline:
            policy = email.policy.default
            return [email.message_from_bytes(f.read_bytes(), policy=policy) for f in files]  # type: ignore[misc]
        time.sleep(0.05)


def link_path(message: EmailMessage, kind: str) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(rf"https?://[^/\s]+(/{kind}/[A-Za-z0-9._-]+)", text)
    assert match, text
    return match.group(1)


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project / "newsletter.yaml")


@pytest.fixture
def store(config: Config) -> Iterator[SubscriberStore]:
    with SubscriberStore.for_config(config) as s:
        yield s


@pytest.fixture
def server(config: Config, store: SubscriberStore) -> Iterator[str]:
    with running(create_app(config, rate_limit=(1000, 60), signup_min_seconds=0)) as url:
        yield url


def sign_up(server: str, **data: str) -> httpx.Response:
    """What a browser does: load the form (for its anti-CSRF token), then post it."""
    form = httpx.get(server + "/subscribe")
    token = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert token, form.text
    return httpx.post(server + "/subscribe", data={"form_token": token.group(1), **data})


def confirm_path(config: Config, store: SubscriberStore, email: str, **kwargs: object) -> str:
    """The confirmation link of a sign-up made through the store's public API."""
    signup = store.request_subscription(email, name=None, lists=["default"], detail="test")
    assert signup is not None
    secret = tokens.secret_key(config, store.conn)
    return tokens.confirm_url(config, signup.id, secret, **kwargs).removeprefix(config.base_url)


def unsubscribe_path(config: Config, store: SubscriberStore, subscriber_id: int) -> str:
    url = tokens.unsubscribe_url(config, subscriber_id, tokens.secret_key(config, store.conn))
    assert url.startswith(config.base_url + "/unsubscribe/")
    return url.removeprefix(config.base_url)


def exported(store: SubscriberStore) -> dict[str, str]:
    out = io.StringIO()
    export_csv(store, out)
    rows = out.getvalue().splitlines()[1:]
    return {row.split(",")[0]: row.split(",")[2] for row in rows}


# -- unsubscribe -----------------------------------------------------------------------------


def test_one_click_post_unsubscribes_and_export_shows_it(config, store, server):
    ada = store.add("ada@example.com", name="Ada")
    bob = store.add("bob@example.com")
    path = unsubscribe_path(config, store, ada.id)
    response = httpx.post(
        server + path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert exported(store) == {"ada@example.com": "unsubscribed", "bob@example.com": "active"}
    kinds = [(e.kind, e.detail) for e in store.events(ada.id)]
    assert kinds[-1] == ("unsubscribed", "one-click (List-Unsubscribe-Post)")
    # Idempotent: a retried POST is still 200 and adds no second history entry.
    again = httpx.post(server + path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert [e.kind for e in store.events(ada.id)].count("unsubscribed") == 1
    assert store.get_by_id(bob.id).status == "active"


def test_one_click_post_as_multipart(config, store, server):
    ada = store.add("ada@example.com")
    response = httpx.post(
        server + unsubscribe_path(config, store, ada.id),
        files={"List-Unsubscribe": (None, "One-Click")},
    )
    assert response.status_code == 200
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert store.get_by_id(ada.id).status == "unsubscribed"


def test_get_shows_a_button_and_does_not_unsubscribe(config, store, server):
    ada = store.add("ada@example.com")
    path = unsubscribe_path(config, store, ada.id)
    for _ in range(3):  # link scanners may fetch it several times
        page = httpx.get(server + path)
        assert page.status_code == 200
        assert '<form method="post"' in page.text and "<button" in page.text
        assert "ada@example.com" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
    assert store.get_by_id(ada.id).status == "active"
    assert exported(store) == {"ada@example.com": "active"}
    # The page's button posts the form: that unsubscribes and shows a confirmation page.
    done = httpx.post(server + path, data={"action": "unsubscribe"})
    assert done.status_code == 200
    assert "You are unsubscribed" in done.text
    assert store.get_by_id(ada.id).status == "unsubscribed"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # forged MAC
        lambda t: "2" + t[1:],  # another subscriber's id with this MAC
        lambda t: "0" + t,  # non-canonical id
        lambda t: t + ".x",
        lambda t: "",
    ],
)
def test_forged_tokens_get_400_and_change_nothing(config, store, server, mangle):
    ada = store.add("ada@example.com")
    store.add("bob@example.com")
    token = unsubscribe_path(config, store, ada.id).rsplit("/", 1)[1]
    bad = mangle(token)
    assert bad != token
    response = httpx.post(server + f"/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code in (400, 404)
    assert exported(store) == {"ada@example.com": "active", "bob@example.com": "active"}


def test_cross_purpose_token_is_refused(config, store, server):
    confirm = confirm_path(config, store, "ada@example.com").rsplit("/", 1)[1]
    ada = store.get("ada@example.com")
    secret = tokens.secret_key(config, store.conn)
    unsubscribe = tokens.unsubscribe_url(config, ada.id, secret).rsplit("/", 1)[1]
    response = httpx.post(
        server + f"/unsubscribe/{confirm}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 400
    response = httpx.post(server + f"/confirm/{unsubscribe}")
    assert response.status_code == 400
    assert store.get_by_id(ada.id).status == "pending"


def test_token_signed_with_another_secret_is_refused(config, store, server):
    ada = store.add("ada@example.com")
    token = tokens.make_token(b"another-secret-of-enough-length", tokens.UNSUBSCRIBE, ada.id)
    response = httpx.post(server + f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert store.get_by_id(ada.id).status == "active"


def test_unsubscribe_link_of_an_erased_subscriber_is_harmless(config, store, server):
    ada = store.add("ada@example.com")
    path = unsubscribe_path(config, store, ada.id)
    store.erase("ada@example.com")
    newcomer = store.add("new@example.com")  # must not inherit the erased id
    assert newcomer.id != ada.id
    response = httpx.post(server + path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert store.get_by_id(newcomer.id).status == "active"


# -- subscribe, double opt-in ----------------------------------------------------------------


def test_double_opt_in_from_form_to_confirmation_email_to_activation(config, store, server):
    outbox = config.root / "outbox"
    response = sign_up(server, email="Carol@Example.org", name="Carol", list="default", website="")
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    carol = store.get("carol@example.org")
    # Pending: on no list and without the typed name until the link is confirmed.
    assert carol is not None and (carol.status, carol.name, carol.lists) == ("pending", None, ())
    [mail] = wait_for_mail(outbox)
    assert mail["To"].addresses[0].addr_spec == "Carol@example.org"
    assert mail["From"].addresses[0].addr_spec == "news@example.org"
    assert mail["Message-ID"].endswith("@example.org>")
    assert mail["Date"] is not None
    assert mail["Subject"] == "Confirm your subscription to Test Letter"
    html = mail.get_body(("html",)).get_content()
    path = link_path(mail, "confirm")
    assert path in html
    # Following the link shows a button; it does not activate by itself.
    page = httpx.get(server + path)
    assert page.status_code == 200 and "<button" in page.text
    assert store.get_by_id(carol.id).status == "pending"
    done = httpx.post(server + path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    carol = store.get_by_id(carol.id)
    assert (carol.status, carol.name, carol.lists) == ("active", "Carol", ("default",))
    kinds = [e.kind for e in store.events(carol.id)]
    assert kinds == ["subscribed", "confirmation_sent", "confirmed"]
    assert "form from 127.0.0.1" in store.events(carol.id)[0].detail
    assert list(store.iter_member_ids("default")) == [carol.id]
    # Confirming twice is harmless.
    assert httpx.post(server + path).status_code == 200


def test_already_active_gets_no_second_email_and_same_answer(config, store, server):
    outbox = config.root / "outbox"
    store.add("ada@example.com")
    active = sign_up(server, email="ada@example.com")
    fresh = sign_up(server, email="zed@example.com")
    assert active.status_code == fresh.status_code == 200
    assert active.text == fresh.text
    mails = wait_for_mail(outbox, 1)
    time.sleep(0.3)
    mails = wait_for_mail(outbox, 1)
    assert [m["To"].addresses[0].addr_spec for m in mails] == ["zed@example.com"]
    assert store.get("ada@example.com").status == "active"


def test_honeypot_and_bad_input(config, store, server):
    bot = sign_up(server, email="bot@example.com", website="http://spam")
    assert bot.status_code == 200 and "Check your inbox" in bot.text
    assert store.get("bot@example.com") is None
    bad = sign_up(server, email="not an address")
    assert bad.status_code == 400 and "valid email address" in bad.text
    crlf = sign_up(server, email="x@example.com", name="A\r\nBcc: v")
    assert crlf.status_code == 400
    unknown = sign_up(server, email="y@example.com", list="nope")
    assert unknown.status_code == 400 and "not open for that list" in unknown.text
    assert store.count() == 0
    time.sleep(0.2)
    assert not list((config.root / "outbox").glob("*.eml"))


def test_subscribe_rate_limit_per_client(config, store):
    with running(create_app(config, rate_limit=(2, 60), signup_min_seconds=0)) as url:
        codes = [sign_up(url, email=f"u{i}@example.com").status_code for i in range(4)]
        assert codes == [200, 200, 429, 429]
        limited = sign_up(url, email="u9@example.com")
        assert int(limited.headers["retry-after"]) > 0
    assert store.count() == 2


def test_expired_confirmation_link(config, store, server):
    old = int(time.time()) - tokens.CONFIRM_MAX_AGE - 60
    path = confirm_path(config, store, "zed@example.com", issued_at=old)
    zed = store.get("zed@example.com")
    response = httpx.post(server + path)
    assert response.status_code == 400 and "expired" in response.text
    assert store.get_by_id(zed.id).status == "pending"


def test_old_confirmation_link_cannot_undo_a_later_unsubscribe(config, store, server):
    path = confirm_path(config, store, "zed@example.com", issued_at=int(time.time()) - 3600)
    zed = store.get("zed@example.com")
    store.unsubscribe(zed.id, "cli")
    assert httpx.post(server + path).status_code == 400
    assert store.get_by_id(zed.id).status == "unsubscribed"


def test_a_used_confirmation_link_after_an_unsubscribe_says_so_and_changes_nothing(
    config, store, server
):
    sign_up(server, email="dee@example.org", list="default", website="")
    [mail] = wait_for_mail(config.root / "outbox")
    path = link_path(mail, "confirm")
    assert "You are subscribed" in httpx.post(server + path).text
    dee = store.get("dee@example.org")
    answer = httpx.post(
        server + unsubscribe_path(config, store, dee.id),
        data={"List-Unsubscribe": "One-Click"},
    )
    assert answer.status_code == 200 and store.get_by_id(dee.id).status == "unsubscribed"
    events = store.events(dee.id)
    again = httpx.post(server + path)
    assert again.status_code == 400
    assert "You are subscribed" not in again.text
    assert "used already" in again.text and "unsubscribed" in again.text
    assert "sign-up form" in again.text
    assert store.get_by_id(dee.id).status == "unsubscribed"
    assert store.events(dee.id) == events


# -- web versions ----------------------------------------------------------------------------


def test_issue_web_version_with_caching_headers(config, server):
    slug = "2026-11-25-microsoft-openai-partnership"
    publish_issue(config, slug)
    response = httpx.get(f"{server}/issues/{slug}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()
    assert "/unsubscribe/" not in response.text
    etag, modified = response.headers["etag"], response.headers["last-modified"]
    assert "max-age" in response.headers["cache-control"]
    assert httpx.get(f"{server}/issues/{slug}/", headers={"If-None-Match": etag}).status_code == 304
    since = httpx.get(f"{server}/issues/{slug}/", headers={"If-Modified-Since": modified})
    assert since.status_code == 304
    redirect = httpx.get(f"{server}/issues/{slug}")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"{config.base_url}/issues/{slug}/"
    # Editing the file changes nothing served (the page is a snapshot)...
    path = next((config.root / "issues").glob("*.yaml"))
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("title: ", "title: Edited ", 1), encoding="utf-8")
    same = httpx.get(f"{server}/issues/{slug}/")
    assert same.content == response.content and same.headers["etag"] == etag
    # ...until `publish` refreshes it: a new ETag, so conditional GETs see the change.
    time.sleep(1.1)  # Last-Modified has one-second resolution
    assert "refreshed" in publish_issue(config, slug).summary()
    fresh = httpx.get(f"{server}/issues/{slug}/", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and "Edited" in fresh.text
    assert fresh.headers["etag"] != etag
    assert fresh.headers["last-modified"] != modified


def test_unknown_issue_and_page_get_a_404_page(server):
    for path in ("/issues/no-such-issue/", "/issues/../newsletter.yaml/", "/nothing-here"):
        response = httpx.get(server + path)
        assert response.status_code == 404
        assert "Page not found" in response.text


# -- concurrency -----------------------------------------------------------------------------


def test_a_burst_of_abandoned_requests_leaves_the_site_working(config, store, server):
    """120 requests at once (page views and one-click POSTs), most abandoned by their client
    after 50 ms (a balancer's timeout, a closed tab): afterwards every page and unsubscribe
    still answers at once. On PostgreSQL each thread returns its pooled connection after its
    request; holding them per thread exhausted the pool and every later request waited 30 s."""
    readers = [store.add(f"burst{i}@example.com") for i in range(60)]
    paths = [unsubscribe_path(config, store, r.id) for r in readers]

    def abandon(job: tuple[str, str]) -> None:
        method, path = job
        try:
            data = {"List-Unsubscribe": "One-Click"} if method == "POST" else None
            httpx.request(method, server + path, data=data, timeout=0.05)
        except httpx.HTTPError:
            pass  # gave up: the server finishes the request alone

    jobs = [("GET", p) for p in paths] + [("POST", p) for p in paths[:30]]
    jobs += [("GET", p) for p in paths[30:]]
    with ThreadPoolExecutor(max_workers=120) as pool:
        list(pool.map(abandon, jobs))
    for path in paths[30:40]:  # readers nobody unsubscribed yet
        started = time.monotonic()
        page = httpx.get(server + path, timeout=30)
        done = httpx.post(server + path, data={"List-Unsubscribe": "One-Click"}, timeout=30)
        assert page.status_code == 200 and done.status_code == 200
        assert time.monotonic() - started < 5
    statuses = {r.id: store.get_by_id(r.id).status for r in readers}
    assert all(statuses[r.id] == "unsubscribed" for r in readers[:40])
    assert all(statuses[r.id] == "active" for r in readers[40:])


def test_50_one_click_posts_during_an_import(config, store, server, tmp_path):
    """An import in another process holds the write lock; none of the POSTs fails (SQLite
    spools them; PostgreSQL's unsubscribes wait between the import's batches)."""
    targets = [store.add(f"reader{i}@example.com") for i in range(50)]
    paths = [unsubscribe_path(config, store, s.id) for s in targets]
    csv_path = tmp_path / "big.csv"
    lines = ["email,name"] + [f"reader{i}@example.com,Reader {i}" for i in range(50)]
    lines += [f"imported{i}@example.net,Imported {i}" for i in range(40_000)]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    importer = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "subscribers", "import", str(csv_path),
         "--db", str(config.database)],
        cwd=config.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_until_write_locked(config.database, importer)
        with ThreadPoolExecutor(max_workers=50) as pool, httpx.Client(timeout=60) as client:
            responses = list(
                pool.map(
                    lambda p: client.post(server + p, data={"List-Unsubscribe": "One-Click"}),
                    paths,
                )
            )
        out, err = importer.communicate(timeout=120)
    finally:
        if importer.poll() is None:
            importer.kill()
    assert importer.returncode == 0, err
    assert "40000 added, 50 updated" in out
    assert [r.status_code for r in responses] == [200] * 50
    # Spooled at once while the import held the lock; applied by the next open (every command).
    store = SubscriberStore.for_config(config)
    assert store.count() == 40_050
    assert store.count(status="unsubscribed") == 50
    statuses = exported(store)
    assert all(statuses[f"reader{i}@example.com"] == "unsubscribed" for i in range(50))


def _wait_until_write_locked(database: object, process: subprocess.Popen) -> None:
    """Until `process` holds the write lock: SQLite's file lock, or on PostgreSQL the advisory
    lock every writing transaction takes (seen in pg_locks)."""
    if isinstance(database, Path):
        probe = sqlite3.connect(database, timeout=0)

        def locked() -> bool:
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            except sqlite3.OperationalError:
                return True
            return False
    else:
        from newsletter.db.postgres import WRITE_LOCK

        probe = connect(database)

        def locked() -> bool:
            row = probe.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = ?",
                (WRITE_LOCK,),
            ).fetchone()
            return bool(row[0])

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            if locked():
                return  # the import holds the write lock now
            time.sleep(0.005)
        raise AssertionError("the import never took the write lock")
    finally:
        probe.close()


# -- in the browser --------------------------------------------------------------------------


@pytest.mark.browser
def test_unsubscribe_button_in_the_browser(config, store, server, browser):
    ada = store.add("ada@example.com")
    page = browser.new_page()
    try:
        page.goto(server + unsubscribe_path(config, store, ada.id))
        assert store.get_by_id(ada.id).status == "active"
        page.get_by_role("button", name="Unsubscribe").click()
        page.wait_for_selector("text=You are unsubscribed")
    finally:
        page.close()
    assert store.get_by_id(ada.id).status == "unsubscribed"


def test_oversized_or_odd_bodies_still_unsubscribe_safely(config, store, server):
    ada = store.add("ada@example.com")
    path = unsubscribe_path(config, store, ada.id)
    big = httpx.post(
        server + path,
        content=b"List-Unsubscribe=One-Click&pad=" + b"x" * 200_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 200  # the body is not parsed, the POST itself unsubscribes
    assert store.get_by_id(ada.id).status == "unsubscribed"
    bob = store.add("bob@example.com")
    odd = httpx.post(
        server + unsubscribe_path(config, store, bob.id),
        content=b"--broken multipart",
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert odd.status_code == 200
    assert store.get_by_id(bob.id).status == "unsubscribed"


def test_an_issue_file_broken_after_publishing_does_not_break_its_page(config, server):
    slug = "2026-11-25-microsoft-openai-partnership"
    publish_issue(config, slug)
    before = httpx.get(f"{server}/issues/{slug}/")
    path = next((config.root / "issues").glob("*.yaml"))
    path.write_text("title: [unclosed\n", encoding="utf-8")  # published, then the file broke
    after = httpx.get(f"{server}/issues/{slug}/")
    assert after.status_code == 200 and after.content == before.content
    # A slug marked published without any snapshot (older databases) is not served at all.
    conn = connect(config.database)
    set_published(conn, "broken", True)
    conn.close()
    assert httpx.get(f"{server}/issues/broken/").status_code == 404


@pytest.mark.browser
def test_sign_up_form_in_the_browser(config, store, server, browser):
    page = browser.new_page()
    try:
        page.goto(server + "/subscribe")
        trap = page.locator("#website").bounding_box()
        assert trap is not None and trap["x"] + trap["width"] <= 0  # off-screen for people
        page.fill("#email", "reader@example.com")
        page.fill("#name", "Reader")
        page.get_by_role("button", name="Subscribe").click()
        page.wait_for_selector("text=Check your inbox")
    finally:
        page.close()
    reader = store.get("reader@example.com")
    assert reader is not None and reader.status == "pending" and reader.name is None
    [mail] = wait_for_mail(config.root / "outbox")
    assert mail["To"].addresses[0].addr_spec == "reader@example.com"


def spooled(config) -> int:
    """Unsubscribes waiting in the spool: SQLite's file beside the database, PostgreSQL's
    table (which every instance shares)."""
    if isinstance(config.database, Path):
        spool = config.database.with_name(config.database.name + ".unsubscribe-spool")
        return len(spool.read_text().splitlines()) if spool.exists() else 0
    conn = connect(config.database)
    try:
        return int(conn.execute("SELECT count(*) FROM unsubscribe_spool").fetchone()[0])
    finally:
        conn.close()


def test_unsubscribe_while_the_database_is_locked_is_spooled_not_lost(config, store):
    """A lock held past the busy timeout (a huge import): 200 at once, nothing waits for the
    lock, applied by whichever process opens the database next, once."""
    ada = store.add("ada@example.com")
    path = unsubscribe_path(config, store, ada.id)
    with running(create_app(config, rate_limit=(100, 60))) as url:
        holder = connect(config.database)
        holder.execute("BEGIN IMMEDIATE")  # the write lock every writer takes
        try:
            started = time.monotonic()
            response = httpx.post(url + path, data={"List-Unsubscribe": "One-Click"}, timeout=30)
            assert response.status_code == 200
            assert time.monotonic() - started < 1.5  # spooled, not queued behind the lock
            assert store.get_by_id(ada.id).status == "active"  # not yet: the lock is held
            assert spooled(config) == 1
        finally:
            holder.rollback()
            holder.close()
    with SubscriberStore.for_config(config) as later:  # any later open applies the spool
        assert later.get_by_id(ada.id).status == "unsubscribed"
        assert later.events(ada.id)[-1].detail == "one-click (List-Unsubscribe-Post)"
        assert [e.kind for e in later.events(ada.id)].count("unsubscribed") == 1
    assert spooled(config) == 0
