"""Dependencies between cells, by interval arithmetic on windows.

For a spatial layer, output index ``o`` reads input ``Window.index(o, tap)`` for each
kernel tap (window.py). Rows and columns are independent, so a box of output
cells reads a box of input cells: each axis maps runs to runs. Channels follow the layer's
rule ("all", "same", or "flatten": renumber (c, h, w) as c*H*W + h*W + w). Parameter
cells are each kind's own rule (``Layer.param_regions``, ``Layer.param_feed``). Nothing here walks
cells one by one: a query costs a few operations per layer and per run, whatever the
image size.

Layers with several inputs (Add, Concat) read each input through the same rules: an Add's
cell reads the cell at its own position in every input (channel rule "same", one-tap
windows); a Concat's channels [a, b) come from one input (channel rule "concat", ``span``
= (a, b)), so its regions are the out region's channels in the span, shifted by -a.

Also here: the closed-form receptive field (Araujo, Norris & Sim, Distill 2019).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .layers import Layer
from .layers.base import grid
from .regions import Box, Region, Runs, clip_runs, merge_runs
from .window import Window

__all__ = ["back_runs", "forward_runs", "tap_runs", "read_region", "param_regions", "feed_region",
           "param_feed_region", "ReceptiveField", "receptive_fields"]


# ---------------------------------------------------------------- one axis

def back_runs(runs: Runs, win: Window, n_in: int) -> Runs:
    """Input indices in [0, n_in) read by the output indices ``runs``."""
    if not isinstance(win, Window):                    # a rule of its own (AdaptiveWindow)
        return clip_runs(win.back(runs), n_in)
    k, s, d = win.kernel, win.stride, win.dilation
    pieces = []
    for a, b in runs:
        if s == 1:                                     # each tap shifts the run
            pieces += [(win.index(a, t), win.index(b, t)) for t in range(k)]
        elif b - a == 1 or (d == 1 and k >= s):        # one window, or windows that tile
            if d == 1:
                pieces.append((win.index(a, 0), win.index(b - 1, k - 1) + 1))
            else:
                pieces += [(win.index(a, t), win.index(a, t) + 1) for t in range(k)]
        else:                                          # strided windows with holes between them
            idx = win.index(np.arange(a, b)[:, None], np.arange(k)[None, :]).ravel()
            idx = np.unique(idx[(idx >= 0) & (idx < n_in)])
            pieces += [(i, i + 1) for i in idx.tolist()]
    return clip_runs(merge_runs(pieces), n_in)


def forward_runs(runs: Runs, win: Window, n_out: int) -> Runs:
    """Output indices in [0, n_out) that read any input index in ``runs``."""
    if not isinstance(win, Window):
        return clip_runs(win.forward(runs), n_out)
    pieces = []
    for a, b in runs:
        for t in range(win.kernel):
            pieces.append(win.outputs_reading(t, a, b))
    return clip_runs(pieces, n_out)


def tap_runs(runs: Runs, win: Window, n_in: int) -> Runs:
    """Kernel taps used by the output indices ``runs`` (taps that land in padding are not)."""
    return win.used_taps(runs, n_in)


# ---------------------------------------------------------------- one layer

def _grid(shape: tuple) -> tuple[int, int, int]:
    """A layer's activation shape as a (C, H, W) grid: (F,) -> (F, 1, 1)."""
    return grid(shape)


def _shift(runs: Runs, delta: int, n: int) -> Runs:
    return clip_runs([(a + delta, b + delta) for a, b in runs], n)


def read_region(layer: Layer, out: Region, in_name: str, in_shape: tuple, span: tuple[int, int] | None = None
                ) -> Region:
    """The cells of the layer's input ``in_name`` that the cells ``out`` of its output read
    (``span``: for a Concat, the output channels [a, b) that input fills)."""
    cin, hin, win_ = grid_in = _grid(in_shape)
    if layer.channels == "concat":
        a, b = span
        boxes = [(_shift(chans, -a, b - a), rows, cols) for chans, rows, cols in out.boxes]
        return Region.of(in_name, grid_in, [bx for bx in boxes if all(bx)])
    if layer.channels == "flatten":
        return Region.of(in_name, grid_in, _unflatten(out.axis_runs(0), grid_in))
    wh, ww = layer.windows_for(grid_in)
    boxes = []
    for chans, rows, cols in out.boxes:
        boxes.append((layer.channel_back(chans, cin),
                      back_runs(rows, wh, hin), back_runs(cols, ww, win_)))
    return Region.of(in_name, grid_in, boxes)


