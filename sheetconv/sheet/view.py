"""How much of the conv sheet a screen shows: pixel sizes from the layout, and the saved zoom.

Excel draws a column ``w`` characters wide as ``int(7w + 5)`` pixels (Calibri 11) and a
row ``h`` points tall as ``h * 96 / 72`` pixels, both scaled by the zoom. ``SCREEN_PX`` is
the grid area of a 1440 x 900 screen once the ribbon, formula bar, column headers,
sheet tabs and task bar are taken off (about 200 pixels of height, 40 of width).
"""
from __future__ import annotations

from .layout import HEADER_HEIGHT, ROW_HEIGHT, col_px

__all__ = ["SCREEN_PX", "ZOOMS", "sheet_px", "fit_zoom"]

SCREEN_PX = (1400, 700)
ZOOMS = (80, 75, 70, 65, 60, 55, 50)


def sheet_px(layout, rows: int, cols: int) -> tuple[float, float]:
    """(width, height) in pixels at 100% of the sheet's first ``cols`` columns and ``rows`` rows."""
    width = sum(col_px(layout.column_width(c)) for c in range(cols))
    heads = set(layout.header_rows)
    height = sum((HEADER_HEIGHT if r in heads else ROW_HEIGHT) * 96 / 72 for r in range(rows))
    return width, height


def fit_zoom(layout, names) -> int:
    """The largest zoom in ZOOMS at which the panels of layers ``names`` fit SCREEN_PX (else the smallest)."""
    panels = [layout.panel(n) for n in names]
    rows = max(p.top + p.height for p in panels)
    cols = max(p.left + p.width for p in panels)
    w, h = sheet_px(layout, rows, cols)
    for z in ZOOMS:
        if w * z / 100 <= SCREEN_PX[0] and h * z / 100 <= SCREEN_PX[1]:
            return z
    return ZOOMS[-1]
