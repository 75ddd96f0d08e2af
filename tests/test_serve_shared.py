"""Two `newsletter serve` processes on one PostgreSQL database, as behind a load balancer.

Every sign-up, confirmation and one-click unsubscribe is POSTed to both instances at the same
moment (threads released together), for many addresses at once. Each must land exactly once:
one subscriber row, one confirmation mail, one history entry per step, one welcome owed, and
the status the last step leaves. Checked in the database and in the delivered mail.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from db_support import use_database
from dkim_support import write_key
from serve_process import ServeProcess, serve_process
from welcome_issue import WELCOME

from newsletter import db
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore

PEOPLE = [f"reader{i:02d}@example.net" for i in range(12)]


@pytest.fixture
def shared(project: Path, postgres_url: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two serve processes, one newsletter.yaml, one PostgreSQL database."""
    use_database(project, postgres_url)
    (project / "issues" / "_welcome.yaml").write_text(WELCOME, encoding="utf-8")
    write_key(project / "dkim.pem", "rsa")
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as fh:
        fh.write("dkim:\n  domain: example.org\n  selector: s1\n  private_key: dkim.pem\n")
    with serve_process(project) as one, serve_process(project) as two:
        yield one, two


def both_at_once(
    servers: tuple[ServeProcess, ServeProcess], post: Callable[[str, str], httpx.Response]
) -> Callable[[str], list[httpx.Response]]:
    """A function that POSTs `post(server_url, address)` to both servers, released together."""

    def run(address: str) -> list[httpx.Response]:
        gate = threading.Barrier(2)

        def one(url: str) -> httpx.Response:
            gate.wait(10)
            return post(url, address)

        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(one, [s.url for s in servers]))

    return run


def for_everyone(run: Callable[[str], list[httpx.Response]]) -> dict[str, list[httpx.Response]]:
    with ThreadPoolExecutor(6) as pool:
        return dict(zip(PEOPLE, pool.map(run, PEOPLE), strict=True))


def client_of(address: str) -> dict[str, str]:
    # Each reader from their own address, as the load balancer forwards it (serve believes
    # X-Forwarded-For from 127.0.0.1): the per-client sign-up limit is not what is tested.
    number = int(re.sub(r"\D", "", address))
    return {"X-Forwarded-For": f"198.51.100.{number + 1}"}


def sign_up(url: str, address: str) -> httpx.Response:
    headers = client_of(address)
    form = httpx.get(f"{url}/subscribe", headers=headers, timeout=30)
    token = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert token, form.text
    data = {"form_token": token.group(1), "email": address, "name": "Reader", "website": ""}
    return httpx.post(f"{url}/subscribe", data=data, headers=headers, timeout=30)


def outbox(project: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted((project / "outbox").glob("*.eml"))
    ]


def mails_to(project: Path, subject_start: str) -> Counter[str]:
    return Counter(
        m["To"].addresses[0].addr_spec
        for m in outbox(project)
        if str(m["Subject"]).startswith(subject_start)
    )


def events(store: SubscriberStore, address: str) -> Counter[str]:
    found = store.get(address)
    assert found is not None, address
    return Counter(e.kind for e in store.events(found.id))


def test_two_serve_instances_land_each_signup_confirmation_and_unsubscribe_once(
    project: Path, postgres_url: str, shared: tuple[ServeProcess, ServeProcess]
) -> None:
    config = load_config(project / "newsletter.yaml")

    # 1. The same sign-up form posted to both instances at once, for every reader.
    answers = for_everyone(both_at_once(shared, sign_up))
    for address, pair in answers.items():
        assert [r.status_code for r in pair] == [200, 200], (address, [r.text for r in pair])
        assert all("Check your inbox" in r.text for r in pair)
    with SubscriberStore.for_config(config) as store:
        assert store.count() == len(PEOPLE)
        assert store.count_by_status() == {"pending": len(PEOPLE)}
        for address in PEOPLE:
            assert events(store, address) == {"subscribed": 1, "confirmation_sent": 1}
    confirmations = mails_to(project, "Confirm your subscription")
    assert confirmations == {address: 1 for address in PEOPLE}
    links = {}
    for message in outbox(project):
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = re.search(r"https?://[^/\s]+(/confirm/[A-Za-z0-9._-]+)", text)
        assert found, text
        links[message["To"].addresses[0].addr_spec] = found.group(1)

    # 2. Each confirmation link used on both instances at once.
    answers = for_everyone(
        both_at_once(shared, lambda url, address: httpx.post(url + links[address], timeout=30))
    )
    for address, pair in answers.items():
        assert [r.status_code for r in pair] == [200, 200], (address, [r.text for r in pair])
    with SubscriberStore.for_config(config) as store:
        assert store.count_by_status() == {"active": len(PEOPLE)}
        for address in PEOPLE:
            assert events(store, address) == {
                "subscribed": 1,
                "confirmation_sent": 1,
                "confirmed": 1,
            }
            assert store.get(address).lists == ("default",)  # type: ignore[union-attr]
        ids = {store.get(a).id for a in PEOPLE}  # type: ignore[union-attr]
    conn = db.connect(postgres_url)
    try:
        owed = Counter(r[0] for r in conn.execute("SELECT subscriber_id FROM welcome_requests"))
    finally:
        conn.close()
    assert owed == {sid: 1 for sid in ids}  # one welcome owed per reader, whoever confirmed
    deadline = time.monotonic() + 60
    while sum(mails_to(project, "Welcome").values()) < len(PEOPLE):
        assert time.monotonic() < deadline, mails_to(project, "Welcome")
        time.sleep(0.2)
    time.sleep(1.0)  # a second sender, had there been one, would have written by now
    assert mails_to(project, "Welcome") == {address: 1 for address in PEOPLE}

    # 3. The one-click unsubscribe (RFC 8058) of each reader's welcome, posted to both at once.
    unsubscribe = {
        m["To"].addresses[0].addr_spec: re.search(r"/unsubscribe/[^>\s]+", m["List-Unsubscribe"])
        for m in outbox(project)
        if str(m["Subject"]).startswith("Welcome")
    }
    assert all(unsubscribe.values()), unsubscribe

    def one_click(url: str, address: str) -> httpx.Response:
        path = unsubscribe[address].group(0)  # type: ignore[union-attr]
        return httpx.post(url + path, data={"List-Unsubscribe": "One-Click"}, timeout=30)

    answers = for_everyone(both_at_once(shared, one_click))
    for address, pair in answers.items():
        assert [r.status_code for r in pair] == [200, 200], (address, [r.text for r in pair])
    with SubscriberStore.for_config(config) as store:
        assert store.count() == len(PEOPLE)
        assert store.count_by_status() == {"unsubscribed": len(PEOPLE)}
        for address in PEOPLE:
            assert events(store, address) == {
                "subscribed": 1,
                "confirmation_sent": 1,
                "confirmed": 1,
                "unsubscribed": 1,
            }
    for server in shared:
        output = server.stop()
        assert "Traceback" not in output, output
