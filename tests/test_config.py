"""newsletter.yaml problems as a user meets them: through a command, naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.errors import ConfigError

EXAMPLE = "issues/2026-11-25-microsoft-openai-partnership.yaml"
GOOD = "name: Test Letter\nfrom: Test Letter <news@example.org>\n"


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def run_with_config(runner: CliRunner, project: Path, text: str, **env: str) -> str:
    config = project / "newsletter.yaml"
    config.write_text(text, encoding="utf-8")
    result = runner.invoke(main, ["check", EXAMPLE], env=env or None)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + "base_ulr: https://x.example\n",
            "3: unknown key 'base_ulr' (did you mean 'base_url'?)",
        ),
        (
            "name: Test Letter\nform: T <t@example.org>\n",
            "2: unknown key 'form' (did you mean 'from'?)",
        ),
        ("name: Test Letter\n", "1: missing required key 'from'"),
        ("name: Test Letter\nfrom: ''\n", "1: missing required key 'from'"),
        (
            "name: Test Letter\nfrom: just words\n",
            "2: 'from' must be an address like 'Name <name@example.com>', got 'just words'",
        ),
        (
            GOOD + "reply_to: nobody\n",
            "3: 'reply_to' must be an address like 'Name <name@example.com>', got 'nobody'",
        ),
        (
            GOOD + "base_url: ftp://files.example.org\n",
            "3: 'base_url' must be an http(s) URL such as https://news.example.com, "
            "got 'ftp://files.example.org'",
        ),
        (
            GOOD + "base_url: http://[::1\n",
            "3: 'base_url' must be an http(s) URL such as https://news.example.com, "
            "got 'http://[::1'",
        ),
        ("name: [a, b]\nfrom: T <t@example.org>\n", "1: 'name' must be text"),
        (
            GOOD + "dkim:\n  domian: example.org\n",
            "4: unknown key 'dkim.domian' (did you mean 'dkim.domain'?)",
        ),
        (
            GOOD + "dkim: {domain: example.org, selector: s1}\n",
            "3: 'dkim' is missing 'private_key'",
        ),
        (GOOD + "name: Again\n", "3: duplicate key 'name' (first defined on line 1)"),
        (
            "name: Test\n  from: x\n",
            "2: this line is indented more than 'name' above it, so YAML reads it as more of "
            "name's text: start it at the beginning of the line like the line above it",
        ),
        ("- a list\n", "1: expected a mapping of settings"),
        ("# nothing but a comment\n", "1: file is empty"),
    ],
)
def test_config_errors_name_file_and_line(
    runner: CliRunner, in_project: Path, text: str, message: str
) -> None:
    output = run_with_config(runner, in_project, text)
    assert output == f"Error: {in_project / 'newsletter.yaml'}:{message}"


def test_environment_override_errors_name_the_variable(runner: CliRunner, in_project: Path) -> None:
    output = run_with_config(runner, in_project, GOOD, NEWSLETTER_FROM="not-an-address")
    assert output == (
        "Error: environment variable NEWSLETTER_FROM: 'from' must be an address like "
        "'Name <name@example.com>', got 'not-an-address'"
    )
    output = run_with_config(runner, in_project, GOOD, NEWSLETTER_BASE_URL="localhost:8000")
    assert output.startswith("Error: environment variable NEWSLETTER_BASE_URL: 'base_url' must")


def test_environment_overrides_every_key(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.yaml"
    path.write_text(GOOD + "base_url: https://a.example.org/\n", encoding="utf-8")
    config = load_config(
        path,
        environ={
            "NEWSLETTER_NAME": "Env Letter",
            "NEWSLETTER_BASE_URL": "https://b.example.org/",
            "NEWSLETTER_LANGUAGE": "de",
            "NEWSLETTER_TRANSPORT": "console:",
        },
    )
    assert config.name == "Env Letter"
    assert config.base_url == "https://b.example.org"
    assert (config.language, config.transport) == ("de", "console:")
    assert str(config.sender) == "Test Letter <news@example.org>"


def test_environment_can_supply_a_required_key(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.yaml"
    path.write_text("name: Only Name\n", encoding="utf-8")
    config = load_config(path, environ={"NEWSLETTER_FROM": "Env <env@example.org>"})
    assert config.sender.addr_spec == "env@example.org"
    with pytest.raises(ConfigError, match=r"newsletter.yaml:1: missing required key 'from'"):
        load_config(path, environ={})


def test_config_found_by_walking_up_and_given_explicitly(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "newsletter.yaml").write_text(
        "name: X\nfrom: X <x@example.org>\nbogus: 1\n", "utf-8"
    )
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    result = runner.invoke(main, ["check", str(project / EXAMPLE)])
    assert (
        result.output.strip()
        == f"Error: {project / 'newsletter.yaml'}:3: unknown key 'bogus' (did you mean 'bounces'?)"
    )
    good = project / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    result = runner.invoke(main, ["--config", str(good), "check", str(project / EXAMPLE)])
    assert result.exit_code == 0, result.output
    missing = runner.invoke(main, ["--config", "nope.yaml", "check", str(project / EXAMPLE)])
    assert missing.exit_code == 1
    assert missing.output.strip() == "Error: nope.yaml: configuration file not found"


def test_no_config_anywhere_uses_defaults(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(start=tmp_path, environ={})
    assert config.path is None
    assert config.name == "Newsletter"


DKIM_BLOCK = "dkim:\n  domain: example.org\n  selector: s1\n  private_key: keys/s1.pem\n"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NEWSLETTER_DKIM_DOMAIN", "mail.example.org", ("mail.example.org", "s1", "keys/s1.pem")),
        ("NEWSLETTER_DKIM_SELECTOR", "s2", ("example.org", "s2", "keys/s1.pem")),
        ("NEWSLETTER_DKIM_PRIVATE_KEY", "keys/s2.pem", ("example.org", "s1", "keys/s2.pem")),
    ],
)
def test_one_dkim_variable_replaces_one_key_of_the_file(
    tmp_path: Path, variable: str, value: str, expected: tuple[str, str, str]
) -> None:
    path = tmp_path / "newsletter.yaml"
    path.write_text(GOOD + DKIM_BLOCK, encoding="utf-8")
    dkim = load_config(path, environ={variable: value}).dkim
    assert dkim is not None
    domain, selector, key = expected
    assert (dkim.domain, dkim.selector) == (domain, selector)
    assert dkim.private_key == (tmp_path / key).resolve()


def test_dkim_from_the_environment_alone_names_the_missing_variable(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.yaml"
    path.write_text(GOOD, encoding="utf-8")
    environ = {"NEWSLETTER_DKIM_DOMAIN": "example.org", "NEWSLETTER_DKIM_SELECTOR": "s1"}
    with pytest.raises(ConfigError, match=r"NEWSLETTER_DKIM_PRIVATE_KEY.*missing 'private_key'"):
        load_config(path, environ=environ)
    full = {**environ, "NEWSLETTER_DKIM_PRIVATE_KEY": "k.pem"}
    assert load_config(path, environ=full).dkim is not None


def test_a_bad_dkim_variable_is_blamed_on_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.yaml"
    path.write_text(GOOD + DKIM_BLOCK, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"NEWSLETTER_DKIM_SELECTOR.*must be a DNS name"):
        load_config(path, environ={"NEWSLETTER_DKIM_SELECTOR": "bad selector"})
