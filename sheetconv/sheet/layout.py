"""Where every cell of a network sits on the main worksheet ``conv``.

The sheet reads like fastai's conv-example.xlsx. Row 0 is a frozen header naming each
layer. Layers are vertical *stripes*, left to right by depth: the input first, one cell
per pixel, then each layer. A stripe is a column of *slots*, one per output channel,
stacked top to bottom; a slot holds the channel's activation block and, beside it, the
blocks it is computed from: partial sums (if any), the kernel blocks (one per input
channel, stacked) and the bias cell. Every block has a title in the row above it.

A 1-D layer (Flatten, Linear, a ReLU after them) is a single slot holding one column:
feature f is the cell ``(layer, f, 0, 0)``. A Linear layer's weights are laid out
transposed, ``in`` rows by ``out`` columns, so that output o is
``SUMPRODUCT(<input column>, <weight column o>)``; its biases form a column beside the
outputs.

Excel's limits hold: a stripe too tall for 1,048,576 rows continues in further column
groups to its right, and stripes that would pass column 16,384 start a new *band* of
rows below the previous one.

Partial sums. A conv cell that reads many input channels would need a formula longer
than Excel's 8,192 characters. Such a layer splits its input channels into groups; for
group g a *partial-sum block* per output channel holds the sum of the group's
SUMPRODUCTs, and the output cell adds the partial sums and the bias. A partial-sum cell
is ``("<layer>:partial<g>", channel, row, col)``; ``Layout.partial(grid)`` tells which
layer and which input channels ``[c0, c1)`` it sums. Replacing each partial-sum
reference of an output formula by the partial cell's own references gives exactly the
engine's precedents of the output cell.

Everything is arithmetic on a few stripe records: ``cell_of`` and ``locate`` cost
O(number of stripes), whatever the network's size.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import SheetconvError
from .a1 import MAX_COLS, MAX_ROWS

__all__ = ["Layout", "Block", "Stripe", "Part", "SHEET", "MAX_FORMULA", "LAYOUT_VERSION"]

SHEET = "conv"
MAX_FORMULA = 8192
LAYOUT_VERSION = 1

_HEADER_ROWS = 1          # row 0: the frozen header
_FIRST_COL = 1            # column A stays a narrow margin
_PARTIAL_RE = re.compile(r"^(.+):partial(\d+)$")

# Longest possible text of one reference term, used to decide partial sums before the
# layout (and so the real addresses) is known: a cell is at most 'XFD1048576'.
_REF, _AREF = 10, 12
_CONV_TERM = len("SUMPRODUCT(:,$$:$$)+") + 2 * _REF + 2 * _AREF - 4
_TAP_TERM = _REF + 1 + _AREF + 1
_OVERHEAD = len("MAX(0,)+") + _AREF + 8


@dataclass(frozen=True)
class Block:
    """One rectangle of cells: a channel of a layer, a kernel, a bias, a weight matrix.

    ``grid``: the layer ('conv1'), parameter ('conv1.weight', 'conv1.bias') or partial-sum
    grid ('conv3:partial0') it shows; ``key``: the channel (activations, partial sums and
    conv biases), ``(out, in)`` for a conv kernel, None for a whole vector or matrix.
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
class Part:
    """A block's place inside a slot: offset from the slot's top-left (row 0 is the title row).

    role: 'act' (the layer's cells), 'partial', 'kernel' (``count`` blocks stacked
    ``step`` rows apart, one per input channel), 'bias', 'weight' (a Linear's matrix).
    """
    role: str
    grid: str
    row: int
    col: int
    height: int
    width: int
    count: int = 1
    step: int = 0
    channels: tuple = ()

    def to_json(self) -> list:
        return [self.role, self.grid, self.row, self.col, self.height, self.width, self.count, self.step,
                list(self.channels)]

    @classmethod
    def from_json(cls, d) -> "Part":
        role, grid, row, col, h, w, count, step, ch = d
        return cls(role, grid, int(row), int(col), int(h), int(w), int(count), int(step), tuple(ch))


