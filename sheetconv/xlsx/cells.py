"""Stored cell values of a worksheet, streamed: one ``<c>`` parser for every reader of values.

:func:`read_values` gives ``{(row, col): value}`` of one worksheet, :func:`read_column_a`
the text of its column A (how the metadata sheet is read). :class:`CellCursor` is the one
parser of ``<row r=...>`` / ``<c r=...>`` positions (explicit, lower-case or implied), shared
with the formula index: both readers place every cell of a file at the same position.
"""
from __future__ import annotations

import zipfile

from ..errors import SheetconvError
from ..sheet.a1 import MAX_COLS, MAX_ROWS, cell_key, quote_sheet
from ..sheet.a1 import cell as a1
from . import package
from .package import EMPTY_CELL_MARK, NS_MAIN, SheetInfo, tags

__all__ = ["read_values", "read_column_a", "read_shared_strings", "value_of", "CellCursor"]


class CellCursor:
    """Where the current cell is: ``row(attrs)`` at each ``<row>``, ``cell(attrs)`` at each
    ``<c>`` returns its key (row << 14 | col). A cell without ``r`` follows the previous one,
    a row without ``r`` the previous row, as Excel and openpyxl read them. A position outside
    the grid is a one-line SheetconvError."""

    __slots__ = ("rowbase", "last_key", "in_row")

    def __init__(self):
        self.rowbase = -(1 << 14)
        self.last_key = -1
        self.in_row = False

    def row(self, attrs) -> None:
        r = attrs.get("r")
        if r is None:
            row = (self.rowbase >> 14) + 1
        elif r.isascii() and r.isdigit() and len(r) <= 7:
            row = int(r) - 1
        else:
            row = -1
        if not 0 <= row < MAX_ROWS:
            raise SheetconvError(f"row {(r or str(row + 1))[:20]!r} lies outside the sheet; the workbook is corrupt")
        self.rowbase = row << 14
        self.last_key = self.rowbase - 1
        self.in_row = True

    def end_row(self) -> None:
        self.in_row = False

    def skip(self, text: str) -> None:
        """Text between cells: each EMPTY_CELL_MARK in it is an empty ``<c/>`` (see
        package.parse_part); move past them."""
        n = text.count(EMPTY_CELL_MARK) if self.in_row else 0
        if n:
            first = self.cell({})                 # the first of the run, checked as any cell
            last = first + n - 1
            if last >> 14 != first >> 14:
                raise SheetconvError(f"a cell after column XFD (at most {MAX_COLS} columns); the workbook is corrupt")
            self.last_key = last

    def cell(self, attrs) -> int:
        r = attrs.get("r")
        if r is None:
            key = self.last_key + 1
            if key < 0 or (key & 0x3FFF) == 0 and key > self.rowbase:
                raise SheetconvError(f"a cell after column XFD (at most {MAX_COLS} columns); the workbook is corrupt")
        else:
            key = cell_key(r)
            if key is None:
                raise SheetconvError(f"cell reference {r[:20]!r} lies outside the sheet; the workbook is corrupt")
        self.last_key = key
        return key

# ---------------------------------------------------------------- one column of text

class _SharedStrings:
    """expat handlers reading xl/sharedStrings.xml (phonetic runs left out)."""

    def __init__(self, ns: str = NS_MAIN):
        self.items, self.buf, self.in_t, self.depth_rph = [], None, False, 0
        self._T, self._SI, self._RPH = tags(ns, "t", "si", "rPh")

    def start(self, tag, attrs):
        if tag == self._SI:
            self.buf = []
        elif tag == self._RPH:
            self.depth_rph += 1
        elif tag == self._T and not self.depth_rph:
            self.in_t = True

    def end(self, tag):
        if tag == self._SI:
            self.items.append("".join(self.buf or ()))
        elif tag == self._RPH:
            self.depth_rph -= 1
        elif tag == self._T:
            self.in_t = False

    def data(self, text):
        if self.in_t and self.buf is not None:
            self.buf.append(text)


