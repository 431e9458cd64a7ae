"""A highlighted copy of the workbook (the level pictures are drawn by sheetconv.pictures).

``write_highlight``: a copy of the workbook with the traced cell outlined green, selected
and scrolled to, and its precedents (or dependents) filled light blue, a deeper shade for
nearer levels — the picture of Trace Precedents in the book. The workbook's color-scale
heatmaps stay: the fills are also given as conditional formats ranked above them (with
"stop if true"), so a traced cell shows the trace's fill and every other cell its heatmap.
openpyxl keeps formulas but not their computed values, so the copy is marked to be fully
recalculated on opening.

Output paths are checked up front (:func:`check_outputs`) and written through
:func:`sheetconv.xlsx.files.atomic_output`. The workbook is opened with openpyxl only after :func:`sheetconv.xlsx.package.open_zip` has checked it; any failure of openpyxl's reading,
also during its lazy iteration, becomes a one-line SheetconvError.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import SheetconvError
from .files import atomic_output, check_target
from .package import open_zip
from ..nn.trace import Trace
from ..sheet.a1 import cell as a1, parse_range, split_sheet

__all__ = ["write_highlight", "check_outputs", "LEVEL_FILLS", "RECALC_NOTE"]

LEVEL_FILLS = ["9DC3E6", "BDD7EE", "D2E4F4", "DDEBF7", "EAF2FA"]     # light: dark text stays readable
ROOT_BORDER = "00A000"
MAX_PAINTED = 2_000_000
RECALC_NOTE = ("note: the copy holds formulas without stored values; it is set to recalculate fully "
               "when opened")


def check_outputs(book, highlight=None, png=None, force: bool = False):
    """Refuse bad output paths before any tracing: suffix, folder, the traced book itself, an
    existing file without ``force``."""
    for out, suffix, what in ((highlight, ".xlsx", "--highlight"), (png, ".png", "--png")):
        if out is None:
            continue
        out = Path(out)
        if out.is_dir():
            raise SheetconvError(f"{what} {out} is a folder; expected a {suffix} file name")
        if out.suffix.lower() != suffix:
            raise SheetconvError(f"{what} {out}: expected a {suffix} file name")
        if out.exists() and os.path.exists(book) and os.path.samefile(out, book):
            raise SheetconvError(f"{what} {out} is the workbook being traced; choose another output file")
        check_target(out, force, what)


@contextmanager
def _openpyxl_errors(book, doing: str):
    """openpyxl's own exceptions (also from lazy iteration) -> one-line SheetconvError."""
    try:
        yield
    except SheetconvError:
        raise
    except MemoryError:
        raise SheetconvError(f"{book}: too large to load for {doing}") from None
    except Exception as e:                                  # noqa: BLE001 - any reader failure
        text = str(e).splitlines()[0][:200] if str(e) else ""
        raise SheetconvError(f"cannot read {book} for {doing}: openpyxl failed ({type(e).__name__}"
                             f"{': ' + text if text else ''}); the workbook may be corrupt") from None


def _load(book, doing: str, **kwargs):
    import openpyxl
    open_zip(book).close()                                  # format and zip-bomb checks first
    with _openpyxl_errors(book, doing):
        return openpyxl.load_workbook(book, **kwargs)


def write_highlight(book, trace: Trace, out, force: bool = False) -> Path:
    """Copy ``book`` to ``out`` with the trace drawn on it (openpyxl)."""
    from openpyxl.formatting.rule import FormulaRule
    from openpyxl.styles import Border, PatternFill, Side
    from openpyxl.worksheet.views import Selection

    check_outputs(book, highlight=out, force=force)
    trace.complete()
    wb = _load(book, "highlighting")
    sheets = {ws.title.lower(): ws for ws in wb.worksheets}
    painted = 0
    rules: dict = {}                                         # sheet title -> [(sqref, rule)], nearest first
    for k, level in reversed(list(enumerate(trace.meta.get("sheet_levels", [])))):
        color = LEVEL_FILLS[min(k, len(LEVEL_FILLS) - 1)]
        fill = PatternFill("solid", start_color=color, end_color=color)
        for entry in level:
            ws = sheets.get((entry.get("sheet") or "").lower())
            if ws is None:
                continue
            for text in entry["ranges"]:
                r0, c0, r1, c1 = parse_range(text)
                painted += (r1 - r0 + 1) * (c1 - c0 + 1)
                if painted > MAX_PAINTED:
                    raise SheetconvError(f"more than {MAX_PAINTED:,} cells to highlight; trace fewer levels (--depth)")
                for row in range(r0, r1 + 1):
                    for col in range(c0, c1 + 1):
                        ws.cell(row + 1, col + 1).fill = fill
            for i in range(0, len(entry["ranges"]), 256):   # sqref lists stay short
                sqref = " ".join(entry["ranges"][i:i + 256])
                rule = FormulaRule(formula=["TRUE"], stopIfTrue=True, fill=PatternFill("solid", start_color=color,
                                                                                       end_color=color))
                rules.setdefault(ws.title, []).append((k, sqref, rule))
    for title, new in rules.items():
        _rank_above(wb[title], sorted(new, key=lambda t: t[0]))
    sheet, addr = split_sheet(trace.meta["cell"])
    ws = sheets[sheet.lower()]
    r, c, _, _ = parse_range(addr)
    side = Side(style="thick", color=ROOT_BORDER)
    ws.cell(r + 1, c + 1).border = Border(left=side, right=side, top=side, bottom=side)
    _show_cell(wb, ws, r, c, Selection)
    if wb.calculation is None:
        from openpyxl.workbook.properties import CalcProperties
        wb.calculation = CalcProperties()
    wb.calculation.fullCalcOnLoad = True
    with atomic_output(out, force=force, what="highlighted copy") as tmp:
        with _openpyxl_errors(book, "highlighting"):
            wb.save(tmp)
    return Path(out)


def _rank_above(ws, new):
    """Put the trace's fill rules (level order) before every existing conditional format."""
    from openpyxl.formatting.formatting import ConditionalFormattingList
    old = [(cf.sqref, rule) for cf in ws.conditional_formatting for rule in cf.rules]
    cfl = ConditionalFormattingList()
    for priority, (_, sqref, rule) in enumerate(new, 1):
        rule.priority = priority
        cfl.add(str(sqref), rule)
    for priority, (sqref, rule) in enumerate(sorted(old, key=lambda t: t[1].priority or 0), len(new) + 1):
        rule.priority = priority
        cfl.add(str(sqref), rule)
    ws.conditional_formatting = cfl


def _show_cell(wb, ws, row: int, col: int, Selection):
    """Make ``ws`` the open sheet, with (row, col) selected and scrolled into view."""
    view = ws.sheet_view
    for other in wb.worksheets:
        other.sheet_view.tabSelected = other is ws
    wb.active = wb.worksheets.index(ws)
    top, left = max(row - 4, 0), max(col - 4, 0)
    pane = view.pane
    if pane is not None and pane.state in ("frozen", "frozenSplit"):
        fr, fc = int(pane.ySplit or 0), int(pane.xSplit or 0)
        pane.topLeftCell = a1(max(top, fr), max(left, fc))
        view.topLeftCell = a1(0 if fr else top, 0 if fc else left)
        active = pane.activePane
    else:
        view.topLeftCell = a1(top, left)
        active = None
    addr = a1(row, col)
    view.selection = [Selection(pane=active, activeCell=addr, sqref=addr)]
