"""Write a network and one input as a live workbook.

Sheet ``conv`` (layout.py) holds the input and the parameters as constants and every
computed cell as a formula (formulas.py) together with its value from the NumPy engine,
so readers that do not recalculate still see the numbers; the workbook asks for a full
recalculation on load. Every grid, kernel and bias gets a colour-scale heatmap. Sheet ``summary`` lists
the layers; the very hidden sheet ``_sheetconv`` carries the metadata (meta.py).

Writing streams (XlsxWriter's constant_memory mode): rows leave memory as soon as they
are written, whatever the workbook's size. The ``conv`` sheet's rows are generated as
XML through a small Worksheet subclass, because XlsxWriter's per-cell ``write_formula``
rescans every formula for newer Excel functions (~30 regular expressions per cell) and
formats numbers with 16 significant digits; our formulas use none of those functions and
our values need 17 digits. A row is formatted whole: constants with one ``%`` per row,
templated formula cells (LayerFormulas.row_template) by joining each column's cached
letters with the row's template pieces (letters shared by a run of columns, such as an
unclipped kernel's, baked into the run's template once per row). The row file is never copied into the sheet part:
the zip streams the part's head, the row file and its tail as one member (_RowSheet,
_splicing). Everything else (styles, column widths, conditional formats, the package) is
XlsxWriter's.

The file is written to a temporary file beside the target and renamed over it
(files.atomic_output), so the target is never half-written; fixed document properties
and zip timestamps make two builds of the same network and input byte-for-byte
identical. ``same_cells`` compares two workbooks by content instead of bytes.
"""
from __future__ import annotations

import heapq
import os
import shutil
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import xlsxwriter
from xlsxwriter.exceptions import XlsxWriterException
from xlsxwriter.worksheet import Worksheet

from ..errors import SheetconvError
from ..sheet import meta as _meta
from ..sheet.a1 import column_names
from ..sheet.explain import EXPLAIN_SHEET
from ..sheet.explain import explain as worked_cell
from ..sheet.formulas import LayerFormulas
from ..sheet.layout import HEADER_HEIGHT, NARROW, ROW_HEIGHT, Layout, Panel, what
from ..sheet.prediction import PREDICTION_SHEET, has_prediction, prediction
from .files import atomic_output
from .metadata import read_meta, write_meta

__all__ = ["write_workbook", "WriteResult", "formula_count", "sheet_xml_estimate", "check_size", "SHEET_PART_LIMIT", "check_finite", "same_cells", "FIXED_DATE",
           "SUMMARY_SHEET"]

SUMMARY_SHEET = "summary"
FIXED_DATE = datetime(2024, 1, 1, 0, 0, 0)
_COLS = column_names()
# Signed grids (weights, conv outputs without ReLU): blue below zero, white at zero, red above.
# Grids that hold no negative value (the image, ReLU outputs): white at zero up to red, so a
# digit reads as red strokes on white.
_HEAT_POS = {"type": "2_color_scale", "min_type": "num", "min_value": 0, "min_color": "#FFFFFF",
             "max_type": "max", "max_color": "#F8696B"}
_HEAT = {"type": "3_color_scale", "min_type": "min", "min_color": "#5A8AC6", "mid_type": "num", "mid_value": 0,
         "mid_color": "#FFFFFF", "max_type": "max", "max_color": "#F8696B"}
_PROGRESS_EVERY = 8192
# The largest sheet part written without ZIP64 records (zipfile.ZIP64_LIMIT). Past it Python's zip
# gives the part ZIP64 records, and LibreOffice (7.4) refuses to load such a package at all, even a
# small one; so a workbook whose conv sheet would pass it is refused before anything is computed.
SHEET_PART_LIMIT = (1 << 31) - 1
_CELL_XML = len('<c r="XFD1048576" s="99"><f></f><v>-1.2345678901234567e-100</v></c>')  # per cell, at most
_ROW_XML = len('<row r="1048576" ht="99" customHeight="1"></row>')
_ZIP_LEVEL = 1              # zlib's fastest level: deflating dominates the time of big builds