class _Values:
    """expat handlers collecting one worksheet's cell values as {(row, col): (type, text)}."""

    def __init__(self, ns: str = NS_MAIN):
        self.C, self.V, self.T, self.IS, self.ROW = tags(ns, "c", "v", "t", "is", "row")
        self.out: dict[tuple[int, int], tuple[str | None, str]] = {}
        self.pos = CellCursor()
        self.key = -1
        self.type = None
        self.buf: list[str] | None = None
        self.in_text = self.in_is = False

    def start(self, tag, attrs):
        if tag == self.C:
            self.key = self.pos.cell(attrs)
            self.type = attrs.get("t")
            self.buf = []
        elif tag == self.ROW:
            self.pos.row(attrs)
        elif tag == self.IS:
            self.in_is = True
        elif self.buf is not None and (tag == self.V or (tag == self.T and self.in_is)):
            self.in_text = True

    def end(self, tag):
        if tag in (self.V, self.T):
            self.in_text = False
        elif tag == self.IS:
            self.in_is = False
        elif tag == self.ROW:
            self.pos.end_row()
        elif tag == self.C:
            if self.buf:
                self.out[(self.key >> 14, self.key & 0x3FFF)] = (self.type, "".join(self.buf))
            self.buf = None

    def data(self, text):
        if self.in_text:
            self.buf.append(text)
        elif self.buf is None:                    # between cells: squeezed empty cells
            self.pos.skip(text)


def value_of(t: str | None, text: str, shared, where: str):
    """One cell's stored value: float, str (text or an error such as '#VALUE!') or bool."""
    if t == "s":
        k = text.strip()
        if shared is None or not k.isdigit() or int(k) >= len(shared):
            have = 0 if shared is None else len(shared)
            raise SheetconvError(f"{where} points at shared string {k[:20]!r}, which does not exist (the workbook "
                                 f"has {have}); the workbook is corrupt")
        return shared[int(k)]
    if t in ("str", "inlineStr", "e"):
        return text
    if t == "b":
        return text.strip() in ("1", "true")
    try:
        return float(text)
    except ValueError:
        return text                                   # not a number: reported where a number is needed


def read_shared_strings(zf, path: str, ns: str = NS_MAIN) -> list[str] | None:
    """The workbook's shared strings (xl/sharedStrings.xml), or None if it has none."""
    if "xl/sharedStrings.xml" not in zf.namelist():
        return None
    sst = _SharedStrings(ns)
    package.parse_part(zf, "xl/sharedStrings.xml", path, sst)
    return sst.items


def read_values(zf, path: str, info) -> dict[tuple[int, int], object]:
    """Stored values of one worksheet (reader.SheetInfo) of an open, checked xlsx zip.

    {(row, col): value}, 0-based; cells without a stored value (a formula never
    calculated, an empty cell) are absent. A malformed cell is a one-line SheetconvError.
    """
    if info.part is None:
        raise SheetconvError(f"{path}: sheet {info.name!r} is not a worksheet")
    handler = _Values(info.ns)
    package.parse_part(zf, info.part, path, handler, squeeze=True)
    raw = handler.out
    shared = None
    if any(t == "s" for t, _ in raw.values()):
        shared = read_shared_strings(zf, path, info.ns)
    sheet = quote_sheet(info.name)
    return {rc: value_of(t, text, shared, f"{path}: cell {sheet}!{a1(*rc)}") for rc, (t, text) in raw.items()}


def read_column_a(zf: zipfile.ZipFile, path: str, sheets: list[SheetInfo], name: str) -> list[str] | None:
    """The text of column A, from A1 down to its last cell, of sheet ``name`` (exact name);
    None if the workbook has no such worksheet. Empty cells read as ''."""
    info = next((s for s in sheets if s.name == name), None)
    if info is None or info.part is None:
        return None
    rows = {r: v for (r, c), v in read_values(zf, path, info).items() if c == 0}
    return [str(rows.get(i, "")) for i in range(max(rows) + 1 if rows else 0)]