def feed_region(layer: Layer, inp: Region, out_name: str, out_shape: tuple, span: tuple[int, int] | None = None
                ) -> Region:
    """The cells of the layer's output that read any of the input cells ``inp`` (``span``:
    for a Concat, the output channels [a, b) that this input fills)."""
    cout, hout, wout = grid_out = _grid(out_shape)
    if layer.channels == "concat":
        a, _ = span
        boxes = [(_shift(chans, a, cout), rows, cols) for chans, rows, cols in inp.boxes]
        return Region.of(out_name, grid_out, [bx for bx in boxes if all(bx)])
    if layer.channels == "flatten":
        return Region.of(out_name, grid_out, [(_flatten(inp), ((0, 1),), ((0, 1),))])
    wh, ww = layer.windows_for(inp.shape)
    boxes = []
    for chans, rows, cols in inp.boxes:
        boxes.append((layer.channel_forward(chans, cout),
                      forward_runs(rows, wh, hout), forward_runs(cols, ww, wout)))
    return Region.of(out_name, grid_out, [b for b in boxes if all(b)])


def param_regions(layer: Layer, out: Region, in_shape: tuple) -> list[Region]:
    """The weight and bias cells the output cells ``out`` use (the layer kind's rule)."""
    return layer.param_regions(out, in_shape)


def param_feed_region(layer: Layer, param: Region, in_shape: tuple, out_name: str, out_shape: tuple) -> Region:
    """The output cells that use any of the weight or bias cells ``param`` (the layer kind's rule)."""
    return layer.param_feed(param, in_shape, out_name, out_shape)


def _flatten(inp: Region) -> Runs:
    c, h, w = inp.shape
    pieces = []
    for chans, rows, cols in inp.boxes:
        if rows == ((0, h),) and cols == ((0, w),):
            pieces += [(a * h * w, b * h * w) for a, b in chans]
            continue
        for ca, cb in chans:
            for ch in range(ca, cb):
                for ra, rb in rows:
                    for r in range(ra, rb):
                        base = ch * h * w + r * w
                        pieces += [(base + a, base + b) for a, b in cols]
    return merge_runs(pieces)


