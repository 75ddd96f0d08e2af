"""Helpers for the `newsletter serve` tests: a real uvicorn on loopback, the sign-up form as a
browser posts it, a content dump of the whole database, and a project with state to protect."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from db_support import dump  # noqa: F401 - the tests of serve import it from here
from starlette.types import ASGIApp

from newsletter import tokens
from newsletter.campaign import send_issue
from newsletter.config import Config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import listen, server_config

PUBLISHED = "2026-11-25-microsoft-openai-partnership"
DRAFT = "2026-12-02-draft"


@contextmanager
def running(app: ASGIApp, port: int = 0, **settings: float | str) -> Iterator[str]:
    """Serve `app` with `serve`'s own uvicorn settings in a thread; yield its base URL. `port`
    0 picks a free one; a given one lets a test put the URL in base_url first."""
    sock = listen("127.0.0.1", port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, log_level="warning", lifespan="off", **settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    """A loopback port free right now (for a base_url that must name the server's own URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def form_token(client: httpx.Client | None, server: str, query: str = "") -> str:
    page = (client or httpx).get(server + "/subscribe" + query)
    match = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def sign_up(server: str, **data: str) -> httpx.Response:
    """What a browser does: load the form (for its anti-CSRF token), then post it."""
    return httpx.post(server + "/subscribe", data={"form_token": form_token(None, server), **data})


@dataclass
class Site:
    """A project whose database has something to lose: an active reader (with her unsubscribe
    token), a pending sign-up (with its confirmation token), a campaign that sent her the
    published issue, and a draft on disk."""

    config: Config
    unsubscribe: str
    confirm: str
    ada_id: int
    zed_id: int


def populate(config: Config) -> Site:
    draft = config.root / "issues" / f"{DRAFT}.yaml"
    draft.write_text("title: 'TODO: a draft'\ndate: 2026-12-02\nstories: []\n", encoding="utf-8")
    with SubscriberStore.for_config(config) as store:
        ada = store.add("ada@example.com", name="Ada")
        signup = store.request_subscription(
            "zed@example.com", name="Zed", lists=["default"], detail="form"
        )
        assert signup is not None
        secret = tokens.secret_key(config, store.conn)
        unsubscribe = tokens.make_token(secret, tokens.UNSUBSCRIBE, ada.id)
        confirm = tokens.confirm_url(config, signup.id, secret).rsplit("/", 1)[1]
    # Sent to Ada (so published, and the campaign tables have rows to protect too).
    send_issue(config, config.root / "issues" / f"{PUBLISHED}.yaml", transport="outbox:./sent")
    return Site(config, unsubscribe, confirm, ada.id, signup.subscriber.id)
