"""YAML syntax errors explained in a writer's words, at the line where the mistake is.

PyYAML reports where its parser gave up, which is often several lines after the mistake (an
unclosed quote is reported at the end of the file, a dedented line of a `|` block at the next
key), and in parser terms ("mapping values are not allowed here"). `explain` looks at the source
lines around PyYAML's marks, recognises the mistakes people make when writing an issue by hand
(an unquoted colon in a value, a missing space after a colon, a list item without a dash, a key
or a dash indented wrongly, a `|` block whose indentation changes, an unclosed quote or bracket,
text after a quoted value, a value starting with a character YAML reserves), and says what
happened and how to fix it. The caller keeps PyYAML's own message as a detail for experts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Explanation:
    line: int  # 1-based line of the mistake
    col: int  # 1-based column
    message: str


# `  - key: value`: indentation, optional list dashes, a key, the rest after ': '.
_ENTRY = re.compile(r"^(?P<indent> *)(?P<dashes>(?:- +)*)(?P<key>[A-Za-z_][\w-]*):(?:[ ]+|$)")
_DASH = re.compile(r"^(?P<indent> *)- ")
_NO_SPACE = re.compile(
    r"^(?P<indent> *)(?:- +)*(?P<key>[A-Za-z_][\w-]*):(?P<value>[^\s:/](?:[^:]|:(?=\S))*)$"
)
_DASH_GLUED = re.compile(r"^(?P<indent> *)-(?P<item>[^\s-].*)$")
_BLOCK_HEADER = re.compile(r"(?:^|:|-)\s*[|>][0-9+-]*\s*(?:#.*)?$")
_QUOTE_INSIDE = {'"': r"write \" for a quote inside it", "'": "write '' for a ' inside it"}
# Fields where a list or mapping written in brackets (`[a, b]`, `{path: x, alt: y}`) is right.
_COLLECTIONS = {"key_points": "[", "sources": "[", "stories": "[", "image": "{", "logo": "{"}
# What an item of these lists is called in a message.
_ITEM_NAMES = {"key_points": "key point", "stories": "story", "sources": "source"}


def explain(exc: yaml.MarkedYAMLError, text: str) -> Explanation | None:
    """A plain-words explanation of a PyYAML syntax error, or None when none of the known
    mistakes fits (the caller then reports PyYAML's message at PyYAML's mark)."""
    lines = text.splitlines()
    for rule in _RULES:
        try:
            found = rule(exc, lines)
        except IndexError:  # a mark past the last line (end of file): not a shape we know
            continue
        if found is not None:
            return found
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _what(lines: list[str], i: int) -> str:
    """How to call the value on line i: its key (`headline`), or the item name of its list."""
    entry = _ENTRY.match(lines[i])
    if entry:
        return entry.group("key")
    own = _indent(lines[i])
    for j in range(i - 1, -1, -1):
        if _blank(lines[j]) or _indent(lines[j]) >= own:
            continue
        parent = _ENTRY.match(lines[j])
        if parent and lines[j].rstrip().endswith(":"):
            return _ITEM_NAMES.get(parent.group("key"), f"item of {parent.group('key')}")
        break
    return "value"


def _quote_example(line: str, start: int) -> str:
    """The line with its value (from column `start`, 0-based) put in quotes, shortened."""
    value = line[start:].strip()
    short = value if len(value) <= 40 else value[:37] + "..."
    prefix = _prefix(line, start)
    if '"' in value and "'" not in value:
        return f"{prefix}'{short}'"
    return f'{prefix}"{short}"'


def _prefix(line: str, start: int) -> str:
    """What goes before the value in an example: `headline: ` (no list dash) or `- `."""
    entry = _ENTRY.match(line)
    return f"{entry['key']}: " if entry else line[:start].lstrip()


def _value_start(line: str) -> int:
    entry = _ENTRY.match(line)
    if entry:
        return entry.end()
    dash = _DASH.match(line)
    return dash.end() if dash else _indent(line)


def _block_above(lines: list[str], i: int) -> tuple[int, int] | None:
    """(header line, indentation of its text) of the `|`/`>` block that line i is just below:
    every line between the header and line i is text of that block (indented at least as much
    as its first line), so a key or list item in between means line i is not below a block."""
    width = None  # the smallest indentation of the text lines seen so far, going up
    for j in range(i - 1, -1, -1):
        if not lines[j].strip():
            continue
        if _BLOCK_HEADER.search(lines[j].split(" #")[0]) and _ENTRY.match(lines[j]):
            first = next((k for k in range(j + 1, i) if lines[k].strip()), None)
            if first is None or width is None or width < _indent(lines[first]):
                return None
            return j, _indent(lines[first])
        if _indent(lines[j]) <= _indent(lines[i]):
            return None
        width = _indent(lines[j]) if width is None else min(width, _indent(lines[j]))
    return None


def _tab_character(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    """A tab where YAML allows only spaces: after a key's colon, after a list dash, or alone on
    a line (a tab inside a value is accepted before this is ever called)."""
    mark = exc.problem_mark
    if mark is None or "'\\t'" not in (exc.problem or ""):
        return None
    return Explanation(
        mark.line + 1,
        mark.column + 1,
        "a tab character here: YAML accepts only spaces after a key's colon, after a list "
        "dash and in indentation: replace it with a space"
        + (" (or delete it: the line holds nothing else)" if not lines[mark.line].strip() else ""),
    )


def _unclosed_quote(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    mark = exc.context_mark
    if exc.context != "while scanning a quoted scalar" or mark is None:
        return None
    quote = lines[mark.line][mark.column] if mark.column < len(lines[mark.line]) else '"'
    what = _what(lines, mark.line)
    inside = _QUOTE_INSIDE.get(quote, _QUOTE_INSIDE["'"])
    return Explanation(
        mark.line + 1,
        mark.column + 1,
        f"the {quote} that starts this {what} is never closed, so YAML reads on to the end of the "
        f"file: end the {what} with {quote} on this line ({inside})",
    )


def _quote_left_open(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    """A quote opened on a line and not closed there, with the next key or item below it.

    YAML lets a quoted value run over several lines, so it reads on until the next quote of the
    same kind, wherever that is, and fails far below (or reads a later `"` as the closing one).
    A value that swallows the next `key:` or `- ` line is never what the writer meant, so the
    mistake is reported where the quote opens, whichever later line YAML stumbled on.
    """
    marks = [m.line for m in (exc.problem_mark, exc.context_mark) if m is not None]
    if not marks:
        return None
    block_key = -1  # inside a | or > block: the column of its key; its lines are text
    for i in range(min(max(marks), len(lines) - 1) + 1):
        line = lines[i]
        if block_key >= 0 and (not line.strip() or _indent(line) > block_key):
            continue
        block_key = -1
        entry = _ENTRY.match(line)
        if entry is not None and _BLOCK_HEADER.search(line.split(" #")[0]):
            block_key = entry.start("key")
            continue
        if entry is None and not _DASH.match(line):
            continue
        start = _value_start(line)
        if start >= len(line) or line[start] not in "\"'":
            continue
        if _closes(line[start + 1 :], line[start]):
            continue
        below = next((k for k in range(i + 1, len(lines)) if not _blank(lines[k])), None)
        column = entry.start("key") if entry is not None else _indent(line)
        structural = below is not None and (_ENTRY.match(lines[below]) or _DASH.match(lines[below]))
        if structural and _indent(lines[below]) <= column:
            quote, what = line[start], _what(lines, i)
            inside = _QUOTE_INSIDE[quote]
            return Explanation(
                i + 1,
                start + 1,
                f"the {quote} that starts this {what} is not closed on this line, so YAML reads "
                f"the lines below as part of it: end the {what} with {quote} on this line "
                f"({inside})",
            )
    return None


def _closes(rest: str, quote: str) -> bool:
    """Whether `rest` (the text after an opening quote) holds the closing quote."""
    i = 0
    while i < len(rest):
        if quote == '"' and rest[i] == "\\":
            i += 2
            continue
        if rest[i] == quote:
            if quote == "'" and rest[i + 1 : i + 2] == "'":
                i += 2  # '' is an escaped ' inside single quotes
                continue
            return True
        i += 1
    return False


def _unclosed_bracket(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    mark, problem = exc.context_mark, exc.problem_mark
    if not (exc.context or "").startswith("while parsing a flow") or mark is None:
        return None
    if problem is not None and problem.line == mark.line:
        return None
    bracket = lines[mark.line][mark.column]
    what = _what(lines, mark.line)
    if _COLLECTIONS.get(what) == bracket:  # a list or mapping is right here: close it
        closing = "]" if bracket == "[" else "}"
        written = lines[mark.line][mark.column :].strip()
        short = written if len(written) <= 40 else written[:37] + "..."
        one_per_line = "one '- ' item per line" if bracket == "[" else "one 'key: value' per line"
        return Explanation(
            mark.line + 1,
            mark.column + 1,
            f"the {bracket} that starts this {what} is never closed: end it with {closing} on "
            f"this line ({what}: {short}{closing}), or write {one_per_line} below '{what}:' "
            f"instead",
        )
    return Explanation(
        mark.line + 1,
        mark.column + 1,
        f"this {what} starts with {bracket}, which YAML reads as the start of a "
        f"{'list' if bracket == '[' else 'mapping'} that is never closed: put the {what} in "
        f"quotes: {_quote_example(lines[mark.line], mark.column)}",
    )


def _colon_in_value(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    mark = exc.problem_mark
    if exc.problem != "mapping values are not allowed here" or mark is None:
        return None
    line = lines[mark.line]
    entry = _ENTRY.match(line)
    own_key_colon = entry is not None and mark.column == entry.start("key") + len(entry["key"])
    if own_key_colon:
        return _continued_key(lines, mark.line)
    start = _value_start(line)
    what = _what(lines, mark.line)
    return Explanation(
        mark.line + 1,
        mark.column + 1,
        f"put the {what} in quotes: a colon followed by a space starts a new key "
        f"({_quote_example(line, start)})",
    )


def _continued_key(lines: list[str], i: int) -> Explanation | None:
    """Line i is a `key: value` that YAML read as the continuation of the text above it."""
    for j in range(i - 1, -1, -1):
        if _blank(lines[j]):
            continue
        glued = _missing_space(lines, j) or _dash_glued(lines, j)
        if glued is not None:
            return glued
        above = _ENTRY.match(lines[j])
        if above is None:
            continue
        own = _ENTRY.match(lines[i])
        column = above.start("key")
        if own is not None and own.start("key") > column:
            return Explanation(
                i + 1,
                own.start("key") + 1,
                f"this line is indented more than '{above['key']}' above it, so YAML reads it "
                f"as more of {above['key']}'s text: {_indent_by(column)} like the line above it",
            )
        return None
    return None


def _indent_by(spaces: int) -> str:
    return f"indent it by {spaces} spaces" if spaces else "start it at the beginning of the line"


def _missing_space(lines: list[str], i: int) -> Explanation | None:
    """`summary:The lane...`: without a space after the colon the line is text, not a key."""
    glued = _NO_SPACE.match(lines[i])
    if glued is None:
        return None
    value = glued["value"].strip()
    short = value if len(value) <= 30 else value[:27] + "..."
    return Explanation(
        i + 1,
        glued.start("value") + 1,
        f"missing space after the colon: write '{glued['key']}: {short}' (without the space "
        f"YAML reads '{glued['key']}:{short}' as text, not as a key)",
    )


def _dash_glued(lines: list[str], i: int) -> Explanation | None:
    """`-title: Le Monde`: without a space after the dash the line is text, not a list item."""
    glued = _DASH_GLUED.match(lines[i])
    if glued is None or not _ENTRY.match(f"{glued['indent']}- {glued['item']}"):
        return None
    item = glued["item"].strip()
    short = item if len(item) <= 30 else item[:27] + "..."
    return Explanation(
        i + 1,
        len(glued["indent"]) + 1,
        f"missing space after the dash: write '- {short}' (without the space YAML reads "
        f"'-{short}' as text, not as a list item)",
    )


def _wrong_indentation(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    mark = exc.problem_mark
    if not (exc.problem or "").startswith("expected <block end>") or mark is None:
        return None
    i = mark.line
    found = _text_after_closed_value(lines, i, mark.column)
    if found is not None:
        return found
    block = _block_above(lines, i)
    entry, dash = _ENTRY.match(lines[i]), _DASH.match(lines[i])
    # A key or item at or left of the block's own key is structure, not text of the block.
    structural = (entry or dash) and (
        block is None or _indent(lines[i]) <= _indent(lines[block[0]])
    )
    if block is not None and not structural:
        header, width = block
        what = _what(lines, header)
        return Explanation(
            i + 1,
            _indent(lines[i]) + 1,
            f"this line is indented {_indent(lines[i])} spaces but the first line of the {what} "
            f"(a | block) has {width}, so the block ends above it: indent every line of the "
            f"{what} by the same number of spaces",
        )
    if dash:
        return _dash_misplaced(lines, i)
    if entry is None:
        return None
    return _key_misplaced(lines, i, entry.start("key"))


def _text_after_closed_value(lines: list[str], i: int, col: int) -> Explanation | None:
    """`headline: "Paris" gets a lane` or `headline: [Update] Paris`: text after the value."""
    line = lines[i]
    start = _value_start(line)
    if start >= len(line) or col <= start:
        return None
    opener = line[start]
    what = _what(lines, i)
    if opener in "\"'":
        other = "'" if opener == '"' else '"'
        value = line[start:].strip()
        if len(value) > 1 and value.endswith(opener):
            value = value[1:-1]  # the quotes were meant around the whole value
        escaped = value.replace("'", "''") if other == "'" else value.replace('"', '\\"')
        prefix = _prefix(line, start)
        return Explanation(
            i + 1,
            col + 1,
            f"the {what} starts with {opener}, so YAML ends it at the next {opener} and does not "
            f"know what to do with the text after it: put the whole {what} in {other} quotes "
            f"({prefix}{other}{escaped}{other})",
        )
    if opener in "[{":
        kind = "a list" if opener == "[" else "a mapping"
        return Explanation(
            i + 1,
            start + 1,
            f"a value that starts with {opener} is {kind} in YAML, so the text after the "
            f"closing bracket cannot follow it: put the {what} in quotes "
            f"({_quote_example(line, start)})",
        )
    return None


def _dash_misplaced(lines: list[str], i: int) -> Explanation | None:
    own = _indent(lines[i])
    for j in range(i - 1, -1, -1):
        dash = _DASH.match(lines[j])
        if dash is None or _blank(lines[j]) or abs(_indent(lines[j]) - own) > 2:
            continue
        if _indent(lines[j]) == own:
            return None
        should = _indent(lines[j])
        return Explanation(
            i + 1,
            own + 1,
            f"this item's dash is indented {own} spaces but the items above it are indented "
            f"{should}: {_indent_by(should)} like the lines above it",
        )
    return None


def _key_misplaced(lines: list[str], i: int, column: int) -> Explanation | None:
    """A key indented differently from the keys of the mapping it belongs to (the one above)."""
    for j in range(i - 1, -1, -1):
        above = _ENTRY.match(lines[j])
        if above is None or _blank(lines[j]):
            continue
        should = above.start("key")
        if should == column:
            return None
        key = _ENTRY.match(lines[i])["key"]  # type: ignore[index]
        dash = _DASH.match(lines[j])
        if dash is not None and _indent(lines[j]) < column < should:
            # `   - title: x` over `    url: y`: the dash is the odd one out (a space too far).
            moved = column - (should - _indent(lines[j]))
            return Explanation(
                j + 1,
                _indent(lines[j]) + 1,
                f"this item's dash is indented {_indent(lines[j])} spaces, so its keys start at "
                f"column {should + 1}, but '{key}' below it starts at column {column + 1}: "
                f"indent the dash by {moved} spaces like the other items (or line '{key}' up "
                f"with '{above['key']}')",
            )
        where = "falls out of" if column < should else "does not fit in"
        return Explanation(
            i + 1,
            column + 1,
            f"'{key}' is indented {column} spaces but the key above it ('{above['key']}') is "
            f"indented {should}, so it {where} the same mapping: {_indent_by(should)} like the "
            "lines above it",
        )
    return None


def _not_a_key(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    mark = exc.context_mark
    if exc.context != "while scanning a simple key" or mark is None:
        return None
    i = mark.line
    own = _indent(lines[i])
    glued = _missing_space(lines, i)
    if glued is not None:
        return glued
    block = _block_above(lines, i)
    if block is not None and own < block[1]:
        header, width = block
        what = _what(lines, header)
        return Explanation(
            i + 1,
            own + 1,
            f"this line is indented {own} spaces, less than the text of the {what} above it "
            f"(a | block, {width} spaces), so it ends the block: indent it by {width} spaces "
            "like the lines above it",
        )
    neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(lines) and lines[j].strip()]
    if any(_DASH.match(lines[j]) and _indent(lines[j]) == own for j in neighbours):
        what = _what(lines, next(j for j in neighbours if _DASH.match(lines[j])))
        return Explanation(
            i + 1,
            own + 1,
            f"this line sits among the items of a list but has no dash: start it with '- ' "
            f"like the other {what}s, or indent it more to continue the item above",
        )
    return Explanation(
        i + 1,
        own + 1,
        "this line is neither 'key: value' nor a list item '- ...': if it continues the text "
        "above, indent it more than that text's key (or use a | block)",
    )


def _text_after_block_indicator(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    """`dek: > quote`, `summary: | First`: a value starting with | or > starts a block whose text
    goes on the lines below, so text on the same line is refused."""
    mark = exc.problem_mark
    if exc.context != "while scanning a block scalar" or mark is None:
        return None
    i = mark.line
    start = _value_start(lines[i])
    char = lines[i][start] if start < len(lines[i]) else ""
    if char not in "|>":
        return None
    what = _what(lines, i)
    return Explanation(
        i + 1,
        start + 1,
        f"a value that starts with {char} is a block in YAML, whose text goes on the lines "
        f"below, indented: to start the {what} with {char} put it in quotes "
        f"({_quote_example(lines[i], start)}); for a block, move the text after {char} to the "
        "next line, indented",
    )


def _reserved_first_character(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explanation | None:
    mark = exc.problem_mark
    problem = exc.problem or ""
    if mark is None:
        return None
    alias = exc.context in ("while scanning an alias", "while scanning an anchor")
    reserved = ("cannot start any token", "mapping keys are not allowed")
    tagged = isinstance(exc, yaml.constructor.ConstructorError)  # `!x`, `!!binary x`
    if not (alias or tagged or any(words in problem for words in reserved)):
        return None
    i = mark.line
    start = _value_start(lines[i])
    char = lines[i][start] if start < len(lines[i]) else ""
    if tagged and char != "!":
        return None
    what = _what(lines, i)
    meanings = {"*": "an alias", "&": "an anchor", "!": "a tag", "?": "a mapping key"}
    meaning = meanings.get(char, "reserved")
    reason = (
        f"a value that starts with {char} is {meaning} in YAML"
        if meaning != "reserved"
        else f"YAML does not allow a value to start with {char}"
    )
    return Explanation(
        i + 1,
        start + 1,
        f"{reason}: put the {what} in quotes ({_quote_example(lines[i], start)})",
    )


_RULES: tuple[Callable[[yaml.MarkedYAMLError, list[str]], Explanation | None], ...] = (
    _tab_character,
    _unclosed_quote,
    _quote_left_open,
    _unclosed_bracket,
    _colon_in_value,
    _wrong_indentation,
    _not_a_key,
    _text_after_block_indicator,
    _reserved_first_character,
)