@dataclass
class WriteResult:
    path: Path
    formulas: int          # formula cells written
    cells: int             # all cells of the conv sheet (formulas, constants, titles)
    seconds: float


class _RowSheet(Worksheet):
    """A worksheet whose rows are handed over as finished <row> content, in order."""

    splices: dict | None = None        # set by _write: {sheet file: (offset, row file)}, see below

    def begin_rows(self, rows: int, cols: int, height: float, heights: dict | None = None):
        if not (self.constant_memory and self.fh is self.row_data_fh):
            raise RuntimeError("sheetconv needs XlsxWriter's constant_memory mode")
        self._check_dimensions(0, 0)
        self._check_dimensions(rows - 1, cols - 1)
        self._row_attrs = f' ht="{height:g}" customHeight="1"'
        self._heights = {r: f' ht="{h:g}" customHeight="1"' for r, h in (heights or {}).items()}
        self._last = -1

    def merge_header(self, row: int, first: int, last: int):
        """Merge a header's cells (written later by put_row) so its text wraps over the group."""
        if last > first:
            self.merge.append([row, first, row, last])

    def put_row(self, row: int, cells_xml: str):
        if row <= self._last:
            raise RuntimeError(f"rows must be written in order (row {row} after {self._last})")
        self._last = row
        self.fh.write(f'<row r="{row + 1}"{self._heights.get(row, self._row_attrs)}>{cells_xml}</row>')


    def _write_optimized_sheet_data(self):
        """Where XlsxWriter copies the row file into the sheet part: leave the rows where they are.

        The sheet file keeps an empty ``<sheetData>``; ``splices`` (shared with the zip of
        _zip_class) records the byte offset inside it where the row file belongs, and the zip
        streams the part as the file's head, the rows, the file's rest: one pass over the rows
        instead of a copy and a read."""
        out = getattr(self.fh, "buffer", None)
        if self.dim_rowmin is None or out is None or self.splices is None:
            super()._write_optimized_sheet_data()
            return
        self._xml_start_tag("sheetData")
        self.row_data_fh.close()
        self.fh.flush()
        self.splices[self.fh.name] = (out.tell(), self.row_data_filename)
        self._xml_end_tag("sheetData")


def formula_count(net, layout: Layout) -> int:
    """Formula cells of the conv sheet: every computed cell and every partial-sum cell."""
    n = 0
    for name in net.names[1:]:
        c, h, w = net.grid(name)
        n += c * h * w * (1 + len(layout.partials(name)))
    return n


