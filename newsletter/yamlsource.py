"""Strict YAML loading that remembers where every value came from.

PyYAML alone accepts duplicate keys silently, expands aliases (a few lines can become gigabytes)
and reports tabs with a cryptic message. This loader rejects all three and records the line and
column of every key and value, so validators can point at the exact spot.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from newsletter.diagnostics import Diagnostic
from newsletter.yamlexplain import explain

Location = tuple[int, int]
MAX_DEPTH = 40  # an issue nests 4 levels; PyYAML's composer recurses once per level
FieldPath = tuple[str | int, ...]


class YamlInvalid(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(diagnostic.format())


@dataclass
class YamlDocument:
    path: str
    text: str
    data: Any
    value_locations: dict[FieldPath, Location] = field(default_factory=dict)
    key_locations: dict[FieldPath, Location] = field(default_factory=dict)
    # Problems that do not stop reading (duplicate keys: the first value is kept), so a caller
    # passing keep_going=True can report them together with everything else.
    problems: list[Diagnostic] = field(default_factory=list)
    # Numbers as typed (`3.10`, `007`): a text field keeps what the writer wrote, not 3.1 or 7.
    typed_numbers: dict[FieldPath, str] = field(default_factory=dict)

    def comment_as_value(self, parts: FieldPath) -> str | None:
        """`headline: #1 story`: the comment YAML read instead of the value at `parts` (a `#`
        right after `key: ` starts a comment, so the value is empty), or None."""
        where = self.key_locations.get(parts)
        if where is None:
            return None
        line = self.text.splitlines()[where[0] - 1]
        after = re.match(r"\s*[^:]*:\s+(#.*?)\s*$", line[where[1] - 1 :])
        return after.group(1) if after else None

    def where(self, parts: FieldPath, *, key: bool = False) -> Location:
        """Location of a value (or of its key); falls back to the nearest ancestor."""
        table = self.key_locations if key else self.value_locations
        while parts:
            if parts in table:
                return table[parts]
            if key and parts in self.value_locations:
                return self.value_locations[parts]
            parts = parts[:-1]
        return self.value_locations.get((), (1, 1))


def read_yaml(
    path: str | Path, *, max_bytes: int = 5_000_000, keep_going: bool = False
) -> YamlDocument:
    """Read and parse a YAML file; raise YamlInvalid with the first fatal problem.

    With keep_going, duplicate keys are left in `doc.problems` instead of raised.
    """
    name = str(path)
    try:
        # At most one byte past the limit: /dev/zero or a multi-gigabyte file must not be read
        # whole before being refused.
        with Path(path).open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise YamlInvalid(_error(name, 1, 1, "file not found")) from None
    except IsADirectoryError:
        raise YamlInvalid(_error(name, 1, 1, "is a directory, expected a YAML file")) from None
    except OSError as exc:
        raise YamlInvalid(_error(name, 1, 1, f"cannot read file: {exc.strerror}")) from None
    if len(raw) > max_bytes:
        raise YamlInvalid(_error(name, 1, 1, f"file is larger than {max_bytes:,} bytes"))
    return parse_yaml(raw, name, keep_going=keep_going)


def parse_yaml(raw: bytes | str, name: str, *, keep_going: bool = False) -> YamlDocument:
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise YamlInvalid(
                _error(name, line, col, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
            ) from None
    else:
        text = raw
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise YamlInvalid(_error(name, 1, 1, "file is empty"))
    _reject_tab_indentation(text, name)
    node, text = _compose_with_value_tabs(text, name)
    if node is None:
        raise YamlInvalid(_error(name, 1, 1, "file is empty"))
    doc = YamlDocument(path=name, text=text, data=None)
    try:
        doc.data = _construct(node, (), doc, SafeConstructor())
    except yaml.MarkedYAMLError as exc:  # a tag: `dek: !important`, a key with !!binary
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlInvalid(_invalid_value(exc, text, name, (line, col))) from None
    if doc.problems and not keep_going:
        raise YamlInvalid(doc.problems[0])
    return doc


def _compose_with_value_tabs(text: str, name: str) -> tuple[Node | None, str]:
    """The node tree and the text it was read from. YAML allows a tab inside a value, between
    words or at the end of a line (`dek: A sub<TAB>headline`); PyYAML refuses it there, so each
    such tab is read as a space (the same column, so every location stays right). A tab where
    YAML itself does not allow one is left for `explain`."""
    for _ in range(text.count("\t") + 1):
        try:
            return _compose(text, name), text
        except yaml.YAMLError as exc:
            accepted = _tab_in_value(exc, text)
            if accepted is None:
                raise YamlInvalid(_syntax_error(exc, text, name)) from None
            text = accepted
    raise AssertionError("unreachable: each pass replaces one tab")


def _tab_in_value(exc: yaml.YAMLError, text: str) -> str | None:
    """`text` with the tab PyYAML stopped at turned into a space, if that tab follows the text
    of a value on its line; None for any other error."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None or "'\\t'" not in (getattr(exc, "problem", None) or ""):
        return None
    start = sum(len(line) for line in text.splitlines(keepends=True)[: mark.line])
    offset = start + mark.column
    before = text[start:offset].rstrip(" \t")
    if text[offset : offset + 1] != "\t" or not before.strip() or before.endswith((":", "-")):
        return None
    return text[:offset] + " " + text[offset + 1 :]


