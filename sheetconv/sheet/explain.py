"""The worked cell: one activation's computation spelled out on the sheet ``explain``.

For a conv cell, per input channel: the window (each cell a link ``=conv!B3`` to the
input of the layer; 0 where the window hangs over the padding), the kernel (links to
the kernel cells), their element-wise products cell by cell and the products' sum; then
the sum over channels, plus the bias, the ReLU, and a link to the activation cell
itself, which holds the same value. A pool cell shows its window and its MAX (or
average); a Linear cell its input column, weight column, products, sum, bias and ReLU;
a ReLU or Flatten cell the one cell it reads; an Add cell the cell of each input it adds
(then its ReLU), a Concat cell the one input cell it copies. Every step is one line: its value in
column A (a live formula), what it does in words in column B.

The sheet is a list of :class:`Cell` records in row-then-column order, each with its
formula (no leading '=') or text or number, and the value the engine computes, so the
writer stores values for readers that do not recalculate. Only SUM, MAX, AVERAGE and
arithmetic: recalculated alike by Excel, LibreOffice and Gnumeric.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SheetconvError
from ..nn.layers import Terms
from ..nn.layers.concat import channel_offsets
from .a1 import cell as a1
from .a1 import quote_sheet, rng

__all__ = ["EXPLAIN_SHEET", "Cell", "Explanation", "default_cell", "explain"]

EXPLAIN_SHEET = "explain"
_GRID = 1                 # first column of the grids (column A holds the step values)


@dataclass(frozen=True)
class Cell:
    """One cell of the explain sheet. kind: 'text', 'number' or 'formula' (text without '=')."""
    row: int
    col: int
    kind: str
    content: object
    value: float | None = None
    style: str = "num"     # 'num', 'step', 'title', 'note', 'pad'


@dataclass
class Explanation:
    cell: tuple
    cells: list[Cell]
    result: tuple[int, int]            # (row, col) of the last computed step: equals the activation
    grid_cols: int                     # columns used by the grids (they get a narrower width)


def default_cell(net) -> tuple:
    """The centre of the last conv layer (of the last layer if there is no conv)."""
    convs = [n for n in net.names[1:] if net[n].kind == "conv"]
    name = convs[-1] if convs else net.names[-1]
    c, h, w = net.grid(name)
    return (name, 0, h // 2, w // 2)


class _Sheet:
    def __init__(self, layout):
        self.layout = layout
        self.cells: list[Cell] = []
        self.sheet = quote_sheet(layout.sheet)

    def link(self, grid_cell) -> str:
        r, c = self.layout.cell_of(grid_cell)
        return f"{self.sheet}!{a1(r, c)}"

    def text(self, row, col, text, style="note"):
        self.cells.append(Cell(row, col, "text", text, None, style))

    def formula(self, row, col, text, value, style="num"):
        self.cells.append(Cell(row, col, "formula", text, float(value), style))

    def number(self, row, col, value, style="pad"):
        self.cells.append(Cell(row, col, "number", float(value), float(value), style))

    def step(self, row, text, formula, value):
        self.formula(row, 0, formula, value, "step")
        self.text(row, 1, text)
        return a1(row, 0)


def explain(net, layout, acts, cell=None) -> Explanation:
    """The explain sheet's cells for ``cell`` (a tuple or text such as 'conv2[0,3,3]'; default: default_cell)."""
    cell = default_cell(net) if cell is None else net.check_cell(net.ref(cell))
    name, o, r, c = cell
    if name == "input":
        raise SheetconvError("the input is a constant; --explain takes a computed cell, e.g. "
                             f"{'%s[%d,%d,%d]' % default_cell(net)}")
    layer = net[name]
    s = _Sheet(layout)
    vector = len(net.shapes[name]) == 1
    where = f"{name}[{o}]" if vector else f"{name}[{o},{r},{c}]"
    s.text(0, 0, f"How {where} ({layer.label}) is computed: sheet {layout.sheet}, cell {s.link(cell).split('!')[1]}",
           "title")
    want = float(acts[name].reshape(net.grid(name))[o, r, c])
    kind = layer.kind
    src = net.input_of(name) if len(layer.inputs) == 1 else None
    if src is None:
        row, last = _joined(s, net, layer, acts, cell)
    elif kind == "conv":
        row, last = _conv(s, net, layer, src, acts, o, r, c)
    elif kind in ("maxpool", "avgpool"):
        row, last = _pool(s, layer, src, acts, o, r, c)
    elif kind == "linear":
        row, last = _linear(s, net, layer, src, acts, o)
    elif kind == "relu":
        x = float(acts[src].reshape(net.grid(src))[(o, r, c)])
        row = 2
        ref = s.step(row, f"the cell it reads, {src} ({s.link((src, o, r, c))})", s.link((src, o, r, c)), x)
        row += 1
        last = s.step(row, "ReLU: MAX(0, x), a negative value becomes 0", f"MAX(0,{ref})", max(0.0, x))
        row += 1
    elif kind == "flatten":
        _, h, w = net.grid(src)
        ch, rem = divmod(o, h * w)
        i, j = divmod(rem, w)
        x = float(acts[src][ch, i, j])
        row = 2
        last = s.step(row, f"flatten reads {src}[{ch},{i},{j}] ({s.link((src, ch, i, j))}): feature "
                           f"{o} = channel x {h * w} + row x {w} + column", s.link((src, ch, i, j)), x)
        row += 1
    elif layer.formula_reads == "window":
        row, last = _own_channel(s, net, layout, layer, src, cell, want)
    else:
        raise SheetconvError(f"{name}: no worked example for layer kind {kind!r}")
    row += 1
    s.step(row, f"the activation cell itself, {s.link(cell)}: the same value", s.link(cell), want)
    result = next(c for c in s.cells if c.kind == "formula" and a1(c.row, c.col) == last)
    cols = max((c.col for c in s.cells if c.style in ("num", "pad")), default=0) + 1
    return Explanation(cell, sorted(s.cells, key=lambda c: (c.row, c.col)), (result.row, result.col), cols)