def sheet_xml_estimate(net, layout: Layout) -> int:
    """Bytes of the conv sheet's XML, from above: every cell's longest markup, and per layer (and
    partial-sum group) the formula of a middle cell times the cell count. Interior windows are
    the longest, so the real size lies a little below it (titles aside) for layers big enough to matter."""
    n = int(np.prod(net.input_shape)) * _CELL_XML
    n += net.param_count() * _CELL_XML + layout.extent[0] * _ROW_XML
    for name in net.names[1:]:
        c, h, w = net.grid(name)
        lf = LayerFormulas(net, layout, name)
        mid = (h // 2, w // 2)
        texts = [lf.cell(c // 2, *mid)] + [lf.cell(c // 2, *mid, partial=g) for g in range(len(layout.partials(name)))]
        n += c * h * w * sum(_CELL_XML + len(t) for t in texts)
    return n


def check_size(net, layout: Layout) -> None:
    """Refuse a workbook whose conv sheet would pass SHEET_PART_LIMIT, naming the size and the limit."""
    size = sheet_xml_estimate(net, layout)
    if size > SHEET_PART_LIMIT:
        raise SheetconvError(
            f"the sheet would hold about {size / 2**30:.1f} GiB of XML ({formula_count(net, layout):,} formulas); "
            f"past {SHEET_PART_LIMIT / 2**30:.0f} GiB a sheet needs ZIP64 records, which LibreOffice cannot "
            f"load; use a smaller input or fewer channels")


def _partial_values(layer, x: np.ndarray, groups) -> list[np.ndarray]:
    """The sums of each input-channel group's convolutions (no bias, no ReLU)."""
    return [layer.partial_forward(x[None], a, b)[0] for a, b in groups]


def _lettered_runs(x: int, args) -> list[tuple]:
    """The parts of a templated row that do not change from row to row, per run of columns.

    A template argument that most columns share (a kernel's letters: the same for every column
    whose window is not clipped) is baked into the run's template; the others are letters that
    differ from column to column. Per run of consecutive columns that agree on the shared
    arguments: ``(first, last + 1, bake, parts, free)`` with ``template % bake`` the run's
    template (``'%s'`` left where a free argument goes) and ``parts`` laid out as ``'<c r="'``,
    then per cell ``[letter, piece] * (1 + free), value, close``: each letter (the cell's own,
    then its free arguments) followed by a slot for the template's next piece."""
    mid = args[len(args) // 2]
    shared = [k for k, v in enumerate(mid) if 2 * sum(a[k] == v for a in args) >= len(args)]
    free = [k for k in range(len(mid)) if k not in set(shared)]
    runs, c0 = [], 0
    for c in range(1, len(args) + 1):
        if c == len(args) or any(args[c][k] != args[c0][k] for k in shared):
            bake = ["%s"] * len(mid)
            for k in shared:
                bake[k] = args[c0][k]
            parts = ['<c r="']
            for j in range(c0, c):
                parts += (_COLS[x + j], None)
                for k in free:
                    parts += (args[j][k], None)
                parts += (None, '</v></c><c r="')
            parts[-1] = "</v></c>"
            runs.append((c0, c, tuple(bake), parts, len(free)))
            c0 = c
    return runs


class _Rows:
    """Generates the XML of the conv sheet's rows, panel by panel."""

    def __init__(self, net, layout, acts, styles, progress):
        self.net, self.layout, self.acts = net, layout, acts
        self.st = styles
        self.progress = progress
        self.pending = 0
        self.formulas = 0
        self.cells = 0
        self._num_rows: dict = {}

    def _count(self, n: int):
        self.formulas += n
        if self.progress is not None:
            self.pending += n
            if self.pending >= _PROGRESS_EVERY:
                self.progress(self.pending)
                self.pending = 0

    def flush_progress(self):
        if self.progress is not None and self.pending:
            self.progress(self.pending)
            self.pending = 0

    # -- cell XML
    def nums(self, out, x, R, values, s):
        """Constant cells of a row: one formatting of the whole row (addresses cached per block)."""
        n = len(values)
        key = (x, n, s)
        fmt = self._num_rows.get(key)
        if fmt is None:
            fmt = self._num_rows[key] = "".join(f'<c r="{_COLS[x + j]}%d" s="{s}"><v>%r</v></c>' for j in range(n))
        args = [R] * (2 * n)
        args[1::2] = values
        out.append(fmt % tuple(args))
        self.cells += n

    def forms(self, out, x, R, texts, values, s, count=True):
        out += [f'<c r="{_COLS[x + j]}{R}" s="{s}"><f>{t}</f><v>{v!r}</v></c>'
                for j, (t, v) in enumerate(zip(texts, values))]
        self.cells += len(texts)
        if count:
            self._count(len(texts))

    def templated(self, out, x, R, tpl, values, s, lettered: dict):
        """Formula cells of a row from its template (LayerFormulas.row_template), joined in one go.

        The row's text alternates column letters (the same for every row of the block: cached in
        ``lettered`` per block column and column-args list, see _lettered_runs) with the
        template's pieces between its ``%s`` slots (the same for every cell of a run of columns);
        it equals forms() of the same formulas and values."""
        template, args = tpl
        if "%%" in template:
            self.forms(out, x, R, [template % a for a in args], values, s)
            return
        key = (x, id(args))
        hit = lettered.get(key)
        if hit is None or hit[0] is not args:
            hit = lettered[key] = (args, _lettered_runs(x, args))
        head = f'{R}" s="{s}"><f>'
        for c0, c1, bake, cached, free in hit[1]:
            parts = cached.copy()
            n = c1 - c0
            stride = 2 * free + 4
            pieces = (template % bake).split("%s")
            pieces[0] = head + pieces[0]
            pieces[-1] += "</f><v>"
            for i, piece in enumerate(pieces):
                parts[2 + 2 * i::stride] = [piece] * n
            parts[stride - 1::stride] = map(repr, values[c0:c1])
            out.append("".join(parts))
        n = len(values)
        if n != len(args):
            raise RuntimeError(f"a row of {n} values for {len(args)} formulas")
        self.cells += n
        self._count(n)

    def text(self, out, x, R, text, s=None):
        out.append(f'<c r="{_COLS[x]}{R}" s="{self.st["title"] if s is None else s}" t="inlineStr">'
                   f'<is><t>{escape(text)}</t></is></c>')
        self.cells += 1

    # -- rows
    def header(self):
        by_row = {}
        for h in self.layout.headers:
            by_row.setdefault(h.row, []).append(h)
        for row in sorted(by_row):
            out = []
            for h in sorted(by_row[row], key=lambda h: h.left):
                self.text(out, h.left, row + 1, h.text, self.st["head"])
            yield row, out

    def panel(self, p: Panel):
        """Rows of one panel, top to bottom: per grid row, the titles' row then the blocks' rows."""
        net, st, role = self.net, self.st, p.role
        name = p.grid if role == "act" else p.grid.split(":")[0].rsplit(".", 1)[0]
        layer = None if name == "input" else net[name]
        lf = LayerFormulas(net, self.layout, name) if layer is not None and role in ("act", "partial") else None
        acts = self.acts[name]
        params = layer.params() if layer is not None else {}
        weight = params.get("weight")
        if role == "partial":
            g = int(p.grid.rsplit("partial", 1)[1])
            (partial,) = _partial_values(layer, self.acts[net.input_of(name)], [p.channels])
            if not np.all(np.isfinite(partial)):
                raise SheetconvError(f"a partial sum of {layer.label} is not finite (NaN or Inf, e.g. an "
                                     f"overflow); scale the input or the weights down")
        lettered: dict = {}
        s_num = {"kernel": st["weight"], "bias": st["weight"], "weight": st["matrix"]}.get(role, st["input"])
        for top, blocks in p.block_rows():
            out: list[str] = []
            for k, x in blocks:
                self.text(out, x, top + 1, p.title(k))
            yield top, out
            for r in range(p.bh):
                row = top + 1 + r
                R = row + 1
                out = []
                for k, x in blocks:
                    if role == "act":
                        if lf is None:
                            self.nums(out, x, R, acts[k, r].tolist(), st["input"])
                        elif p.vector:
                            self.forms(out, x, R, lf.row(r, 0), [float(acts[r])], st["act"])
                        elif (tpl := lf.row_template(k, r)) is not None:
                            self.templated(out, x, R, tpl, acts[k, r].tolist(), st["act"], lettered)
                        else:
                            self.forms(out, x, R, lf.row(k, r), acts[k, r].tolist(), st["act"])
                    elif role == "partial":
                        tpl = lf.row_template(k, r, partial=g)
                        if tpl is not None:
                            self.templated(out, x, R, tpl, partial[k, r].tolist(), st["act"], lettered)
                        else:
                            self.forms(out, x, R, lf.partial_row(g, k, r), partial[k, r].tolist(), st["act"])
                    elif role == "kernel":
                        self.nums(out, x, R, weight[k[0], k[1], r].tolist(), s_num)
                    elif role == "bias":                 # any per-channel vector: its own parameter
                        self.nums(out, x, R, [float(params[p.grid.rsplit(".", 1)[1]][r])], s_num)
                    else:
                        self.nums(out, x, R, weight[:, r].tolist(), s_num)
                yield row, out



def _heatmaps(ws, layout: Layout, nonnegative: set[str]):
    """A colour scale per activation and partial-sum block, one per kernel or weight panel
    (the title cells inside hold text, which a colour scale ignores), one per bias panel."""
    for p in layout.panels:
        if p.role in ("act", "partial"):
            heat = _HEAT_POS if p.grid in nonnegative else _HEAT
            for key in p.keys():
                top, left = p.block_origin(key)
                ws.conditional_format(top, left, top + p.bh - 1, left + p.bw - 1, dict(heat))
        else:
            top, left = p.block_origin((0, 0) if p.role == "kernel" else None)
            bottom = p.top + p.height - 2
            right = p.left + p.width - 2 if p.role == "kernel" else left + p.bw - 1
            ws.conditional_format(top, left, bottom, right, dict(_HEAT))


def _zoom(layout: Layout, net) -> int:
    """The saved zoom: the largest (at most 80%) showing the input and the first two layers on SCREEN_PX."""
    from ..sheet.view import fit_zoom
    return fit_zoom(layout, net.names[:3])


def _write_summary(wb, net, layout, title, styles):
    """Sheet ``summary``: one row per layer. Words are centred, counts right-aligned."""
    bold, num, head = styles
    centre = wb.add_format({"align": "center"})
    bold_centre = wb.add_format({"bold": True, "align": "center"})
    bold_right = wb.add_format({"bold": True, "align": "right"})
    ws = wb.add_worksheet(SUMMARY_SHEET)
    ws.set_column(0, 0, 16)
    ws.set_column(1, 1, 10)
    details = {name: what(net[name]) for name in net.names if name != "input"}
    ws.set_column(2, 2, min(80, max([30] + [len(t) + 1 for t in details.values()])))   # the longest line fits
    ws.set_column(3, 3, 14)
    ws.set_column(4, 5, 12)
    ws.set_column(6, 9, 15)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)
    ws.write_string(0, 0, title, head)
    ws.write_string(1, 0, f"{len(net.layers)} layers, {net.param_count():,} parameters, "
                          f"{net.macs():,} multiply-accumulates per image.")
    ws.write_string(2, 0, f"On sheet '{layout.sheet}' the input and the weights are constants and every computed "
                          f"cell is a live formula: select one and use Trace Precedents.")
    cols = ["layer", "type", "details", "output shape", "parameters", "MACs", "receptive field", "jump",
            "field start", "first cell"]
    for j, c in enumerate(cols):
        ws.write_string(4, j, c, bold_right if j in (4, 5) else bold_centre if j in (3, 6, 7, 8, 9) else bold)
    row = 5
    for name in net.names:
        kind = "input" if name == "input" else net[name].kind
        rf = net.receptive_field(name)
        first = layout.cell_of((name, 0, 0, 0))
        ws.write_string(row, 0, "input" if name == "input" else net[name].label)
        ws.write_string(row, 1, kind)
        ws.write_string(row, 2, details.get(name, ""))
        ws.write_string(row, 3, " x ".join(map(str, net.shapes[name])), centre)
        ws.write_number(row, 4, 0 if name == "input" else net[name].param_count(), num)
        ws.write_number(row, 5, 0 if name == "input" else net.macs(name), num)
        if rf.is_global:
            texts = ["whole input", "-", "-"]
        else:
            texts = [f"{rf.size[0]} x {rf.size[1]}", f"{rf.jump[0]} x {rf.jump[1]}", f"{rf.start[0]}, {rf.start[1]}"]
        texts.append(f"{layout.sheet}!{_COLS[first[1]]}{first[0] + 1}")
        for j, text in enumerate(texts, start=6):
            ws.write_string(row, j, text, centre)
        row += 1
    ws.write_string(row, 0, "total", bold)
    ws.write_number(row, 4, net.param_count(), num)
    ws.write_number(row, 5, net.macs(), num)
    return ws


def check_finite(net, acts: dict) -> None:
    """Raise SheetconvError naming the first parameter or layer output that is not finite."""
    for name in net.names:
        if name != "input":
            for key, arr in net[name].params().items():
                if arr is not None and not np.all(np.isfinite(arr)):
                    raise SheetconvError(f"{name}.{key} contains NaN or Inf; a workbook needs finite numbers")
        if not np.all(np.isfinite(acts[name])):
            what = "the input" if name == "input" else f"the output of {net[name].label}"
            raise SheetconvError(f"{what} is not finite (NaN or Inf, e.g. an overflow); scale the input "
                                 f"or the weights down")


def write_workbook(net, x, path, *, force: bool = False, progress=None, layout: Layout | None = None,
                   title: str | None = None, explain=None) -> WriteResult:
    """Write ``net`` run on input ``x`` (C, H, W) as a live workbook at ``path``.

    Refuses to overwrite an existing file unless ``force``. ``progress(n)`` is called as
    formula cells are written (n: cells since the last call); ``formula_count`` gives
    the total. ``explain``: the cell the sheet ``explain`` works through (a tuple or text
    such as 'conv2[0,3,3]'; default: the centre of the last conv layer). Raises
    SheetconvError, leaving no file behind, if anything goes wrong.
    """
    t0 = time.perf_counter()
    layout = layout or Layout.for_network(net)
    check_size(net, layout)
    net.warn_zero_weights("write_workbook")
    with np.errstate(over="ignore", invalid="ignore"):      # reported by check_finite
        acts = net.activations(x, np.float64)
    check_finite(net, acts)
    title = title or "sheetconv workbook"
    extra = _extra_sheets(net, layout, acts, explain)
    with atomic_output(path, force=force, what="workbook") as tmp:
        rows = _write(net, layout, acts, tmp, title, progress, extra)
    return WriteResult(Path(path), rows.formulas, rows.cells, time.perf_counter() - t0)


def _extra_sheets(net, layout, acts, explain) -> list:
    """[(sheet name, cells, widths)] of the worked cell and, for a 1-D output, the prediction."""
    out = []
    if len(net.names) > 1:
        ex = worked_cell(net, layout, acts, explain)
        out.append((EXPLAIN_SHEET, ex.cells, [(0, 0, 12), (1, ex.grid_cols, 5.5)]))
    if has_prediction(net):
        out.append((PREDICTION_SHEET, prediction(net, layout, acts), [(0, 0, 16), (1, 3, 16)]))
    return out


def _write_cells(wb, name, cells, widths, formats):
    """A small sheet of Cell records (explain.Cell), written in row order."""
    ws = wb.add_worksheet(name)
    for a, b, w in widths:
        ws.set_column(a, b, w)
    ws.hide_gridlines(2)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)
    for c in cells:
        fmt = formats[c.style]
        if c.kind == "text":
            ws.write_string(c.row, c.col, c.content, fmt)
        elif c.kind == "number":
            ws.write_number(c.row, c.col, c.content, fmt)
        else:
            ws.write_formula(c.row, c.col, "=" + c.content, fmt, c.value)
    return ws


def _write(net, layout, acts, tmp, title, progress, extra=()) -> _Rows:
    """Write the workbook at ``tmp``; XlsxWriter's own temporary files live and die in a private folder."""
    with tempfile.TemporaryDirectory(prefix="sheetconv-") as scratch:
        # use_zip64: a sheet part past 2 GiB (several million formulas) gets ZIP64 records
        # instead of failing at the very end; smaller parts are written exactly as before.
        wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True, "tmpdir": scratch, "use_zip64": True})
        try:
            rows = _fill(wb, net, layout, acts, title, progress, extra)
            splices = wb.get_worksheet_by_name(layout.sheet).splices = {}
            with _zip_class(_ZIP_LEVEL, splices):
                wb.close()
            if splices:
                raise SheetconvError(f"the rows of {', '.join(map(str, splices))} were not packaged")
        except XlsxWriterException as e:
            _discard(wb)
            cause = e.__cause__ or e.__context__
            if isinstance(cause, OSError):
                raise cause from None
            raise SheetconvError(f"cannot write the workbook: {e}") from None
        except BaseException:
            _discard(wb)
            raise
    return rows


