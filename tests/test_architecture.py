"""The floors of docs/architecture.md hold: no module imports a module on a higher floor."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "newsletter"
DOC = REPO / "docs" / "architecture.md"


def floors_from_doc(text: str) -> dict[str, int]:
    """`| 3 renderer | `render/` |` rows -> {"render/": 3, ...} (files and folders, as written)."""
    floors: dict[str, int] = {}
    section = text.split("## Floors", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        row = re.match(r"\|\s*(\d+)[^|]*\|(.*)\|\s*$", line)
        if row:
            for name in re.findall(r"`([^`]+)`", row.group(2)):
                floors[name] = int(row.group(1))
    return floors


def module_path(name: str) -> str:
    """`newsletter.render.compile` -> `render/compile.py`; a package -> its `__init__.py`."""
    parts = name.split(".")[1:]
    folder = PACKAGE.joinpath(*parts)
    if folder.is_dir():
        return "/".join([*parts, "__init__.py"])
    return "/".join(parts) + ".py"


def floor_of(relative: str, floors: dict[str, int]) -> int | None:
    """The floor of a file: its own row, else its top folder's row."""
    if relative in floors:
        return floors[relative]
    top = relative.split("/", 1)[0] + "/"
    return floors.get(top) if "/" in relative else None


def imported_modules(source: str, module: str) -> set[str]:
    """Every `newsletter.*` module a source imports, wherever the import statement sits."""
    found: set[str] = set()
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "newsletter"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                base = ".".join([*package[: len(package) - node.level], *filter(None, [base])])
            if base.split(".")[0] != "newsletter":
                continue
            found.add(base)
            # `from newsletter.render import theme` imports the submodule theme
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if (PACKAGE / module_path(candidate)).exists():
                    found.add(candidate)
    return found


def upward_imports(floors: dict[str, int]) -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        module = ".".join(["newsletter", *relative.removesuffix(".py").split("/")])
        module = module.removesuffix(".__init__")
        own = floor_of(relative, floors)
        if own is None:
            problems.append(f"{relative} is on no floor of docs/architecture.md")
            continue
        for target in sorted(imported_modules(path.read_text(encoding="utf-8"), module)):
            target_path = module_path(target)
            theirs = floor_of(target_path, floors)
            if theirs is not None and theirs > own:
                problems.append(f"{relative} (floor {own}) imports {target} (floor {theirs})")
    return problems


def test_no_module_imports_upward() -> None:
    floors = floors_from_doc(DOC.read_text(encoding="utf-8"))
    assert floors, "docs/architecture.md lists no floors"
    assert upward_imports(floors) == []


def test_every_floor_row_names_something_that_exists() -> None:
    for name in floors_from_doc(DOC.read_text(encoding="utf-8")):
        assert (PACKAGE / name).exists(), f"docs/architecture.md names {name}, which is gone"


@pytest.mark.parametrize(
    ("importer", "source", "upward"),
    [
        ("newsletter.issue", "from newsletter.render.compile import compile_issue", True),
        ("newsletter.issue", "def f():\n    from newsletter.mail import message\n", True),
        ("newsletter.render.compile", "import newsletter.campaign.ledger", True),
        ("newsletter.subscribers.store", "from newsletter import transactional", True),
        ("newsletter.render.compile", "from . import fill", False),
        ("newsletter.mail.message", "from newsletter.render.fill import Fill", False),
        ("newsletter.cli.send", "from newsletter.campaign import send_issue", False),
    ],
)
def test_the_rule_sees_every_kind_of_import(importer: str, source: str, upward: bool) -> None:
    """The checker itself: an upward import in any spelling is caught, a downward one is not."""
    floors = floors_from_doc(DOC.read_text(encoding="utf-8"))
    own = floor_of(module_path(importer), floors)
    assert own is not None
    targets = imported_modules(source, importer)
    assert targets, source
    found = any((floor_of(module_path(t), floors) or 0) > own for t in targets)
    assert found is upward, (source, targets)