def _conv(s: _Sheet, net, layer, src, acts, o, r, c):
    x = acts[src].reshape(net.grid(src))
    _, hin, win = x.shape
    reads = layer.group_inputs(o)          # the input channels output o reads (its group's)
    cin = len(reads)
    kh, kw = layer.kernel_size
    wh, ww = layer.windows
    weight = layer.weight
    ys = [r * wh.stride - wh.padding + t * wh.dilation for t in range(kh)]
    xs = [c * ww.stride - ww.padding + u * ww.dilation for u in range(kw)]
    pad = f"padding {wh.padding}: 0 outside the input" if max(wh.padding, ww.padding) else "no padding"
    s.text(1, 0, f"{kh}x{kw} window of {src} (stride {wh.stride}, {pad}) times the kernel, cell by cell, "
                 f"for each of the {cin} input channel{'s' if cin > 1 else ''}; then the sums.")
    k0, p0, t0 = _GRID + kw + 1, _GRID + 2 * kw + 2, _GRID + 3 * kw + 3
    row = 3
    sums = []
    total = 0.0
    for j, i in enumerate(reads):
        s.text(row, _GRID, f"window, input ch {i}", "title")
        s.text(row, k0, f"kernel in {i}→out {o}", "title")
        s.text(row, p0, "products", "title")
        s.text(row, t0, "sum", "title")
        prods = []
        for t, y in enumerate(ys):
            R = row + 1 + t
            for u, xx in enumerate(xs):
                inside = 0 <= y < hin and 0 <= xx < win
                v = float(x[i, y, xx]) if inside else 0.0
                if inside:
                    s.formula(R, _GRID + u, s.link((src, i, y, xx)), v)
                else:
                    s.number(R, _GRID + u, 0.0)
                wv = float(weight[o, j, t, u])
                s.formula(R, k0 + u, s.link((f"{layer.name}.weight", o, j, t, u)), wv)
                s.formula(R, p0 + u, f"{a1(R, _GRID + u)}*{a1(R, k0 + u)}", v * wv)
                prods.append(v * wv)
        ch_sum = float(np.sum(prods))
        s.formula(row + 1, t0, f"SUM({rng(row + 1, p0, row + kh, p0 + kw - 1)})", ch_sum)
        sums.append(a1(row + 1, t0))
        total += ch_sum
        row += kh + 2
    row += 1
    last = s.step(row, f"sum of the products over the {cin} input channel{'s' if cin > 1 else ''}",
                  "+".join(sums) if len(sums) <= 30 else f"SUM({','.join(sums)})", total)
    return _bias_and_relu(s, layer, o, row + 1, last, total)


def _pool(s: _Sheet, layer, src, acts, o, r, c):
    x = acts[src]
    _, hin, win = x.shape
    wh, ww = layer.windows
    t0, t1 = wh.taps(r, hin)
    u0, u1 = ww.taps(c, win)
    y0, x0 = wh.index(r, t0), ww.index(c, u0)
    s.text(1, 0, f"the {wh.kernel}x{ww.kernel} window of {src}, channel {o} (the part inside the input)")
    s.text(2, _GRID, f"window, ch {o}", "title")
    vals = []
    for t in range(t1 - t0):
        for u in range(u1 - u0):
            v = float(x[o, y0 + t, x0 + u])
            s.formula(3 + t, _GRID + u, s.link((src, o, y0 + t, x0 + u)), v)
            vals.append(v)
    block = rng(3, _GRID, 2 + t1 - t0, _GRID + u1 - u0 - 1)
    row = 4 + t1 - t0
    area = wh.padded_taps(r, hin) * ww.padded_taps(c, win)          # the window inside the padded input
    if layer.kind == "maxpool":
        last = s.step(row, "max pool: the largest value of the window", f"MAX({block})", max(vals))
    elif layer.count_include_pad and len(vals) < area:
        past = "; in ceil mode the part past the padding does not count" if area < wh.kernel * ww.kernel else ""
        last = s.step(row, f"average pool: the window's sum over {area} cells (padding counts as 0{past})",
                      f"SUM({block})/{area}", float(np.sum(vals)) / area)
    else:
        last = s.step(row, "average pool: the mean of the window", f"AVERAGE({block})", float(np.mean(vals)))
    return row + 1, last


