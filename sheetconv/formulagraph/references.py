"""References in formula text, found with openpyxl's formula tokenizer.

:func:`references` tokenizes one formula and returns its :class:`Ref` s: cells and ranges
(relative or absolute), cross-sheet references with quoted names (``'My sheet (2)'!A1``),
ranges with the sheet on both ends (``Sheet1!A1:Sheet1!B2``), range chains (``A1:B2:C3``,
the bounding range, as Excel's ``:`` operator), whole rows and columns (``A:C``, ``3:5``:
unbounded, the index bounds them to the used range), 3-D references (``Sheet1:Sheet3!A1``),
defined names, chains ending in a name (``B2:E5:f``: resolved by the index) and structured
table references (``Table1[[#This Row],[Col]]``, see :mod:`.structured`). Array formulas
may be given as Excel displays them, ``{=MAX(0,SUM(A2:C4*$AD$11:$AF$13))}``. References into
other workbooks (``[1]Sheet1!A1``) are not cells of this workbook and are left out.

Before tokenizing, text is normalised without changing its length (so offsets hold): tabs
and line breaks between tokens become spaces, error literals are upper-cased (``#ref!``),
and escaped brackets inside structured references are masked (openpyxl's tokenizer does not
know the ``'`` escape).

:class:`ShapeCache` makes a million formulas cheap. A formula's *shape* is its text with
the digit runs taken out; formulas that differ only in row numbers (and numeric constants)
share it. Adding a formula costs two byte translations and a dict lookup; the tokenizer
runs only when a shape's references are first asked for (lazily: a trace tokenizes only the
formulas on its path), once per shape, and leaves a template tying each reference's rows to
digit runs (columns are part of the shape). Digit runs inside sheet names, defined names or
table references must match the template's, else the formula gets a template of its own.
Building a template is linear in the formula's length. Coordinates are 0-based throughout.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache
from typing import NamedTuple

from openpyxl.formula import Tokenizer
from openpyxl.formula.tokenizer import Token, TokenizerError

from ..errors import SheetconvError
from ..sheet.a1 import COLNUM, MAX_COLS, MAX_ROWS, unquote_sheet
from .structured import StructRef, mask_escapes, parse_structured

__all__ = ["Ref", "StructRef", "references", "parse_ref", "ShapeCache", "COLNUM"]


class Ref(NamedTuple):
    """One reference. ``sheet`` is None for the formula's own sheet, a name, or a
    ``(first, last)`` pair for a 3-D reference. Rows/cols are 0-based and inclusive;
    ``r0 = r1 = None`` for whole columns, ``c0 = c1 = None`` for whole rows. A defined
    name has ``name`` set and no coordinates; a structured reference has ``table`` set; a
    range chain holding a name (``A1:B2:f``) has ``parts`` (Refs whose bounding range it is)."""
    sheet: object
    r0: int | None
    c0: int | None
    r1: int | None
    c1: int | None
    name: str | None = None
    table: StructRef | None = None
    parts: tuple | None = None


# A formula's digit runs: row numbers and the like. Everything else is its shape.
_DIGITS = re.compile(r"[0-9]+")
_CELL = re.compile(r"^(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})$")
_COL = re.compile(r"^(\$?)([A-Za-z]{1,3})$")
_ROW = re.compile(r"^(\$?)([0-9]{1,7})$")
_NAME = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.\\?]*$")
_LEADING_REF = re.compile(r"^([^(]*?):[A-Za-z_.]+\($")   # 'A1:INDEX(' -> 'A1'
_ERRORS = re.compile(r"#(?:null!|div/0!|value!|ref!|name\?|num!|n/a|getting_data|spill!|calc!)", re.I)
_BLANKS = str.maketrans("\t\r\n", "   ")


class _Part(NamedTuple):
    kind: str                  # 'cell', 'col', 'row' or 'name'
    sheet: object              # as in Ref
    offset: int                # where the address starts in the operand text
    groups: tuple              # the regular expression's groups (or (name,))


def _scan_top(text: str, seps: str) -> list[int]:
    """Positions of ``seps`` characters outside quotes ('...', "...") and brackets."""
    out, depth, quote = [], 0, None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and depth == 0:
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0 and ch in seps:
            out.append(i)
    return out


def _part(text: str, start: int) -> _Part | None:
    """One piece of a range ('Sheet1!$A$1', 'B', '3', 'f') starting at ``start``."""
    bang = _scan_top(text, "!")
    sheet, addr, off = None, text, start
    if bang:
        raw = text[:bang[-1]]
        if not raw or "[" in raw:
            return None                                    # another workbook
        sheet = unquote_sheet(raw)
        if not sheet or sheet.startswith("["):
            return None
        if ":" in sheet:                                   # 3-D: 'Sheet1:Sheet3'!A1
            first, _, last = sheet.partition(":")
            sheet = (first, last)
        addr, off = text[bang[-1] + 1:], start + bang[-1] + 1
    for kind, rx in (("cell", _CELL), ("col", _COL), ("row", _ROW)):
        m = rx.match(addr)
        if m:
            return _Part(kind, sheet, off, m.groups())
    if _NAME.match(addr) and addr.upper() not in ("TRUE", "FALSE"):
        return _Part("name", sheet, off, (addr,))
    return None


def _parts(text: str) -> tuple[str, list[_Part]] | None:
    """An operand -> ('range', parts) / ('table', StructRef) / None (not a reference here)."""
    lead = 1 if text.startswith("@") else 0                # implicit intersection: @A1
    body = text[lead:]
    if not body:
        return None
    if "[" in body or "]" in body:                             # no sheet name holds a bracket
        if body.endswith("]") and not body.startswith("'"):
            sref = parse_structured(body)
            return None if sref is None else ("table", sref)
        return None                                        # another workbook
    cuts = _scan_top(body, ":")
    pieces, prev = [], 0
    for c in cuts + [len(body)]:
        pieces.append((body[prev:c], lead + prev))
        prev = c + 1
    # unquoted 3-D prefix: Sheet1:Sheet3!A1 -> the first piece is a sheet name
    if len(pieces) >= 2 and "!" not in pieces[0][0] and "!" in pieces[1][0] \
            and not any(rx.match(pieces[0][0]) for rx in (_CELL, _COL, _ROW)):
        first = pieces[0][0]
        t1, off1 = pieces[1]
        cut = _scan_top(t1, "!")[-1]
        if "[" in t1[:cut] or "[" in first:
            return None
        sheet = (unquote_sheet(first), unquote_sheet(t1[:cut]))
        p = _part(t1[cut + 1:], off1 + cut + 1)
        if p is None:
            return None
        out = [p._replace(sheet=sheet)]
        for t, off in pieces[2:]:
            q = _part(t, off)
            if q is None:
                return None
            out.append(q._replace(sheet=sheet) if q.sheet is None else q)
        return "range", out
    out = []
    for t, off in pieces:
        q = _part(t, off)
        if q is None:
            return None
        out.append(q)
    return "range", out


def _combine(parts: list[_Part]) -> tuple[object, str] | None:
    """The sheet of a range and its form: 'cells', 'cols', 'rows', 'name' or 'chain'."""
    sheets = {(s.lower() if isinstance(s, str) else tuple(x.lower() for x in s))
              for s in (p.sheet for p in parts) if s is not None}
    if len(sheets) > 1:
        return None                                        # Sheet1!A1:Sheet2!B2: #VALUE!
    sheet = next((p.sheet for p in parts if p.sheet is not None), None)
    kinds = {p.kind for p in parts}
    if (len(parts) == 1 or "cell" in kinds) and "col" in kinds:   # 'tax', B2:E5:f: names there
        parts[:] = [_Part("name", p.sheet, p.offset, (p.groups[1],)) if p.kind == "col" and not p.groups[0]
                    else p for p in parts]
        kinds = {p.kind for p in parts}
    if len(parts) == 1:
        return sheet, {"cell": "cells", "name": "name"}.get(parts[0].kind)
    if kinds == {"cell"}:
        return sheet, "cells"
    if kinds == {"col"}:
        return sheet, "cols"
    if kinds == {"row"}:
        return sheet, "rows"
    if kinds <= {"cell", "name"}:
        return sheet, "chain"
    return None


def _col(letters: str) -> int:
    return COLNUM.get(letters.upper(), MAX_COLS)


def _inside(r0, c0, r1, c1) -> bool:
    """Inside Excel's grid (a reference past it is no cell; the formula would be #REF!)."""
    return 0 <= r0 <= r1 < MAX_ROWS and 0 <= c0 <= c1 < MAX_COLS