@dataclass(frozen=True)
class Stripe:
    """One layer's column of slots. Slot o sits in column group o // per_col, row o % per_col."""
    name: str
    vector: bool
    top: int
    left: int
    slot_h: int            # slot pitch in rows (title row + content + one blank row)
    slot_w: int            # slot pitch in columns (content + one blank column)
    per_col: int
    n: int                 # slots: output channels (1 for a vector layer)
    parts: tuple[Part, ...]
    label: str = ""

    @property
    def groups(self) -> int:
        return -(-self.n // self.per_col)

    @property
    def height(self) -> int:
        return min(self.n, self.per_col) * self.slot_h

    @property
    def width(self) -> int:
        return self.groups * self.slot_w

    def origin(self, slot: int) -> tuple[int, int]:
        """Sheet (row, col) of slot ``slot``'s top-left corner (its title row)."""
        g, s = divmod(slot, self.per_col)
        return self.top + s * self.slot_h, self.left + g * self.slot_w

    def to_json(self) -> dict:
        return {"name": self.name, "label": self.label, "vector": self.vector, "top": self.top,
                "left": self.left, "slot_h": self.slot_h, "slot_w": self.slot_w, "per_col": self.per_col,
                "n": self.n, "parts": [p.to_json() for p in self.parts]}

    @classmethod
    def from_json(cls, d: dict) -> "Stripe":
        return cls(d["name"], bool(d["vector"]), int(d["top"]), int(d["left"]), int(d["slot_h"]),
                   int(d["slot_w"]), int(d["per_col"]), int(d["n"]),
                   tuple(Part.from_json(p) for p in d["parts"]), d.get("label", ""))


def partial_groups(layer, in_channels: int, max_formula: int = MAX_FORMULA) -> list[tuple[int, int]]:
    """Input-channel groups [c0, c1) of a conv whose formula would pass ``max_formula``; [] if none.

    The bound assumes the longest possible addresses, so every real formula fits.
    """
    if layer.kind != "conv":
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


def _slot_parts(net, name: str, max_formula: int) -> tuple[bool, int, list[Part]]:
    """(vector?, number of slots, parts) of the stripe showing ``name``."""
    shape = net.shapes[name]
    if name == "input" or len(shape) == 3:
        c, h, w = net.grid(name)
        parts = [Part("act", name, 1, 0, h, w)]
        if name != "input":
            layer = net[name]
            if layer.kind == "conv":
                cin = layer.in_channels
                x = w + 1
                for g, (a, b) in enumerate(partial_groups(layer, cin, max_formula)):
                    parts.append(Part("partial", f"{name}:partial{g}", 1, x, h, w, channels=(a, b)))
                    x += w + 1
                kh, kw = layer.kernel_size
                parts.append(Part("kernel", f"{name}.weight", 1, x, kh, kw, count=cin, step=kh + 1))
                if layer.bias is not None:
                    parts.append(Part("bias", f"{name}.bias", 1, x + kw + 1, 1, 1))
        return False, c, parts
    (f,) = shape
    parts = [Part("act", name, 1, 0, f, 1)]
    layer = net[name]
    if layer.kind == "linear":
        x = 2
        if layer.bias is not None:
            parts.append(Part("bias", f"{name}.bias", 1, x, f, 1))
            x += 2
        parts.append(Part("weight", f"{name}.weight", 1, x, layer.in_features, layer.out_features))
    return True, 1, parts


@dataclass
class Layout:
    """Positions of all cells of a network on the sheet ``sheet`` (0-based rows and columns)."""
    stripes: list[Stripe]
    sheet: str = SHEET
    max_formula: int = MAX_FORMULA
    _grids: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._grids = {}
        for stripe in self.stripes:
            for part in stripe.parts:
                self._grids[part.grid] = (stripe, part)
        self._order = sorted(self.stripes, key=lambda s: (s.top, s.left))

    # ------------------------------------------------------------ construction

    @classmethod
    def for_network(cls, net, *, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS,
                    max_formula: int = MAX_FORMULA) -> "Layout":
        """Lay out ``net``: stripes left to right, wrapping onto new row bands at ``max_cols``."""
        stripes = []
        top, left, bottom = _HEADER_ROWS, _FIRST_COL, _HEADER_ROWS
        for name in net.names:
            vector, n, parts = _slot_parts(net, name, max_formula)
            rows = max(p.row + (p.count - 1) * p.step + p.height for p in parts)
            cols = max(p.col + p.width for p in parts)
            slot_h, slot_w = rows + 1, cols + 1
            label = "input" if name == "input" else net[name].label

            def place(top, left):
                per_col = min(n, (max_rows - top) // slot_h)
                if per_col < 1:
                    return None
                s = Stripe(name, vector, top, left, slot_h, slot_w, per_col, n, tuple(parts), label)
                return s if left + s.width <= max_cols else None

            stripe = place(top, left)
            if stripe is None and left != _FIRST_COL:          # start a new band of rows
                top, left = bottom + 1, _FIRST_COL
                stripe = place(top, left)
            if stripe is None:
                raise SheetconvError(f"{name}: its blocks ({slot_h} rows x {slot_w} columns per channel) do not fit "
                                     f"the sheet's {max_rows} rows x {max_cols} columns")
            stripes.append(stripe)
            left += stripe.width + 1
            bottom = max(bottom, stripe.top + stripe.height)
        return cls(stripes, SHEET, max_formula)

    def to_json(self) -> dict:
        return {"version": LAYOUT_VERSION, "sheet": self.sheet, "max_formula": self.max_formula,
                "stripes": [s.to_json() for s in self.stripes]}

    @classmethod
    def from_json(cls, d: dict, net=None) -> "Layout":
        """Rebuild from ``to_json()``; with ``net``, check that the stripes fit its shapes."""
        try:
            if int(d.get("version", 0)) != LAYOUT_VERSION:
                raise SheetconvError(f"layout version {d.get('version')!r} is not supported (expected {LAYOUT_VERSION})")
            layout = cls([Stripe.from_json(s) for s in d["stripes"]], d.get("sheet", SHEET),
                         int(d.get("max_formula", MAX_FORMULA)))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, SheetconvError):
                raise
            raise SheetconvError(f"malformed layout in workbook metadata ({e.__class__.__name__}: {e})") from None
        if net is not None:
            names = [s.name for s in layout.stripes]
            if names != net.names:
                raise SheetconvError(f"layout shows layers {names}, the network has {net.names}")
            for stripe in layout.stripes:
                vector, n, _ = _slot_parts(net, stripe.name, layout.max_formula)
                act = stripe.parts[0]
                c, h, w = net.grid(stripe.name)
                if stripe.vector != vector or stripe.n != n or (act.height, act.width) != ((c, 1) if vector else (h, w)):
                    raise SheetconvError(f"layout of {stripe.name} does not match the network's shape {net.shapes[stripe.name]}")
        return layout

    # ------------------------------------------------------------ queries

    def stripe(self, name: str) -> Stripe:
        for s in self.stripes:
            if s.name == name:
                return s
        raise SheetconvError(f"no layer {name!r} on the sheet (layers: {', '.join(s.name for s in self.stripes)})")

    def partial(self, grid: str):
        """For a partial-sum grid 'conv3:partial1': (layer, group, (c0, c1)); otherwise None."""
        m = _PARTIAL_RE.match(grid)
        if not m or grid not in self._grids:
            return None
        return m.group(1), int(m.group(2)), self._grids[grid][1].channels

    def partials(self, name: str) -> list[tuple[int, int]]:
        """Input-channel groups of layer ``name``'s partial sums ([] when it has none)."""
        return [p.channels for p in self.stripe(name).parts if p.role == "partial"]

    def cell_of(self, cell) -> tuple[int, int]:
        """Sheet (row, col) of an activation, partial-sum or parameter cell."""
        if not (isinstance(cell, (tuple, list)) and cell and isinstance(cell[0], str)):
            raise SheetconvError(f"a cell is (layer, channel, row, col) or (param, index...), got {cell!r}")
        hit = self._grids.get(cell[0])
        if hit is None:
            raise SheetconvError(f"no block {cell[0]!r} on the sheet")
        stripe, part = hit
        idx = tuple(int(v) for v in cell[1:])
        role = part.role

        def bad(expected):
            return SheetconvError(f"{cell[0]}{list(idx)} lies outside its block (expected {expected})")

        if role in ("act", "partial"):
            if len(idx) != 3:
                raise bad("(channel, row, col)")
            o, r, c = idx
            if stripe.vector:
                if not (0 <= o < part.height and r == 0 and c == 0):
                    raise bad(f"feature 0..{part.height - 1}, row 0, col 0")
                y0, x0 = stripe.origin(0)
                return y0 + part.row + o, x0 + part.col
            if not (0 <= o < stripe.n and 0 <= r < part.height and 0 <= c < part.width):
                raise bad(f"channel < {stripe.n}, row < {part.height}, col < {part.width}")
            y0, x0 = stripe.origin(o)
            return y0 + part.row + r, x0 + part.col + c
        if role == "kernel":
            if len(idx) != 4:
                raise bad("(out, in, kh, kw)")
            o, i, r, c = idx
            if not (0 <= o < stripe.n and 0 <= i < part.count and 0 <= r < part.height and 0 <= c < part.width):
                raise bad(f"shape ({stripe.n}, {part.count}, {part.height}, {part.width})")
            y0, x0 = stripe.origin(o)
            return y0 + part.row + i * part.step + r, x0 + part.col + c
        if role == "bias":
            if len(idx) != 1:
                raise bad("(out,)")
            (o,) = idx
            if stripe.vector:
                if not 0 <= o < part.height:
                    raise bad(f"0..{part.height - 1}")
                y0, x0 = stripe.origin(0)
                return y0 + part.row + o, x0 + part.col
            if not 0 <= o < stripe.n:
                raise bad(f"0..{stripe.n - 1}")
            y0, x0 = stripe.origin(o)
            return y0 + part.row, x0 + part.col
        # a Linear's matrix, stored transposed: input i down, output o across
        if len(idx) != 2:
            raise bad("(out, in)")
        o, i = idx
        if not (0 <= o < part.width and 0 <= i < part.height):
            raise bad(f"shape ({part.width}, {part.height})")
        y0, x0 = stripe.origin(0)
        return y0 + part.row + i, x0 + part.col + o

    def locate(self, row: int, col: int):
        """The cell at sheet (row, col): an activation, partial-sum or parameter cell tuple, or None."""
        for s in self._order:
            if not (s.top <= row < s.top + s.height and s.left <= col < s.left + s.width):
                continue
            g, x = divmod(col - s.left, s.slot_w)
            k, y = divmod(row - s.top, s.slot_h)
            o = g * s.per_col + k
            if o >= s.n:
                return None
            for p in s.parts:
                dx = x - p.col
                if not 0 <= dx < p.width:
                    continue
                dy = y - p.row
                if p.role == "kernel":
                    i, dy = divmod(dy, p.step) if dy >= 0 else (-1, -1)
                    if 0 <= i < p.count and dy < p.height:
                        return (p.grid, o, i, dy, dx)
                    continue
                if not 0 <= dy < p.height:
                    continue
                if p.role in ("act", "partial"):
                    return (p.grid, dy, 0, 0) if s.vector else (p.grid, o, dy, dx)
                if p.role == "bias":
                    return (p.grid, dy) if s.vector else (p.grid, o)
                return (p.grid, dx, dy)          # Linear weight (out, in)
            return None
        return None

    @property
    def blocks(self) -> list[Block]:
        """Every block with its title, stripe by stripe, slot by slot."""
        return list(self.iter_blocks())

    def iter_blocks(self):
        for s in self.stripes:
            for o in range(s.n):
                y0, x0 = s.origin(o)
                for p in s.parts:
                    for i in range(p.count):
                        key = (o, i) if p.role == "kernel" else (None if s.vector else o)
                        yield Block(p.grid, key, y0 + p.row + i * p.step, x0 + p.col, p.height, p.width,
                                    block_title(s, p, o, i))

    @property
    def extent(self) -> tuple[int, int]:
        """(rows, cols) the layout spans: one past the last used row and column."""
        rows = max(s.top + s.height for s in self.stripes)
        cols = max(s.left + s.width for s in self.stripes)
        return rows, cols


def block_title(stripe: Stripe, part: Part, slot: int, index: int = 0) -> str:
    """The label written above a block."""
    label = stripe.label or stripe.name
    if part.role == "act":
        if stripe.vector:
            return f"{label} ({part.height})"
        return f"{label} {part.height} x {part.width}, channel {slot}"
    if part.role == "partial":
        a, b = part.channels
        return f"{label} partial sum of inputs {a}-{b - 1}, channel {slot}"
    if part.role == "kernel":
        return f"filter {slot}/{index}"
    if part.role == "bias":
        return "bias"
    return f"{stripe.name} weights ({part.height} in x {part.width} out)"