def _own_channel(s: _Sheet, net, layout, layer, src, cell, want):
    """Any other kind reading a window of its own channel (BatchNorm2d, adaptive pools, the
    activations): the kind's own formula over the cells it reads on the main sheet."""
    _, o, r, c = cell
    _, hin, win = net.grid(src)
    wh, ww = layer.windows_for(net.grid(src))
    t0, t1 = wh.taps(r, hin)
    u0, u1 = ww.taps(c, win)
    y0, x0 = wh.index(r, t0), ww.index(c, u0)
    first = s.link((src, o, y0, x0))
    window = f"{first}:{a1(*layout.cell_of((src, o, y0 + t1 - t0 - 1, x0 + u1 - u0 - 1)))}"
    params = tuple((k, s.link((f"{layer.name}.{k}", o))) for k in layer.param_shapes())
    text = layer.formula(Terms(window=window, cell=first, covered=(t1 - t0) * (u1 - u0), params=params))
    reads = f"{src} cells {window}" if (t1 - t0) * (u1 - u0) > 1 else f"the cell {first}"
    extra = f" and {', '.join(f'{layer.name}.{k}[{o}]' for k, _ in params)}" if params else ""
    s.text(1, 0, f"{layer.describe()}: the formula reads {reads}{extra}")
    last = s.step(2, f"{layer.label}'s formula, over the cells on sheet {s.layout.sheet}", text, want)
    return 3, last


def _joined(s: _Sheet, net, layer, acts, cell):
    """A layer joining several inputs: Concat copies one cell of one of them; Add sums
    the same cell of each, then a fused ReLU."""
    _, o, r, c = cell

    def value(src, ch):
        return float(acts[src].reshape(net.grid(src))[ch, r, c])
    if layer.channels == "concat":
        offsets = channel_offsets([net.shapes[i] for i in layer.inputs])
        k = max(i for i in range(len(layer.inputs)) if offsets[i] <= o)
        src, ch = layer.inputs[k], o - offsets[k]
        s.text(1, 0, f"{layer.describe()}: channels {offsets[k]}-{offsets[k + 1] - 1} are {src}'s")
        last = s.step(2, f"channel {o} is channel {ch} of {src}: the cell it copies ({s.link((src, ch, r, c))})",
                      s.link((src, ch, r, c)), value(src, ch))
        return 3, last
    s.text(1, 0, f"{layer.describe()}: the same cell of each input, added")
    refs, total = [], 0.0
    for row, src in enumerate(layer.inputs, 2):
        refs.append(s.step(row, f"the cell of {src} ({s.link((src, o, r, c))})", s.link((src, o, r, c)), value(src, o)))
        total += value(src, o)
    row = 2 + len(refs)
    last = s.step(row, "their sum", "+".join(refs), total)
    row += 1
    if layer.relu:
        last = s.step(row, "ReLU: MAX(0, x), a negative value becomes 0", f"MAX(0,{last})", max(0.0, total))
        row += 1
    return row, last


def _bias_and_relu(s: _Sheet, layer, o: int, row: int, last: str, total: float):
    """The worked cell's last steps for Conv2d and Linear: plus the bias, then a fused ReLU."""
    value = total
    if layer.bias is not None:
        value = total + float(layer.bias[o])
        last = s.step(row, f"plus the bias {layer.name}.bias[{o}] ({s.link((f'{layer.name}.bias', o))})",
                      f"{last}+{s.link((f'{layer.name}.bias', o))}", value)
        row += 1
    if layer.relu:
        value = max(0.0, value)
        last = s.step(row, "ReLU: MAX(0, x), a negative value becomes 0", f"MAX(0,{last})", value)
        row += 1
    return row, last


def _linear(s: _Sheet, net, layer, src, acts, o):
    x = acts[src].ravel()
    n = layer.in_features
    s.text(1, 0, f"each of the {n} inputs times its weight, then the sum, plus the bias")
    for col, title in enumerate(("input", f"weight to out {o}", "product")):
        s.text(2, _GRID + col, title, "title")
    prods = []
    for i in range(n):
        R = 3 + i
        v, wv = float(x[i]), float(layer.weight[o, i])
        s.formula(R, _GRID, s.link((src, i, 0, 0)), v)
        s.formula(R, _GRID + 1, s.link((f"{layer.name}.weight", o, i)), wv)
        s.formula(R, _GRID + 2, f"{a1(R, _GRID)}*{a1(R, _GRID + 1)}", v * wv)
        prods.append(v * wv)
    row = 4 + n
    total = float(np.sum(prods))
    last = s.step(row, f"sum of the {n} products", f"SUM({rng(3, _GRID + 2, 2 + n, _GRID + 2)})", total)
    return _bias_and_relu(s, layer, o, row + 1, last, total)
