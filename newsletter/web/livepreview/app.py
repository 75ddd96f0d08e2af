"""The preview web app: the page, its JSON state, the email documents and the build event stream."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from watchfiles import Change
from watchfiles.main import FileChange

from newsletter.errors import NewsletterError
from newsletter.images import LocalImage, written_image_paths
from newsletter.render.theme import BUILTIN_THEME, theme_dirs
from newsletter.web.livepreview.builder import Builder, Snapshot
from newsletter.web.livepreview.document import frame_document
from newsletter.web.livepreview.views import (
    find_choice,
    list_choices,
    render_email,
    unsubscribe_url,
)
from newsletter.web.livepreview.watcher import Hub, Rebuilder, WatchSet, watch_set

WEB = Path(__file__).resolve().parent.parent
STATIC = WEB / "static"
HEARTBEAT_SECONDS = 15.0
# Email documents may load their remote images and styles but never run scripts (no mail client
# does), and cannot navigate the preview page.
EMAIL_CSP = (
    "default-src 'none'; img-src * data: blob:; style-src 'unsafe-inline' *; font-src * data:; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'self'"
)
NO_STORE = {"Cache-Control": "no-store"}


class PreviewState:
    """The latest snapshot of the issue, rebuilt on demand; safe to call from any thread."""

    def __init__(self, builder: Builder, hub: Hub) -> None:
        self.builder = builder
        self.hub = hub
        self._lock = threading.Lock()
        self.snapshot = builder.build(1)
        self.last_good: Snapshot | None = self.snapshot if self.snapshot.ok else None
        hub.version, hub.ok = self.snapshot.version, self.snapshot.ok
        self.loop: asyncio.AbstractEventLoop | None = None

    def rebuild(self, changes: frozenset[FileChange] = frozenset()) -> Snapshot:
        if not changes or any(kind != Change.modified for kind, _path in changes):
            # A file appeared or vanished (or what changed is unknown): maybe a theme override,
            # which Jinja's template cache, keyed by name, would not notice.
            self.builder.forget_templates()
        with self._lock:
            snapshot = self.builder.build(self.snapshot.version + 1)
            self.snapshot = snapshot
            if snapshot.ok:
                self.last_good = snapshot
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.publish, snapshot.version, snapshot.ok)
        return snapshot

    def watch_set(self) -> WatchSet:
        config = self.snapshot.config or self.builder.last_config
        themes = [BUILTIN_THEME]
        if config is not None:
            try:
                themes = theme_dirs(config)
            except NewsletterError:  # config.templates missing: watch for it to appear
                themes = [BUILTIN_THEME, *([config.templates] if config.templates else [])]
        root = config.root if config is not None else self.builder.start
        config_file = self.builder.config_path or (config.path if config is not None else None)
        images = written_image_paths(self.builder.issue_path)
        return watch_set(self.builder.issue_path, config_file, root, themes, images)

    def display_path(self, path: str | Path | None) -> str | None:
        if path is None:
            return None
        try:
            return str(Path(path).resolve().relative_to(self.builder.start))
        except ValueError:
            return str(path)


def create_app(state: PreviewState, rebuilder: Rebuilder | None = None) -> Starlette:
    templates = Environment(
        loader=FileSystemLoader(str(WEB / "templates")),
        autoescape=select_autoescape(default=True),
    )
    asset_version = _asset_version()

    async def index(request: Request) -> Response:
        snap = state.snapshot
        issue_name = state.display_path(snap.issue_path) or ""
        html = templates.get_template("preview/index.html").render(
            issue_name=issue_name,
            issue_path=str(snap.issue_path),
            newsletter_name=snap.config.name if snap.config else "Newsletter",
            asset_version=asset_version,
        )
        return HTMLResponse(html, headers=NO_STORE)

    async def api_state(request: Request) -> Response:
        payload = await asyncio.to_thread(_state_payload, state, request.query_params.get("as"))
        return JSONResponse(payload, headers=NO_STORE)

    async def api_recipients(request: Request) -> Response:
        config = state.snapshot.config or state.builder.last_config
        query = request.query_params.get("q", "")[:200]
        choices = await asyncio.to_thread(list_choices, config, query)
        return JSONResponse([c.as_dict() for c in choices], headers=NO_STORE)

    async def email(request: Request) -> Response:
        scheme = "dark" if request.query_params.get("scheme") == "dark" else "light"
        body = await asyncio.to_thread(_email_document, state, request.query_params.get("as"))
        headers = {**NO_STORE, "Content-Security-Policy": EMAIL_CSP}
        return HTMLResponse(frame_document(body, scheme), headers=headers)

    async def image(request: Request) -> Response:
        found = await asyncio.to_thread(_local_image, state, request.path_params["name"])
        if found is None:
            return Response("no such image in this issue", status_code=404, headers=NO_STORE)
        media_type, data = found
        return Response(data, media_type=media_type, headers=NO_STORE)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _event_stream(state.hub),
            media_type="text/event-stream",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.loop = asyncio.get_running_loop()
        task = asyncio.create_task(rebuilder.run()) if rebuilder is not None else None
        try:
            yield
        finally:
            state.hub.close()
            if task is not None and rebuilder is not None:
                rebuilder.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", api_state),
            Route("/api/recipients", api_recipients),
            Route("/email", email),
            Route("/events", events),
            Route("/images/{name}", image),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ],
        lifespan=lifespan,
    )


async def _event_stream(hub: Hub) -> AsyncIterator[str]:
    queue = hub.listen()
    try:
        yield f"retry: 1000\nevent: build\ndata: {hub.event}\n\n"
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if event is None:
                return
            yield f"event: build\ndata: {event}\n\n"
    finally:
        hub.forget(queue)


def _state_payload(state: PreviewState, key: str | None) -> dict[str, object]:
    snap = state.snapshot
    config = snap.config or state.builder.last_config
    choice = find_choice(config, key or "sample")
    payload: dict[str, object] = {
        "version": snap.version,
        "ok": snap.ok,
        "built_at": snap.built_at,
        "duration_ms": round(snap.duration_ms, 1),
        "issue": {
            "path": state.display_path(snap.issue_path),
            "title": _title(snap, state.last_good),
            "newsletter": config.name if config else "Newsletter",
        },
        "problems": [_located(state, p.as_dict()) for p in snap.problems],
        "checks": _checks(state, snap),
        "recipient": choice.as_dict(),
        "recipients": [c.as_dict() for c in list_choices(config)],
        "email": None,
    }
    if snap.compiled is not None:
        try:
            payload["email"] = render_email(snap.compiled, choice.recipient).as_dict()
        except NewsletterError as exc:
            payload["ok"] = False
            payload["problems"] = [
                {
                    "kind": "recipient",
                    "message": f"cannot build the message for {choice.recipient.email}: {exc}",
                    "location": "",
                    "excerpt": [],
                    "field": "",
                    "details": "",
                }
            ]
    return payload


def _title(snap: Snapshot, last_good: Snapshot | None) -> str:
    for candidate in (snap, last_good):
        if candidate is not None and candidate.compiled is not None:
            return candidate.compiled.issue.title
    return snap.issue_path.name


def _located(state: PreviewState, problem: dict[str, object]) -> dict[str, object]:
    path = problem.get("path")
    if isinstance(path, str):
        shown = state.display_path(path) or path
        location = str(problem.get("location", ""))
        problem["location"] = location.replace(path, shown, 1)
    return problem


def _checks(state: PreviewState, snap: Snapshot) -> dict[str, object]:
    items = []
    for d in snap.diagnostics:
        shown = state.display_path(d.path) or d.path
        item = d.as_dict()
        item["location"] = f"{shown}:{d.line}:{d.col}"
        items.append(item)
    return {
        "errors": sum(1 for d in snap.diagnostics if d.severity == "error"),
        "warnings": sum(1 for d in snap.diagnostics if d.severity == "warning"),
        "items": items,
    }


def _email_document(state: PreviewState, key: str | None) -> str:
    snap = state.snapshot if state.snapshot.ok else state.last_good
    if snap is None or snap.compiled is None:
        return _placeholder("The preview appears here once the issue builds.")
    choice = find_choice(snap.config, key or "sample")
    compiled = snap.compiled
    html = compiled.render_for(choice.recipient, unsubscribe_url(compiled.config)).html
    # Local images are not published yet: the preview serves them itself.
    for image in _local_images(snap):
        published = image.url(compiled.config.base_url, compiled.issue.slug)
        html = html.replace(published, f"/images/{image.name}")
    return html


def _local_images(snap: Snapshot | None) -> list[LocalImage]:
    if snap is None or snap.compiled is None:
        return []
    stories = snap.compiled.issue.stories
    return [s.image.local for s in stories if s.image is not None and s.image.local is not None]


def _local_image(state: PreviewState, name: str) -> tuple[str, bytes] | None:
    """(media type, bytes) of a local image of the shown issue, by its published name."""
    snap = state.snapshot if state.snapshot.ok else state.last_good
    for image in _local_images(snap):
        if image.name == name:
            try:
                return image.media_type, image.path.read_bytes()
            except OSError:
                return None
    return None


def _placeholder(message: str) -> str:
    from html import escape

    return (
        "<!doctype html><html><head><meta charset='utf-8'></head>"
        "<body style='font:14px system-ui,sans-serif;color:#667;display:grid;place-items:center;"
        f"height:90vh;margin:0;padding:24px;text-align:center'>{escape(message)}</body></html>"
    )


def _asset_version() -> str:
    digest = hashlib.sha256()
    for name in ("preview.js", "preview.css"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:10]
