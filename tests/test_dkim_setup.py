"""`newsletter dkim keygen` and `newsletter doctor --dns` against a stub DNS server on loopback
(dnspython's message API; never the network)."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from pathlib import Path

import dkim
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore

SECRET = "a-long-enough-signing-secret-0123456789"


class StubDns:
    """An authoritative-looking UDP DNS server on 127.0.0.1 answering TXT from a dict."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StubDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self._thread.join(2)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            self.asked.append(name)
            values = self.records.get(name)
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT and values:
                rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
                for value in values:
                    # Long values go as several 255-byte strings, as a DNS panel stores them.
                    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
                    text = " ".join(f'"{c}"' for c in chunks)
                    rrset.add(dns.rdata.from_text("IN", "TXT", text), 300)
                response.answer.append(rrset)
            self.sock.sendto(response.to_wire(), peer)


@pytest.fixture
def letter(tmp_path: Path, runner: CliRunner) -> tuple[Path, str]:
    """A setup doctor passes offline, its DKIM key made by `dkim keygen`; (folder, record)."""
    config = tmp_path / "newsletter.yaml"
    config.write_text(
        "name: Letter\nfrom: Letter <news@letter.co.uk>\nbase_url: https://news.letter.co.uk\n"
        "postal_address: 1 Real Road, Realtown\n",
        encoding="utf-8",
    )
    made = runner.invoke(main, ["--config", str(config), "dkim", "keygen", "--selector", "s1"])
    assert made.exit_code == 0, made.output
    return tmp_path, printed_record(made.output)


def printed_record(output: str) -> str:
    match = re.search(r"Publish this TXT record at \S+:\n  (v=DKIM1; [^\n]+)", output)
    assert match, output
    return match.group(1)


GOOD = {
    "s1._domainkey.letter.co.uk": ["{dkim}"],
    "letter.co.uk": ["google-site-verification=abc", "v=spf1 include:_spf.example.net -all"],
    "_dmarc.letter.co.uk": ["v=DMARC1; p=none"],
}


def records(dkim_record: str, **changes: list[str] | None) -> dict[str, list[str]]:
    out = {k: [v.format(dkim=dkim_record) for v in vs] for k, vs in GOOD.items()}
    for name, value in changes.items():
        key = {"dkim": "s1._domainkey.letter.co.uk", "spf": "letter.co.uk"}.get(name)
        key = key or "_dmarc.letter.co.uk"
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


def run_doctor(folder: Path, runner: CliRunner, nameserver: str, *more: str):
    config = str(folder / "newsletter.yaml")
    result = runner.invoke(
        main,
        ["--config", config, "doctor", "--dns", "--nameserver", nameserver, *more],
        env={"NEWSLETTER_SECRET_KEY": SECRET},
    )
    assert "Traceback" not in result.output
    return result


def test_published_records_that_match_give_no_finding(letter, runner) -> None:
    folder, record = letter
    with StubDns(records(record)) as server:
        result = run_doctor(folder, runner, server.address)
    assert result.exit_code == 0, result.output
    assert ": error:" not in result.output and ": warning:" not in result.output
    assert {"s1._domainkey.letter.co.uk", "letter.co.uk", "_dmarc.letter.co.uk"} <= set(
        server.asked
    )


OTHER_KEY = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrongwrongwrong"
DNS_VARIANTS = [
    ({"dkim": None}, "dkim.selector", 7, "error", "no DKIM record at s1._domainkey.letter.co.uk"),
    ({"dkim": [OTHER_KEY]}, "dkim.selector", 7, "error", "holds another public key"),
    ({"dkim": ["v=DKIM1; k=rsa; p="]}, "dkim.selector", 7, "error", "is revoked"),
    ({"spf": ["google-site-verification=abc"]}, "from", 2, "warning", "no SPF record"),
    ({"spf": ["v=spf1 -all", "v=spf1 mx -all"]}, "from", 2, "error", "2 SPF records"),
    ({"dmarc": None}, "from", 2, "warning", "no DMARC record"),
]


@pytest.mark.parametrize(("changes", "key", "line", "severity", "says"), DNS_VARIANTS)
def test_each_dns_problem_is_reported(letter, runner, changes, key, line, severity, says) -> None:
    folder, record = letter
    with StubDns(records(record, **changes)) as server:
        result = run_doctor(folder, runner, server.address)
    config = folder / "newsletter.yaml"
    pattern = rf"^{re.escape(str(config))}:{line}:\d+: {severity}: {re.escape(key)}: .*{says}"
    assert re.search(pattern, result.output, re.MULTILINE), result.output
    assert result.exit_code == (1 if severity == "error" else 0)


def test_a_sub_domain_sender_uses_the_organizational_dmarc_record(letter, runner) -> None:
    folder, record = letter
    config = folder / "newsletter.yaml"
    config.write_text(config.read_text().replace("news@letter.co.uk", "news@mail.letter.co.uk"))
    dns_records = records(record) | {"mail.letter.co.uk": ["v=spf1 -all"]}
    with StubDns(dns_records) as server:
        result = run_doctor(folder, runner, server.address)
    assert result.exit_code == 0 and ": warning:" not in result.output, result.output
    assert server.asked[-2:] == ["_dmarc.mail.letter.co.uk", "_dmarc.letter.co.uk"]