def _fill(wb, net, layout, acts, title, progress, extra=()) -> _Rows:
    wb.set_properties({"title": title, "subject": "A convolutional network as live spreadsheet formulas",
                       "author": "sheetconv", "company": "", "keywords": "sheetconv, CNN, receptive field",
                       "comments": "Generated by sheetconv. Every activation is a formula; "
                                   "Trace Precedents shows its receptive field.",
                       "created": FIXED_DATE})
    wb.set_calc_mode("auto")
    fmt = {"font_size": 8, "align": "center"}
    formats = {
        "act": wb.add_format({**fmt, "num_format": "0.00"}),
        "input": wb.add_format({**fmt, "num_format": "0.00", "font_color": "#1F4E9E"}),
        "weight": wb.add_format({**fmt, "num_format": "0.00", "font_color": "#1F4E9E"}),
        "matrix": wb.add_format({**fmt, "num_format": "0.000", "font_color": "#1F4E9E"}),
        "prob": wb.add_format({**fmt, "num_format": "0.000"}),
        "class": wb.add_format({"font_size": 11, "bold": True, "align": "center", "num_format": "0"}),
        "title": wb.add_format({"font_size": 8, "bold": True}),
        "head": wb.add_format({"font_size": 9, "bold": True, "text_wrap": True, "valign": "top"}),
    }
    f_head = wb.add_format({"font_size": 10, "bold": True})
    f_num = wb.add_format({"num_format": "#,##0"})
    ws = wb.add_worksheet(layout.sheet, worksheet_class=_RowSheet)
    n_rows, n_cols = layout.extent
    ws.set_column(0, n_cols, NARROW)
    for a, b, width in layout.columns:
        ws.set_column(a, b, width)
    ws.set_default_row(ROW_HEIGHT)
    ws.hide_gridlines(2)
    ws.freeze_panes(1, 0)
    ws.set_zoom(_zoom(layout, net))
    ws.set_landscape()
    ws.fit_to_pages(1, 0)                  # print one page wide, as many tall as needed
    ws.activate()
    _heatmaps(ws, layout, {name for name, a in acts.items() if a.size and a.min() >= 0})
    ws.begin_rows(n_rows, n_cols, ROW_HEIGHT, {r: HEADER_HEIGHT for r in layout.header_rows})
    for h in layout.headers:
        ws.merge_header(h.row, h.left, h.left + h.width - 1)
    styles = {k: f._get_xf_index() for k, f in formats.items()}
    rows = _Rows(net, layout, acts, styles, progress)
    panels = sorted(layout.panels, key=lambda p: p.left)
    merged = heapq.merge(rows.header(), *(rows.panel(p) for p in panels), key=itemgetter(0))
    for row, group in groupby(merged, key=itemgetter(0)):
        ws.put_row(row, "".join(chain.from_iterable(frags for _, frags in group)))
    rows.flush_progress()
    _write_summary(wb, net, layout, title, (wb.add_format({"bold": True}), f_num, f_head))
    cell_formats = {
        "num": wb.add_format({"font_size": 9, "align": "center", "num_format": "0.000"}),
        "pad": wb.add_format({"font_size": 9, "align": "center", "num_format": "0", "font_color": "#A0A0A0"}),
        "step": wb.add_format({"bold": True, "num_format": "0.000000", "align": "right"}),
        "title": wb.add_format({"bold": True, "font_size": 9}),
        "note": wb.add_format({"font_size": 10}),
        "class": wb.add_format({"bold": True, "align": "center", "num_format": "0"}),
    }
    for name, cells, widths in extra:
        _write_cells(wb, name, cells, widths, cell_formats)
    write_meta(wb, _meta.build_meta(net, layout))
    return rows


