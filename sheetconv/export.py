"""Write a network and one input as a live workbook.

Sheet ``conv`` (layout.py) holds the input and the parameters as constants and every
computed cell as a formula (formulas.py) together with its value from the NumPy engine,
so readers that do not recalculate still see the numbers; the workbook asks for a full
recalculation on load. Every grid gets a three-colour heatmap. Sheet ``summary`` lists
the layers; the very hidden sheet ``_sheetconv`` carries the metadata (meta.py).

Writing streams (XlsxWriter's constant_memory mode): rows leave memory as soon as they
are written, whatever the workbook's size. The ``conv`` sheet's rows are generated as
XML through a small Worksheet subclass, because XlsxWriter's per-cell ``write_formula``
rescans every formula for newer Excel functions (~30 regular expressions per cell) and
formats numbers with 16 significant digits; our formulas use none of those functions and
our values need 17 digits. Everything else (styles, column widths, conditional formats,
the package) is XlsxWriter's.

The file is written to a temporary file beside the target and renamed over it, so the
target is never half-written; fixed document properties and zip timestamps make two
builds of the same network and input byte-for-byte identical.
"""
from __future__ import annotations

import heapq
import os
from contextlib import contextmanager
from functools import partial
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import xlsxwriter
from xlsxwriter.exceptions import XlsxWriterException
from xlsxwriter.worksheet import Worksheet

from . import meta as _meta
from .errors import SheetconvError
from .formulas import LayerFormulas
from .layers import Conv2d
from .layout import Layout, Stripe, block_title
from .xlref import column_names, rng

__all__ = ["write_workbook", "WriteResult", "formula_count", "FIXED_DATE", "SUMMARY_SHEET"]

SUMMARY_SHEET = "summary"
FIXED_DATE = datetime(2024, 1, 1, 0, 0, 0)
_COLS = column_names()
_COL_WIDTH = 3.3            # narrow, square cells: the input reads as a picture
_ROW_HEIGHT = 21            # points; about the column width in pixels
_VECTOR_COL_WIDTH = 10
# Signed grids (weights, conv outputs without ReLU): blue below zero, white at zero, red above.
# Grids that hold no negative value (the image, ReLU outputs): white at zero up to red, so a
# digit reads as red strokes on white.
_HEAT_POS = {"type": "2_color_scale", "min_type": "num", "min_value": 0, "min_color": "#FFFFFF",
             "max_type": "max", "max_color": "#F8696B"}
_HEAT = {"type": "3_color_scale", "min_type": "min", "min_color": "#5A8AC6", "mid_type": "num", "mid_value": 0,
         "mid_color": "#FFFFFF", "max_type": "max", "max_color": "#F8696B"}
_PROGRESS_EVERY = 8192
_ZIP_LEVEL = 1              # zlib's fastest level: deflating dominates the time of big builds


@dataclass
class WriteResult:
    path: Path
    formulas: int          # formula cells written
    cells: int             # all cells of the conv sheet (formulas, constants, titles)
    seconds: float


class _RowSheet(Worksheet):
    """A worksheet whose rows are handed over as finished <row> content, in order."""

    def begin_rows(self, rows: int, cols: int, height: float):
        if not (self.constant_memory and self.fh is self.row_data_fh):
            raise RuntimeError("sheetconv needs XlsxWriter's constant_memory mode")
        self._check_dimensions(0, 0)
        self._check_dimensions(rows - 1, cols - 1)
        self._row_attrs = f' ht="{height:g}" customHeight="1"'
        self._last = -1

    def put_row(self, row: int, cells_xml: str):
        if row <= self._last:
            raise RuntimeError(f"rows must be written in order (row {row} after {self._last})")
        self._last = row
        self.fh.write(f'<row r="{row + 1}"{self._row_attrs}>{cells_xml}</row>')


def formula_count(net, layout: Layout) -> int:
    """Formula cells of the conv sheet: every computed cell and every partial-sum cell."""
    n = 0
    for name in net.names[1:]:
        c, h, w = net.grid(name)
        n += c * h * w * (1 + len(layout.partials(name)))
    return n


def _partial_values(layer: Conv2d, x: np.ndarray, groups) -> list[np.ndarray]:
    """The sums of each input-channel group's convolutions (no bias, no ReLU)."""
    out = []
    for a, b in groups:
        sub = Conv2d(b - a, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                     bias=False)
        sub.weight = layer.weight[:, a:b]
        out.append(sub.forward(x[None, a:b])[0])
    return out


