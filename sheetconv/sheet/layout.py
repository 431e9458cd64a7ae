"""Where every cell of a network sits on the main worksheet ``conv``.

The sheet reads like fastai's conv-example.xlsx, left to right in the order of the
computation: the input, then for each layer its parameters (between its input and its
output) and its output::

    input | conv1 filters, bias | conv1 | conv2 filters, bias | conv2 | ... | softmax

Each of these is a *group* of columns holding one or more *panels* stacked top to
bottom (a conv's kernel panel with its bias panel below). A panel is a regular grid of
equal *blocks*, each with its title in the row above it:

* an activation (or partial-sum) panel tiles the layer's channels in a near-square grid
  (``per_row`` channels across);
* a kernel panel holds the ``out x in`` kernels: output channels across (``per_row`` of
  them, further ones in another band of ``in`` grid rows below), input channels down, so
  that all kernels of one output channel share their columns (a conv row's formulas
  differ only in column letters); the block of kernel ``(o, i)`` is titled ``in i→out o``
  and the group's header says it in words;
* a 1-D layer (Flatten, Linear, a ReLU after them) is one block, one column: feature f
  is the cell ``(layer, f, 0, 0)``; a Linear's weights are one block laid out
  transposed, ``in`` rows by ``out`` columns, so that output o is
  ``SUMPRODUCT(<input column>, <weight column o>)``; its biases are one column;

The first row of each band of groups holds each group's header (row 0 is frozen). A
block's pitch leaves room for its title: titles never overlap (``title_cols`` estimates
a title's width from the column widths the layout chooses, the same the writer sets).
Groups that would pass Excel's 16,384 columns start a new band of rows below; a panel
taller than the rows left is widened instead, and one that cannot fit is an error.

Partial sums. A conv cell that reads many input channels would need a formula longer
than Excel's 8,192 characters. Such a layer splits its input channels into groups; for
group g a *partial-sum panel* holds, per output channel, the sum of the group's
SUMPRODUCTs, and the output cell adds the partial sums and the bias. A partial-sum cell
is ``("<layer>:partial<g>", channel, row, col)``; ``Layout.partial(grid)`` tells which
layer and which input channels ``[c0, c1)`` it sums.

Everything is arithmetic on a few panel records: ``cell_of`` and ``locate`` cost
O(number of panels), whatever the network's size.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import SheetconvError
from .a1 import MAX_COLS, MAX_ROWS

__all__ = ["Layout", "Block", "Panel", "Header", "what", "describe", "SHEET", "MAX_FORMULA", "LAYOUT_VERSION", "NARROW", "WIDE",
           "ROW_HEIGHT", "HEADER_HEIGHT", "col_px", "title_cols", "partial_groups"]

SHEET = "conv"
MAX_FORMULA = 8192
LAYOUT_VERSION = 2

NARROW = 3.3              # column width (characters) of grids: square cells, the input reads as a picture
WIDE = 8.0                # column width of 1-D blocks and Linear weights
ROW_HEIGHT = 21           # points; about a narrow column's width in pixels
HEADER_HEIGHT = 36        # points: three lines of header text
HEADER_LINES = 3
TITLE_PX = 6.5            # pixels per character of an 8-point bold title (a generous average)
HEADER_PX = 7.5           # pixels per character of a 9-point bold header
_FIRST_COL = 1            # column A stays a narrow margin
_PARTIAL_RE = re.compile(r"^(.+):partial(\d+)$")

# Longest possible text of one reference term, used to decide partial sums before the
# layout (and so the real addresses) is known: a cell is at most 'XFD1048576'.
_REF, _AREF = 10, 12
_CONV_TERM = len("SUMPRODUCT(:,$$:$$)+") + 2 * _REF + 2 * _AREF - 4
_TAP_TERM = _REF + 1 + _AREF + 1
_OVERHEAD = len("MAX(0,)+") + _AREF + 8


def col_px(width: float) -> int:
    """Excel's pixel width of a column ``width`` characters wide (Calibri 11)."""
    return int(width * 7 + 5) if width >= 1 else int(width * 12 + 0.5)


