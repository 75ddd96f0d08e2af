"""Property-based fuzzing of the loaders strangers feed: issue YAML and subscriber CSV files.

Whatever the bytes, `load_issue` either loads or raises our own error (which the CLI shows as a
message), `check` reports diagnostics and never raises, and an import either succeeds or is
refused with our error leaving the database exactly as it was. A successful import exports a
file that imports again into the same export (the spreadsheet guard included).

Each failing example Hypothesis found became a regression test at the end of this file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.errors import NewsletterError
from newsletter.issue import load_issue
from newsletter.lint import check_issue
from newsletter.subscribers import SubscriberStore, export_csv, import_csv

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "issues" / "2026-11-25-microsoft-openai-partnership.yaml"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))  # more for a longer hunt
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CONFIG_TEXT = (
    "name: Fuzz Letter\nfrom: Fuzz Letter <news@example.org>\n"
    "base_url: https://news.example.org\npostal_address: 1 Test Street\n"
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzzconfig")
    (root / "newsletter.yaml").write_text(CONFIG_TEXT, encoding="utf-8")
    return load_config(root / "newsletter.yaml")


def load_outcome(data: bytes, config) -> None:  # type: ignore[no-untyped-def]
    """Loading and checking `data` as an issue file ends in a result or our own error."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "issue.yaml"
        path.write_bytes(data)
        try:
            load_issue(path)
        except NewsletterError as exc:
            assert str(exc).strip()
        for diagnostic in check_issue(path, config):
            assert diagnostic.line >= 1 and diagnostic.col >= 1
            assert diagnostic.message.strip()


# ------------------------------------------------------------------ issue YAML

YAML_BITS = st.sampled_from(
    [
        "title: ",
        "date: ",
        "stories:\n",
        "  - ",
        "headline: ",
        "sources:\n",
        "url: ",
        "{{ subscriber.name }}",
        "{{",
        "}}",
        "{%",
        ": ",
        "- ",
        "&a ",
        "*a",
        "!!python/object:os.system ",
        "<<: *a",
        "'",
        '"',
        "|\n",
        ">\n",
        "\t",
        "\n",
        "---\n",
        "...\n",
        "%YAML 1.2\n",
        "?",
        "[",
        "]",
        "{",
        "}",
        "2026-13-45",
        "[" * 45,
        "{a: " * 45,
        "1e999",
        "\ufeff",
        "\x00",
        "é",
        "\u202e",
        "[x](javascript:alert(1))",
        "![](data:x)",
    ]
)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash_the_issue_loader(config, data: bytes) -> None:  # type: ignore[no-untyped-def]
    load_outcome(data, config)


@FUZZ
@given(st.lists(st.one_of(YAML_BITS, st.text(max_size=12)), max_size=60))
def test_yaml_like_text_never_crashes_the_issue_loader(config, bits: list[str]) -> None:  # type: ignore[no-untyped-def]
    load_outcome("".join(bits).encode("utf-8", "surrogatepass"), config)


@settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 3))
@given(
    st.data(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), YAML_BITS), max_size=4),
)
def test_mutated_valid_issues_never_crash_the_issue_loader(  # type: ignore[no-untyped-def]
    config, data: st.DataObject, edits: list[tuple[int, int, str]]
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    load_outcome(text.encode("utf-8", "surrogatepass"), config)


# ------------------------------------------------------------------ CSV import

CELL = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "a@example.com",
            "A@Example.COM",
            "b@xn--bcher-kva.de",
            "zoë@example.com",
            "=1+1",
            "'=1",
            "''",
            "'",
            "-",
            "@x",
            "active",
            "unsubscribed",
            "pending",
            "main|other",
            "2026-01-01T00:00:00Z",
            '"',
            '""',
            "\r\n",
            "\x00",
            "|",
            "",
        ]
    ),
)
HEADER = st.lists(
    st.sampled_from(
        [
            "email",
            "Email",
            "E-mail",
            "name",
            "First Name",
            "Last Name",
            "status",
            "lists",
            "created_at",
            "city",
            "City",
            "plan",
            "",
            "é",
            "1st",
        ]
    ),
    min_size=1,
    max_size=6,
)