class _Rows:
    """Generates the XML of the conv sheet's rows, stripe by stripe."""

    def __init__(self, net, layout, acts, styles, progress):
        self.net, self.layout, self.acts = net, layout, acts
        self.s_form, self.s_const, self.s_title, self.s_head = styles
        self.progress = progress
        self.pending = 0
        self.formulas = 0
        self.cells = 0

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
    def nums(self, out, x, R, values):
        s = self.s_const
        out += [f'<c r="{_COLS[x + j]}{R}" s="{s}"><v>{v!r}</v></c>' for j, v in enumerate(values)]
        self.cells += len(values)

    def forms(self, out, x, R, texts, values):
        s = self.s_form
        out += [f'<c r="{_COLS[x + j]}{R}" s="{s}"><f>{t}</f><v>{v!r}</v></c>'
                for j, (t, v) in enumerate(zip(texts, values))]
        self.cells += len(texts)
        self._count(len(texts))

    def text(self, out, x, R, text, s=None):
        out.append(f'<c r="{_COLS[x]}{R}" s="{self.s_title if s is None else s}" t="inlineStr">'
                   f'<is><t>{escape(text)}</t></is></c>')
        self.cells += 1

    # -- rows
    def header(self):
        out = []
        for st in self.layout.stripes:
            if st.top == self.layout.stripes[0].top:
                self.text(out, st.left, 1, _describe(self.net, st.name), self.s_head)
        yield 0, out

    def stripe(self, st: Stripe):
        net, name = self.net, st.name
        acts = self.acts[name]
        lf = None if name == "input" else LayerFormulas(net, self.layout, name)
        layer = None if name == "input" else net[name]
        partial_vals = []
        if lf is not None and lf.partials:
            partial_vals = _partial_values(layer, self.acts[net.input_of(name)], lf.partials)
        params = layer.params() if layer is not None else {}
        weight = params.get("weight")
        bias = params.get("bias")
        if weight is not None and weight.ndim == 2:
            weight_t = weight.T                    # Linear: input i down, output o across
        for s in range(min(st.n, st.per_col)):
            for y in range(st.slot_h - 1):
                row = st.top + s * st.slot_h + y
                R = row + 1
                out: list[str] = []
                for g in range(st.groups):
                    o = g * st.per_col + s
                    if o >= st.n:
                        break
                    x0 = st.left + g * st.slot_w
                    for p in st.parts:
                        dy = y - p.row
                        x = x0 + p.col
                        role = p.role
                        if role == "kernel":
                            if dy < -1:
                                continue
                            q, k = divmod(dy + 1, p.step)
                            if k == 0 and q < p.count:
                                self.text(out, x, R, block_title(st, p, o, q))
                            elif k > 0 and q < p.count and k - 1 < p.height:
                                self.nums(out, x, R, weight[o, q, k - 1].tolist())
                            continue
                        if dy == -1:
                            self.text(out, x, R, block_title(st, p, o))
                            continue
                        if not 0 <= dy < p.height:
                            continue
                        if role == "act":
                            if lf is None:
                                self.nums(out, x, R, acts[o, dy].tolist())
                            elif st.vector:
                                self.forms(out, x, R, lf.row(dy, 0), [float(acts[dy])])
                            else:
                                self.forms(out, x, R, lf.row(o, dy), acts[o, dy].tolist())
                        elif role == "partial":
                            gi = int(p.grid.rsplit("partial", 1)[1])
                            self.forms(out, x, R, lf.partial_row(gi, o, dy), partial_vals[gi][o, dy].tolist())
                        elif role == "bias":
                            self.nums(out, x, R, [float(bias[dy if st.vector else o])])
                        else:
                            self.nums(out, x, R, weight_t[dy].tolist())
                if out:
                    yield row, out


def _what(layer) -> str:
    """The layer's operation in words: '3x3 conv, stride 2, padding 1'."""
    kind = layer.kind
    if kind == "conv":
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
        text = f"{kh}x{kw} conv, stride {_pair(sh, sw)}, padding {_pair(ph, pw)}"
        return text + (f", dilation {_pair(dh, dw)}" if max(dh, dw) > 1 else "")
    if kind in ("maxpool", "avgpool"):
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        text = f"{kh}x{kw} {'max' if kind == 'maxpool' else 'average'} pool, stride {_pair(sh, sw)}"
        return text + (f", padding {_pair(ph, pw)}" if max(ph, pw) else "")
    if kind == "linear":
        return f"linear {layer.in_features} -> {layer.out_features}"
    return {"flatten": "flatten", "relu": "ReLU"}.get(kind, kind)