def _compose(text: str, name: str) -> Node | None:
    """The node tree, refusing anchors and aliases before anything could expand them, and
    nesting deeper than MAX_DEPTH before PyYAML's recursive composer runs out of stack."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise YamlInvalid(
                    _error(
                        name,
                        mark.line + 1,
                        mark.column + 1,
                        f"lists and mappings nested more than {MAX_DEPTH} levels deep",
                    )
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise YamlInvalid(
                _error(
                    name,
                    mark.line + 1,
                    mark.column + 1,
                    "YAML anchors and aliases (&name, *name) are not allowed; if this text "
                    "starts with & or * (emphasis, a footnote), put it in quotes",
                )
            )
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _syntax_error(exc: yaml.YAMLError, text: str, name: str) -> Diagnostic:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context and "expected a single document" in exc.context:
            problem = "more than one YAML document (a '---' separator); expected one"
            return _error(name, line, col, f"YAML syntax error: {problem}")
        if exc.context and exc.context_mark and mark and exc.context_mark.line != mark.line:
            # The cause is often where the construct began (an unclosed bracket or quote).
            problem += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        explained = explain(exc, text)
        if explained is None:
            return _error(name, line, col, f"YAML syntax error: {problem}")
        return Diagnostic(
            name,
            explained.line,
            explained.col,
            "error",
            "",
            explained.message,
            detail=f"YAML says: {problem}, at line {line} column {col}",
        )
    if isinstance(exc, yaml.reader.ReaderError):  # a raw control character in the file
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return _error(name, line, col, f"control character U+{char:04X} is not allowed in the file")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
    return _error(name, 1, 1, f"YAML syntax error: {first}")


# Characters that look like a space but are not one to YAML: no-break and typographic spaces
# (Unicode Zs), the zero-width space and a stray byte order mark.
_LOOKALIKE_SPACES = (
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u200b\u202f\u205f\u3000\ufeff"
)


def _reject_tab_indentation(text: str, name: str) -> None:
    """A tab or a space look-alike (a no-break space pasted from a word processor) in the
    indentation of a line: refused at its column, before PyYAML reports it in its own terms."""
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t" + _LOOKALIKE_SPACES))]
        if not line.strip(" \t" + _LOOKALIKE_SPACES):
            continue
        odd = next(((col, ch) for col, ch in enumerate(indent, start=1) if ch != " "), None)
        if odd is None:
            continue
        col, char = odd
        if char == "\t":
            message = (
                "tab character in indentation; YAML accepts only spaces: replace the tab "
                "with spaces, as on the lines above"
            )
        else:
            what = unicodedata.name(char, "space look-alike").lower()
            message = (
                f"a {what} (U+{ord(char):04X}) in indentation; YAML accepts only plain spaces: "
                "replace it with a space"
            )
        raise YamlInvalid(_error(name, number, col, message))


def _construct(node: Node, parts: FieldPath, doc: YamlDocument, ctor: SafeConstructor) -> Any:
    doc.value_locations[parts] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlInvalid(_error(doc.path, line, col, "keys must be plain text"))
            key = ctor.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                first = doc.key_locations[(*parts, key)]
                doc.problems.append(
                    _error(
                        doc.path,
                        line,
                        col,
                        f"duplicate key '{key}' (first defined on line {first[0]})",
                        field_parts=(*parts, key),
                    )
                )
                continue
            doc.key_locations[(*parts, key)] = (line, col)
            result[key] = _construct(value_node, (*parts, key), doc, ctor)
        return result
    if isinstance(node, SequenceNode):
        return [_construct(item, (*parts, i), doc, ctor) for i, item in enumerate(node.value)]
    try:
        value = ctor.construct_object(node)
        if isinstance(value, int | float) and not isinstance(value, bool):
            doc.typed_numbers[parts] = node.value
        return value
    except yaml.constructor.ConstructorError as exc:
        at = doc.value_locations[parts]
        raise YamlInvalid(_invalid_value(exc, doc.text, doc.path, at)) from None
    except ValueError as exc:  # e.g. a date like 2026-13-40
        if node.tag == "tag:yaml.org,2002:timestamp":
            # Keep the text: the validator of the field explains what date format it expects,
            # and the other problems in the file still get reported.
            return node.value
        line, col = doc.value_locations[parts]
        raise YamlInvalid(_error(doc.path, line, col, f"invalid value: {exc}")) from None


def _invalid_value(
    exc: yaml.MarkedYAMLError, text: str, name: str, at: tuple[int, int]
) -> Diagnostic:
    """A value YAML cannot construct (`dek: !important`, a tag), in plain words when known."""
    explained = explain(exc, text)
    if explained is None:
        return _error(name, at[0], at[1], f"invalid value: {exc.problem}")
    return Diagnostic(
        name,
        explained.line,
        explained.col,
        "error",
        "",
        explained.message,
        detail=f"YAML says: {exc.problem}, at line {at[0]} column {at[1]}",
    )


def _error(path: str, line: int, col: int, message: str, field_parts: FieldPath = ()) -> Diagnostic:
    from newsletter.diagnostics import field_path

    return Diagnostic(path, line, col, "error", field_path(field_parts), message)
