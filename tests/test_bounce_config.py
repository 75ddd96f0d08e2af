"""The `bounces:` block of newsletter.yaml: defaults, and each mistake named with file, line,
field and what was expected, through a command as a user meets it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_config

EXAMPLE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
GOOD = "name: Test Letter\nfrom: Test Letter <news@example.org>\n"


def test_defaults_without_a_bounces_block(project: Path) -> None:
    settings = load_config(project / "newsletter.yaml").bounces
    assert settings.address is None
    assert (settings.soft_limit, settings.soft_days) == (3, 30)
    assert settings.guard_min_sent == 1000
    assert (settings.guard_bounce_rate, settings.guard_complaint_rate) == (0.05, 0.003)


def test_every_key_read(project: Path) -> None:
    (project / "newsletter.yaml").write_text(
        GOOD + "bounces:\n  address: Bounces@News.Example.org\n  soft_limit: 5\n"
        "  soft_days: 14\n  guard_min_sent: 500\n  guard_bounce_rate: 2.5%\n"
        "  guard_complaint_rate: 0.001\n  feedback_id: acme\n",
        encoding="utf-8",
    )
    s = load_config(project / "newsletter.yaml").bounces
    assert (s.address, s.verp_local, s.verp_domain) == (
        "Bounces@news.example.org",
        "Bounces",
        "news.example.org",
    )
    assert (s.soft_limit, s.soft_days, s.guard_min_sent) == (5, 14, 500)
    assert (s.guard_bounce_rate, s.guard_complaint_rate, s.feedback_id) == (0.025, 0.001, "acme")


@pytest.mark.parametrize(
    ("block", "line", "message"),
    [
        ("bounces: yes\n", 3, "'bounces' must be a mapping"),
        ("bounces:\n  adress: b@x.example\n", 4, "unknown key 'bounces.adress' (did you mean"),
        ("bounces:\n  address: bounces+x@news.example.org\n", 4, "must not contain '+'"),
        ("bounces:\n  address: not an address\n", 4, "'bounces.address' must be an address"),
        ("bounces:\n  address: b@localhost\n", 4, "'bounces.address' must have a domain"),
        ("bounces:\n  address: bö@news.example.org\n", 4, "must have a plain ASCII local"),
        # RFC 5321 4.5.3.1.1: 30 + '+' + a 34-character token is 65 octets.
        (f"bounces:\n  address: {'b' * 30}@news.example.org\n", 4, "over the 64 octets"),
        (f"bounces:\n  address: {'b' * 60}@news.example.org\n", 4, "use at most 29"),
        ("bounces:\n  address: b@xn--zz.example\n", 4, "has a domain IDNA 2008 refuses"),
        ("bounces:\n  address: b@a\u00adb\u0378.example\n", 4, "has a domain IDNA 2008"),
        ("bounces:\n  soft_limit: 0\n", 4, "'bounces.soft_limit' must be a whole number"),
        ("bounces:\n  soft_days: three\n", 4, "'bounces.soft_days' must be a whole number"),
        ("bounces:\n  guard_min_sent: true\n", 4, "'bounces.guard_min_sent' must be a whole"),
        ("bounces:\n  guard_bounce_rate: 150%\n", 4, "'bounces.guard_bounce_rate' must be a"),
        ("bounces:\n  guard_complaint_rate: 0\n", 4, "'bounces.guard_complaint_rate' must be"),
        ("bounces:\n  guard_complaint_rate: lots%\n", 4, "'bounces.guard_complaint_rate'"),
        ("bounces:\n  feedback_id: 'a:b'\n", 4, "'bounces.feedback_id' must be"),
    ],
)
def test_bad_values_name_file_line_and_expectation(
    project: Path, monkeypatch: pytest.MonkeyPatch, block: str, line: int, message: str
) -> None:
    (project / "newsletter.yaml").write_text(GOOD + block, encoding="utf-8")
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["check", EXAMPLE])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"newsletter.yaml:{line}: " in result.output
    assert message in result.output


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("bounces@bücher.example", "bounces@xn--bcher-kva.example"),
        ("bounces@BÜCHER.example", "bounces@xn--bcher-kva.example"),
        ("bounces@xn--bcher-kva.example", "bounces@xn--bcher-kva.example"),
        ("bounces@пример.рф", "bounces@xn--e1afmkfd.xn--p1ai"),
        (f"{'b' * 29}@news.example.org", f"{'b' * 29}@news.example.org"),
    ],
)
def test_an_idn_or_longest_allowed_address_is_accepted(project: Path, given, stored) -> None:
    (project / "newsletter.yaml").write_text(
        GOOD + f"bounces:\n  address: {given}\n", encoding="utf-8"
    )
    assert load_config(project / "newsletter.yaml").bounces.address == stored