def _pair(a: int, b: int) -> str:
    return str(a) if a == b else f"({a}, {b})"


def _describe(net, name: str) -> str:
    shape = " x ".join(map(str, net.shapes[name]))
    if name == "input":
        return f"input {shape}"
    layer = net[name]
    return f"{layer.label}: {shape} ({_what(layer)})"


def _heatmaps(ws, layout: Layout, nonnegative: set[str]):
    """A colour scale per activation and partial-sum block; one per layer over all its weights.

    A slot's stacked kernel blocks share one rectangle (their title rows hold text, which
    a colour scale ignores), so a layer's weight rule lists one range per output channel.
    """
    for st in layout.stripes:
        weights = []
        for o in range(st.n):
            y0, x0 = st.origin(o)
            for p in st.parts:
                top, left = y0 + p.row, x0 + p.col
                if p.role in ("act", "partial"):
                    heat = _HEAT_POS if p.grid in nonnegative else _HEAT
                    ws.conditional_format(top, left, top + p.height - 1, left + p.width - 1, dict(heat))
                elif p.role in ("kernel", "weight"):
                    bottom = top + (p.count - 1) * p.step + p.height - 1
                    weights.append(rng(top, left, bottom, left + p.width - 1))
        if weights:
            ws.conditional_format(weights[0], {**_HEAT, "multi_range": " ".join(weights)})


def _write_summary(wb, net, layout, title, styles):
    bold, num, head = styles
    ws = wb.add_worksheet(SUMMARY_SHEET)
    ws.set_column(0, 0, 16)
    ws.set_column(1, 1, 10)
    ws.set_column(2, 2, 44)
    ws.set_column(3, 9, 14)
    ws.write_string(0, 0, title, head)
    ws.write_string(1, 0, f"{len(net.layers)} layers, {net.param_count():,} parameters, "
                          f"{net.macs():,} multiply-accumulates per image. Every cell of sheet "
                          f"'{layout.sheet}' is a live formula: select one and use Trace Precedents.")
    cols = ["layer", "type", "details", "output shape", "parameters", "MACs", "receptive field", "jump",
            "field start", "first cell"]
    for j, c in enumerate(cols):
        ws.write_string(3, j, c, bold)
    row = 4
    for name in net.names:
        kind = "input" if name == "input" else net[name].kind
        rf = net.receptive_field(name)
        first = layout.cell_of((name, 0, 0, 0))
        ws.write_string(row, 0, "input" if name == "input" else net[name].label)
        ws.write_string(row, 1, kind)
        ws.write_string(row, 2, "" if name == "input" else _what(net[name]))
        ws.write_string(row, 3, " x ".join(map(str, net.shapes[name])))
        ws.write_number(row, 4, 0 if name == "input" else net[name].param_count(), num)
        ws.write_number(row, 5, 0 if name == "input" else net.macs(name), num)
        if rf.is_global:
            ws.write_string(row, 6, "whole input")
            ws.write_string(row, 7, "-")
            ws.write_string(row, 8, "-")
        else:
            ws.write_string(row, 6, f"{rf.size[0]} x {rf.size[1]}")
            ws.write_string(row, 7, f"{rf.jump[0]} x {rf.jump[1]}")
            ws.write_string(row, 8, f"{rf.start[0]}, {rf.start[1]}")
        ws.write_string(row, 9, f"{layout.sheet}!{_COLS[first[1]]}{first[0] + 1}")
        row += 1
    ws.write_string(row, 0, "total", bold)
    ws.write_number(row, 4, net.param_count(), num)
    ws.write_number(row, 5, net.macs(), num)
    return ws


