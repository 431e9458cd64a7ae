"""References in formula text, found with openpyxl's formula tokenizer.

:func:`references` tokenizes one formula and returns its :class:`Ref` s: cells and ranges
(relative or absolute), cross-sheet references with quoted names (``'My sheet (2)'!A1``),
whole rows and columns (``A:C``, ``3:5``: unbounded, the reader bounds them to the used
range), 3-D references (``Sheet1:Sheet3!A1``) and defined names. Array formulas may be
given as Excel displays them, ``{=MAX(0,SUM(A2:C4*$AD$11:$AF$13))}``. References into
other workbooks (``[1]Sheet1!A1``) and structured table references are not cells of this
workbook and are left out.

:class:`ShapeCache` makes a million formulas cheap. A formula's *shape* is its text with
the digit runs taken out; formulas that differ only in row numbers (and numeric constants)
share it — in a conv layer, all cells of one output column, whatever the stride. The
tokenizer runs once per shape and leaves a template tying each reference's rows to digit
runs (columns are part of the shape). Each formula then costs two byte translations and a
dict lookup; its digit runs are kept as ASCII, and its references are the template filled
with them. Shared formulas reuse their master's shape, moved by (drow, dcol).
Coordinates are 0-based throughout.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from openpyxl.formula import Tokenizer
from openpyxl.formula.tokenizer import Token, TokenizerError

from ..errors import SheetconvError
from ..sheet.a1 import MAX_COLS, MAX_ROWS, column_names, unquote_sheet

__all__ = ["Ref", "references", "parse_ref", "ShapeCache", "COLNUM"]

# Column letters -> 0-based index, for every column of the grid (a dict is the fastest lookup).
COLNUM = {letters: i for i, letters in enumerate(column_names())}


class Ref(NamedTuple):
    """One reference. ``sheet`` is None for the formula's own sheet, a name, or a
    ``(first, last)`` pair for a 3-D reference. Rows/cols are 0-based and inclusive;
    ``r0 = r1 = None`` for whole columns, ``c0 = c1 = None`` for whole rows. A defined
    name has ``name`` set and no coordinates."""
    sheet: object
    r0: int | None
    c0: int | None
    r1: int | None
    c1: int | None
    name: str | None = None


# A formula's digit runs: row numbers and the like. Everything else is its shape.
_DIGITS = re.compile(r"([0-9]+)")
_ADDR = re.compile(r"^(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})(?::(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7}))?$")
_ROWS_ADDR = re.compile(r"^(\$?)([0-9]{1,7}):(\$?)([0-9]{1,7})$")
_COLS_ADDR = re.compile(r"^(\$?)([A-Za-z]{1,3}):(\$?)([A-Za-z]{1,3})$")
_NAME = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.\\?]*$")
_LEADING_REF = re.compile(r"^([^(]*?):[A-Za-z_.]+\($")   # 'A1:INDEX(' -> 'A1'


def _split_operand(text: str) -> tuple[object, str, int] | None:
    """'Sheet 1'!A1:B2 -> (sheet, address, offset of the address). None for external refs."""
    lead = 1 if text.startswith("@") else 0                # implicit intersection: @A1
    text = text[lead:]
    if text.startswith("[") or "[" in text.partition("!")[2]:
        return None                                        # another workbook or a table
    if "!" not in text:
        return None, text, lead
    sheet, _, addr = text.rpartition("!")
    offset = lead + len(sheet) + 1
    if sheet.startswith("["):
        return None
    if sheet.startswith("'"):
        name = unquote_sheet(sheet)
        if name.startswith("["):
            return None
    else:
        name = sheet
    if ":" in name:                                        # 3-D: Sheet1:Sheet3!A1
        first, _, last = name.partition(":")
        return (first, last), addr, offset
    return name, addr, offset


def _inside(r0, c0, r1, c1) -> bool:
    """Inside Excel's grid (a reference past it is no cell; the formula would be #REF!)."""
    return 0 <= r0 <= r1 < MAX_ROWS and 0 <= c0 <= c1 < MAX_COLS