def test_an_unanswering_name_server_is_a_warning_not_a_traceback(letter, runner) -> None:
    folder, _ = letter
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: each lookup fails at once
    result = run_doctor(folder, runner, f"127.0.0.1:{port}")
    assert result.exit_code == 0, result.output
    assert result.output.count(": warning:") == 3 and "could not look up" in result.output


@pytest.mark.parametrize("bad", ["dns.example.net", "127.0.0.1:port", "300.1.1.1"])
def test_a_bad_nameserver_is_a_clear_error(letter, runner, bad) -> None:
    folder, _ = letter
    result = run_doctor(folder, runner, bad)
    assert result.exit_code == 1 and "--nameserver must be an IP address" in result.output


# --- dkim keygen ---------------------------------------------------------------------------


@pytest.fixture
def init_project(tmp_path: Path, runner: CliRunner) -> Path:
    assert runner.invoke(main, ["init", str(tmp_path / "letter")]).exit_code == 0
    return tmp_path / "letter"


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_keygen_fills_in_init_s_block_keeps_comments_and_signs_what_send_sends(
    init_project, runner, key_type
) -> None:
    config = init_project / "newsletter.yaml"
    before = config.read_text()
    result = runner.invoke(
        main, ["--config", str(config), "dkim", "keygen", "--selector", "s9", "--type", key_type]
    )
    assert result.exit_code == 0, result.output
    after = config.read_text()
    assert "# dkim:" not in after and "\ndkim:\n  domain: example.com\n  selector: s9\n" in after
    kept = [ln for ln in before.splitlines() if not re.match(r"# (dkim:|  [a-z_]+:)", ln)]
    assert [ln for ln in after.splitlines() if ln in kept] == kept  # every other line, in order
    loaded = load_config(config).dkim
    assert loaded is not None and loaded.private_key == init_project / "dkim/s9.example.com.pem"
    record = printed_record(result.output)
    assert f"k={key_type};" in record
    assert "s9._domainkey.example.com. IN TXT (" in result.output
    # A message the outbox gets verifies against exactly the record printed.
    with SubscriberStore.for_config(load_config(config)) as store:
        store.add("ada@example.net")
    issue = next((init_project / "issues").glob("*.yaml"))
    sent = runner.invoke(main, ["--config", str(config), "send", str(issue), "--yes"])
    assert sent.exit_code == 0, sent.output
    message = next((init_project / "outbox").glob("*.eml")).read_bytes()
    assert email.message_from_bytes(message, policy=email.policy.default)["DKIM-Signature"]

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        assert (name.decode() if isinstance(name, bytes) else name).rstrip(".") == (
            "s9._domainkey.example.com"
        )
        return record.encode()

    assert dkim.verify(message, dnsfunc=dnsfunc)


def test_keygen_never_overwrites_a_key(init_project, runner) -> None:
    config = init_project / "newsletter.yaml"
    args = ["--config", str(config), "dkim", "keygen", "--selector", "s1"]
    assert runner.invoke(main, args).exit_code == 0
    key = init_project / "dkim" / "s1.example.com.pem"
    key_bytes, config_text = key.read_bytes(), config.read_text()
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "already exists, not overwriting" in again.output
    assert key.read_bytes() == key_bytes and config.read_text() == config_text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{name: Flow, from: "Flow <a@letter.co.uk>"}\n', "would change other settings"),
        (
            "name: Has\nfrom: Has <a@letter.co.uk>\ndkim:\n  domain: letter.co.uk\n"
            "  selector: old\n  private_key: old.pem\n",
            "already has a dkim: block",
        ),
    ],
)
def test_keygen_prints_the_block_when_it_cannot_edit_safely(tmp_path, runner, text, reason) -> None:
    config = tmp_path / "newsletter.yaml"
    config.write_text(text, encoding="utf-8")
    result = runner.invoke(
        main, ["--config", str(config), "dkim", "keygen", "--selector", "s2", "--type", "ed25519"]
    )
    assert result.exit_code == 0, result.output
    assert reason in result.output
    assert "dkim:\n  domain: letter.co.uk\n  selector: s2\n" in result.output
    assert config.read_text() == text
    assert (tmp_path / "dkim" / "s2.letter.co.uk.pem").is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--selector", "bad selector"], "selector must be a DNS name"),
        (["--domain", "exa mple.com"], "domain must be a DNS name"),
        (["--type", "dsa"], "Invalid value for '--type'"),
    ],
)
def test_keygen_bad_input_is_one_clear_line_and_writes_nothing(
    init_project, runner, args, says
) -> None:
    config = init_project / "newsletter.yaml"
    before = config.read_text()
    result = runner.invoke(main, ["--config", str(config), "dkim", "keygen", *args])
    assert result.exit_code in (1, 2) and says in result.output
    assert "Traceback" not in result.output
    assert config.read_text() == before and not (init_project / "dkim").exists()
