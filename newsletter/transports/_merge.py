"""Recover one shared template from a batch of personalised messages.

SendGrid and Mailgun batch sends carry the content once plus per-recipient substitutions, but a
transport only sees each recipient's finished text and HTML. Those come from one compiled issue
filled with a few per-recipient values (a name, the unsubscribe URL), so comparing them with the
first message finds where they differ; everything else is shared literal text.

Correctness never depends on the diff guessing well: every message is fitted back onto the
shared pieces, and its values are exactly what makes `pieces joined with values` equal its own
text. A message that does not fit (or whose values would be too large) is left out, and the
caller sends it on its own with its full content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]

WINDOW = 32  # characters that must agree to call two texts back in step after a difference
MAX_SHIFT = 4096  # longest per-recipient value the diff looks across


def _common_prefix(a: str, i: int, end_a: int, b: str, j: int, end_b: int) -> int:
    n = min(end_a - i, end_b - j)
    if a[i : i + n] == b[j : j + n]:
        return n
    lo, step = 0, 64
    while step < n and a[i : i + step] == b[j : j + step]:
        lo, step = step, step * 2
    hi = min(step, n)  # a[i:i+hi] != b[j:j+hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[i : i + mid] == b[j : j + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    lo, hi = 0, limit + 1
    if a[len(a) - limit :] == b[len(b) - limit :]:
        return limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid
    return lo


def _resync(a: str, pa: int, end_a: int, b: str, pb: int, end_b: int) -> tuple[int, int] | None:
    """Nearest (ia, ib) after a difference where WINDOW characters agree again."""
    best: tuple[int, int] | None = None
    best_cost = MAX_SHIFT * 2
    for db in range(min(MAX_SHIFT, end_b - pb)):
        if db > best_cost:
            break
        window = b[pb + db : min(pb + db + WINDOW, end_b)]
        if len(window) < WINDOW and pb + db + len(window) < end_b:
            break
        if len(window) < min(WINDOW, 8):
            break  # too short to trust: the rest up to the common suffix is one value
        ia = a.find(window, pa, min(end_a, pa + MAX_SHIFT + WINDOW))
        if ia >= 0 and (ia - pa) + db < best_cost:
            best, best_cost = (ia, pb + db), (ia - pa) + db
    return best


def diff_spans(a: str, b: str) -> list[tuple[int, int]]:
    """Spans of `a` (start, end; possibly empty) where `b` holds something else."""
    if a == b:
        return []
    suffix = _common_suffix(a, b, min(len(a), len(b)))
    end_a, end_b = len(a) - suffix, len(b) - suffix
    pa = pb = 0
    spans: list[tuple[int, int]] = []
    while True:
        n = _common_prefix(a, pa, end_a, b, pb, end_b) if pa < end_a and pb < end_b else 0
        pa, pb = pa + n, pb + n
        if pa >= end_a or pb >= end_b:
            if pa < end_a or pb < end_b:
                spans.append((pa, end_a))
            return spans
        found = _resync(a, pa, end_a, b, pb, end_b)
        if found is None:
            spans.append((pa, end_a))
            return spans
        spans.append((pa, found[0]))
        pa, pb = found


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def skeleton(texts: Sequence[str]) -> list[str]:
    """Literal pieces shared by all texts (len = number of value slots + 1).

    Only texts that do not fit the pieces found so far are compared with the first one: once
    every slot has been seen (after a handful of recipients), the rest cost one `fit` each.
    Widening a slot never stops an earlier text from fitting, so one pass is enough.
    """
    base = texts[0]
    spans: list[tuple[int, int]] = []
    pieces = [base]
    for other in texts[1:]:
        if fit(pieces, other) is not None:
            continue
        found = diff_spans(base, other)
        in_base = sum(end - start for start, end in found)
        if max(in_base, in_base + len(other) - len(base)) > MAX_SHIFT:
            continue  # an outlier goes alone rather than widen everyone's values
        spans.extend(found)
        pieces, last = [], 0
        for start, end in _union(spans):
            pieces.append(base[last:start])
            last = end
        pieces.append(base[last:])
    return pieces


def fit(pieces: Sequence[str], text: str) -> list[str] | None:
    """The values that turn `pieces` into exactly `text`, or None when it does not fit."""
    if len(pieces) == 1:
        return [] if text == pieces[0] else None
    first, last = pieces[0], pieces[-1]
    if not text.startswith(first) or not text.endswith(last):
        return None
    values: list[str] = []
    pos = len(first)
    for piece in pieces[1:-1]:
        at = text.find(piece, pos) if piece else pos
        if at < 0:
            return None
        values.append(text[pos:at])
        pos = at + len(piece)
    tail = len(text) - len(last)
    if tail < pos:
        return None
    values.append(text[pos:tail])
    return values


@dataclass(frozen=True)
class Group:
    """Messages (by index) sharing `pieces` per field, with each one's values per field."""

    members: list[int]
    pieces: list[list[str]]  # per field
    values: list[list[list[str]]]  # per member, per field


def group_documents(
    docs: Sequence[Sequence[str]], rounds: int = 3
) -> tuple[list[Group], list[int]]:
    """Group documents (tuples of fields) by a shared template; return groups and the leftovers
    (indices that fit no template and go out one by one)."""
    remaining = list(range(len(docs)))
    groups: list[Group] = []
    alone: list[int] = []
    for _ in range(rounds):
        if len(remaining) < 2:
            break
        fields = len(docs[remaining[0]])
        pieces = [skeleton([docs[i][f] for i in remaining]) for f in range(fields)]
        members, values, misfits = [], [], []
        for i in remaining:
            fitted = [fit(pieces[f], docs[i][f]) for f in range(fields)]
            if any(v is None for v in fitted):
                misfits.append(i)
            else:
                members.append(i)
                values.append(fitted)
        if len(members) > 1:
            groups.append(Group(members, pieces, values))  # type: ignore[arg-type]
        else:
            alone.extend(members)  # the first document was the odd one out
        remaining = misfits
    return groups, sorted(alone + remaining)


def join(pieces: Sequence[str], values: Sequence[str]) -> str:
    out = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        out.append(value)
        out.append(piece)
    return "".join(out)


def json_strings(docs: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each document's fields as JSON string literals (quotes included), the way
    `json.dumps(ensure_ascii=False)` writes them, escaping each shared piece once per batch.

    JSON escaping works character by character, so escaping the pieces and the values apart and
    joining them gives the same text as escaping the whole: the per-recipient cost is escaping a
    few short values and one join, instead of escaping every recipient's 50 KB again.
    """
    out: list[list[str]] = [[] for _ in docs]
    groups, alone = group_documents(docs)
    for group in groups:
        escaped = [[encode_basestring(p)[1:-1] for p in field] for field in group.pieces]
        for member, values in zip(group.members, group.values, strict=True):
            out[member] = [
                '"' + join(pieces, [encode_basestring(v)[1:-1] for v in field_values]) + '"'
                for pieces, field_values in zip(escaped, values, strict=True)
            ]
    for i in alone:
        out[i] = [encode_basestring(text) for text in docs[i]]
    return out