_ZIP_LOCK = threading.Lock()


@contextmanager
def _zip_class(level: int, splices: dict):
    """Have XlsxWriter's close() deflate at ``level`` (it has no option for it) and package
    the sheets whose rows stay in their own file (``splices``, see _RowSheet).

    XlsxWriter opens its zip through the module attribute ``ZipFile``; it is swapped for
    the duration of one close, under a lock so that concurrent builds never restore
    each other's patch.
    """
    import xlsxwriter.workbook as xw_workbook
    with _ZIP_LOCK:
        original = xw_workbook.ZipFile
        xw_workbook.ZipFile = partial(_splicing(original), compresslevel=level, splices=splices)
        try:
            yield
        finally:
            xw_workbook.ZipFile = original


def _splicing(base: type) -> type:
    """``base`` (a ZipFile class) whose write() of a spliced sheet file streams the file's head,
    its row file and the file's rest as one member, exactly as write() of the whole part would."""

    class SplicingZip(base):
        def __init__(self, *args, splices: dict, **kwargs):
            super().__init__(*args, **kwargs)
            self._splices = splices

        def write(self, filename, arcname=None, compress_type=None, compresslevel=None):
            splice = self._splices.get(str(filename))
            if splice is None or compress_type is not None or compresslevel is not None:
                return super().write(filename, arcname, compress_type, compresslevel)
            offset, rows = splice
            zinfo = zipfile.ZipInfo.from_file(filename, arcname, strict_timestamps=self._strict_timestamps)
            zinfo.file_size += os.path.getsize(rows)
            zinfo.compress_type = self.compression
            zinfo._compresslevel = self.compresslevel
            with open(filename, "rb") as src, open(rows, "rb") as body, self.open(zinfo, "w") as dest:
                dest.write(src.read(offset))
                shutil.copyfileobj(body, dest, 1 << 20)
                shutil.copyfileobj(src, dest, 1 << 20)
            del self._splices[str(filename)]
            os.unlink(rows)

    return SplicingZip


