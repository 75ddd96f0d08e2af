"""`newsletter serve`: the public endpoints, a Starlette app under uvicorn.

    /unsubscribe/<token>   GET/HEAD: a page with a button. POST: unsubscribes; the RFC 8058
                           one-click body `List-Unsubscribe=One-Click` gets 200, no redirect,
                           no cookies. `/unsubscribe/test` (test copies) unsubscribes nobody.
    /subscribe             GET: the sign-up form (honeypot field `website`, anti-CSRF token).
                           POST: a double opt-in sign-up to a public list (see subscribers.signup);
                           a POST from a web version's form (no token) shows this form filled in
    /, /issues/            GET: the archive's index of published issues (newsletter.archive),
                           also as /index.html, /issues/index.html; /archive redirects to /
    /feed.xml, /feed.json  GET: the Atom 1.0 and JSON Feed 1.1 feeds; /sitemap.xml, /robots.txt
    /confirm/<token>       GET: a page with a button. POST: applies that sign-up (7 days).
    /issues/<slug>/        GET: the web version of a *published* issue (see publishing) with the
                           archive's additions (also as /issues/<slug>/index.html), with
                           ETag / Last-Modified / Cache-Control and conditional GETs
    /webhooks/<provider>   POST: a provider's bounce/complaint/delivery events (sendgrid,
                           mailgun, postmark, ses, resend), signature verified first (see
                           bounces.webhooks); off (404) while the provider's secret is unset
    /issues/<slug>/<name>  GET: a local story image of that published issue (only the files
                           its stories name; the name carries a hash of the bytes: immutable)

Only a POST changes anything (guard.endpoint is the one dispatch; GET and HEAD get a read-only
database). A bad token gets 400 and changes nothing. Every absolute URL and redirect is built
from `base_url`, never from the request's Host header. Database work runs in worker threads,
each with its own connections (SQLite WAL: reads never wait for a writer). A write waits at
most `BUSY_TIMEOUT` seconds for another process's lock (a long import): then a one-click
unsubscribe is spooled at once, and any other POST gets a 503 "busy" page with Retry-After,
nothing written.

On PostgreSQL (`database: postgresql://...`) several `serve` processes, on one machine or
behind a load balancer, share the database: each sign-up, confirmation and unsubscribe is one
`BEGIN IMMEDIATE` transaction, which takes the database-wide write lock (newsletter.db), so a
request posted to two instances at once lands once. The spool of one-click unsubscribes is a
table there (a file would belong to one machine), which any instance applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter import db, imagestore, publishing, tokens
from newsletter.archive.build import site_file
from newsletter.archive.pages import INDEX
from newsletter.bounces import webhooks
from newsletter.errors import NewsletterError, SubscriberError, TokenError
from newsletter.issue import load_issue, slugify
from newsletter.subscribers import ACTIVE, DEFAULT_LIST, PENDING, SubscriberStore
from newsletter.subscribers.address import InvalidEmail
from newsletter.subscribers.model import format_timestamp
from newsletter.subscribers.signup import (
    CONFIRM_RESEND_SECONDS,
    describe_signup,
    withdraw_signup,
)
from newsletter.subscribers.spool import drain, spool_unsubscribe
from newsletter.transactional import send_confirmation
from newsletter.web.public.background import BackgroundSender
from newsletter.web.public.guard import (
    BODY_TIMEOUT,
    MAX_WEBHOOK_BYTES,
    CloseUnreadBody,
    FormTokens,
    cross_site,
    endpoint,
    not_modified,
    read_form,
)
from newsletter.web.public.ratelimit import SlidingWindowLimiter
from newsletter.welcome import prepare as prepare_welcome
from newsletter.welcome import request_welcome

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.subscribers.signup import SignupRequest

T = TypeVar("T")
log = logging.getLogger("newsletter.serve")

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the URL holds a token: never leak it to other sites
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
ISSUE_MAX_AGE = 300
_IMAGE_NAME = re.compile(r"[a-z0-9-]{1,80}-[0-9a-f]{10}\.(?:jpg|png|gif|webp)\Z")
SIGNUP_MIN_SECONDS = 1.5  # every sign-up answer takes at least this long (see PublicSite.subscribe)
SEND_TIMES_KEPT = 20  # recent confirmation sends whose slowest sets the sign-up answer's floor
SEND_TIME_CAP = 10.0  # seconds: one hung send must not slow every later answer further
# `send --test` puts {base_url}/unsubscribe/test in the copy, `build` /unsubscribe/sample.
SAMPLE_TOKENS = frozenset({"test", "sample"})
BUSY_TIMEOUT = 2.0  # seconds a write waits for another process's lock before "busy"
ONE_CLICK_BUSY_MS = 50  # a one-click unsubscribe is spooled rather than wait longer
BUSY_RETRY_AFTER = 10  # seconds, the Retry-After of the "busy" page


class PublicSite:
    """State behind the app: configuration, secret, per-thread stores, pages and issue cache."""

    def __init__(
        self,
        config: Config,
        *,
        rate_limit: tuple[int, float] = (5, 600.0),
        signup_min_seconds: float = SIGNUP_MIN_SECONDS,
        body_timeout: float = BODY_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from newsletter.render.theme import environment

        self.config = config
        self._local = threading.local()
        self._stores: list[SubscriberStore] = []
        self._stores_lock = threading.Lock()
        # Setting up may wait for a running import like any command; requests will not.
        with SubscriberStore.for_config(config) as setup:
            self.secret = tokens.secret_key(config, setup.conn)
            publishing.prepare(setup.conn)
            prepare_welcome(setup.conn)
            webhooks.prepare(setup.conn)
        self.webhooks = webhooks.providers_from_environ(os.environ if environ is None else environ)
        log.info("provider webhooks on: %s", ", ".join(sorted(self.webhooks)) or "none")
        self.limiter = SlidingWindowLimiter(*rate_limit)
        self.forms = FormTokens(self.secret)
        self.signup_min_seconds = signup_min_seconds
        self.body_timeout = body_timeout
        self._send_times: deque[float] = deque(maxlen=SEND_TIMES_KEPT)  # seconds, recent sends
        self.pages = environment(config)
        self.prefix = urlsplit(config.base_url).path.rstrip("/")
        contact = config.reply_to or config.sender
        self.contact = contact.addr_spec if contact is not None else ""
        # Started by the app's lifespan (serve), not by tests that run the app without one.
        self.background = BackgroundSender(config)
        self.postgresql = isinstance(config.database, db.PostgresDatabase)

    # -- databases ----------------------------------------------------------------------------

    def writer(self) -> SubscriberStore:
        """This thread's read-write store (only POST handlers use it)."""
        return self._thread_store("writer", query_only=False)

    def reader(self) -> SubscriberStore:
        """This thread's read-only store (SQLite `query_only`): what GET and HEAD handlers get,
        so a page view cannot write even by mistake."""
        return self._thread_store("reader", query_only=True)

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker thread (database work never blocks the event loop). On
        PostgreSQL the thread's connections go back to the process's pool afterwards, so that
        up to 40 threads share a few connections; SQLite keeps its per-thread connections."""
        if self.postgresql:
            return await run_in_threadpool(self._then_release, fn, *args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    def _then_release(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            for kind in ("reader", "writer"):
                store = getattr(self._local, kind, None)
                if store is not None:
                    setattr(self._local, kind, None)
                    with self._stores_lock:
                        self._stores.remove(store)
                    _close_store(store)

    def _thread_store(self, kind: str, *, query_only: bool) -> SubscriberStore:
        store = getattr(self._local, kind, None)
        if store is None:
            try:
                store = SubscriberStore.for_config(self.config, busy_timeout=BUSY_TIMEOUT)
            except SubscriberError as exc:
                # Not the reader's input: the database cannot be reached or has no free
                # connection now. A "busy" 503 with Retry-After, never "invalid address".
                raise db.OperationalError(f"database busy: {exc}") from exc
            if query_only:
                store.conn.execute(
                    "SET default_transaction_read_only = on"
                    if store.postgresql
                    else "PRAGMA query_only = ON"
                )
            setattr(self._local, kind, store)
            with self._stores_lock:
                self._stores.append(store)
        return store

    def close(self) -> None:
        """Close every thread's database connections (at server shutdown)."""
        with self._stores_lock:
            stores, self._stores = self._stores, []
        for store in stores:
            _close_store(store)

    # -- pages --------------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, /, **context: Any) -> Response:
        """The theme's `pages/<template>.html`, with the values every page sees."""
        from newsletter.render.theme import render

        values = {
            "newsletter": {
                "name": self.config.name,
                "language": self.config.language,
                "base_url": self.config.base_url,
                "contact": self.contact,
            },
            # `subscribe`: where the sign-up form posts; `signup`: the sign-up page of a
            # public list to link to ("" when no list is public: no link to a 404).
            "links": {
                "subscribe": f"{self.prefix}/subscribe",
                "signup": f"{self.prefix}{self.config.signup_path}"
                if self.config.signup_path
                else "",
            },
            "brand": self.config.brand,
            **context,
        }
        try:
            html = render(self.pages, f"pages/{template}.html", values)
        except NewsletterError as exc:
            log.error("page %s cannot be rendered: %s", template, exc)
            return PlainTextResponse("Internal error\n", status_code=500, headers=PAGE_HEADERS)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def bad_body(self, request: Request) -> Response:
        """A POST body too big or too slow: nothing was done."""
        return self.page("incomplete-request", 400)

    def refuse_method(self, request: Request, allow: str) -> Response:
        response = self.page("method-not-allowed", 405)
        response.headers["Allow"] = allow
        return response

    def subscribe_page(
        self, request: Request, list_name: str, status: int = 200, **values: str
    ) -> Response:
        form_token = self.forms.issue(_client(request))
        values = {"email": "", "name": "", "error": "", "reason": "", **values}
        return self.page("subscribe", status, list_name=list_name, form_token=form_token, **values)

    # -- unsubscribe --------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        if token in SAMPLE_TOKENS:
            return self.page("test-copy")
        try:
            subscriber_id = tokens.verify_token(self.secret, tokens.UNSUBSCRIBE, token)
        except TokenError:
            return self.page("bad-link", 400)
        subscriber = await self.in_thread(lambda: self.reader().get_by_id(subscriber_id))
        if subscriber is None or subscriber.status not in (ACTIVE, PENDING):
            return self.page("unsubscribed", just_now=False)
        return self.page("unsubscribe", email=subscriber.email)

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await read_form(request, timeout=self.body_timeout)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if token in SAMPLE_TOKENS:
            if one_click:
                return _one_click_answer("Test copy: nobody was unsubscribed.\n")
            return self.page("test-copy")
        try:
            subscriber_id = tokens.verify_token(self.secret, tokens.UNSUBSCRIBE, token)
        except TokenError:
            return self.page("bad-link", 400)
        how = "one-click (List-Unsubscribe-Post)" if one_click else "unsubscribe page"
        await self.in_thread(self.unsubscribe_now_or_later, subscriber_id, how)
        if one_click:
            return _one_click_answer("Unsubscribed.\n")
        return self.page("unsubscribed", just_now=True)

    def unsubscribe_now_or_later(self, subscriber_id: int, how: str) -> None:
        """Unsubscribe; if another process (a long import) holds the database, spool the
        request durably at once instead (applied on the next open or unsubscribe): never lost,
        and a mail provider's one-click POST never waits for the lock."""
        store = self.writer()
        if store.get_by_id(subscriber_id) is None:
            return  # erased: nothing to do (the id is never reused)
        try:
            with store.waiting_at_most(ONE_CLICK_BUSY_MS / 1000):
                store.unsubscribe(subscriber_id, how)
        except db.OperationalError as exc:
            if not _is_busy(exc):
                raise
            spool_unsubscribe(self.config.database, subscriber_id, how, store)
            log.warning("database busy: unsubscribe of %s spooled", subscriber_id)
            return
        drain(store, self.config.database)  # the database was free a moment ago

    # -- sign-up ------------------------------------------------------------------------------

    async def subscribe_form(self, request: Request) -> Response:
        list_name = request.query_params.get("list", DEFAULT_LIST)
        if list_name not in self.config.public_lists:
            return await self.not_found(request, HTTPException(404))  # private = unknown
        return self.subscribe_page(request, list_name)

    async def subscribe(self, request: Request) -> Response:
        """A sign-up. The confirmation is sent before answering (so the page can say when it
        could not be), and every answer takes at least `signup_min_seconds` or, if longer, as
        long as the slowest of the last sends: a known address, for which no email goes out,
        is not answered faster than a new one."""
        started = time.monotonic()
        response = await self._subscribe(request)
        floor = max(self.signup_min_seconds, max(self._send_times, default=0.0))
        delay = floor - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        return response

    async def _subscribe(self, request: Request) -> Response:
        client = _client(request)
        wait = self.limiter.check(client)
        if wait:
            response = self.page("rate-limited", 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        form = await read_form(request, timeout=self.body_timeout)
        email = str(form.get("email", ""))[:400]
        name = str(form.get("name", ""))[:400]
        list_name = str(form.get("list", "") or DEFAULT_LIST)[:100]
        token = str(form.get("form_token", ""))
        if not token and form.get("source") == "web-version":
            # A web version's form: static pages cannot carry a token, so this only fills in
            # the real form (nothing is stored or sent); the reader confirms with one click.
            return self.subscribe_page(request, list_name, email=email)
        if cross_site(request) or not token or not self.forms.valid(client, token):
            # Another site's page posting our form (or a form kept open for hours): no sign-up.
            log.info("sign-up refused: missing, expired or foreign form token (client %s)", client)
            error = "expired" if token and not cross_site(request) else "foreign"
            return self.subscribe_page(request, list_name, 400, email=email, error=error)
        if form.get("website"):  # the honeypot: only bots fill hidden fields
            log.info("sign-up ignored: honeypot field filled (client %s)", client)
            return self.sent_page()
        if list_name not in self.config.public_lists:
            return self.subscribe_page(request, DEFAULT_LIST, 400, email=email, error="list")
        try:
            signup = await self.in_thread(
                lambda: self.writer().request_subscription(
                    email, name=name or None, lists=[list_name], detail=f"form from {client}"
                )
            )
        except SubscriberError as exc:
            error = "name" if "name" in str(exc) and "email" not in str(exc) else "address"
            # The reason depends only on what was typed (never on the database): safe to show.
            reason = str(exc) if isinstance(exc, InvalidEmail) or error == "name" else ""
            return self.subscribe_page(
                request, list_name, 400, email=email, name=name, error=error, reason=reason
            )
        if signup is not None:
            started = time.monotonic()
            sent = await self.in_thread(self.send_confirmation, signup)
            # Kept on the event loop's side: only this thread reads and writes _send_times.
            self._send_times.append(min(time.monotonic() - started, SEND_TIME_CAP))
            if not sent:
                return self.page("subscribe-failed", 503)
        return self.sent_page()

    def sent_page(self) -> Response:
        """The one answer to every accepted sign-up (new, known, pending within the resend
        cooldown, bounced...): its wording is true for each, so it tells nothing."""
        return self.page("subscribe-sent", resend_minutes=CONFIRM_RESEND_SECONDS // 60)

    def send_confirmation(self, signup: SignupRequest) -> bool:
        """Email the confirmation link of `signup`; False (and logged) if it did not go out."""
        url = tokens.confirm_url(self.config, signup.id, self.secret)
        subscriber = signup.subscriber
        try:
            result = send_confirmation(self.config, subscriber, url, signup.lists)
        except NewsletterError as exc:
            log.error("confirmation email to subscriber %s not sent: %s", subscriber.id, exc)
            withdraw_signup(self.writer(), signup.id)  # so that trying again soon works
            return False
        if result.status != "sent":
            log.warning("confirmation email to subscriber %s: %s", subscriber.id, result.reply)
            withdraw_signup(self.writer(), signup.id)
            return False
        try:
            self.writer().record_event(subscriber.id, "confirmation_sent", result.reply[:500])
        except db.OperationalError as exc:
            if not _is_busy(exc):
                raise
            # The mail went out: say so. Only the resend cooldown misses this one.
            log.warning("database busy: confirmation to %s sent, not recorded", subscriber.id)
        return True

    async def confirm_page(self, request: Request) -> Response:
        checked = self._confirm_token(request.path_params["token"])
        if isinstance(checked, Response):
            return checked
        asked = await self.in_thread(lambda: describe_signup(self.reader().conn, checked[0]))
        name, lists = asked if asked is not None else (None, ())
        return self.page("confirm", name=name or "", lists=list(lists))

    async def confirm(self, request: Request) -> Response:
        checked = self._confirm_token(request.path_params["token"])
        if isinstance(checked, Response):
            return checked
        signup_id, issued = checked
        issued_at = format_timestamp(dt.datetime.fromtimestamp(issued or 0, dt.UTC))
        try:
            owed = await self.in_thread(self._confirm_and_owe_welcome, signup_id, issued_at)
        except SubscriberError as exc:  # why, in the reader's words: nothing was changed
            return self.page("confirm-refused", 400, reason=str(exc))
        if owed:
            self.background.wake()  # sent in the background: this page never waits for it
        return self.page("confirmed")

    def _confirm_and_owe_welcome(self, signup_id: int, issued_at: str) -> bool:
        """Apply the sign-up and record the welcome mail it owes (once per person, see
        newsletter.welcome); True when a welcome issue is configured (one added earlier with
        `add --welcome --status pending` is owed from then and goes now too)."""
        store = self.writer()
        subscriber = store.confirm_signup(
            signup_id, issued_at=issued_at, detail="confirmation link"
        )
        request_welcome(store.conn, self.config, subscriber.id, "confirmed sign-up")
        return self.config.welcome is not None

    def _confirm_token(self, token: str) -> tuple[int, int | None] | Response:
        try:
            return tokens.read_token(
                self.secret, tokens.CONFIRM, token, max_age=tokens.CONFIRM_MAX_AGE
            )
        except TokenError as exc:
            if "expired" in str(exc):
                return self.page("confirm-expired", 400)
            return self.page("bad-link", 400)

    # -- provider webhooks --------------------------------------------------------------------

    async def webhook_page(self, request: Request) -> Response:
        """GET/HEAD: nothing to show, nothing done; say the URL takes POSTs."""
        if request.path_params["provider"] not in webhooks.PROVIDERS:
            raise HTTPException(404)
        return PlainTextResponse(
            "This URL receives webhooks: POST only.\n",
            status_code=405,
            headers={"Allow": "POST, OPTIONS", "Cache-Control": "no-store"},
        )

    async def webhook(self, request: Request) -> Response:
        """POST: verified, then applied (bounces.webhooks.receive); 404 while the provider's
        secret is unset (logged), 413 for a body past MAX_WEBHOOK_BYTES."""
        name = request.path_params["provider"]
        if name not in webhooks.PROVIDERS:
            raise HTTPException(404)
        headers = {"Cache-Control": "no-store"}
        provider = self.webhooks.get(name)
        if provider is None:
            needed = " and ".join(webhooks.VARIABLES[name])
            log.warning("webhook %s is off (404): set %s to turn it on", name, needed)
            return PlainTextResponse("This webhook is off.\n", status_code=404, headers=headers)
        body = request.state.body
        if body is None:
            return PlainTextResponse("Body too large.\n", status_code=413, headers=headers)
        received = await self.in_thread(
            webhooks.receive,
            self.config,
            self.writer(),
            provider,
            webhooks.WebhookRequest(dict(request.headers), body),
            secret=self.secret,
        )
        return PlainTextResponse(received.message, status_code=received.status, headers=headers)

    # -- issues -------------------------------------------------------------------------------

    async def archive_file(self, request: Request, name: str) -> Response:
        if name == INDEX and "list" in request.query_params:
            # `/` was the sign-up form: its links (`/?list=weekly`) keep leading there.
            query = urlencode({"list": request.query_params["list"]})
            return RedirectResponse(f"{self.config.base_url}/subscribe?{query}", status_code=308)
        try:
            found = await self.in_thread(lambda: site_file(self.config, self.reader().conn, name))
        except NewsletterError as exc:  # a theme template of archive/ that cannot render
            log.error("%s cannot be shown: %s", name, exc)
            return self.page("error", 500)
        if found is None:
            raise HTTPException(404)
        return self.public_answer(request, name, *found)

    async def issue(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if not slug or len(slug) > 80 or slugify(slug) != slug:
            raise HTTPException(404)
        return await self.archive_file(request, f"issues/{slug}/{INDEX}")

    def public_answer(self, request: Request, name: str, body: bytes, modified: float) -> Response:
        """A public, cacheable archive file with a strong ETag and conditional GET."""
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(modified, usegmt=True),
            "Cache-Control": f"public, max-age={ISSUE_MAX_AGE}",
            "X-Content-Type-Options": "nosniff",
        }
        if not_modified(request, etag, int(modified)):
            return Response(status_code=304, headers=headers)
        media_type = _MEDIA_TYPES.get(name) or _MEDIA_TYPES[name.rsplit(".", 1)[1]]
        return Response(body, media_type=media_type, headers=headers)

    def issue_image(self, slug: str, name: str) -> tuple[str, bytes, float] | None:
        """(media type, bytes, modified) of a local image of the published issue `slug`, or
        None. An image kept when the issue was published or sent (newsletter.imagestore)
        answers whatever became of its file, so a sent email never loses it; otherwise a file
        a story names now, while its bytes still match the hash in its name."""
        conn = self.reader().conn
        if not publishing.is_published(conn, slug):
            return None
        stored = imagestore.stored_image(conn, slug, name)
        if stored is not None:
            return stored
        path = publishing.issue_path(self.config, slug)
        if path is None:
            return None
        issue = load_issue(path)
        images = {
            s.image.local.name: s.image.local
            for s in issue.stories
            if s.image is not None and s.image.local is not None
        }
        image = images.get(name)
        if image is None:
            return None
        try:
            data, modified = image.path.read_bytes(), image.path.stat().st_mtime
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest()[:10] not in name:
            return None
        return image.media_type, data, modified

    async def issue_file(self, request: Request) -> Response:
        slug, name = request.path_params["slug"], request.path_params["name"]
        if name == INDEX:
            return await self.issue(request)
        if not slug or len(slug) > 80 or slugify(slug) != slug or not _IMAGE_NAME.match(name):
            raise HTTPException(404)
        try:
            found = await self.in_thread(self.issue_image, slug, name)
        except NewsletterError as exc:
            log.error("issue %s cannot be shown: %s", slug, exc)
            return self.page("error", 500)
        if found is None:
            raise HTTPException(404)
        media_type, data, modified = found
        etag = f'"{name}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        }
        if not_modified(request, etag, modified):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media_type, headers=headers)

    async def issue_redirect(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if not slug or len(slug) > 80 or slugify(slug) != slug:
            raise HTTPException(404)
        return RedirectResponse(f"{self.config.base_url}/issues/{slug}/", status_code=308)

    async def archive_redirect(self, request: Request) -> Response:
        return RedirectResponse(f"{self.config.base_url}/", status_code=308)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 404:
            return self.page("not-found", 404)
        return PlainTextResponse(str(getattr(exc, "detail", "")), status_code=status)

    async def busy(self, request: Request, exc: Exception) -> Response:
        """Another process holds the database's write lock past BUSY_TIMEOUT: the transaction
        was rolled back, so nothing is half-written; the visitor is asked to try again."""
        if not isinstance(exc, db.OperationalError) or not _is_busy(exc):
            raise exc
        log.warning("database busy: %s %s answered 503", request.method, request.url.path)
        response = self.page("busy", 503)
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
        return response


def create_app(
    config: Config,
    *,
    rate_limit: tuple[int, float] = (5, 600.0),
    signup_min_seconds: float = SIGNUP_MIN_SECONDS,
    body_timeout: float = BODY_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> Starlette:
    """The public web app for `config` (its database, base_url, issues/ folder, transport).

    `rate_limit` is (sign-ups, seconds) allowed per client address on POST /subscribe;
    `signup_min_seconds` the least time every sign-up answer takes (hides what happened);
    `body_timeout` the seconds a client has to send a whole form body; `environ` where the
    webhook secrets are read (default os.environ)."""
    site = PublicSite(
        config,
        rate_limit=rate_limit,
        signup_min_seconds=signup_min_seconds,
        body_timeout=body_timeout,
        environ=environ,
    )

    def route(path: str, show: Any, act: Any = None, raw_body_limit: int | None = None) -> Route:
        return Route(
            path,
            endpoint(
                show,
                act,
                site.refuse_method,
                site.bad_body,
                body_timeout=site.body_timeout,
                raw_body_limit=raw_body_limit,
            ),
        )

    routes = [
        *(route(path, _shows(site, name)) for path, name in _ARCHIVE_PATHS.items()),
        route("/archive", site.archive_redirect),
        route("/subscribe", site.subscribe_form, site.subscribe),
        route("/unsubscribe/{token}", site.unsubscribe_page, site.unsubscribe),
        route("/confirm/{token}", site.confirm_page, site.confirm),
        route("/issues/{slug}/", site.issue),
        route("/issues/{slug}/{name}", site.issue_file),
        route("/issues/{slug}", site.issue_redirect),
        route("/webhooks/{provider}", site.webhook_page, site.webhook, MAX_WEBHOOK_BYTES),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        site.background.start()
        try:
            yield
        finally:
            await run_in_threadpool(site.background.stop)
            site.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(CloseUnreadBody)],
        exception_handlers={HTTPException: site.not_found, db.OperationalError: site.busy},
        lifespan=lifespan,
    )
    # Starlette would answer `/subscribe/` with a redirect built from the Host header.
    app.router.redirect_slashes = False
    app.state.site = site
    return app


# Request path -> archive file (newsletter.archive.build.site_files names them the same).
_ARCHIVE_PATHS = {
    "/": INDEX,
    f"/{INDEX}": INDEX,
    "/issues/": f"issues/{INDEX}",
    f"/issues/{INDEX}": f"issues/{INDEX}",
    "/feed.xml": "feed.xml",
    "/feed.json": "feed.json",
    "/sitemap.xml": "sitemap.xml",
    "/robots.txt": "robots.txt",
}
_MEDIA_TYPES = {
    "feed.xml": "application/atom+xml",
    "html": "text/html; charset=utf-8",
    "xml": "application/xml",
    "json": "application/feed+json",
    "txt": "text/plain; charset=utf-8",
}


def _shows(site: PublicSite, name: str) -> Any:
    async def show(request: Request) -> Response:
        return await site.archive_file(request, name)

    return show


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _close_store(store: SubscriberStore) -> None:
    if store.postgresql:  # the connection goes back to the process's pool as it came
        with contextlib.suppress(db.Error):
            store.conn.execute("RESET default_transaction_read_only")
    store.close()


def _is_busy(exc: db.OperationalError) -> bool:
    # SQLite: "database is locked"; PostgreSQL: "canceling statement due to lock timeout".
    return "locked" in str(exc) or "busy" in str(exc) or "lock timeout" in str(exc)


def _one_click_answer(text: str) -> Response:
    # RFC 8058: the mail client's POST gets a plain 200 (no redirect, no cookie, no page).
    return PlainTextResponse(text, headers={"Cache-Control": "no-store"})