def parse_ref(text: str) -> Ref | None:
    """One operand as the tokenizer gives it -> Ref (None: not a reference into this workbook)."""
    split = _split_operand(text.strip())
    if split is None:
        return None
    sheet, addr, _ = split
    m = _ADDR.match(addr)
    if m:
        _, ca, _, ra, _, cb, _, rb = m.groups()
        r0, c0 = int(ra) - 1, COLNUM.get(ca.upper(), MAX_COLS)
        r1, c1 = (int(rb) - 1, COLNUM.get(cb.upper(), MAX_COLS)) if cb else (r0, c0)
        r0, r1, c0, c1 = min(r0, r1), max(r0, r1), min(c0, c1), max(c0, c1)
        return Ref(sheet, r0, c0, r1, c1) if _inside(r0, c0, r1, c1) else None
    m = _COLS_ADDR.match(addr)
    if m:
        c0, c1 = sorted((COLNUM.get(m.group(2).upper(), MAX_COLS), COLNUM.get(m.group(4).upper(), MAX_COLS)))
        return Ref(sheet, None, c0, None, c1) if _inside(0, c0, 0, c1) else None
    m = _ROWS_ADDR.match(addr)
    if m:
        r0, r1 = sorted((int(m.group(2)) - 1, int(m.group(4)) - 1))
        return Ref(sheet, r0, None, r1, None) if _inside(r0, 0, r1, 0) else None
    if _NAME.match(addr) and addr.upper() not in ("TRUE", "FALSE"):
        return Ref(sheet, None, None, None, None, addr)
    return None


def _tokens(formula: str) -> list[Token]:
    text = formula.strip()
    if text.startswith("{") and text.endswith("}"):        # array formula as Excel shows it
        text = text[1:-1]
    if not text.startswith("="):
        text = "=" + text
    try:
        return Tokenizer(text).items
    except TokenizerError as e:
        raise SheetconvError(f"cannot read formula {formula[:80]!r}: {e}") from None


def _ref_texts(items: list[Token]):
    """The operand texts of a token list that may be references."""
    for tok in items:
        if tok.type == Token.OPERAND and tok.subtype == Token.RANGE:
            yield tok.value
        elif tok.type == Token.FUNC and tok.subtype == Token.OPEN:
            m = _LEADING_REF.match(tok.value)
            if m:
                yield m.group(1)


def references(formula: str) -> list[Ref]:
    """Every reference of one formula (``=...``, ``{=...}`` or the bare text of an xlsx ``<f>``)."""
    out = []
    for text in _ref_texts(_tokens(formula)):
        ref = parse_ref(text)
        if ref is not None:
            out.append(ref)
    return out


class _Template(NamedTuple):
    # per reference: (sheet, r0, c0, r1, c1, name, relative flags (r0, c0, r1, c1)); a row is
    # the index of the digit run holding it (1-based in the text), a column a constant
    refs: tuple
    fixed: tuple                   # indices of digit runs that are not coordinates but text
    fixed_values: tuple            # (names, sheet names): they must match for the shape to apply
    nruns: int = 0                 # digit runs of a formula of this shape


_TO_ZERO = bytes.maketrans(b"0123456789", b"\x00" * 10)
_TO_SPACE = bytes(b if 48 <= b <= 57 else 32 for b in range(256))


class ShapeCache:
    """Formula text -> (shape id, digit runs); shape id + digit runs -> references.

    The shape is the text with its digit runs taken out: formulas that differ only in row
    numbers (and numeric constants) share it. Column letters stay in the shape. Digit runs
    that belong to a sheet or defined name (``Sheet2!A1``) must match the template's, else
    the formula gets a shape of its own. :meth:`digits` is the fast path used for every
    formula of a workbook: two byte translations and a dict lookup, the regular expression
    and the tokenizer only for texts whose digit layout was not seen before.
    """

    def __init__(self):
        self._ids: dict[str, int] = {}
        self._fast: dict[bytes, int] = {}
        self.templates: list[_Template] = []
        self.unreadable: list[str] = []

    def __len__(self):
        return len(self.templates)

    def digits(self, text: str) -> tuple[int, bytes]:
        """The formula's shape id and its digit runs as ASCII, space-separated (b'3 5 33 ')."""
        b = text.encode()
        key = b.translate(_TO_ZERO)
        sid = self._fast.get(key)
        if sid is None or sid < 0:
            sid = self._slow(text, key)
        return sid, b" ".join(b.translate(_TO_SPACE).split()) + b" "

    def _slow(self, text: str, key: bytes) -> int:
        sid, _ = self.split(text)
        self._fast[key] = -1 if self.templates[sid].fixed else sid
        return sid

    def split(self, text: str) -> tuple[int, list[str]]:
        """The formula's shape id and its digit runs (as text, in text order)."""
        parts = _DIGITS.split(text)
        runs = parts[1::2]
        shape = "\x00".join(parts[0::2])
        sid = self._ids.get(shape)
        if sid is None:
            sid = self._new(shape, text)
        tmpl = self.templates[sid]
        if tmpl.fixed and tuple(runs[k] for k in tmpl.fixed) != tmpl.fixed_values:
            key = shape + "\x02" + "\x02".join(runs[k] for k in tmpl.fixed)
            sid = self._ids.get(key)
            if sid is None:
                sid = self._new(key, text)
        return sid, runs

    def _new(self, key: str, text: str) -> int:
        sid = self._ids[key] = len(self.templates)
        try:
            tmpl = _template(text)
        except (SheetconvError, TokenizerError, ValueError, IndexError):
            tmpl = _Template((), (), (), len(_DIGITS.findall(text)))   # unreadable: no references
            self.unreadable.append(text[:200])
        self.templates.append(tmpl)
        return sid

    def nvals(self, sid: int) -> int:
        return self.templates[sid].nruns

    def refs(self, sid: int, vals, drow: int = 0, dcol: int = 0) -> list[Ref]:
        """References of a formula of shape ``sid`` with digit runs ``vals`` (ints or text);
        (drow, dcol) moves its relative references: the other cells of a shared formula."""
        out = []
        for sheet, r0, c0, r1, c1, name, rel in self.templates[sid].refs:
            if name is not None:
                out.append(Ref(sheet, None, None, None, None, name))
                continue
            if r0 is not None:
                r0 = int(vals[r0]) - 1 + (drow if rel[0] else 0)
                r1 = int(vals[r1]) - 1 + (drow if rel[2] else 0)
                if r0 > r1:
                    r0, r1 = r1, r0
                if r0 < 0 or r1 >= MAX_ROWS:
                    continue                        # moved off the sheet: #REF!
            if c0 is not None:
                c0 += dcol if rel[1] else 0
                c1 += dcol if rel[3] else 0
                if c0 > c1:
                    c0, c1 = c1, c0
                if c0 < 0 or c1 >= MAX_COLS:
                    continue
            out.append(Ref(sheet, r0, c0, r1, c1))
        return out


