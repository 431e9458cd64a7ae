"""The A1 reference texts of every computed cell's formula, from the layout and the windows.

The sheet knows where cells are; each layer kind knows how its formula is made of
references (``Layer.formula(terms)``, sheetconv.nn.layers). This module computes those
references — ``formula_reads`` says which: ``"weighted"`` (per input channel the window
range and the kernel block, clipped where the window hangs over the padded border since
padding is not a cell, or the products written out for a dilated window; or the
partial-sum cells of a layer that has them, layout.py), ``"dense"`` (the input column and
the weight column), ``"window"`` (the window range in the cell's own channel and how many
cells it covers), ``"cell"`` (the one cell copied), ``"inputs"`` (a layer of several
inputs: for an Add the cell at the same place in every input, as ``sums``; for a Concat
the one cell its channel copies) — and hands them to the kind.

A formula names exactly the cells the engine says the cell is computed from
(``Network.precedents(cell, depth=1)``), and nothing else. Only SUMPRODUCT, SUM, AVERAGE
and MAX: they give the same results in Excel, LibreOffice and Gnumeric without array
entry, and none is volatile or indirect. Activation references are relative (B3),
parameter references absolute ($AH$3). Texts are returned without the leading '='.
"""
from __future__ import annotations

from ..errors import SheetconvError
from ..nn.layers import Terms
from .a1 import column_names
from .layout import Layout

__all__ = ["LayerFormulas", "formula"]

_COLS = column_names()


def _ref(pos: tuple[int, int], absolute: bool = False) -> str:
    r, c = pos
    return f"${_COLS[c]}${r + 1}" if absolute else f"{_COLS[c]}{r + 1}"