def _part_ref(p: _Part, sheet) -> Ref | None:
    if p.kind == "name":
        return Ref(p.sheet if p.sheet is not None else sheet, None, None, None, None, p.groups[0])
    r, c = int(p.groups[3]) - 1, _col(p.groups[1])
    return Ref(sheet, r, c, r, c) if _inside(r, c, r, c) else None


def parse_ref(text: str) -> Ref | None:
    """One operand as the tokenizer gives it -> Ref (None: not a reference into this workbook).
    Short operands (most: 'B7', '$C$3:$E$5') are remembered, as the templates of one
    workbook repeat them."""
    return _parse_short(text) if len(text) <= _SHORT else _parse_ref(text)


_SHORT = 48                      # operands up to this long are cached (a bounded cache of short strings)


@lru_cache(maxsize=1 << 15)
def _parse_short(text: str) -> Ref | None:
    return _parse_ref(text)


@lru_cache(maxsize=1 << 15)
def _parts_short(text: str):
    return _parts(text)


def _parts_of(text: str):
    """:func:`_parts`, remembered for short operands (the result is shared: never changed)."""
    return _parts_short(text) if len(text) <= _SHORT else _parts(text)


def _parse_ref(text: str) -> Ref | None:
    got = _parts(text.strip())
    if got is None:
        return None
    if got[0] == "table":
        return Ref(None, None, None, None, None, table=got[1])
    parts = got[1]
    form = _combine(parts)
    if form is None or form[1] is None:
        return None
    sheet, kind = form
    if kind == "name":
        return Ref(sheet, None, None, None, None, parts[0].groups[0])
    if kind == "cells":
        rows = [int(p.groups[3]) - 1 for p in parts]
        cols = [_col(p.groups[1]) for p in parts]
        r0, c0, r1, c1 = min(rows), min(cols), max(rows), max(cols)
        return Ref(sheet, r0, c0, r1, c1) if _inside(r0, c0, r1, c1) else None
    if kind == "cols":
        cols = [_col(p.groups[1]) for p in parts]
        c0, c1 = min(cols), max(cols)
        return Ref(sheet, None, c0, None, c1) if _inside(0, c0, 0, c1) else None
    if kind == "rows":
        rows = [int(p.groups[1]) - 1 for p in parts]
        r0, r1 = min(rows), max(rows)
        return Ref(sheet, r0, None, r1, None) if _inside(r0, 0, r1, 0) else None
    refs = tuple(_part_ref(p, sheet) for p in parts)       # a chain with a defined name
    if any(r is None for r in refs):
        return None
    return Ref(sheet, None, None, None, None, parts=refs)


