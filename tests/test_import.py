"""CSV import and export on real files and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from newsletter import db
from newsletter.errors import ImportFileError, SubscriberError
from newsletter.subscribers import SubscriberStore, export_csv, import_csv
from newsletter.subscribers.tags import tag_subscribers


@pytest.fixture
def store(database: str) -> SubscriberStore:
    s = SubscriberStore.open(database)
    yield s
    s.close()


@pytest.fixture
def copy_db(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> str:
    """A second, empty database on the same engine (to import an export into)."""
    if database.startswith("postgresql"):
        return str(request.getfixturevalue("postgres_server").create_database())
    return str(tmp_path / "copy.db")


def write(tmp_path: Path, text: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def export_text(store: SubscriberStore, **kwargs: str) -> str:
    out = io.StringIO()
    export_csv(store, out, **kwargs)
    return out.getvalue()


def rejects_of(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def test_bom_semicolons_extra_columns_and_counts(store, tmp_path):
    path = write(
        tmp_path,
        "\ufeffEmail;Name;City;Favourite Colour\r\n"
        "ada@example.com;Ada Lovelace;London;green\r\n"
        "\r\n"
        'bob@example.com;"Bob; Jr.";;\r\n'
        "not-an-address;Nobody;Paris;red\r\n",
    )
    report = import_csv(store, path)
    assert (report.added, report.updated, report.unchanged, report.rejected) == (2, 0, 0, 1)
    ada = store.get("ada@example.com")
    assert ada.name == "Ada Lovelace" and ada.status == "active"
    assert ada.fields == {"City": "London", "Favourite_Colour": "green"}
    assert ada.lists == ("default",)
    bob = store.get("bob@example.com")
    assert bob.name == "Bob; Jr." and bob.fields == {}
    assert [e.kind for e in store.events(ada.id)] == ["imported"]
    assert store.events(ada.id)[0].detail == "in.csv line 2"
    rows = rejects_of(report.rejects_path)
    assert rows[0] == ["line", "reason", "Email", "Name", "City", "Favourite Colour"]
    assert rows[1][0] == "5" and "not a valid email address" in rows[1][1]
    assert rows[1][2:] == ["not-an-address", "Nobody", "Paris", "red"]


def test_every_kind_of_bad_row_is_rejected_with_line_and_reason(store, tmp_path):
    path = write(
        tmp_path,
        "email,name,status,created_at,lists,note\n"
        "good@example.com,Good,,,,\n"
        '"crlf@example.com","Evil\r\nBcc: x@example.com",,,,\n'
        "ctrl@example.com,Bell\x07,,,,\n"
        "status@example.com,,gone,,,\n"
        "date@example.com,,,yesterday,,\n"
        "list@example.com,,,,bad list,\n"
        "wide@example.com,,,,,,surplus\n"
        "GOOD@example.com,Duplicate,,,,\n"
        ",No address,,,,\n"
        f"long@example.com,,,,,{'x' * 1001}\n",
    )
    report = import_csv(store, path)
    assert report.added == 1 and report.rejected == 9
    reasons = {int(r[0]): r[1] for r in rejects_of(report.rejects_path)[1:]}
    assert sorted(reasons) == [3, 5, 6, 7, 8, 9, 10, 11, 12]  # line 3's field spans 2 lines
    assert "line break" in reasons[3]
    assert "control character" in reasons[5]
    assert "unknown status" in reasons[6]
    assert "date and time" in reasons[7]
    assert "invalid list name" in reasons[8]
    assert "7 columns" in reasons[9]
    assert "same address as line 2" in reasons[10]
    assert "empty" in reasons[11]
    assert "longer than 1000" in reasons[12]
    assert store.count() == 1


def test_reimport_changes_nothing(store, tmp_path):
    path = write(tmp_path, "email,name,city\nada@example.com,Ada,London\nbob@example.com,,\n")
    first = import_csv(store, path)
    assert (first.added, first.unchanged) == (2, 0)
    before = export_text(store)
    history = store.events(store.get("ada@example.com").id)
    second = import_csv(store, path)
    assert (second.added, second.updated, second.unchanged, second.rejected) == (0, 0, 2, 0)
    assert export_text(store) == before
    assert store.events(store.get("ada@example.com").id) == history
    assert first.rejects_path is None


def test_updates_merge_and_count(store, tmp_path):
    store.add("ada@example.com", name="Ada", fields={"city": "London"})
    path = write(tmp_path, "email,name,plan\nada@example.com,,pro\n")
    report = import_csv(store, path, list_name="vip")
    assert (report.added, report.updated) == (0, 1)
    ada = store.get("ada@example.com")
    assert ada.name == "Ada"  # an empty cell does not erase a value
    assert ada.fields == {"city": "London", "plan": "pro"}
    assert ada.lists == ("default", "vip")


def test_import_never_reactivates(store, tmp_path):
    gone = store.add("gone@example.com")
    store.unsubscribe(gone.id, "one-click")
    bounced = store.add("bounced@example.com")
    store.mark_bounced(bounced.id, "550 no such user")
    complained = store.add("complained@example.com")
    store.mark_complained(complained.id, "fbl")
    store.add("erased@example.com")
    store.erase("erased@example.com")
    path = write(
        tmp_path,
        "email,status\n"
        "gone@example.com,active\n"
        "bounced@example.com,\n"
        "complained@example.com,active\n"
        "erased@example.com,active\n",
    )
    report = import_csv(store, path, status="active")
    assert report.rejected == 1 and report.added == 0
    assert store.get("gone@example.com").status == "unsubscribed"
    assert store.get("bounced@example.com").status == "bounced"
    assert store.get("complained@example.com").status == "complained"
    assert store.get("erased@example.com") is None
    [_, row] = rejects_of(report.rejects_path)
    assert row[0] == "5" and "erased" in row[1]


@pytest.mark.parametrize(
    ("stored", "imported"),
    [
        ("Ann.Smith@Example.COM", "ann.smith@example.com"),
        ("ann.smith@example.com", "ANN.SMITH@EXAMPLE.COM"),
        ("Ann.Smith@example.com", "ann.SMITH@Example.Com"),
    ],
)
def test_an_unsubscribed_address_reimported_in_another_spelling_stays_one_unsubscribed_row(
    store, tmp_path, stored, imported
):
    """The import matches addresses ignoring case: a second, active copy would be mailed."""
    gone = store.add(stored)
    store.unsubscribe(gone.id, "one-click")
    report = import_csv(store, write(tmp_path, f"email,name\n{imported},Ann\n"), status="active")
    assert report.added == 0 and report.rejected == 0
    assert store.count() == 1 and store.count(status="active") == 0
    assert store.get(imported).id == gone.id and store.get(imported).status == "unsubscribed"
    assert list(store.iter_member_ids("default")) == []


def test_the_database_itself_refuses_a_second_spelling_of_an_address(store, database):
    """The rule is backed by a unique index, not only by the store's lookups: a row written
    around the store (another tool, a future code path) cannot create the duplicate."""
    store.add("Ann@Example.com")
    conn = db.connect(database)
    try:
        with pytest.raises(db.IntegrityError, match=r"(?i)unique"):
            conn.execute(
                "INSERT INTO subscribers (id, email, email_key, status, created_at, updated_at)"
                " VALUES (99, 'ann@example.com', 'ann@example.com', 'active', 'x', 'x')"
            )
    finally:
        conn.close()


def test_a_file_can_stop_subscriptions_and_confirm_pending_ones(store, tmp_path):
    store.add("ada@example.com")
    store.add("pending@example.com", status="pending")
    path = write(
        tmp_path, "email,status\nada@example.com,unsubscribed\npending@example.com,active\n"
    )
    report = import_csv(store, path)
    assert report.updated == 2
    ada = store.get("ada@example.com")
    assert ada.status == "unsubscribed"
    assert [e.kind for e in store.events(ada.id)][-2:] == ["unsubscribed", "updated"]
    assert store.get("pending@example.com").status == "active"


def test_status_option_for_new_rows(store, tmp_path):
    path = write(tmp_path, "email\nnew@example.com\n")
    import_csv(store, path, status="pending")
    assert store.get("new@example.com").status == "pending"
    with pytest.raises(SubscriberError, match="active or pending"):
        import_csv(store, path, status="bounced")


def test_export_then_import_round_trips_exactly(store, tmp_path, copy_db):
    store.add("ada@example.com", name="Ada, Countess", fields={"city": "London"}, lists=["a"])
    bob = store.add("bob@xn--bcher-kva.de", name='Bob "the" Builder', lists=["a", "b"])
    store.unsubscribe(bob.id, "cli")
    store.add("zoe@zürich.example", fields={"plan": "pro", "city": "Zürich"}, status="pending")
    tag_subscribers(store, ["ada@example.com", "zoe@zürich.example"], "Beta-2026")
    tag_subscribers(store, ["zoe@zürich.example"], "Stammkundin.ß")
    exported = export_text(store)
    path = write(tmp_path, exported, "export.csv")
    with SubscriberStore.open(copy_db) as copy:
        report = import_csv(copy, path)
        assert report.added == 3 and report.rejected == 0
        assert export_text(copy) == exported
    again = import_csv(store, path)
    assert again.unchanged == 3
    assert export_text(store) == exported
    lines = exported.splitlines()
    assert lines[0] == "email,name,status,lists,created_at,tags,city,plan"
    assert "bob@bücher.de" in exported and "unsubscribed" in exported
    # Tags: sorted, case-folded, '|'-separated; no cell needs quoting for them.
    assert ",beta-2026|stammkundin.ss," in exported


def test_a_tags_column_adds_tags_and_reimporting_it_changes_nothing(store, tmp_path):
    store.add("ada@example.com")
    tag_subscribers(store, ["ada@example.com"], "old")
    path = write(tmp_path, "email,tags\nada@example.com,Pro|beta\nnew@example.com,vip\n")
    report = import_csv(store, path)
    assert (report.added, report.updated) == (1, 1)
    assert import_csv(store, path).unchanged == 2
    assert ",beta|old|pro\r\n" in export_text(store) and ",vip\r\n" in export_text(store)


@pytest.mark.parametrize("cell", ["has space", "a,b", "-leading", "x" * 65, "semi;colon"])
def test_a_bad_tag_rejects_its_row_with_the_rule(store, tmp_path, cell):
    path = write(tmp_path, f'email,tags\nada@example.com,"{cell}"\nbob@example.com,ok\n')
    report = import_csv(store, path)
    assert (report.added, report.rejected) == (1, 1)
    [_, row] = rejects_of(report.rejects_path)  # header, then the row
    assert "invalid tag" in row[1] and "letters, digits" in row[1]
    assert store.get("ada@example.com") is None


def test_export_filters_and_file_output(store, tmp_path):
    store.add("a@example.com", lists=["x"])
    store.add("b@example.com", lists=["y"])
    c = store.add("c@example.com", lists=["x"])
    store.unsubscribe(c.id, "cli")
    assert export_text(store, list_name="x").count("@") == 2
    assert export_text(store, list_name="x", status="active").count("@") == 1
    out = tmp_path / "deep" / "out.csv"
    assert export_csv(store, out) == 3
    assert out.read_text(encoding="utf-8").startswith("email,name,status,lists,created_at")


def test_atomic_an_unreadable_line_midway_leaves_the_database_as_it_was(store, tmp_path):
    store.add("existing@example.com", name="Before")
    good = "".join(f"r{i}@example.com,R{i}\n" for i in range(12_000))
    path = write(
        tmp_path,
        b"email,name\nexisting@example.com,After\n" + good.encode() + b"bad@example.com,\xff\n",
    )
    before = export_text(store)
    with pytest.raises(ImportFileError, match=r"in\.csv:12003: not valid UTF-8"):
        import_csv(store, path)
    assert export_text(store) == before
    assert store.count() == 1
    assert not (tmp_path / "in.rejects.csv").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "header row"),
        (b"name,city\nAda,London\n", "no 'email' column"),
        (b"email,Email\na@example.com,b@example.com\n", "both 'email'"),
        (b"email,1st\na@example.com,x\n", "invalid field name"),
        (b"email,name\n" + b"x" * (10 * 1024 * 1024) + b"\n", "line 2|in.csv:2: line is longer"),
        (b'email,name\n"a@example.com,unterminated' + b"y" * 200_000, "cannot parse CSV"),
        ("email\nå@example.com\n".encode("latin-1"), "not valid UTF-8"),
    ],
)
def test_unreadable_files_are_clear_errors(store, tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ImportFileError) as info:
        import_csv(store, path)
    text = str(info.value)
    assert "in.csv" in text
    assert any(part in text for part in message.split("|")), text
    assert store.count() == 0


def test_missing_file_and_folder(store, tmp_path):
    with pytest.raises(ImportFileError, match="no such file"):
        import_csv(store, tmp_path / "nope.csv")
    with pytest.raises(ImportFileError, match="folder"):
        import_csv(store, tmp_path)


def test_rejects_path_option_and_unnamed_empty_columns(store, tmp_path):
    path = write(tmp_path, "email,name,\na@example.com,A,\nb@example.com,B,oops\n")
    target = tmp_path / "out" / "rejected.csv"
    report = import_csv(store, path, rejects_path=target)
    assert report.added == 1 and report.rejects_path == target
    assert "no name in the header" in rejects_of(target)[1][1]


FORMULA_VALUES = [
    "=1+1",
    '=HYPERLINK("http://evil.example","x")',
    "+41 79 123 45 67",
    "-5",
    "@SUM(A1)",
    "\tindented",
    "\rcarriage",
    "'=already quoted",
    "''-two quotes",
    "'tis a plain apostrophe",
    "'",
    "''",
    "plain",
    "a=b",
]


@pytest.mark.parametrize("value", FORMULA_VALUES)
@pytest.mark.parametrize("column", ["name", "city"])
def test_export_is_safe_in_a_spreadsheet_and_reimports_exactly(
    store, tmp_path, copy_db, value, column
):
    """OWASP CSV injection: no exported cell starts with a formula character; import undoes
    exactly the guard the export added, so the round trip is byte-identical."""
    if column == "name":
        store.add("ada@example.com", name=value.strip() or "x")
    else:
        store.add("ada@example.com", fields={"city": value})
    exported = export_text(store)
    for row in csv.reader(io.StringIO(exported)):
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (value, cell)
    path = write(tmp_path, exported, "export.csv")
    with SubscriberStore.open(copy_db) as copy:
        assert import_csv(copy, path).added == 1
        got = copy.get("ada@example.com")
        if column == "name":
            assert got.name == (value.strip() or "x")
        else:
            assert got.fields["city"] == value.strip()
        assert export_text(copy) == exported


def test_import_removes_only_the_guard_export_adds(store, tmp_path):
    path = write(
        tmp_path,
        "email,name,note\n"
        "a@example.com,'=SUM(1),'tis\n"
        "b@example.com,''+x,'\n"
        "c@example.com,Bob,''\n",
    )
    assert import_csv(store, path).added == 3
    assert store.get("a@example.com").name == "=SUM(1)"
    assert store.get("a@example.com").fields["note"] == "'tis"
    assert store.get("b@example.com").name == "'+x"
    assert store.get("b@example.com").fields["note"] == "'"
    assert store.get("c@example.com").fields["note"] == "''"


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        *((c, "'" + c) for c in ("=cmd|' /C calc'!A0", "+1", "-1", "@SUM(1)", "\t=1", "\r=1")),
        ("'=1", "'=1"),  # read as =1 (the guard removed), written guarded again
        ("''+1", "''+1"),
        ("'tis", "'tis"),
    ],
)
def test_rejects_file_is_guarded_too(store, tmp_path, cell, written):
    """Rejected rows keep their cells as read, tabs and carriage returns included (an export
    never has them: values are stripped), so the guard matters most here."""
    out = io.StringIO()
    csv.writer(out).writerows([["email", "name"], ["not-an-address", cell]])
    report = import_csv(store, write(tmp_path, out.getvalue()))
    assert report.rejected == 1
    rows = rejects_of(report.rejects_path)
    assert rows[1][-1] == written


@pytest.mark.parametrize(
    ("first", "second"),
    [("City", "city"), ("city", "CITY"), ("Plan_Name", "plan_name"), ("Plan Name", "plan-name")],
)
def test_field_names_differing_in_case_across_imports_share_one_column(
    store, tmp_path, copy_db, first, second
):
    import_csv(store, write(tmp_path, f"email,{first}\na@example.com,London\n", "one.csv"))
    import_csv(store, write(tmp_path, f"email,{second}\nb@example.com,Paris\n", "two.csv"))
    store.add("c@example.com", fields={second.replace(" ", "_").replace("-", "_"): "Rome"})
    exported = export_text(store)
    header = exported.splitlines()[0].split(",")
    assert len(header) == 7, header  # the base columns (tags included) and one field
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(exported))}
    assert [rows[e][header[6]] for e in ("a@example.com", "b@example.com", "c@example.com")] == [
        "London",
        "Paris",
        "Rome",
    ]
    with SubscriberStore.open(copy_db) as copy:
        report = import_csv(copy, write(tmp_path, exported, "export.csv"))
        assert (report.added, report.rejected) == (3, 0)
        assert export_text(copy) == exported


def test_two_columns_of_one_file_differing_in_case_are_refused_naming_both(store, tmp_path):
    path = write(tmp_path, "email,City,name,city\na@example.com,London,A,Paris\n")
    with pytest.raises(ImportFileError) as info:
        import_csv(store, path)
    assert "'City'" in str(info.value) and "'city'" in str(info.value)
    assert "columns 2" in str(info.value) and "4" in str(info.value)
    assert export_text(store).count("\n") == 1  # nothing imported: the header only


@pytest.mark.parametrize(
    ("header", "row", "name"),
    [
        ("Email Address,First Name,Last Name", "a@example.com,Ada,Lovelace", "Ada Lovelace"),
        ("email,first_name,last_name", "a@example.com,Ada,", "Ada"),
        ("E-mail,Given Name,Family Name", "a@example.com,,Lovelace", "Lovelace"),
        ("email,Last Name,First Name", "a@example.com,Lovelace,Ada", "Ada Lovelace"),
        ("email,First Name,Last Name", "a@example.com,,", None),
        ("email,name,First Name", "a@example.com,Countess,Ada", "Countess"),
    ],
)
def test_first_and_last_name_columns_fill_name(store, tmp_path, header, row, name):
    report = import_csv(store, write(tmp_path, f"{header}\n{row}\n"))
    assert report.added == 1
    assert store.get("a@example.com").name == name


def test_a_placeholder_finds_a_field_whatever_the_case_of_its_column(store, tmp_path):
    from newsletter.placeholders import render_placeholders

    import_csv(store, write(tmp_path, "email,City\na@example.com,London\n", "one.csv"))
    import_csv(store, write(tmp_path, "email,city\nb@example.com,Paris\n", "two.csv"))
    for address, city in (("a@example.com", "London"), ("b@example.com", "Paris")):
        recipient = store.get(address).recipient()
        for written in ("city", "City", "CITY"):
            text = f"{{{{ subscriber.fields.{written} | default('nowhere') }}}}"
            assert render_placeholders(text, recipient) == city
    missing = store.get("a@example.com").recipient()
    assert render_placeholders("{{ subscriber.fields.town | default('x') }}", missing) == "x"
