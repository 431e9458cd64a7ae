"""The formula text of every computed cell, built from the layers' windows.

A formula names exactly the cells the engine says the cell is computed from
(``Network.precedents(cell, depth=1)``), and nothing else:

* conv: per input channel ``SUMPRODUCT(<window>, <kernel>)`` with both ranges clipped
  where the window hangs over the padded border (padding is not a cell), plus the bias,
  inside ``MAX(0, ...)`` for a fused ReLU. A dilated window is not a contiguous range, so
  there the products are written out: ``B3*$AH$3+D3*$AI$3+...``. A layer with partial
  sums (layout.py) adds its partial-sum cells instead of the SUMPRODUCTs;
* max pool ``MAX(<window>)``; average pool ``AVERAGE(<window>)``, or
  ``SUM(<window>)/(kh*kw)`` where PyTorch counts padding and the window hits it;
* Linear ``SUMPRODUCT(<input column>, <weight column>)`` + bias; Flatten ``=<cell>``;
  a ReLU layer ``MAX(0, <cell>)``.

Only SUMPRODUCT, SUM, AVERAGE and MAX: they give the same results in Excel, LibreOffice
and Gnumeric without array entry, and none is volatile or indirect. Activation
references are relative (B3), parameter references absolute ($AH$3). Texts are returned
without the leading '='.
"""
from __future__ import annotations

from ..errors import SheetconvError
from .layout import Layout
from .a1 import column_names

__all__ = ["LayerFormulas", "formula"]

_COLS = column_names()


def _ref(pos: tuple[int, int], absolute: bool = False) -> str:
    r, c = pos
    return f"${_COLS[c]}${r + 1}" if absolute else f"{_COLS[c]}{r + 1}"