def clean(formula: str) -> str:
    """Formula text as the tokenizer can read it, the same length: blanks between tokens
    as spaces, error literals in upper case, escaped brackets in table references masked."""
    text = formula.translate(_BLANKS)
    if "#" in text:
        text = _ERRORS.sub(lambda m: m.group(0).upper(), text)
    if "[" in text and "'" in text:
        text = mask_escapes(text)
    return text


def _tokens(formula: str) -> list[Token]:
    text = clean(formula.strip())
    if text.startswith("{") and text.endswith("}"):        # array formula as Excel shows it
        text = text[1:-1]
    if not text.startswith("="):
        text = "=" + text
    try:
        return Tokenizer(text).items
    except (TokenizerError, ValueError, IndexError, KeyError) as e:
        raise SheetconvError(f"cannot read formula {formula[:80]!r}: {e}") from None


def _operand(tok: Token) -> str | None:
    """The text of a token that may be a reference."""
    if tok.type == Token.OPERAND and tok.subtype == Token.RANGE:
        return tok.value
    if tok.type == Token.FUNC and tok.subtype == Token.OPEN:
        m = _LEADING_REF.match(tok.value)
        if m:
            return m.group(1)
    return None


def references(formula: str) -> list[Ref]:
    """Every reference of one formula (``=...``, ``{=...}`` or the bare text of an xlsx ``<f>``)."""
    out = []
    for tok in _tokens(formula):
        text = _operand(tok)
        if text is not None:
            ref = parse_ref(text)
            if ref is not None:
                out.append(ref)
    return out