def _template(text: str) -> _Template:
    """Tokenize once; tie each reference's rows to the digit runs that hold them."""
    body = text[1:] if text.startswith("=") else text
    runs = [(m.start(), m.end()) for m in _DIGITS.finditer(body)]
    role = ["fixed"] * len(runs)                   # "fixed", "free" or "row"

    def runs_in(a, b):
        return [k for k, (s, e) in enumerate(runs) if a <= s and e <= b]

    refs = []
    pos = 0
    for tok in _tokens(text):
        if tok.type == Token.WSPACE:               # the tokenizer shortens runs of spaces
            continue
        start = body.find(tok.value, pos)
        if start < 0:
            raise SheetconvError(f"cannot read formula {text[:80]!r}")
        pos = start + len(tok.value)
        value = None
        if tok.type == Token.OPERAND and tok.subtype == Token.RANGE:
            value = tok.value
        elif tok.type == Token.FUNC and tok.subtype == Token.OPEN:
            m = _LEADING_REF.match(tok.value)
            value = m.group(1) if m else None
        elif tok.type == Token.OPERAND:            # numbers, strings, logicals, errors
            for k in runs_in(start, pos):
                role[k] = "free"
        if value is None:
            continue
        split = _split_operand(value)
        ref = parse_ref(value)
        if split is None or ref is None:           # another workbook, a table, #REF!: no cell
            for k in runs_in(start, start + len(value)):
                role[k] = "free"
            continue
        sheet, addr, off = split
        a = start + off
        if ref.name is not None:
            refs.append((ref.sheet, None, None, None, None, ref.name, None))
            continue
        m = _ADDR.match(addr) or _ROWS_ADDR.match(addr)
        if m is None:                              # whole columns: no digits
            m = _COLS_ADDR.match(addr)
            rel = (False, not m.group(1), False, not m.group(3))
            refs.append((ref.sheet, None, ref.c0, None, ref.c1, None, rel))
            continue
        ks = runs_in(a, a + len(addr))
        for k in ks:
            role[k] = "row"
        ka, kb = ks[0], ks[-1]
        if m.re is _ADDR:
            d0, col0, d1, _, d2, col1, d3, _ = m.groups()
            if col1 is None:
                d2, col1, d3 = d0, col0, d1
            c0, c1 = COLNUM.get(col0.upper(), MAX_COLS), COLNUM.get(col1.upper(), MAX_COLS)
            refs.append((ref.sheet, ka, c0, kb, c1, None, (not d1, not d0, not d3, not d2)))
        else:
            refs.append((ref.sheet, ka, None, kb, None, None, (not m.group(1), False, not m.group(3), False)))
    if body[pos:].strip():
        raise SheetconvError(f"cannot read formula {text[:80]!r}")
    fixed = tuple(k for k, r in enumerate(role) if r == "fixed")
    values = tuple(body[runs[k][0]:runs[k][1]] for k in fixed)
    return _Template(tuple(refs), fixed, values, len(runs))
