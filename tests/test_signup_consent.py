"""Consent on the public form: a confirmation link activates exactly what it names, the mail it
comes in carries no text a stranger typed, and the form's answers are true in every case.

Everything goes through the public interfaces: the CLI for the writer's side, a real uvicorn for
the form and the links, the outbox's .eml files (parsed) for what the reader receives."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from db_support import use_database
from serve_support import running, sign_up

from newsletter.cli import main
from newsletter.config import Config, load_config
from newsletter.subscribers import SubscriberStore
from newsletter.web.public import create_app

ISSUE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
PHISH = (
    "your account is locked, call +1 555 0100 or visit https://evil.test/login to restore "
    "access. Regards"
)


@pytest.fixture
def project(project: Path, database: str) -> Path:
    """Every test of this file on SQLite and on PostgreSQL (newsletter.yaml's `database:`)."""
    use_database(project, database)
    return project


@pytest.fixture
def config(project: Path) -> Config:
    path = project / "newsletter.yaml"
    path.write_text(
        path.read_text(encoding="utf-8") + "transport: outbox:./outbox\n"
        "lists:\n  default: {public: true}\n  weekly: {public: true}\n",
        encoding="utf-8",
    )
    return load_config(path)


@pytest.fixture
def server(config: Config):
    with running(create_app(config, rate_limit=(10_000, 60), signup_min_seconds=0)) as url:
        yield url


def cli(config: Config, *args: str) -> str:
    done = CliRunner().invoke(main, ["--config", str(config.path), *args])
    assert done.exit_code == 0, done.output
    return done.output


def mails(config: Config) -> list[EmailMessage]:
    folder = config.root / "outbox"
    files = (
        sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    )
    policy = email.policy.default
    return [email.message_from_bytes(f.read_bytes(), policy=policy) for f in files]  # type: ignore[misc]


def confirm_path(message: EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"https?://[^/\s]+(/confirm/[A-Za-z0-9._-]+)", text)
    assert match, text
    return match.group(1)


def state(config: Config, address: str) -> tuple[str, str | None, tuple[str, ...]]:
    with SubscriberStore.for_config(config) as store:
        sub = store.get(address)
        assert sub is not None
        return sub.status, sub.name, sub.lists


def no_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests below need several confirmations for one address in a row."""
    monkeypatch.setattr("newsletter.subscribers.signup.CONFIRM_RESEND_SECONDS", -3600)


# (how the address starts, lists after confirming a sign-up for `weekly`)
BEFORE = {
    "unknown": (None, ("weekly",)),
    "active on default": ("active", ("default", "weekly")),
    "unsubscribed from default": ("unsubscribed", ("weekly",)),
    "pending on default (added)": ("pending", ("weekly",)),
}


@pytest.mark.parametrize("before", list(BEFORE))
def test_confirming_a_link_activates_exactly_what_it_names(config, server, before):
    start, expected = BEFORE[before]
    cli(config, "subscribers", "add", "zz@example.com")  # so that the default list has someone
    if start is not None:
        cli(
            config,
            "subscribers",
            "add",
            "ann@example.com",
            "--name",
            "Ann",
            *(["--status", "pending"] if start == "pending" else []),
        )
    if start == "unsubscribed":
        cli(config, "subscribers", "unsubscribe", "ann@example.com")
    assert sign_up(server, email="ann@example.com", list="weekly").status_code == 200
    [mail] = mails(config)
    assert httpx.post(server + confirm_path(mail)).status_code == 200
    status, _name, lists = state(config, "ann@example.com")
    assert (status, lists) == ("active", expected)
    # What the writer sees and sends agrees: only lists she confirmed reach her.
    default_count = cli(config, "subscribers", "count", "--list", "default")
    assert ("active: 2" in default_count) == ("default" in expected)
    cli(config, "send", str(config.root / ISSUE), "--list", "default", "--yes")
    delivered = [
        m["To"].addresses[0].addr_spec for m in mails(config) if "Confirm" not in m["Subject"]
    ]
    assert "zz@example.com" in delivered
    assert ("ann@example.com" in delivered) == ("default" in expected)


def test_a_pending_sign_up_joins_nothing_and_a_strangers_link_sets_only_its_own_list(
    config, server, monkeypatch
):
    no_cooldown(monkeypatch)
    assert sign_up(server, email="new12@example.com", list="default").status_code == 200
    assert state(config, "new12@example.com") == ("pending", None, ())
    assert "0 subscribers in list default" in cli(
        config, "subscribers", "count", "--list", "default"
    )
    stranger = sign_up(server, email="new12@example.com", name="Stranger X", list="weekly")
    assert stranger.status_code == 200
    assert state(config, "new12@example.com") == ("pending", None, ())
    first, second = mails(config)
    # The page behind the link says what pressing its button does.
    page = httpx.get(server + confirm_path(second))
    assert "list weekly" in page.text and "Stranger X" in page.text
    assert state(config, "new12@example.com") == ("pending", None, ())
    httpx.post(server + confirm_path(second))
    assert state(config, "new12@example.com") == ("active", "Stranger X", ("weekly",))
    # The owner's own (earlier) link then adds what it names, nothing else.
    httpx.post(server + confirm_path(first))
    assert state(config, "new12@example.com")[2] == ("default", "weekly")


@pytest.mark.parametrize(
    "stored",
    [None, "Old Name"],
    ids=["new address", "pending record with a stored name"],
)
def test_the_confirmation_mail_carries_no_text_from_the_form(config, server, stored):
    if stored is not None:
        cli(config, "subscribers", "add", "bo@example.com", "--name", stored, "--status", "pending")
    assert sign_up(server, email="bo@example.com", name=PHISH, list="weekly").status_code == 200
    [mail] = mails(config)
    raw = (config.root / "outbox").glob("*.eml").__next__().read_bytes()
    assert b"evil.test" not in raw and b"555 0100" not in raw
    if stored is not None:  # not even the name kept on the unconfirmed record
        assert stored.encode() not in raw
    [to] = mail["To"].addresses
    assert (to.display_name, to.addr_spec) == ("", "bo@example.com")
    for part in ("plain", "html"):
        body = mail.get_body((part,)).get_content()  # type: ignore[union-attr]
        assert "Hello," in body and "evil.test" not in body
        assert "(list weekly)" in body  # it names what the link confirms


def test_an_owner_confirmed_name_is_used_in_the_confirmation(config, server):
    cli(config, "subscribers", "add", "cy@example.com", "--name", "Cy")
    assert sign_up(server, email="cy@example.com", name="Mallory", list="weekly").status_code == 200
    [mail] = mails(config)
    assert mail["To"].addresses[0].display_name == "Cy"
    assert "Hello Cy," in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_the_answer_is_the_same_and_true_within_the_resend_cooldown(config, server):
    first = sign_up(server, email="di@example.com")
    again = sign_up(server, email="di@example.com")
    known = sign_up(server, email="di@example.com", list="weekly")
    assert first.status_code == again.status_code == known.status_code == 200

    def text(response: httpx.Response) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))

    assert text(first) == text(again) == text(known)
    assert "at most one every 10 minutes" in text(first)
    assert len(mails(config)) == 1  # the page does not claim that a second one went out


FORMAT_CHARACTERS = {
    "U+202E right-to-left override": "Ann\u202eevil",
    "U+200B zero width space": "An\u200bn",
    "U+2066 left-to-right isolate": "\u2066Ann",
    "U+FEFF zero width no-break space": "Ann\ufeff",
    "U+00AD soft hyphen": "An\u00adn",
}


@pytest.mark.parametrize("name", list(FORMAT_CHARACTERS.values()), ids=list(FORMAT_CHARACTERS))
def test_names_with_invisible_format_characters_are_refused_everywhere(config, server, name):
    code = f"U+{ord(next(c for c in name if not c.isalpha())):04X}"
    # The form: 400 with the reason, nothing stored, nothing sent.
    form = sign_up(server, email="ann@example.com", name=name)
    assert form.status_code == 400 and code in form.text
    # `subscribers add`: a clear error, non-zero exit, no traceback.
    added = CliRunner().invoke(
        main, ["--config", str(config.path), "subscribers", "add", "bo@example.com", "--name", name]
    )
    assert added.exit_code != 0 and code in added.output and "Traceback" not in added.output
    # import: the row is rejected with the reason, the others imported.
    csv = config.root / "people.csv"
    csv.write_text(f"email,name\ncy@example.com,{name}\ndi@example.com,Di\n", encoding="utf-8")
    cli(config, "subscribers", "import", str(csv))
    rejects = (config.root / "people.rejects.csv").read_text(encoding="utf-8")
    assert "cy@example.com" in rejects and code in rejects
    with SubscriberStore.for_config(config) as store:
        assert [s.email for s in store.iter_subscribers()] == ["di@example.com"]
    assert mails(config) == []


def test_names_with_joiners_are_accepted(config, server):
    # Persian and Indic names and emoji sequences need the zero-width (non-)joiner.
    cli(
        config,
        "subscribers",
        "add",
        "fa@example.com",
        "--name",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",
    )
    assert state(config, "fa@example.com")[1] == "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645"


def test_the_sample_link_of_build_and_a_bad_link_page(config, server):
    cli(config, "build", str(config.root / ISSUE), "-o", str(config.root / "build"))
    built = next((config.root / "build").rglob("email.html")).read_text(encoding="utf-8")
    sample = re.search(r"https://news\.example\.org(/unsubscribe/[A-Za-z0-9._-]+)", built)
    assert sample, "no unsubscribe link in the built email.html"
    page = httpx.get(server + sample.group(1))
    assert page.status_code == 200 and "nobody was unsubscribed" in page.text
    one_click = httpx.post(server + sample.group(1), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and "nobody was unsubscribed" in one_click.text
    bad = httpx.get(server + "/unsubscribe/not-a-token")
    assert bad.status_code == 400 and "mailto:news@example.org" in bad.text
