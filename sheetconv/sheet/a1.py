"""A1 addresses: the only place that converts between (row, col) numbers and A1 text.

Rows and columns are 0-based, as in XlsxWriter's utilities. Excel's grid is 1,048,576 rows
by 16,384 columns; nothing here returns a position outside it. Parsing accepts lower-case
letters (``c4``, ``<c r="a1">``) as Excel and openpyxl do, and ``$`` anchors; writing gives
upper case. :class:`Rect` is the one address value type (an immutable inclusive rectangle,
optionally on a named sheet); the functions are the same conversions for callers that hold
plain numbers. :func:`cell_key` is the fast path for a worksheet's ``<c r="...">`` attributes,
shared by every streaming reader of cells.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from xlsxwriter.utility import quote_sheetname, xl_rowcol_to_cell

from ..errors import SheetconvError

MAX_ROWS = 1_048_576
MAX_COLS = 16_384

__all__ = [
    "MAX_ROWS", "MAX_COLS", "Rect", "cell", "rng", "parse_cell", "parse_range", "split_sheet",
    "quote_sheet", "unquote_sheet", "column_names", "column_letters", "COLNUM", "col_index",
    "cell_key", "key_of",
]

_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")


@lru_cache(maxsize=1)
def column_names() -> tuple[str, ...]:
    """Every column's letters, 0-based: column_names()[27] == 'AB'. For writers of many refs."""
    return tuple(xl_rowcol_to_cell(0, c)[:-1] for c in range(MAX_COLS))


# Column letters (upper case) -> 0-based index, for every column of the grid.
COLNUM: dict[str, int] = {letters: i for i, letters in enumerate(column_names())}


def column_letters(col: int) -> str:
    """0 -> 'A', 16383 -> 'XFD'."""
    return column_names()[col]


def col_index(letters: str) -> int | None:
    """'AB' or 'ab' -> 27; None for letters past XFD or not letters."""
    c = COLNUM.get(letters)
    return COLNUM.get(letters.upper()) if c is None else c


def key_of(row: int, col: int) -> int:
    """(row, col) -> one integer ordering cells row by row: row << 14 | col."""
    return (row << 14) | col


_DIG = "0123456789"


def cell_key(r: str) -> int | None:
    """A ``<c r="...">`` attribute ('B3', 'b3') -> its key_of(row, col); None if it is no cell
    of the grid. The hot path of every cell reader: no regular expression."""
    letters = r.rstrip(_DIG)
    digits = r[len(letters):]
    col = COLNUM.get(letters)
    if col is None:
        col = COLNUM.get(letters.upper())
    if col is None or not digits.isascii() or not digits.isdigit() or len(digits) > 7:
        return None
    row = int(digits) - 1
    if not 0 <= row < MAX_ROWS:
        return None
    return (row << 14) | col


def cell(row: int, col: int, absolute: bool = False) -> str:
    """(2, 0) -> 'A3'; absolute=True -> '$A$3'."""
    return xl_rowcol_to_cell(row, col, absolute, absolute)


def rng(r0: int, c0: int, r1: int, c1: int, absolute: bool = False) -> str:
    """Inclusive (r0, c0)..(r1, c1) -> 'B3:D5' (a single cell stays 'B3')."""
    a = cell(r0, c0, absolute)
    if (r0, c0) == (r1, c1):
        return a
    return f"{a}:{cell(r1, c1, absolute)}"


def quote_sheet(name: str) -> str:
    """Sheet name as it must appear in a reference: 'My sheet' -> "'My sheet'"."""
    return quote_sheetname(name)


def unquote_sheet(name: str) -> str:
    """"'My s''heet'" -> "My s'heet"; an unquoted name stays as it is."""
    if len(name) >= 2 and name[0] == "'" and name[-1] == "'":
        return name[1:-1].replace("''", "'")
    return name


def parse_cell(text: str) -> tuple[int, int]:
    """'C4', 'c4' or '$C$4' -> (3, 2). Raises SheetconvError on anything else."""
    t = text.strip()
    m = _CELL_RE.match(t)
    if not m:
        raise SheetconvError(f"not a cell reference: {text!r} (expected A1 style, e.g. C4)")
    if int(m.group(2)) < 1:
        raise SheetconvError(f"not a valid cell reference: {text!r} (rows start at 1, e.g. C4)")
    row, col = int(m.group(2)) - 1, col_index(m.group(1))
    if col is None or row >= MAX_ROWS:
        raise SheetconvError(f"cell {text!r} lies outside the sheet (at most {MAX_ROWS} rows, column XFD)")
    return row, col


def parse_range(text: str) -> tuple[int, int, int, int]:
    """'B3:D5' -> (2, 1, 4, 3) inclusive, normalised so r0 <= r1 and c0 <= c1."""
    parts = text.split(":")
    if len(parts) == 1:
        r, c = parse_cell(parts[0])
        return r, c, r, c
    if len(parts) != 2:
        raise SheetconvError(f"not a range: {text!r} (expected e.g. B3:D5)")
    (ra, ca), (rb, cb) = parse_cell(parts[0]), parse_cell(parts[1])
    return min(ra, rb), min(ca, cb), max(ra, rb), max(ca, cb)


def split_sheet(ref: str) -> tuple[str | None, str]:
    """"'My sheet'!C4" -> ('My sheet', 'C4'); 'C4' -> (None, 'C4')."""
    ref = ref.strip()
    if "!" not in ref:
        return None, ref
    sheet, _, addr = ref.rpartition("!")
    sheet = unquote_sheet(sheet)
    if not sheet:
        raise SheetconvError(f"empty sheet name in {ref!r}")
    return sheet, addr


class Rect(NamedTuple):
    """An inclusive rectangle of cells (r0 <= r1, c0 <= c1, 0-based), on ``sheet`` or on an
    unnamed (the current) sheet. Immutable; a single cell is a 1x1 Rect."""
    r0: int
    c0: int
    r1: int
    c1: int
    sheet: str | None = None

    @classmethod
    def cell(cls, row: int, col: int, sheet: str | None = None) -> Rect:
        return cls(row, col, row, col, sheet)

    @classmethod
    def parse(cls, text: str) -> Rect:
        """'B3:D5', "'My sheet'!b3" -> Rect. Raises SheetconvError on anything else."""
        sheet, addr = split_sheet(text)
        return cls(*parse_range(addr), sheet)

    @property
    def a1(self) -> str:
        """'B3:D5' (no sheet), 'B3' for a single cell."""
        return rng(self.r0, self.c0, self.r1, self.c1)

    @property
    def qualified(self) -> str:
        """"'My sheet'!B3:D5" (the bare A1 text if the sheet is unnamed)."""
        return self.a1 if self.sheet is None else f"{quote_sheet(self.sheet)}!{self.a1}"

    @property
    def cells(self) -> int:
        return (self.r1 - self.r0 + 1) * (self.c1 - self.c0 + 1)

    def contains(self, row: int, col: int) -> bool:
        return self.r0 <= row <= self.r1 and self.c0 <= col <= self.c1

    def bound(self, other: Rect) -> Rect:
        """The smallest rectangle holding both (the range operator ':' of Excel)."""
        return Rect(min(self.r0, other.r0), min(self.c0, other.c0), max(self.r1, other.r1),
                    max(self.c1, other.c1), self.sheet)