def _check_target(path: Path, force: bool):
    parent = path.parent
    if not parent.is_dir():
        raise SheetconvError(f"output folder {parent} does not exist (create it or choose another --out)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SheetconvError(f"output folder {parent} is not writable")
    if path.is_dir():
        raise SheetconvError(f"{path} is a folder, expected a .xlsx file path")
    if path.exists() and not force:
        raise SheetconvError(f"{path} already exists (use --force to overwrite)")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_workbook(net, x, path, *, force: bool = False, progress=None, layout: Layout | None = None,
                   title: str | None = None) -> WriteResult:
    """Write ``net`` run on input ``x`` (C, H, W) as a live workbook at ``path``.

    Refuses to overwrite an existing file unless ``force``. ``progress(n)`` is called as
    formula cells are written (n: cells since the last call); ``formula_count`` gives
    the total. Raises SheetconvError, leaving no file behind, if anything goes wrong.
    """
    t0 = time.perf_counter()
    path = Path(path)
    _check_target(path, force)
    acts = net.activations(x, np.float64)
    layout = layout or Layout.for_network(net)
    title = title or "sheetconv workbook"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise SheetconvError(f"cannot write in {path.parent}: {e.strerror or e}") from None
    try:
        rows = _write(net, layout, acts, tmp, title, progress)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, XlsxWriterException)):
            cause = e
            while not isinstance(cause, OSError) and cause.__cause__ is not None:
                cause = cause.__cause__
            reason = getattr(cause, "strerror", None) or str(cause)
            raise SheetconvError(f"cannot write {path}: {reason}") from None
        raise
    return WriteResult(path, rows.formulas, rows.cells, time.perf_counter() - t0)


def _write(net, layout, acts, tmp, title, progress) -> _Rows:
    wb = xlsxwriter.Workbook(tmp, {"constant_memory": True})
    try:
        wb.set_properties({"title": title, "subject": "A convolutional network as live spreadsheet formulas",
                           "author": "sheetconv", "company": "", "keywords": "sheetconv, CNN, receptive field",
                           "comments": "Generated by sheetconv. Every activation is a formula; "
                                       "Trace Precedents shows its receptive field.",
                           "created": FIXED_DATE})
        wb.set_calc_mode("auto")
        f_form = wb.add_format({"font_size": 8, "align": "center"})
        f_const = wb.add_format({"font_size": 8, "align": "center", "font_color": "#1F4E9E"})
        f_title = wb.add_format({"font_size": 8, "bold": True})
        f_head = wb.add_format({"font_size": 10, "bold": True})
        f_num = wb.add_format({"num_format": "#,##0"})
        ws = wb.add_worksheet(layout.sheet, worksheet_class=_RowSheet)
        n_rows, n_cols = layout.extent
        ws.set_column(0, n_cols, _COL_WIDTH)
        for st in layout.stripes:
            if st.vector:
                for p in st.parts:
                    if p.role in ("act", "bias"):
                        ws.set_column(st.left + p.col, st.left + p.col, _VECTOR_COL_WIDTH)
        ws.set_default_row(_ROW_HEIGHT)
        ws.freeze_panes(1, 0)
        ws.set_zoom(80 if n_cols <= 200 else 50)
        ws.activate()
        _heatmaps(ws, layout, {name for name, a in acts.items() if a.size and a.min() >= 0})
        ws.begin_rows(n_rows, n_cols, _ROW_HEIGHT)
        styles = tuple(f._get_xf_index() for f in (f_form, f_const, f_title, f_head))
        rows = _Rows(net, layout, acts, styles, progress)
        stripes = sorted(layout.stripes, key=lambda s: s.left)
        merged = heapq.merge(rows.header(), *(rows.stripe(st) for st in stripes), key=itemgetter(0))
        for row, group in groupby(merged, key=itemgetter(0)):
            ws.put_row(row, "".join(chain.from_iterable(frags for _, frags in group)))
        rows.flush_progress()
        _write_summary(wb, net, layout, title, (wb.add_format({"bold": True}), f_num, f_head))
        _meta.write_meta(wb, _meta.build_meta(net, layout))
    except BaseException:
        _discard(wb)
        raise
    with _deflate_level(_ZIP_LEVEL):
        wb.close()
    return rows


@contextmanager
def _deflate_level(level: int):
    """Have XlsxWriter's close() deflate at ``level`` (it has no option for it)."""
    import xlsxwriter.workbook as xw_workbook
    original = xw_workbook.ZipFile
    xw_workbook.ZipFile = partial(original, compresslevel=level)
    try:
        yield
    finally:
        xw_workbook.ZipFile = original


def _discard(wb):
    """Drop a workbook that failed half-way: close and delete XlsxWriter's row files, write nothing."""
    for ws in wb.worksheets():
        fh, name = getattr(ws, "row_data_fh", None), getattr(ws, "row_data_filename", None)
        try:
            if fh is not None:
                fh.close()
            if name:
                os.unlink(name)
        except OSError:
            pass
    wb.fileclosed = True