def _wrap(body: str, relu: bool) -> str:
    body = body or "0"
    return f"MAX(0,{body})" if relu else body


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
        self.src = src = net.input_of(name)
        self.kind = layer.kind
        self.vector = len(net.shapes[name]) == 1
        self.in_grid = net.grid(src)
        self.out_grid = net.grid(name)
        cin = self.in_grid[0]
        cell_of = layout.cell_of
        if not self.vector and self.kind != "flatten":
            self.in_origin = [cell_of((src, i, 0, 0)) for i in range(cin)]
        self.partials = layout.partials(name) if not self.vector else []
        if self.kind == "conv":
            cout = layer.out_channels
            self.k_origin = [[cell_of((f"{name}.weight", o, i, 0, 0)) for i in range(cin)] for o in range(cout)]
            self.bias_ref = ([_ref(cell_of((f"{name}.bias", o)), True) for o in range(cout)]
                             if layer.bias is not None else None)
            self.p_origin = [[cell_of((f"{name}:partial{g}", o, 0, 0)) for o in range(cout)]
                             for g in range(len(self.partials))]
            wh, ww = layer.windows
            _, hin, win = self.in_grid
            wo = self.out_grid[2]
            self._fast = (wh.dilation == 1 and ww.dilation == 1
                          and all(ww.taps(c, win)[1] > ww.taps(c, win)[0] for c in range(wo)))
            self._colargs: dict = {}
        elif self.kind == "linear":
            fin = layer.in_features
            self.in_range = f"{_ref(cell_of((src, 0, 0, 0)))}:{_ref(cell_of((src, fin - 1, 0, 0)))}"
            w = f"{name}.weight"
            self.w_range = [f"{_ref(cell_of((w, o, 0)), True)}:{_ref(cell_of((w, o, fin - 1)), True)}"
                            for o in range(layer.out_features)]
            self.bias_ref = ([_ref(cell_of((f"{name}.bias", o)), True) for o in range(layer.out_features)]
                             if layer.bias is not None else None)

    # ------------------------------------------------------------ public

    def row(self, o: int, r: int) -> list[str]:
        kind = self.kind
        if self.vector:
            return [self._vector_cell(o)]
        if kind == "conv":
            if self.partials:
                return self._conv_total_row(o, r)
            return self._conv_row(o, r, range(self.in_grid[0]), True)
        if kind in ("maxpool", "avgpool"):
            return [self._pool_cell(o, r, c) for c in range(self.out_grid[2])]
        if kind == "relu":
            y, x = self.in_origin[o]
            y += r + 1
            return [f"MAX(0,{_COLS[x + c]}{y})" for c in range(self.out_grid[2])]
        raise SheetconvError(f"{self.name}: no formula for layer kind {kind!r}")

    def partial_row(self, g: int, o: int, r: int) -> list[str]:
        a, b = self.partials[g]
        return self._conv_row(o, r, range(a, b), False)

    def cell(self, o: int, r: int, c: int, partial: int | None = None) -> str:
        if self.vector:
            return self.row(o, 0)[0]
        return (self.row(o, r) if partial is None else self.partial_row(partial, o, r))[c]

    # ------------------------------------------------------------ conv

    def _conv_tail(self, o: int, body: str, total: bool) -> str:
        if not total:
            return body or "0"
        if self.bias_ref is not None:
            body = f"{body}+{self.bias_ref[o]}" if body else self.bias_ref[o]
        return _wrap(body, self.layer.relu)

    def _conv_total_row(self, o: int, r: int) -> list[str]:
        y = r + 1
        xs = [x for _, x in (p[o] for p in self.p_origin)]
        yr = [yy + y for yy, _ in (p[o] for p in self.p_origin)]
        return [self._conv_tail(o, "+".join(f"{_COLS[x + c]}{yy}" for x, yy in zip(xs, yr)), True)
                for c in range(self.out_grid[2])]

    def _conv_row(self, o: int, r: int, chans: range, total: bool) -> list[str]:
        wh, ww = self.layer.windows
        _, hin, win = self.in_grid
        wo = self.out_grid[2]
        t0, t1 = wh.taps(r, hin)
        if not self._fast or t1 == t0:
            return [self._conv_tail(o, "+".join(self._conv_terms(o, r, c, chans)), total) for c in range(wo)]
        # One template per output row; the columns differ from cell to cell only in letters.
        y0 = r * wh.stride - wh.padding + t0
        y1 = y0 + (t1 - t0) - 1
        kx = self.k_origin[o][0][1]
        pieces = []
        for i in chans:
            iy = self.in_origin[i][0]
            ky = self.k_origin[o][i][0]
            pieces.append("SUMPRODUCT(%%s%d:%%s%d,$%%s$%d:$%%s$%d)" % (iy + y0 + 1, iy + y1 + 1, ky + t0 + 1, ky + t1))
        template = self._conv_tail(o, "+".join(pieces), total)
        key = (kx, chans.start, chans.stop)
        args = self._colargs.get(key)
        if args is None:
            args = self._colargs[key] = self._column_args(kx, chans)
        return [template % a for a in args]

    def _column_args(self, kx: int, chans: range) -> list[tuple[str, ...]]:
        """Per output column, the letters the row template needs: window and kernel, per channel."""
        ww = self.layer.windows[1]
        win = self.in_grid[2]
        out = []
        for c in range(self.out_grid[2]):
            u0, u1 = ww.taps(c, win)
            x0 = c * ww.stride - ww.padding + u0
            x1 = x0 + (u1 - u0) - 1
            ka, kb = _COLS[kx + u0], _COLS[kx + u1 - 1]
            a = []
            for i in chans:
                ix = self.in_origin[i][1]
                a += (_COLS[ix + x0], _COLS[ix + x1], ka, kb)
            out.append(tuple(a))
        return out

    def _conv_terms(self, o: int, r: int, c: int, chans) -> list[str]:
        """The terms of cell (o, r, c) for input channels ``chans``, for any window."""
        wh, ww = self.layer.windows
        _, hin, win = self.in_grid
        t0, t1 = wh.taps(r, hin)
        u0, u1 = ww.taps(c, win)
        if t0 == t1 or u0 == u1:
            return []
        ys = [r * wh.stride - wh.padding + t * wh.dilation for t in range(t0, t1)]
        xs = [c * ww.stride - ww.padding + u * ww.dilation for u in range(u0, u1)]
        terms = []
        contiguous = wh.dilation == 1 and ww.dilation == 1
        for i in chans:
            iy, ix = self.in_origin[i]
            ky, kx = self.k_origin[o][i]
            if contiguous:
                terms.append(f"SUMPRODUCT({_COLS[ix + xs[0]]}{iy + ys[0] + 1}:{_COLS[ix + xs[-1]]}{iy + ys[-1] + 1},"
                             f"${_COLS[kx + u0]}${ky + t0 + 1}:${_COLS[kx + u1 - 1]}${ky + t1})")
            else:
                for t, y in zip(range(t0, t1), ys):
                    for u, x in zip(range(u0, u1), xs):
                        terms.append(f"{_COLS[ix + x]}{iy + y + 1}*${_COLS[kx + u]}${ky + t + 1}")
        return terms

    # ------------------------------------------------------------ pools

    def _pool_cell(self, o: int, r: int, c: int) -> str:
        wh, ww = self.layer.windows
        _, hin, win = self.in_grid
        t0, t1 = wh.taps(r, hin)
        u0, u1 = ww.taps(c, win)
        iy, ix = self.in_origin[o]
        y0 = iy + r * wh.stride - wh.padding + t0
        x0 = ix + c * ww.stride - ww.padding + u0
        rng = f"{_COLS[x0]}{y0 + 1}:{_COLS[x0 + u1 - u0 - 1]}{y0 + t1 - t0}"
        if self.kind == "maxpool":
            return f"MAX({rng})"
        area = wh.kernel * ww.kernel
        if self.layer.count_include_pad and (t1 - t0) * (u1 - u0) < area:
            return f"SUM({rng})/{area}"
        return f"AVERAGE({rng})"

    # ------------------------------------------------------------ 1-D layers

    def _vector_cell(self, f: int) -> str:
        kind, src = self.kind, self.src
        cell_of = self.layout.cell_of
        if kind == "flatten":
            _, h, w = self.in_grid
            c, rem = divmod(f, h * w)
            return _ref(cell_of((src, c, *divmod(rem, w))))
        if kind == "linear":
            body = f"SUMPRODUCT({self.in_range},{self.w_range[f]})"
            if self.bias_ref is not None:
                body += f"+{self.bias_ref[f]}"
            return _wrap(body, self.layer.relu)
        if kind == "relu":
            return f"MAX(0,{_ref(cell_of((src, f, 0, 0)))})"
        raise SheetconvError(f"{self.name}: no formula for a 1-D {kind!r} layer")


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