def dump(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def export_text(store: SubscriberStore) -> str:
    out = io.StringIO()
    export_csv(store, out)
    return out.getvalue()


def import_outcome(content: bytes) -> None:
    """Import `content` into a store that already holds subscribers: either it works and the
    export round-trips, or our error says why and the database is byte for byte as it was."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "in.csv"
        path.write_bytes(content)
        with SubscriberStore.open(root / "newsletter.db") as store:
            store.add("kept@example.com", name="Kept", fields={"City": "Oslo"})
            store.conn.commit()
            before = dump(root / "newsletter.db")
            try:
                import_csv(store, path, rejects_path=root / "rejects.csv")
            except NewsletterError as exc:
                assert str(exc).strip()
                assert dump(root / "newsletter.db") == before
                return
            exported = export_text(store)
        (root / "export.csv").write_text(exported, encoding="utf-8", newline="")
        with SubscriberStore.open(root / "copy.db") as copy:
            report = import_csv(copy, root / "export.csv")
            assert report.rejected == 0, report
            assert export_text(copy) == exported


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash_an_import(data: bytes) -> None:
    import_outcome(data)


@FUZZ
@given(
    HEADER,
    st.lists(st.lists(CELL, max_size=7), max_size=12),
    st.sampled_from([",", ";", "\t", "|"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    st.sampled_from(["\r\n", "\n", "\r"]),
)
def test_random_rows_never_crash_an_import(  # type: ignore[no-untyped-def]
    header, rows, delimiter, encoding, quoting, newline
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    import_outcome(out.getvalue().encode(encoding, "replace"))


@FUZZ
@given(st.lists(st.tuples(st.emails(), st.text(max_size=30), st.text(max_size=30)), max_size=8))
def test_imported_values_export_and_import_again_unchanged(rows) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "note"])
    writer.writerows(rows)
    import_outcome(out.getvalue().encode("utf-8", "surrogatepass"))


def test_check_cli_on_binary_junk_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "newsletter.yaml").write_text(CONFIG_TEXT, encoding="utf-8")
    (tmp_path / "junk.yaml").write_bytes(b"\xff\xfe\x00garbage: [\x00")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "junk.yaml")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "junk.yaml:1" in result.output


def test_import_cli_on_binary_junk_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "newsletter.yaml").write_text(CONFIG_TEXT, encoding="utf-8")
    (tmp_path / "ok.csv").write_text("email\na@example.com\n", encoding="utf-8")
    assert CliRunner().invoke(main, ["subscribers", "import", "ok.csv"]).exit_code == 0
    before = dump(tmp_path / "newsletter.db")
    (tmp_path / "junk.csv").write_bytes(b"email\nb@example.com\n\xff\xfe\x00")
    result = CliRunner().invoke(main, ["subscribers", "import", "junk.csv"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "junk.csv:3" in result.output
    assert dump(tmp_path / "newsletter.db") == before


# ------------------------------------------------------------------ regressions found by fuzzing

DEEP = {
    "flow list": "title: " + "[" * 3000 + "]" * 3000 + "\n",
    "flow mapping": "title: " + "{a: " * 3000 + "}" * 3000 + "\n",
    "block mapping": "".join("  " * i + "a:\n" for i in range(1500)) + "  " * 1500 + "b\n",
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_yaml_is_a_located_error_not_a_recursion_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Found by fuzzing: PyYAML's composer recursed once per level and ran out of stack
    (RecursionError, a traceback from `check`). The same reader loads newsletter.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "newsletter.yaml").write_text(CONFIG_TEXT, encoding="utf-8")
    (tmp_path / "deep.yaml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "deep.yaml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and not isinstance(result.exception, RecursionError)
    assert re.search(r"deep\.yaml:\d+:\d+: error: .*nested more than 40 levels", result.output)
    deep_config = CONFIG_TEXT + "extra: " + "[" * 3000 + "]" * 3000 + "\n"
    (tmp_path / "newsletter.yaml").write_text(deep_config, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "deep.yaml"])
    assert result.exit_code != 0 and "nested more than 40 levels" in result.output
    assert not isinstance(result.exception, RecursionError)


def test_nesting_an_issue_needs_still_loads(config) -> None:  # type: ignore[no-untyped-def]
    load_issue(EXAMPLE)
    text = "title: x\ndate: 2026-01-01\nnotes: " + "[" * 39 + "]" * 39 + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "issue.yaml"
        path.write_text(text, encoding="utf-8")
        messages = [d.message for d in check_issue(path, config)]
        assert not any("nested" in m for m in messages), messages
