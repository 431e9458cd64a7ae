"""Structured references to Excel Tables: ``Table1[Sales]``, ``Table1[[#This Row],[Col]]``.

The grammar is Excel's (ECMA-376 / MS-OE376 "Structure References"): a table name (absent
inside the table itself: ``[@Col]``, ``[Col]``) followed by one bracketed item: empty
(the data rows), a keyword ``[#All]``, ``[#Data]``, ``[#Headers]``, ``[#Totals]``,
``[#This Row]`` (``@`` for short), the pairs ``[#Headers],[#Data]`` and ``[#Data],[#Totals]``,
a column, or a column range ``[Col1]:[Col3]``, optionally after keywords. Inside a column
name ``'`` escapes ``[``, ``]``, ``#`` and ``'``; spaces next to brackets and commas are not
part of names. Names are compared without regard to case, as Excel does.

:func:`parse_structured` reads one operand into a :class:`StructRef`; :func:`resolve` turns
it into a rectangle given the table (from the package, see xlsx.package.TableInfo) and the
row of the formula holding it (for ``#This Row``). Neither raises: text that is not a valid
structured reference gives None, as a reference to nothing does.
"""
from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["StructRef", "parse_structured", "mask_escapes", "resolve", "KEYWORDS"]

KEYWORDS = ("#all", "#data", "#headers", "#totals", "#this row")
_TABLE = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.\\]*$")
_MASK = {"[": "\x01", "]": "\x02"}
_UNMASK = str.maketrans("\x01\x02", "[]")


class StructRef(NamedTuple):
    """A structured reference: ``table`` (None: the table holding the formula), the row
    keywords (lower case; empty: the data rows) and the first and last column names
    (None: every column)."""
    table: str | None
    items: frozenset
    first: str | None = None
    last: str | None = None


def mask_escapes(text: str) -> str:
    """``'[`` and ``']`` inside brackets -> the same length with the bracket masked, so that a
    tokenizer counting brackets keeps the operand whole. Strings and quoted sheet names
    outside brackets are left as they are."""
    out, depth, quote, i, n = [], 0, None, 0, len(text)
    while i < n:
        ch = text[i]
        if depth == 0 and quote:
            if ch == quote:
                quote = None
        elif depth == 0 and ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(depth - 1, 0)
        elif ch == "'" and depth and i + 1 < n:
            out.append(ch)
            i += 1
            out.append(_MASK.get(text[i], text[i]))
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _groups(inner: str) -> list[str] | None:
    """'[a],[b]:[c]' -> ['[a]', ',', '[b]', ':', '[c]'] (top-level brackets and separators)."""
    out, depth, start = [], 0, None
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "'" and depth:
            i += 2
            continue
        if ch == "[":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                out.append(inner[start:i + 1])
        elif depth == 0:
            if ch in ",:@":
                out.append(ch)
            elif not ch.isspace():
                return None
        i += 1
    return out if depth == 0 else None


def _name(text: str) -> str | None:
    """An escaped column name -> the name ('a'#b' -> 'a#b'); None if empty."""
    text = text.strip().translate(_UNMASK)
    out, i = [], 0
    while i < len(text):
        if text[i] == "'" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    name = "".join(out).strip()
    return name or None


def _bracketed(group: str) -> str:
    return group[1:-1]


def parse_structured(text: str) -> StructRef | None:
    """'Table1[[#This Row],[Col]]' -> StructRef; None if it is not a structured reference."""
    cut = text.find("[")
    table = text[:cut].strip()
    if cut < 0 or not text.endswith("]") or (table and not _TABLE.match(table)):
        return None
    inner = text[cut + 1:-1]
    if _groups(text[cut:]) != [text[cut:]]:
        return None
    items: set[str] = set()
    stripped = inner.strip()
    if stripped.startswith("@"):                           # [@Col], [@[Col 1]], [@]
        items.add("#this row")
        stripped = stripped[1:].strip()
        if not stripped:
            return StructRef(table or None, frozenset(items))
        if not stripped.startswith("["):
            return _columns(table, items, [f"[{stripped}]"])
    if not stripped:
        return StructRef(table or None, frozenset(items))
    if not stripped.startswith("["):                       # one keyword or one column
        word = _name(stripped)
        if stripped.startswith("#"):
            key = stripped.lower()
            return StructRef(table or None, frozenset({key})) if key in KEYWORDS else None
        return StructRef(table or None, frozenset(items), word, word) if word else None
    groups = _groups(stripped)
    if not groups:
        return None
    # split at top-level commas: keywords first, then at most one column range
    elems, cur = [], []
    for g in groups:
        if g == ",":
            elems.append(cur)
            cur = []
        else:
            cur.append(g)
    elems.append(cur)
    cols = None
    for el in elems:
        if len(el) == 1 and el[0].startswith("[") and _bracketed(el[0]).strip().startswith("#"):
            key = _bracketed(el[0]).strip().lower()
            if key not in KEYWORDS:
                return None
            items.add(key)
        elif cols is None and el:
            cols = el
        else:
            return None
    if cols is None:
        return StructRef(table or None, frozenset(items))
    return _columns(table, items, cols)


def _columns(table: str, items: set, cols: list[str]) -> StructRef | None:
    if len(cols) == 1 and cols[0].startswith("["):
        first = last = _name(_bracketed(cols[0]))
    elif len(cols) == 3 and cols[1] == ":" and cols[0].startswith("[") and cols[2].startswith("["):
        first, last = _name(_bracketed(cols[0])), _name(_bracketed(cols[2]))
    else:
        return None
    if first is None or last is None:
        return None
    return StructRef(table or None, frozenset(items), first, last)


def resolve(sref: StructRef, table, host_row: int | None) -> tuple[int, int, int, int] | None:
    """The rectangle (r0, c0, r1, c1) a structured reference names in ``table`` (a
    TableInfo), ``host_row`` being the row of the formula; None where Excel gives #REF!
    (a missing column or header/totals row) or #VALUE! (#This Row outside the data rows)."""
    r0, c0, r1, c1 = table.ref
    h, t = table.header_rows, table.totals_rows
    spans = []
    for key in (sref.items or {"#data"}):
        if key == "#all":
            spans.append((r0, r1))
        elif key == "#data":
            spans.append((r0 + h, r1 - t))
        elif key == "#headers" and h:
            spans.append((r0, r0 + h - 1))
        elif key == "#totals" and t:
            spans.append((r1 - t + 1, r1))
        elif key == "#this row" and host_row is not None and r0 + h <= host_row <= r1 - t:
            spans.append((host_row, host_row))
    spans = [(a, b) for a, b in spans if a <= b]
    if not spans:
        return None
    if sref.first is None:
        a, b = c0, c1
    else:
        names = [n.lower() for n in table.columns]
        try:
            a, b = names.index(sref.first.lower()), names.index(sref.last.lower())
        except ValueError:
            return None
        a, b = c0 + min(a, b), c0 + max(a, b)
        if b > c1:
            return None
    return min(s for s, _ in spans), a, max(e for _, e in spans), b