class _Template(NamedTuple):
    # entries: ("rect", sheet, rows, cols) with rows ((digit run index, relative), ...) and
    # cols ((column, relative), ...) (empty: whole rows / columns; the range is the bounding
    # box of the pieces), or ("ref", Ref) for a reference without row digits (names, tables)
    refs: tuple
    fixed: tuple                   # indices of digit runs that are not coordinates but text
    fixed_values: tuple            # their text: it must match for the template to apply
    nruns: int = 0                 # digit runs of a formula of this shape


_TO_ZERO = bytes.maketrans(b"0123456789", b"\x00" * 10)
_TO_SPACE = bytes(b if 48 <= b <= 57 else 32 for b in range(256))
_UNREADABLE = ()


def _text(v) -> str:
    return v.decode("ascii") if isinstance(v, (bytes, bytearray)) else str(v)


class ShapeCache:
    """Formula text -> (shape id, digit runs); shape id + digit runs -> references.

    The shape is the text with its digit runs taken out: formulas that differ only in row
    numbers (and numeric constants) share it. Column letters stay in the shape. Templates
    (one tokenizer run) are made on first use of a shape by :meth:`refs` / :meth:`template`;
    a formula whose digit runs in names, sheet names or tables differ from its template's
    gets a template of its own (text rebuilt from the shape and its runs).
    """

    def __init__(self):
        self._ids: dict[str, int] = {}
        self._fast: dict[bytes, int] = {}
        self.shapes: list[str] = []
        self.nruns: list[int] = []
        self._tmpl: list[_Template | None] = []
        self._variants: dict[tuple, _Template] = {}
        self.unreadable: list[str] = []
        self.tokenized = 0                                 # tokenizer runs so far

    def __len__(self):
        return len(self.shapes)

    def digits(self, text: str) -> tuple[int, bytes]:
        """The formula's shape id and its digit runs as ASCII, space-separated (b'3 5 33 ';
        b'' for a formula without digits)."""
        b = text.encode()
        key = b.translate(_TO_ZERO)
        sid = self._fast.get(key)
        if sid is None:
            sid = self._fast[key] = self.split(text)[0]
        runs = b.translate(_TO_SPACE).split()
        return sid, (b" ".join(runs) + b" ") if runs else b""

    def split(self, text: str) -> tuple[int, list[str]]:
        """The formula's shape id and its digit runs (as text, in text order)."""
        runs = _DIGITS.findall(text)
        shape = _DIGITS.sub("\x00", text)
        sid = self._ids.get(shape)
        if sid is None:
            sid = self._ids[shape] = len(self.shapes)
            self.shapes.append(shape)
            self.nruns.append(len(runs))
            self._tmpl.append(None)
        return sid, runs

    def rebuild(self, sid: int, vals) -> str:
        """A formula's text from its shape and digit runs."""
        pieces = self.shapes[sid].split("\x00")
        out = [pieces[0]]
        for v, p in zip(vals, pieces[1:]):
            out += (_text(v), p)
        return "".join(out)

    def _build(self, text: str) -> _Template:
        self.tokenized += 1
        try:
            return _template(text)
        except (SheetconvError, TokenizerError, ValueError, IndexError, KeyError):
            if len(self.unreadable) < 1000:
                self.unreadable.append(text[:200])
            return _Template(_UNREADABLE, (), (), len(_DIGITS.findall(text)))

    def template(self, sid: int, vals) -> _Template:
        """The template that applies to a formula of shape ``sid`` with digit runs ``vals``."""
        tmpl = self._tmpl[sid]
        if tmpl is None:
            tmpl = self._tmpl[sid] = self._build(self.rebuild(sid, vals))
        if tmpl.fixed:
            own = tuple(_text(vals[k]) for k in tmpl.fixed)
            if own != tmpl.fixed_values:
                var = self._variants.get((sid, own))
                if var is None:
                    var = self._variants[(sid, own)] = self._build(self.rebuild(sid, vals))
                tmpl = var
        return tmpl

    def refs(self, sid: int, vals, drow: int = 0, dcol: int = 0) -> list[Ref]:
        """References of a formula of shape ``sid`` with digit runs ``vals`` (ints or text);
        (drow, dcol) moves its relative references: the other cells of a shared formula."""
        return entry_refs(self.template(sid, vals).refs, vals, drow, dcol)


