"""A1-address arithmetic: the only place that converts (row, col) to and from text.

Rows and columns are 0-based here, as in XlsxWriter's utilities, which do the
conversion. Excel's grid is 1,048,576 rows by 16,384 columns.
"""
from __future__ import annotations

import re
from functools import lru_cache

from xlsxwriter.utility import quote_sheetname, xl_cell_to_rowcol, xl_rowcol_to_cell

from ..errors import SheetconvError

MAX_ROWS = 1_048_576
MAX_COLS = 16_384

__all__ = [
    "MAX_ROWS", "MAX_COLS", "cell", "rng", "parse_cell", "parse_range", "split_sheet",
    "quote_sheet", "unquote_sheet", "runs_to_ranges", "column_names",
]

_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")


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
    t = text.strip().upper()
    m = _CELL_RE.match(t)
    if not m:
        raise SheetconvError(f"not a cell reference: {text!r} (expected A1 style, e.g. C4)")
    if int(m.group(2)) < 1:
        raise SheetconvError(f"not a valid cell reference: {text!r} (rows start at 1, e.g. C4)")
    row, col = xl_cell_to_rowcol(t.replace("$", ""))
    if row >= MAX_ROWS or col >= MAX_COLS:
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


def runs_to_ranges(row_runs, col_runs, row0: int = 0, col0: int = 0) -> list[str]:
    """Half-open index runs along rows and columns -> compact A1 ranges, offset by (row0, col0)."""
    return [rng(row0 + ra, col0 + ca, row0 + rb - 1, col0 + cb - 1)
            for ra, rb in row_runs for ca, cb in col_runs]


@lru_cache(maxsize=1)
def column_names() -> tuple[str, ...]:
    """Every column's letters, 0-based: column_names()[27] == 'AB'. For writers of many refs."""
    return tuple(xl_rowcol_to_cell(0, c)[:-1] for c in range(MAX_COLS))
