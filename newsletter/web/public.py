"""`newsletter serve`: the public endpoints, a Starlette app under uvicorn.

    GET  /unsubscribe/<token>   a page with a button; does NOT unsubscribe (link scanners GET)
    POST /unsubscribe/<token>   unsubscribes; RFC 8058 one-click body `List-Unsubscribe=One-Click`
                                (form-urlencoded or multipart) gets 200, no redirect, no cookies
    GET  /subscribe, /          the sign-up form (honeypot field `website`)
    POST /subscribe             creates a pending subscriber, emails a confirmation link;
                                rate-limited per client; the answer never reveals a status
    GET  /confirm/<token>       a page with a button; POST activates (links expire after 7 days)
    GET  /issues/<slug>/        web version of issues/<file>.yaml, cached by file mtime, with
                                ETag / Last-Modified / Cache-Control and conditional GETs

A bad token gets 400 and changes nothing. Database work runs in worker threads, each with its
own connection (SQLite WAL: readers never wait, writers queue on the busy timeout).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import socket
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter import tokens
from newsletter.errors import NewsletterError, SubscriberError, TokenError
from newsletter.issue import load_issue, slugify
from newsletter.subscribers import ACTIVE, DEFAULT_LIST, PENDING, SubscriberStore
from newsletter.subscribers.model import format_timestamp
from newsletter.subscribers.spool import drain, spool_unsubscribe
from newsletter.transactional import send_confirmation

if TYPE_CHECKING:
    from newsletter.config import Config

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
MAX_FORM_BYTES = 64 * 1024


class RateLimiter:
    """At most `limit` hits per `window` seconds per key (a sliding window, in memory)."""

    def __init__(self, limit: int, window: float, clock: Any = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """0 if allowed (and counted), else the seconds to wait."""
        now = self.clock()
        with self._lock:
            if len(self._hits) > 10_000:
                self._hits = {
                    k: v for k, v in self._hits.items() if v and v[-1] > now - self.window
                }
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window - now)
            hits.append(now)
            return 0.0


@dataclass(frozen=True)
class IssuePage:
    stamp: tuple[int, int]  # (mtime_ns, size) of the issue file
    body: bytes
    etag: str
    last_modified: str
    modified: float


class PublicSite:
    """State behind the app: configuration, secret, per-thread stores, page and issue caches."""

    def __init__(self, config: Config, *, rate_limit: tuple[int, float] = (5, 600.0)) -> None:
        self.config = config
        self._local = threading.local()
        self._stores: list[SubscriberStore] = []
        self._stores_lock = threading.Lock()
        self._compile_lock = threading.Lock()
        self.secret = tokens.secret_key(config, self.store().conn)
        self.limiter = RateLimiter(*rate_limit)
        self.pages = Environment(
            loader=PackageLoader("newsletter.web", "templates/public"),
            autoescape=select_autoescape(default=True),
        )
        self._issues: dict[Path, IssuePage] = {}

    def store(self) -> SubscriberStore:
        """This thread's store (SQLite connections are not shared between worker threads)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = SubscriberStore.for_config(self.config)
            with self._stores_lock:
                self._stores.append(store)
        return store

    def close(self) -> None:
        """Close every thread's database connection (at server shutdown)."""
        with self._stores_lock:
            stores, self._stores = self._stores, []
        for store in stores:
            store.close()

    def page(self, template: str, title: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.pages.get_template(template).render(
            title=title,
            newsletter=self.config.name,
            language=self.config.language,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def message(self, title: str, *paragraphs: str, status: int = 200, **extra: Any) -> Response:
        return self.page("message.html", title, status, paragraphs=paragraphs, **extra)

    def bad_link(self, exc: TokenError) -> Response:
        return self.message(
            "This link does not work",
            f"Sorry: {exc}. Please use the exact link from the email, or write to us.",
            status=400,
        )

    def unsubscribe_now_or_later(self, subscriber_id: int, how: str) -> None:
        """Unsubscribe; if a long import holds the database past the busy timeout, spool the
        request durably instead (applied on the next open or unsubscribe): never lost."""
        store = self.store()
        drain(store, self.config.database)
        try:
            store.unsubscribe(subscriber_id, how)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            spool_unsubscribe(self.config.database, subscriber_id, how)
            log.warning("database busy: unsubscribe of %s spooled", subscriber_id)

    # -- issues -------------------------------------------------------------------------------

    def issue_page(self, slug: str) -> IssuePage | None:
        folder = self.config.root / "issues"
        path = next((p for p in sorted(folder.glob("*.y*ml")) if slugify(p.stem) == slug), None)
        if path is None:
            return None
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._issues.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        with self._compile_lock:
            cached = self._issues.get(path)
            if cached is not None and cached.stamp == stamp:
                return cached
            from newsletter.render import compile_issue

            body = compile_issue(load_issue(path), self.config).web_html.encode()
            page = IssuePage(
                stamp=stamp,
                body=body,
                etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                last_modified=formatdate(stat.st_mtime, usegmt=True),
                modified=int(stat.st_mtime),
            )
            self._issues[path] = page
            return page

    # -- endpoints ----------------------------------------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            subscriber_id = tokens.verify_token(self.secret, tokens.UNSUBSCRIBE, token)
        except TokenError as exc:
            return self.bad_link(exc)
        subscriber = await run_in_threadpool(lambda: self.store().get_by_id(subscriber_id))
        if request.method == "GET":
            if subscriber is None or subscriber.status not in (ACTIVE, PENDING):
                return self.message(
                    "You are unsubscribed", f"You will not receive {self.config.name} any more."
                )
            return self.message(
                "Unsubscribe?",
                f"Stop sending {self.config.name} to {subscriber.email}?",
                button="Unsubscribe",
                action="unsubscribe",
            )
        form = await _form(request)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        how = "one-click (List-Unsubscribe-Post)" if one_click else "unsubscribe page"
        if subscriber is not None:
            await run_in_threadpool(self.unsubscribe_now_or_later, subscriber_id, how)
        if one_click:
            return PlainTextResponse("Unsubscribed.\n", headers={"Cache-Control": "no-store"})
        return self.message(
            "You are unsubscribed",
            f"You will not receive {self.config.name} any more. Sorry to see you go.",
        )

    async def subscribe_form(self, request: Request) -> Response:
        list_name = request.query_params.get("list", DEFAULT_LIST)
        return _subscribe_page(self, list_name=list_name)

    async def subscribe(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.check(client)
        if wait:
            response = self.message(
                "Too many sign-ups",
                "Too many sign-ups from your network just now. Please try again later.",
                status=429,
            )
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        form = await _form(request)
        email = str(form.get("email", ""))[:400]
        name = str(form.get("name", ""))[:400]
        list_name = str(form.get("list", "") or DEFAULT_LIST)[:100]
        done = self.message(
            "Check your inbox",
            "If the address can receive our emails, a message with a confirmation link is on "
            "its way. The link is valid for 7 days.",
        )
        if form.get("website"):  # the honeypot: only bots fill hidden fields
            log.info("sign-up ignored: honeypot field filled (client %s)", client)
            return done
        if list_name != DEFAULT_LIST and list_name not in await run_in_threadpool(
            lambda: self.store().list_names()
        ):
            return _subscribe_page(self, list_name, email, name, "There is no such list.", 400)
        try:
            subscriber, send = await run_in_threadpool(
                lambda: self.store().request_subscription(
                    email, name=name or None, list_name=list_name, detail=f"form from {client}"
                )
            )
        except SubscriberError as exc:
            return _subscribe_page(self, list_name, email, name, _form_error(exc), 400)
        if send:
            done.background = BackgroundTask(_send_confirmation, self, subscriber.id)
        return done

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            subscriber_id, issued = tokens.read_token(
                self.secret, tokens.CONFIRM, token, max_age=tokens.CONFIRM_MAX_AGE
            )
        except TokenError as exc:
            if "expired" in str(exc):
                return self.message(
                    "This link has expired",
                    "Confirmation links are valid for 7 days. Please sign up again.",
                    status=400,
                    link={"url": "/subscribe", "text": "Sign up again"},
                )
            return self.bad_link(exc)
        if request.method == "GET":
            return self.message(
                "Confirm your subscription",
                f"Press the button to start receiving {self.config.name}.",
                button="Confirm my subscription",
                action="confirm",
            )
        issued_at = format_timestamp_from_epoch(issued)
        try:
            await run_in_threadpool(
                lambda: self.store().confirm(
                    subscriber_id, issued_at=issued_at, detail="confirmation link"
                )
            )
        except SubscriberError as exc:
            return self.message("This link does not work any more", f"{exc}.", status=400)
        return self.message("You are subscribed", f"Thank you! {self.config.name} is on its way.")

    async def issue(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if not slug or len(slug) > 80 or slugify(slug) != slug:
            raise HTTPException(404)
        try:
            page = await run_in_threadpool(self.issue_page, slug)
        except NewsletterError as exc:
            log.error("issue %s cannot be shown: %s", slug, exc)
            return self.message(
                "This issue cannot be shown right now", "Please try again later.", status=500
            )
        if page is None:
            raise HTTPException(404)
        headers = {
            "ETag": page.etag,
            "Last-Modified": page.last_modified,
            "Cache-Control": f"public, max-age={ISSUE_MAX_AGE}",
            "X-Content-Type-Options": "nosniff",
        }
        if _not_modified(request, page):
            return Response(status_code=304, headers=headers)
        return HTMLResponse(page.body, headers=headers)

    async def issue_redirect(self, request: Request) -> Response:
        return RedirectResponse(f"/issues/{request.path_params['slug']}/", status_code=308)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 404:
            return self.message(
                "Page not found",
                "There is nothing at this address. Check the link, or go to the sign-up page.",
                status=404,
                link={"url": "/subscribe", "text": f"Subscribe to {self.config.name}"},
            )
        return PlainTextResponse(str(getattr(exc, "detail", "")), status_code=status)


def create_app(config: Config, *, rate_limit: tuple[int, float] = (5, 600.0)) -> Starlette:
    """The public web app for `config` (its database, base_url, issues/ folder, transport).

    `rate_limit` is (sign-ups, seconds) allowed per client address on POST /subscribe.
    """
    site = PublicSite(config, rate_limit=rate_limit)
    routes = [
        Route("/", site.subscribe_form, methods=["GET"]),
        Route("/subscribe", site.subscribe_form, methods=["GET"]),
        Route("/subscribe", site.subscribe, methods=["POST"]),
        Route("/unsubscribe/{token}", site.unsubscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", site.confirm, methods=["GET", "POST"]),
        Route("/issues/{slug}/", site.issue, methods=["GET"]),
        Route("/issues/{slug}", site.issue_redirect, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        site.close()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: site.not_found}, lifespan=lifespan
    )
    app.state.site = site
    return app


def serve(config: Config, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the public app under uvicorn until interrupted."""
    import uvicorn

    app = create_app(config)
    sock = listen(host, port)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="info", server_header=False, proxy_headers=True)
    )
    shown = f"[{host}]" if ":" in host else host
    print(
        f"Serving {config.name} on http://{shown}:{sock.getsockname()[1]} "
        f"(public URL {config.base_url}); press Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a normal stop
        pass
    finally:
        sock.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear NewsletterError (port in use, unknown host)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except (socket.gaierror, OSError) as exc:
        if not isinstance(exc, socket.gaierror) and exc.errno != errno.EADDRNOTAVAIL:
            raise NewsletterError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                + ("; is another server running there? choose another --port" if port else "")
            ) from None
        # The host itself is wrong (unknown, or not an address of this machine), not the port.
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; --host must be an address "
            "of this machine such as 127.0.0.1 or 0.0.0.0"
        ) from None
    sock.set_inheritable(True)
    return sock


def format_timestamp_from_epoch(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    import datetime as dt

    return format_timestamp(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _send_confirmation(site: PublicSite, subscriber_id: int) -> None:
    """Runs after the response (so its timing reveals nothing); failures go to the log."""
    store = site.store()
    subscriber = store.get_by_id(subscriber_id)
    if subscriber is None:
        return
    url = tokens.confirm_url(site.config, subscriber_id, site.secret)
    try:
        result = send_confirmation(site.config, subscriber, url)
    except NewsletterError as exc:
        log.error("confirmation email to subscriber %s not sent: %s", subscriber_id, exc)
        return
    if result.status == "sent":
        store.record_event(subscriber_id, "confirmation_sent", result.reply[:500])
    else:
        log.warning("confirmation email to subscriber %s: %s", subscriber_id, result.reply)


async def _form(request: Request) -> dict[str, Any]:
    """The posted form fields; {} for a body that is absent, too big or malformed."""
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        return {}  # these forms are tiny: never buffer a large or unbounded body
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:  # a malformed body must not turn a valid unsubscribe into a 500
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _subscribe_page(
    site: PublicSite,
    list_name: str,
    email: str = "",
    name: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    return site.page(
        "subscribe.html",
        f"Subscribe to {site.config.name}",
        status,
        action_url="/subscribe",
        list_name=list_name,
        email=email,
        name=name,
        error=error,
    )


def _form_error(exc: SubscriberError) -> str:
    text = str(exc)
    if "name" in text and "email" not in text:
        return "Please enter your name on one line, without special characters."
    return "Please enter a valid email address, like name@example.com."


def _not_modified(request: Request, page: IssuePage) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        return page.etag in {t.strip().removeprefix("W/") for t in tags.split(",")} or (
            tags.strip() == "*"
        )
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return parsedate_to_datetime(since).timestamp() >= page.modified
        except (TypeError, ValueError):
            return False
    return False


__all__ = ["RateLimiter", "create_app", "listen", "serve"]