def _discard(wb):
    """Drop a workbook that failed half-way: close XlsxWriter's row files (their folder goes too)."""
    for ws in wb.worksheets():
        fh = getattr(ws, "row_data_fh", None)
        try:
            if fh is not None:
                fh.close()
        except OSError:
            pass
    wb.fileclosed = True


def same_cells(a, b, rel_tol: float = 1e-12) -> bool:
    """True if workbooks ``a`` and ``b`` hold the same content, however they were zipped.

    Same sheets in the same order; in each, the same cells with the same formulas and
    texts, and numbers (constants and stored results) equal to ``rel_tol``; the same
    sheetconv metadata apart from the version of sheetconv that wrote it. An unreadable
    file is simply not the same.
    """
    from itertools import zip_longest

    import openpyxl

    def meta(path):
        m = read_meta(path)
        if m is not None:
            m.pop("sheetconv_version", None)
        return m

    def same(u, v) -> bool:
        if u == v:
            return True
        numbers = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (u, v))
        return numbers and abs(u - v) <= rel_tol * max(1.0, abs(v))

    try:
        if meta(a) != meta(b):
            return False
        for data_only in (False, True):
            books = []
            try:
                for path in (a, b):
                    books.append(openpyxl.load_workbook(path, read_only=True, data_only=data_only))
                if books[0].sheetnames != books[1].sheetnames:
                    return False
                for name in books[0].sheetnames:
                    if name == _meta.META_SHEET:
                        continue
                    rows = zip_longest(*(bk[name].iter_rows(values_only=True) for bk in books))
                    for ra, rb in rows:
                        if ra is None or rb is None or len(ra) != len(rb):
                            return False
                        if ra != rb and not all(same(u, v) for u, v in zip(ra, rb)):
                            return False
            finally:
                for bk in books:
                    bk.close()
        return True
    except Exception:       # noqa: BLE001 - openpyxl raises many kinds on a damaged file: not the same
        return False