def _unflatten(runs: Runs, grid: tuple[int, int, int]) -> list[Box]:
    """Flat index runs -> (c, h, w) boxes: partial rows, whole rows, whole channels."""
    _, h, w = grid
    boxes = []
    for a, b in runs:
        i = a
        while i < b:
            ch, rem = divmod(i, h * w)
            r, col = divmod(rem, w)
            if col == 0 and r == 0 and b - i >= h * w:             # whole channels
                n = (b - i) // (h * w)
                boxes.append((((ch, ch + n),), ((0, h),), ((0, w),)))
                i += n * h * w
            elif col == 0 and b - i >= w:                          # whole rows of one channel
                n = min((b - i) // w, h - r)
                boxes.append((((ch, ch + 1),), ((r, r + n),), ((0, w),)))
                i += n * w
            else:                                                  # part of one row
                end = min(b - i, w - col)
                boxes.append((((ch, ch + 1),), ((r, r + 1),), ((col, col + end),)))
                i += end
    return boxes


# ---------------------------------------------------------------- receptive field

@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a layer's cells on the input, per axis (h, w).

    ``size``: r_l = r_(l-1) + (k_l - 1) d_l j_(l-1); ``jump``: j_l = j_(l-1) s_l;
    ``start``: input index of the first (top-left) cell's field, u_l = u_(l-1) - p_l j_(l-1)
    (negative where it starts in padding). Flatten only renumbers cells: its feature f has
    the field of the cell it copies, so its field is the previous layer's, with
    ``flat_grid`` = that layer's (C, H, W) to find the cell (pass ``channel=f``). From a
    Linear layer on every cell reads every feature: ``is_global`` is True and size is the
    input size.

    ``chain`` (set by the Network) holds each layer's windows and input size from the input
    up; with it ``region`` clips at every layer's grid and skips dilation holes, so it is
    exactly the bounding box of the cell's input precedents.

    Several paths (a graph with Add or Concat): each path from the input has its own
    (size, jump, start), listed in ``paths`` (distinct ones, sorted; empty for a single
    path). The field is their union: ``start`` the smallest, ``size`` up to the farthest
    end, for the first cell. ``aligned`` is False when the paths disagree on the jump or on
    the centre of the field (Araujo et al. call such a network's field misaligned); with
    different jumps the union's size then depends on the cell, and ``unclipped`` gives it
    cell by cell (for a Concat, the union over all its channels). ``walk`` (set by the
    Network for such a layer) finds a cell's input precedents along every path, so that
    ``region`` is exact there too, channel by channel.
    """
    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]
    is_global: bool = False
    chain: tuple = field(default=(), compare=False, repr=False)
    flat_grid: tuple | None = None
    paths: tuple = field(default=(), compare=False)
    walk: object = field(default=None, compare=False, repr=False)   # (channel, row, col) -> region
    input_hw: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def aligned(self) -> bool:
        """Every path has the same jump and the same field centre (True for a single path)."""
        if len(self.paths) < 2:
            return True
        jumps = {p[1] for p in self.paths}
        centres = {tuple(2 * st + r - 1 for st, r in zip(p[2], p[0])) for p in self.paths}
        return len(jumps) == 1 and len(centres) == 1

    def _spatial(self, row: int, col: int, channel: int) -> tuple[int, int]:
        """The (row, col) whose field a cell has: for a flattened feature, that of its source cell."""
        if self.flat_grid is None:
            return row, col
        _, h, w = self.flat_grid
        return divmod(channel % (h * w), w)

    def region(self, row: int, col: int, input_hw: tuple[int, int] | None = None, channel: int = 0
               ) -> tuple[tuple[int, int], tuple[int, int]]:
        """Inclusive (lo, hi) rows and columns of cell (channel, row, col)'s field, clipped to the input.

        An axis along which the cell reads only padding comes back empty, as (0, -1).
        """
        if self.walk is not None and (input_hw is None or tuple(input_hw) == tuple(self.input_hw)):
            if self.flat_grid is not None:
                _, h, w = self.flat_grid
                channel, (row, col) = channel // (h * w), divmod(channel % (h * w), w)
            return self.walk(channel, row, col)
        row, col = self._spatial(row, col, channel)
        if input_hw is None:
            if not self.chain and not self.is_global:
                raise ValueError("region() needs input_hw for a receptive field without a chain")
            input_hw = self.chain[0][2] if self.chain else (self.size if self.is_global else None)
        if self.is_global:
            return (0, input_hw[0] - 1), (0, input_hw[1] - 1)
        if self.chain and tuple(self.chain[0][2]) == tuple(input_hw):
            out = []
            for axis, o in enumerate((row, col)):
                runs = ((o, o + 1),)
                for windows, _, n_in in reversed(self.chain):
                    runs = back_runs(runs, windows[axis], n_in[axis])
                out.append((runs[0][0], runs[-1][1] - 1) if runs else (0, -1))
            return out[0], out[1]
        out = []
        (u0, u1), (v0, v1) = self._box(row, col)
        for lo, hi, n in ((u0, u1, input_hw[0]), (v0, v1, input_hw[1])):
            out.append((max(lo, 0), min(hi, n - 1)))
        return out[0], out[1]

    def unclipped(self, row: int, col: int, channel: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
        return self._box(*self._spatial(row, col, channel))

    def _box(self, row: int, col: int):
        """The union of the paths' unclipped fields of the cell at (row, col) of a spatial grid."""
        if self.is_global:
            return (0, self.size[0] - 1), (0, self.size[1] - 1)
        paths = self.paths or ((self.size, self.jump, self.start),)
        return tuple((min(p[2][ax] + o * p[1][ax] for p in paths),
                      max(p[2][ax] + o * p[1][ax] + p[0][ax] - 1 for p in paths))
                     for ax, o in enumerate((row, col)))


def _step(path: tuple, wins) -> tuple:
    """One layer along one path: (size, jump, start) per axis after windows ``wins``."""
    size, jump, start = (list(v) for v in path)
    for ax, win in enumerate(wins):            # output 0's first and last tap, and the step to output 1
        first, last = win.index(0, 0), win.index(0, win.kernel - 1)
        size[ax] += (last - first) * jump[ax]
        start[ax] += first * jump[ax]
        jump[ax] *= win.index(1, 0) - first
    return tuple(size), tuple(jump), tuple(start)


def _union(paths: set) -> tuple:
    """(size, jump, start) of the union of the paths' fields for the first cell."""
    if len(paths) == 1:
        return next(iter(paths))
    start = tuple(min(p[2][ax] for p in paths) for ax in (0, 1))
    end = tuple(max(p[2][ax] + p[0][ax] - 1 for p in paths) for ax in (0, 1))
    jump = tuple(max(p[1][ax] for p in paths) for ax in (0, 1))
    return tuple(e - s + 1 for s, e in zip(start, end)), jump, start


def receptive_fields(layers: list[Layer], input_shape: tuple) -> dict[str, ReceptiveField]:
    """The receptive field of every layer, by the closed-form recurrences along every path.

    A layer reads ``layer.inputs`` (the previous layer when None). Along a chain this is
    the recurrence of the ReceptiveField docstring; at a layer with several inputs the
    paths of all inputs meet and the field is their union.
    """
    hw0 = (int(input_shape[1]), int(input_shape[2]))
    out = {"input": ReceptiveField((1, 1), (1, 1), (0, 0))}
    state = {"input": dict(paths={((1, 1), (1, 1), (0, 0))}, hw=hw0, channels=int(input_shape[0]), flat=None,
                           whole=False, chain=(), single=True)}
    prev = "input"
    for layer in layers:
        srcs = tuple(layer.inputs) if layer.inputs else (prev,)
        prev = layer.name
        ins = [state[s] for s in srcs]
        first = ins[0]
        flat = next((i["flat"] for i in ins if i["flat"] is not None), None)
        if layer.channels == "flatten" and flat is None:
            flat = (first["channels"], *first["hw"])
        whole = any(i["whole"] for i in ins) or (flat is not None and layer.channels == "all") \
            or (flat is not None and len({out[s] for s in srcs}) > 1)
        if whole:
            out[layer.name] = ReceptiveField(hw0, (0, 0), (0, 0), True)
            state[layer.name] = dict(first, whole=True)
            continue
        if flat is not None:                   # Flatten, or a ReLU after it: a cell copies one cell
            out[layer.name] = replace(out[srcs[0]], flat_grid=flat)
            state[layer.name] = dict(first, flat=flat)
            continue
        hw = first["hw"]
        wins = layer.windows_for((first["channels"], *hw))
        paths = {_step(p, wins) for i in ins for p in i["paths"]}
        new_hw = (wins[0].out_size(hw[0]), wins[1].out_size(hw[1]))
        channels = sum(i["channels"] for i in ins) if layer.channels == "concat" else \
            layer.out_shape(tuple([first["channels"], *hw]))[0] if layer.arity == 1 else first["channels"]
        single = len(srcs) == 1 and first["single"]
        chain = first["chain"] + ((wins, None, hw),) if single else ()
        size, jump, start = _union(paths)
        out[layer.name] = ReceptiveField(size, jump, start, chain=chain,
                                         paths=tuple(sorted(paths)) if len(paths) > 1 else ())
        state[layer.name] = dict(paths=paths, hw=new_hw, channels=channels, flat=None, whole=False,
                                 chain=chain, single=single)
    return out