def title_cols(text: str, width: float) -> int:
    """Columns of width ``width`` a block title needs so that it is never cut."""
    return max(1, math.ceil(len(text) * TITLE_PX / col_px(width)))


@dataclass(frozen=True)
class Block:
    """One rectangle of cells: a channel of a layer, a kernel, a bias, a weight matrix.

    ``grid``: the layer ('conv1'), parameter ('conv1.weight', 'conv1.bias') or partial-sum
    grid ('conv3:partial0') it shows; ``key``: the channel (activations,
    partial sums), ``(out, in)`` for a conv kernel, None for a whole vector or matrix.
    The title sits in the row above ``top``.
    """
    grid: str
    key: object
    top: int
    left: int
    height: int
    width: int
    title: str

    @property
    def bottom(self) -> int:
        return self.top + self.height - 1

    @property
    def right(self) -> int:
        return self.left + self.width - 1


@dataclass(frozen=True)
class Header:
    """A group's header: text over ``width`` columns from ``left`` in row ``row``, wrapped."""
    row: int
    left: int
    width: int
    text: str


@dataclass(frozen=True)
class Panel:
    """A grid of equal blocks. role: 'act', 'partial', 'kernel', 'bias' or 'weight'.

    Block (grid row gr, grid column gc) has its title at ``(top + gr*ph, left + gc*pw)`` and
    its cells right below. ``cin``: kernels per output channel (kernel panels).
    """
    grid: str
    role: str
    label: str
    vector: bool
    top: int
    left: int
    bh: int
    bw: int
    ph: int
    pw: int
    per_row: int
    n: int
    cin: int = 1
    channels: tuple = ()
    col_width: float = NARROW

    @property
    def bands(self) -> int:
        """Bands of ``per_row`` output channels (kernel panels), each ``cin`` grid rows tall."""
        return -(-self.n // self.per_row)

    @property
    def grid_rows(self) -> int:
        if self.role == "kernel":
            return self.bands * self.cin
        return -(-self.n // self.per_row)

    @property
    def grid_cols(self) -> int:
        return min(self.per_row, self.n)

    @property
    def height(self) -> int:
        return self.grid_rows * self.ph

    @property
    def width(self) -> int:
        return self.grid_cols * self.pw

    def slot(self, key) -> tuple[int, int]:
        """(grid row, grid column) of block ``key``."""
        if self.role == "kernel":
            o, i = key
            return (o // self.per_row) * self.cin + i, o % self.per_row
        if self.role in ("act", "partial") and not self.vector:
            return divmod(key, self.per_row)
        return 0, 0

    def keys(self):
        if self.role == "kernel":
            return [(o, i) for o in range(self.n) for i in range(self.cin)]
        if self.role in ("act", "partial") and not self.vector:
            return list(range(self.n))
        return [None]

    def row_keys(self, gr: int) -> list:
        """Keys of the blocks in grid row ``gr``, left to right."""
        if self.role == "kernel":
            band, i = divmod(gr, self.cin)
            return [(o, i) for o in range(band * self.per_row, min(self.n, (band + 1) * self.per_row))]
        if self.role in ("act", "partial") and not self.vector:
            return list(range(gr * self.per_row, min(self.n, (gr + 1) * self.per_row)))
        return [None]

    def block_rows(self):
        """Per grid row, top to bottom: ``(top, [(key, col), ...])`` — the blocks' titles sit in
        sheet row ``top``, row ``r`` of every block in sheet row ``top + 1 + r``. The writer and
        the checker both walk the sheet in this order."""
        for gr in range(self.grid_rows):
            yield self.top + gr * self.ph, [(k, self.block_origin(k)[1]) for k in self.row_keys(gr)]

    def block_origin(self, key) -> tuple[int, int]:
        """Sheet (row, col) of the first cell of block ``key`` (its title is in the row above)."""
        gr, gc = self.slot(key)
        return self.top + gr * self.ph + 1, self.left + gc * self.pw

    def title(self, key) -> str:
        name = self.grid
        if self.role == "act":
            if self.vector:
                return f"{self.label} ({self.bh})"
            return name if self.n == 1 else f"{name} ch {key}"
        if self.role == "partial":
            a, b = self.channels
            return f"{name.split(':')[0]} Σ in {a}-{b - 1} ch {key}"
        if self.role == "kernel":
            o, i = key
            if self.channels:                                   # grouped: (kernels, outputs) per group
                per_in, per_out = self.channels
                i += o // per_out * per_in
            return f"in {i}→out {o}"
        if self.role == "bias":
            return self.grid.rsplit(".", 1)[-1]              # the parameter's name: 'bias', 'running_var'

        return f"weights ({self.bh} in x {self.bw} out)"

    def to_json(self) -> list:
        return [self.grid, self.role, self.label, self.vector, self.top, self.left, self.bh, self.bw, self.ph,
                self.pw, self.per_row, self.n, self.cin, list(self.channels), self.col_width]

    @classmethod
    def from_json(cls, d) -> Panel:
        grid, role, label, vector, top, left, bh, bw, ph, pw, per_row, n, cin, ch, cw = d
        if role not in ("act", "partial", "kernel", "bias", "weight"):
            raise ValueError(f"unknown panel role {role!r}")
        p = cls(str(grid), role, str(label), bool(vector), *(int(v) for v in (top, left, bh, bw, ph, pw, per_row, n,
                                                                              cin)),
                tuple(int(v) for v in ch), float(cw))
        if min(p.bh, p.bw, p.per_row, p.n, p.cin) < 1 or p.ph < p.bh + 1 or p.pw < p.bw or p.top < 0 or p.left < 0:
            raise ValueError(f"panel {grid!r} has impossible sizes")
        return p


def partial_groups(layer, in_channels: int, max_formula: int = MAX_FORMULA) -> list[tuple[int, int]]:
    """Input-channel groups [c0, c1) of a conv whose formula would pass ``max_formula``; [] if none.

    The bound assumes the longest possible addresses, so every real formula fits.
    """
    if layer.formula_reads != "weighted":
        return []
    kh, kw = layer.kernel_size
    dilated = max(layer.dilation) > 1
    term = kh * kw * _TAP_TERM if dilated else _CONV_TERM
    if _OVERHEAD + in_channels * term <= max_formula:
        return []
    per = (max_formula - _OVERHEAD) // term
    if per < 1:
        raise SheetconvError(f"{layer.name}: one input channel's formula ({kh}x{kw} dilated kernel) would pass "
                             f"the {max_formula}-character formula limit")
    n = -(-in_channels // per)
    if _OVERHEAD + n * (_REF + 1) > max_formula:
        raise SheetconvError(f"{layer.name}: {in_channels} input channels need {n} partial sums, too many for one "
                             f"{max_formula}-character formula")
    size = -(-in_channels // n)
    return [(a, min(a + size, in_channels)) for a in range(0, in_channels, size)]


# ---------------------------------------------------------------- planning

@dataclass
class _Spec:
    """A panel before it has a place: what it shows and how big its blocks are."""
    grid: str
    role: str
    label: str
    vector: bool
    bh: int
    bw: int
    n: int
    cin: int = 1
    channels: tuple = ()
    col_width: float = NARROW

    @property
    def min_rows(self) -> int:
        """Rows of the panel at its widest."""
        return (self.bh + 2) * (self.cin if self.role == "kernel" else 1)

    def place(self, top: int, left: int, rows_left: int, cols_left: int) -> Panel | None:
        """The panel at (top, left) within ``rows_left`` rows and ``cols_left`` columns; None if it cannot fit.

        Tiles near-square; a panel too tall for the rows left gets more blocks per grid row.
        """
        titles = [self._title(k) for k in self._keys()]
        pw = max(self.bw, max(title_cols(t, self.col_width) for t in titles)) + 1
        ph = self.bh + 2
        fit = rows_left // ph                       # grid rows that fit below ``top``
        across = cols_left // pw                    # blocks that fit side by side
        if fit < 1 or across < 1:
            return None
        if self.role == "kernel":
            if fit < self.cin:
                return None
            per_row = min(self.n, max(1, math.ceil(math.sqrt(self.n * self.cin * ph / pw))))
            per_row = -(-self.n // -(-self.n // per_row))           # the same bands, evenly filled
            least = -(-self.n // (fit // self.cin))
        elif self.role in ("act", "partial") and not self.vector:
            per_row = math.ceil(self.n / math.ceil(math.sqrt(self.n)))
            least = -(-self.n // fit)
        else:
            per_row = least = 1
        per_row = max(least, min(per_row, across))
        if per_row > across:
            return None
        return Panel(self.grid, self.role, self.label, self.vector, top, left, self.bh, self.bw, ph, pw, per_row,
                     self.n, self.cin, self.channels, self.col_width)

    def _keys(self):
        probe = Panel(self.grid, self.role, self.label, self.vector, 0, 0, self.bh, self.bw, self.bh + 2, self.bw,
                      1, self.n, self.cin, self.channels, self.col_width)
        keys = probe.keys()
        return keys if len(keys) <= 2 else [keys[0], keys[-1]]     # the longest titles are the last ones

    def _title(self, key) -> str:
        return Panel(self.grid, self.role, self.label, self.vector, 0, 0, self.bh, self.bw, self.bh + 2, self.bw,
                     1, self.n, self.cin, self.channels, self.col_width).title(key)


def what(layer) -> str:
    """The layer's operation in words: '3x3 conv, stride 2, padding 1' (the kind says it)."""
    return layer.describe()


def describe(net, name: str) -> str:
    """A layer's header text: 'conv1 (ReLU): 2 x 14 x 14 (3x3 conv, stride 2, padding 1)'."""
    shape = " x ".join(map(str, net.shapes[name]))
    if name == "input":
        return f"input {shape}"
    layer = net[name]
    return f"{layer.label}: {shape} ({what(layer)})"


def _groups(net, max_formula: int):
    """[(header text, [panel specs stacked top to bottom])] in reading order."""
    out = []
    for name in net.names:
        c, h, w = net.grid(name)
        vector = name != "input" and len(net.shapes[name]) == 1
        layer = None if name == "input" else net[name]
        label = "input" if layer is None else layer.label
        if layer is not None:
            out += _param_groups(layer, label, max_formula, (c, h, w))
        if vector:
            out.append((describe(net, name), [_Spec(name, "act", label, True, c, 1, 1, col_width=WIDE)]))
        else:
            out.append((describe(net, name), [_Spec(name, "act", label, False, h, w, c)]))
    return out


def _param_groups(layer, label: str, max_formula: int, out_grid: tuple) -> list:
    """The groups showing a layer's parameters (and partial sums), chosen by their shapes
    (``param_shapes()``): a 4-D weight (out, in, kh, kw) is a kernel panel, its layer's 1-D
    parameters below it; a 2-D weight (out, in) a matrix laid out transposed; the 1-D
    parameters of a layer without kernels one column each, side by side."""
    name = layer.name
    shapes = layer.param_shapes()
    kernels = {k: s for k, s in shapes.items() if len(s) == 4}
    vectors = {k: s for k, s in shapes.items() if len(s) == 1}
    out = []
    for key, (cout, kin, kh, kw) in kernels.items():
        groups = getattr(layer, "groups", 1)
        # a grouped conv's kernel (o, j) reads input channel (o // (cout/groups)) * kin + j
        specs = [_Spec(f"{name}.{key}", "kernel", label, False, kh, kw, cout, kin,
                       channels=(kin, cout // groups) if groups > 1 else ())]
        words = f"{name} filters {cout} x {kin} x {kh} x {kw} (input ch → output ch)"
        if groups > 1:
            words += f", {groups} groups of {kin} input ch"
        for vec, (n,) in vectors.items():
            specs.append(_Spec(f"{name}.{vec}", "bias", label, False, n, 1, 1))
            words += f", {vec}"
        out.append((words, specs))
        c, h, w = out_grid
        groups = partial_groups(layer, kin, max_formula)
        if groups:
            out.append((f"{name} partial sums over input channel groups",
                        [_Spec(f"{name}:partial{g}", "partial", label, False, h, w, c, channels=(a, b))
                         for g, (a, b) in enumerate(groups)]))
    for key, (fout, fin) in ((k, s) for k, s in shapes.items() if len(s) == 2):
        out.append((f"{name} weights: row i, column o joins input i to output o",
                    [_Spec(f"{name}.{key}", "weight", label, False, fin, fout, 1, col_width=WIDE)]))
    if not kernels:
        for key, (n,) in vectors.items():
            out.append((f"{name} {key}", [_Spec(f"{name}.{key}", "bias", label, True, n, 1, 1, col_width=WIDE)]))
    return out


def _header_cols(text: str, width: float) -> int:
    """Columns a header needs to fit in HEADER_LINES wrapped lines (with slack for word breaks)."""
    longest = max((len(w) for w in text.split()), default=0)          # a word is never broken
    return max(math.ceil(len(text) * HEADER_PX * 1.3 / HEADER_LINES / col_px(width)),
               math.ceil(longest * HEADER_PX / col_px(width)))


@dataclass
class Layout:
    """Positions of all cells of a network on the sheet ``sheet`` (0-based rows and columns)."""
    panels: list[Panel]
    headers: list[Header]
    columns: list[tuple[int, int, float]]          # runs (first, last, width) of non-narrow columns
    sheet: str = SHEET
    max_formula: int = MAX_FORMULA
    _grids: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._grids = {p.grid: p for p in self.panels}
        self._order = sorted(self.panels, key=lambda p: (p.top, p.left))
        # each panel's bounds, worked out once: locate() runs once per traced cell
        self._bounds = [(p.top, p.top + p.height, p.left, p.left + p.width, p) for p in self._order]

    # ------------------------------------------------------------ construction

    @classmethod
    def for_network(cls, net, *, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS,
                    max_formula: int = MAX_FORMULA) -> Layout:
        """Lay out ``net`` in reading order, wrapping onto new bands of rows at ``max_cols``."""
        panels, headers, columns = [], [], []
        band, left, bottom = 0, _FIRST_COL, 1
        for text, specs in _groups(net, max_formula):
            placed = cls._place_group(specs, band, left, max_rows, max_cols, text)
            if (placed is None or left + placed[1] > max_cols) and left != _FIRST_COL:
                band, left = bottom + 1, _FIRST_COL           # start a new band of rows
                placed = cls._place_group(specs, band, left, max_rows, max_cols, text)
            if placed is None or left + placed[1] > max_cols:
                big = max(specs, key=lambda s: s.bh * s.bw)
                raise SheetconvError(f"{big.grid}: its blocks ({big.bh} rows x {big.bw} columns each, {big.n} of "
                                     f"them) do not fit the sheet's {max_rows} rows x {max_cols} columns")
            group, width = placed
            panels += group
            headers.append(Header(band, left, width - 1, text))
            if specs[0].col_width != NARROW:
                columns.append((left, left + width - 1, specs[0].col_width))
            bottom = max(bottom, max(p.top + p.height for p in group))
            left += width
        return cls(panels, headers, columns, SHEET, max_formula)

    @staticmethod
    def _place_group(specs, band: int, left: int, max_rows: int, max_cols: int, text: str):
        """([panels], width in columns) of one group placed at band ``band``, column ``left``; None if too tall."""
        top = band + 1
        group = []
        for k, spec in enumerate(specs):
            reserve = sum(later.min_rows for later in specs[k + 1:])    # the panels below need room too
            p = spec.place(top, left, max_rows - top - reserve, max_cols - left)
            if p is None:
                return None
            group.append(p)
            top += p.height
        width = max(max(p.width for p in group), _header_cols(text, specs[0].col_width) + 1)
        return group, width

    def to_json(self) -> dict:
        return {"version": LAYOUT_VERSION, "sheet": self.sheet, "max_formula": self.max_formula,
                "panels": [p.to_json() for p in self.panels],
                "headers": [[h.row, h.left, h.width, h.text] for h in self.headers],
                "columns": [list(c) for c in self.columns]}

    @classmethod
    def from_json(cls, d: dict, net=None) -> Layout:
        """Rebuild from ``to_json()``; with ``net``, check that the panels fit its shapes."""
        try:
            version = d.get("version", 0)
            if version == 1:
                raise SheetconvError("the workbook was written by an older sheetconv (layout version 1); "
                                     "rebuild it with `sheetconv build`")
            if int(version) != LAYOUT_VERSION:
                raise SheetconvError(f"layout version {version!r} is not supported (expected {LAYOUT_VERSION})")
            layout = cls([Panel.from_json(p) for p in d["panels"]],
                         [Header(int(r), int(c), int(w), str(t)) for r, c, w, t in d["headers"]],
                         [(int(a), int(b), float(w)) for a, b, w in d["columns"]],
                         d.get("sheet", SHEET), int(d.get("max_formula", MAX_FORMULA)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, SheetconvError):
                raise
            raise SheetconvError(f"malformed layout in workbook metadata ({e.__class__.__name__}: {e})") from None
        if net is not None:
            acts = [p.grid for p in layout.panels if p.role == "act"]
            if acts != net.names:
                raise SheetconvError(f"layout shows layers {acts}, the network has {net.names}")
            for name in net.names:
                p = layout._grids[name]
                c, h, w = net.grid(name)
                vector = name != "input" and len(net.shapes[name]) == 1
                if p.vector != vector or (p.n, p.bh, p.bw) != ((1, c, 1) if vector else (c, h, w)):
                    raise SheetconvError(f"layout of {name} does not match the network's shape {net.shapes[name]}")
        return layout

    # ------------------------------------------------------------ queries

    @property
    def stripes(self) -> list[Panel]:
        """The panels (the name earlier versions used)."""
        return self.panels

    def panel(self, grid: str) -> Panel:
        p = self._grids.get(grid)
        if p is None:
            raise SheetconvError(f"no block {grid!r} on the sheet (layers: "
                                 f"{', '.join(p.grid for p in self.panels if p.role == 'act')})")
        return p

    stripe = panel

    def partial(self, grid: str):
        """For a partial-sum grid 'conv3:partial1': (layer, group, (c0, c1)); otherwise None."""
        m = _PARTIAL_RE.match(grid)
        if not m or grid not in self._grids:
            return None
        return m.group(1), int(m.group(2)), self._grids[grid].channels

    def partials(self, name: str) -> list[tuple[int, int]]:
        """Input-channel groups of layer ``name``'s partial sums ([] when it has none)."""
        out, g = [], 0
        while f"{name}:partial{g}" in self._grids:
            out.append(self._grids[f"{name}:partial{g}"].channels)
            g += 1
        return out

    def cell_of(self, cell) -> tuple[int, int]:
        """Sheet (row, col) of an activation, partial-sum or parameter cell."""
        if not (isinstance(cell, (tuple, list)) and cell and isinstance(cell[0], str)):
            raise SheetconvError(f"a cell is (layer, channel, row, col) or (param, index...), got {cell!r}")
        p = self._grids.get(cell[0])
        if p is None:
            raise SheetconvError(f"no block {cell[0]!r} on the sheet")
        idx = tuple(int(v) for v in cell[1:])
        role = p.role

        def bad(expected):
            return SheetconvError(f"{cell[0]}{list(idx)} lies outside its block (expected {expected})")

        if role in ("act", "partial"):
            if len(idx) != 3:
                raise bad("(channel, row, col)")
            o, r, c = idx
            if p.vector:
                if not (0 <= o < p.bh and r == 0 and c == 0):
                    raise bad(f"feature 0..{p.bh - 1}, row 0, col 0")
                key, r, c = None, o, 0
            else:
                if not (0 <= o < p.n and 0 <= r < p.bh and 0 <= c < p.bw):
                    raise bad(f"channel < {p.n}, row < {p.bh}, col < {p.bw}")
                key = o
        elif role == "kernel":
            if len(idx) != 4:
                raise bad("(out, in, kh, kw)")
            o, i, r, c = idx
            if not (0 <= o < p.n and 0 <= i < p.cin and 0 <= r < p.bh and 0 <= c < p.bw):
                raise bad(f"shape ({p.n}, {p.cin}, {p.bh}, {p.bw})")
            key = (o, i)
        elif role == "bias":
            if len(idx) != 1:
                raise bad("(out,)")
            (r,) = idx
            if not 0 <= r < p.bh:
                raise bad(f"0..{p.bh - 1}")
            key, c = None, 0
        else:                      # a Linear's matrix, stored transposed: input i down, output o across
            if len(idx) != 2:
                raise bad("(out, in)")
            c, r = idx
            if not (0 <= c < p.bw and 0 <= r < p.bh):
                raise bad(f"shape ({p.bw}, {p.bh})")
            key = None
        y, x = p.block_origin(key)
        return y + r, x + c

    def locate(self, row: int, col: int):
        """The cell at sheet (row, col): an activation, partial-sum or parameter cell tuple, or None."""
        for top, bottom, left, right, p in self._bounds:
            if not (top <= row < bottom and left <= col < right):
                continue
            gr, y = divmod(row - p.top, p.ph)
            gc, x = divmod(col - p.left, p.pw)
            y -= 1
            if not (0 <= y < p.bh and 0 <= x < p.bw):
                return None
            if p.role == "kernel":
                band, i = divmod(gr, p.cin)
                o = band * p.per_row + gc
                return (p.grid, o, i, y, x) if o < p.n else None
            if p.role in ("act", "partial"):
                if p.vector:
                    return (p.grid, y, 0, 0)
                o = gr * p.per_row + gc
                return (p.grid, o, y, x) if o < p.n else None
            if p.role == "bias":
                return (p.grid, y)
            return (p.grid, x, y)          # Linear weight (out, in)
        return None

    @property
    def blocks(self) -> list[Block]:
        """Every block with its title, panel by panel."""
        return list(self.iter_blocks())

    def iter_blocks(self):
        for p in self.panels:
            for key in p.keys():
                y, x = p.block_origin(key)
                yield Block(p.grid, key, y, x, p.bh, p.bw, p.title(key))

    def column_width(self, col: int) -> float:
        for a, b, w in self.columns:
            if a <= col <= b:
                return w
        return NARROW

    @property
    def header_rows(self) -> list[int]:
        return sorted({h.row for h in self.headers})

    @property
    def extent(self) -> tuple[int, int]:
        """(rows, cols) the layout spans: one past the last used row and column."""
        rows = max(p.top + p.height for p in self.panels)
        cols = max(max(p.left + p.width for p in self.panels), max(h.left + h.width for h in self.headers))
        return rows, cols


def block_title(panel: Panel, key) -> str:
    """The label written above a block."""
    return panel.title(key)