class LayerFormulas:
    """Formula texts of one layer's cells, produced a row of cells at a time.

    ``row(o, r)`` gives the texts of cells (o, r, 0..W-1) of a (C, H, W) layer, and
    ``[text]`` of feature o of a 1-D layer (r = 0). ``partial_row(g, o, r)`` does the same
    for partial-sum group g.
    """

    def __init__(self, net, layout: Layout, name: str):
        if name == "input" or name not in net.shapes:
            raise SheetconvError(f"{name!r} is not a computed layer (layers: {', '.join(net.names[1:])})")
        self.net, self.layout, self.name = net, layout, name
        self.layer = layer = net[name]
        self.srcs = net.inputs_of(name)
        self.src = src = self.srcs[0]
        self.reads = layer.formula_reads
        self.vector = len(net.shapes[name]) == 1
        self.in_grid = net.grid(src)
        self.out_grid = net.grid(name)
        cin = self.in_grid[0]
        cell_of = layout.cell_of
        if self.reads == "inputs":
            self.src_origin = [[cell_of((s, i, 0, 0)) for i in range(net.grid(s)[0])] for s in self.srcs]
            self.spans = [net._span(layer, k) for k in range(len(self.srcs))]
        elif not self.vector and self.reads != "cell":
            self.in_origin = [cell_of((src, i, 0, 0)) for i in range(cin)]
        self.partials = layout.partials(name) if not self.vector else []
        params = layer.param_shapes()
        cout = self.out_grid[0]
        self.bias_ref = ([_ref(cell_of((f"{name}.bias", o)), True) for o in range(cout)]
                         if "bias" in params else None)
        # per-channel parameters of a layer reading its own channel (BatchNorm2d): one cell each
        self.channel_params = ([tuple((k, _ref(cell_of((f"{name}.{k}", o)), True)) for k in params)
                                for o in range(cout)] if self.reads == "window" and params else None)
        if self.reads == "weighted":
            # output o reads one run of input channels (all of them, or its group's); kernel j the j-th
            self.inputs_of = [range(*layer.channel_back(((o, o + 1),), cin)[0]) for o in range(cout)]
            self.k_origin = [{i: cell_of((f"{name}.weight", o, j, 0, 0)) for j, i in enumerate(ins)}
                             for o, ins in enumerate(self.inputs_of)]
            self.p_origin = [[cell_of((f"{name}:partial{g}", o, 0, 0)) for o in range(cout)]
                             for g in range(len(self.partials))]
            wh, ww = layer.windows
            _, hin, win = self.in_grid
            wo = self.out_grid[2]
            self._fast = (wh.dilation == 1 and ww.dilation == 1
                          and all(ww.taps(c, win)[1] > ww.taps(c, win)[0] for c in range(wo)))
            self._colargs: dict = {}
        elif self.reads == "dense":
            fin = params["weight"][1]
            self.in_range = f"{_ref(cell_of((src, 0, 0, 0)))}:{_ref(cell_of((src, fin - 1, 0, 0)))}"
            w = f"{name}.weight"
            self.w_range = [f"{_ref(cell_of((w, o, 0)), True)}:{_ref(cell_of((w, o, fin - 1)), True)}"
                            for o in range(cout)]

    # ------------------------------------------------------------ public

    def row(self, o: int, r: int) -> list[str]:
        if self.vector:
            return [self._vector_cell(o)]
        reads = self.reads
        if reads == "weighted":
            if self.partials:
                return self._weighted_total_row(o, r)
            return self._weighted_row(o, r, self.inputs_of[o], True)
        if reads == "window":
            return [self._window_cell(o, r, c) for c in range(self.out_grid[2])]
        if reads == "inputs":
            return [self._inputs_cell(o, r, c) for c in range(self.out_grid[2])]
        raise SheetconvError(f"{self.name}: no formula for a layer reading {reads!r} on a grid")

    def row_template(self, o: int, r: int, partial: int | None = None):
        """``(template, args)`` with ``template % args[c]`` the text of cell c of ``row(o, r)``
        (or of ``partial_row(partial, o, r)``), for rows that have one; else None. ``args`` is
        shared between rows: the same object for rows of the same shape, never to be changed."""
        if self.vector or self.reads != "weighted":
            return None
        if partial is None:
            if self.partials:
                return None
            return self._weighted_template(o, r, self.inputs_of[o], True)
        a, b = self.partials[partial]
        base = self.inputs_of[o].start
        return self._weighted_template(o, r, range(base + a, base + b), False)

    def partial_row(self, g: int, o: int, r: int) -> list[str]:
        a, b = self.partials[g]                 # kernels [a, b) of the output's own channels
        base = self.inputs_of[o].start
        return self._weighted_row(o, r, range(base + a, base + b), False)

    def cell(self, o: int, r: int, c: int, partial: int | None = None) -> str:
        if self.vector:
            return self.row(o, 0)[0]
        return (self.row(o, r) if partial is None else self.partial_row(partial, o, r))[c]

    # ------------------------------------------------------------ weighted windows (Conv2d)

    def _bias(self, o: int) -> str | None:
        return None if self.bias_ref is None else self.bias_ref[o]

    def _weighted_total_row(self, o: int, r: int) -> list[str]:
        y = r + 1
        xs = [x for _, x in (p[o] for p in self.p_origin)]
        yr = [yy + y for yy, _ in (p[o] for p in self.p_origin)]
        formula = self.layer.formula
        return [formula(Terms(sums=tuple(f"{_COLS[x + c]}{yy}" for x, yy in zip(xs, yr)), bias=self._bias(o)))
                for c in range(self.out_grid[2])]

    def _weighted_row(self, o: int, r: int, chans: range, total: bool) -> list[str]:
        tpl = self._weighted_template(o, r, chans, total)
        if tpl is None:
            bias = self._bias(o) if total else None
            formula = self.layer.formula
            return [formula(self._weighted_terms(o, r, c, chans, bias, total)) for c in range(self.out_grid[2])]
        template, args = tpl
        return [template % a for a in args]

    def _weighted_template(self, o: int, r: int, chans: range, total: bool):
        """(template, per-column args) of a row whose cells differ only in column letters, else None."""
        if not self._fast:
            return None
        wh = self.layer.windows[0]
        hin = self.in_grid[1]
        t0, t1 = wh.taps(r, hin)
        if t1 == t0:
            return None
        bias = self._bias(o) if total else None
        formula = self.layer.formula
        # One template per output row; the columns differ from cell to cell only in letters.
        y0, y1 = wh.index(r, t0), wh.index(r, t1 - 1)
        kx = self.k_origin[o][chans.start][1]
        pairs = []
        for i in chans:
            iy = self.in_origin[i][0]
            ky = self.k_origin[o][i][0]
            pairs.append(("%%s%d:%%s%d" % (iy + y0 + 1, iy + y1 + 1), "$%%s$%d:$%%s$%d" % (ky + t0 + 1, ky + t1)))
        template = formula(Terms(pairs=tuple(pairs), bias=bias, total=total))
        key = (kx, chans.start, chans.stop)
        args = self._colargs.get(key)
        if args is None:
            args = self._colargs[key] = self._column_args(kx, chans)
        return template, args

    def _column_args(self, kx: int, chans: range) -> list[tuple[str, ...]]:
        """Per output column, the letters the row template needs: window and kernel, per channel."""
        ww = self.layer.windows[1]
        win = self.in_grid[2]
        out = []
        for c in range(self.out_grid[2]):
            u0, u1 = ww.taps(c, win)
            x0, x1 = ww.index(c, u0), ww.index(c, u1 - 1)
            ka, kb = _COLS[kx + u0], _COLS[kx + u1 - 1]
            a = []
            for i in chans:
                ix = self.in_origin[i][1]
                a += (_COLS[ix + x0], _COLS[ix + x1], ka, kb)
            out.append(tuple(a))
        return out

    def _weighted_terms(self, o: int, r: int, c: int, chans, bias: str | None, total: bool) -> Terms:
        """The references of cell (o, r, c) for input channels ``chans``, for any window."""
        wh, ww = self.layer.windows
        _, hin, win = self.in_grid
        t0, t1 = wh.taps(r, hin)
        u0, u1 = ww.taps(c, win)
        if t0 == t1 or u0 == u1:
            return Terms(bias=bias, total=total)
        ys, xs = wh.inputs(r, hin), ww.inputs(c, win)
        pairs, products = [], []
        contiguous = wh.dilation == 1 and ww.dilation == 1
        for i in chans:
            iy, ix = self.in_origin[i]
            ky, kx = self.k_origin[o][i]
            if contiguous:
                pairs.append((f"{_COLS[ix + xs[0]]}{iy + ys[0] + 1}:{_COLS[ix + xs[-1]]}{iy + ys[-1] + 1}",
                              f"${_COLS[kx + u0]}${ky + t0 + 1}:${_COLS[kx + u1 - 1]}${ky + t1}"))
            else:
                for t, y in zip(range(t0, t1), ys):
                    for u, x in zip(range(u0, u1), xs):
                        products.append((f"{_COLS[ix + x]}{iy + y + 1}", f"${_COLS[kx + u]}${ky + t + 1}"))
        return Terms(pairs=tuple(pairs), products=tuple(products), bias=bias, total=total)

    # ------------------------------------------------------------ windows of one channel (pools, ReLU)

    def _window_cell(self, o: int, r: int, c: int) -> str:
        wh, ww = self.layer.windows_for(self.in_grid)
        _, hin, win = self.in_grid
        t0, t1 = wh.taps(r, hin)
        u0, u1 = ww.taps(c, win)
        iy, ix = self.in_origin[o]
        y0, x0 = iy + wh.index(r, t0), ix + ww.index(c, u0)
        cell = f"{_COLS[x0]}{y0 + 1}"
        rng = f"{cell}:{_COLS[x0 + u1 - u0 - 1]}{y0 + t1 - t0}"
        area = wh.padded_taps(r, hin) * ww.padded_taps(c, win) if wh.ceil_mode or ww.ceil_mode else 0
        return self.layer.formula(Terms(window=rng, cell=cell, covered=(t1 - t0) * (u1 - u0), area=area,
                                        params=self._channel_params(o)))

    def _channel_params(self, o: int) -> tuple:
        return () if self.channel_params is None else self.channel_params[o]

    # ------------------------------------------------------------ several inputs (Add, Concat)

    def _inputs_cell(self, o: int, r: int, c: int) -> str:
        """An Add's cell: the cells at (o, r, c) of every input; a Concat's: the one cell it copies."""
        if self.spans[0] is None:
            refs = []
            for origin in self.src_origin:
                y, x = origin[o]
                refs.append(f"{_COLS[x + c]}{y + r + 1}")
            return self.layer.formula(Terms(sums=tuple(refs)))
        for origin, (a, b) in zip(self.src_origin, self.spans):
            if a <= o < b:
                y, x = origin[o - a]
                ref = f"{_COLS[x + c]}{y + r + 1}"
                return self.layer.formula(Terms(window=f"{ref}:{ref}", cell=ref, covered=1))
        raise SheetconvError(f"{self.name}: channel {o} comes from no input")

    # ------------------------------------------------------------ 1-D layers

    def _vector_cell(self, f: int) -> str:
        reads, src = self.reads, self.src
        cell_of = self.layout.cell_of
        if reads == "cell":                          # renumbered: feature f copies (c, h, w)
            _, h, w = self.in_grid
            c, rem = divmod(f, h * w)
            ref = _ref(cell_of((src, c, *divmod(rem, w))))
            return self.layer.formula(Terms(window=f"{ref}:{ref}", cell=ref, covered=1))
        if reads == "dense":
            return self.layer.formula(Terms(pairs=((self.in_range, self.w_range[f]),), bias=self._bias(f)))
        if reads == "inputs":
            refs = [_ref(cell_of((s, f, 0, 0))) for s in self.srcs]
            return self.layer.formula(Terms(sums=tuple(refs)))
        if reads == "window":                        # a (F, 1, 1) grid: the feature's own cell
            ref = _ref(cell_of((src, f, 0, 0)))
            return self.layer.formula(Terms(window=f"{ref}:{ref}", cell=ref, covered=1,
                                            params=self._channel_params(f)))
        raise SheetconvError(f"{self.name}: no formula for a 1-D layer reading {reads!r}")


def formula(net, layout: Layout, cell) -> str:
    """The formula ('=' included) of one computed cell: (layer, c, r, col) or a partial-sum cell."""
    name = cell[0]
    info = layout.partial(name)
    if info is not None:
        layer, g, _ = info
        _, o, r, c = cell
        return "=" + LayerFormulas(net, layout, layer).cell(int(o), int(r), int(c), partial=g)
    name, o, r, c = net.check_cell(cell)
    return "=" + LayerFormulas(net, layout, name).cell(o, r, c)