def entry_refs(entries, vals, drow: int = 0, dcol: int = 0) -> list[Ref]:
    """Template entries filled with a formula's digit runs, moved by (drow, dcol)."""
    out = []
    for e in entries:
        if e[0] == "ref":
            out.append(e[1])
            continue
        _, sheet, rows, cols = e
        r0 = r1 = c0 = c1 = None
        if rows:
            k, rel = rows[0]
            r0 = r1 = int(vals[k]) - 1 + (drow if rel else 0)
            for k, rel in rows[1:]:
                r = int(vals[k]) - 1 + (drow if rel else 0)
                r0, r1 = (r, r1) if r < r0 else (r0, r if r > r1 else r1)
            if r0 < 0 or r1 >= MAX_ROWS:
                continue                                   # moved off the sheet: #REF!
        if cols:
            c, rel = cols[0]
            c0 = c1 = c + (dcol if rel else 0)
            for c, rel in cols[1:]:
                c += dcol if rel else 0
                c0, c1 = (c, c1) if c < c0 else (c0, c if c > c1 else c1)
            if c0 < 0 or c1 >= MAX_COLS:
                continue
        out.append(Ref(sheet, r0, c0, r1, c1))
    return out


def _template(text: str) -> _Template:
    """Tokenize once; tie each reference's rows to the digit runs that hold them (linear:
    each digit run is looked up by binary search, never scanned per token)."""
    body = text[1:] if text.startswith("=") else text
    starts, ends = [], []
    for m in _DIGITS.finditer(body):
        starts.append(m.start())
        ends.append(m.end())
    role = ["fixed"] * len(starts)                        # "fixed", "free" or "row"

    def runs_in(a, b):
        k = bisect_left(starts, a)
        while k < len(starts) and ends[k] <= b:
            yield k
            k += 1

    cleaned = clean(body)
    refs = []
    pos = 0
    for tok in _tokens(text):
        if tok.type == Token.WSPACE:                       # the tokenizer shortens runs of spaces
            continue
        start = cleaned.find(tok.value, pos)
        if start < 0:
            raise SheetconvError(f"cannot read formula {text[:80]!r}")
        pos = start + len(tok.value)
        value = _operand(tok)
        if value is None:
            if tok.type == Token.OPERAND:                  # numbers, strings, logicals, errors
                for k in runs_in(start, pos):
                    role[k] = "free"
            continue
        ref = parse_ref(value)
        if ref is None:                                    # another workbook, #REF!: no cell
            for k in runs_in(start, start + len(value)):
                role[k] = "free"
            continue
        if ref.name is not None or ref.table is not None or ref.parts is not None:
            refs.append(("ref", ref))                      # its digits stay fixed
            continue
        parts = _parts_of(value.strip())[1]
        rows, cols = [], []
        lead = len(value) - len(value.lstrip())
        for p in parts:
            a = start + lead + p.offset
            if p.kind == "cell":
                d0, letters, d1, digits = p.groups
                k = next(runs_in(a, a + len(d0) + len(letters) + len(d1) + len(digits)))
                role[k] = "row"
                rows.append((k, not d1))
                cols.append((_col(letters), not d0))
            elif p.kind == "col":
                cols.append((_col(p.groups[1]), not p.groups[0]))
            else:
                k = next(runs_in(a, a + len(p.groups[0]) + len(p.groups[1])))
                role[k] = "row"
                rows.append((k, not p.groups[0]))
        refs.append(("rect", ref.sheet, tuple(rows), tuple(cols)))
    if cleaned[pos:].strip():
        raise SheetconvError(f"cannot read formula {text[:80]!r}")
    fixed = tuple(k for k, r in enumerate(role) if r == "fixed")
    values = tuple(body[starts[k]:ends[k]] for k in fixed)
    return _Template(tuple(refs), fixed, values, len(starts))
