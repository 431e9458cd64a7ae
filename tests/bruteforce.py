"""Brute-force walks of an explicit cell graph, shared by the dependency tests: the oracle
the analytic precedents, dependents and receptive fields are compared with. The graph
itself (``brute_graph``) is built from the layers' hyperparameters alone, by loops over
output cells and kernel taps."""
from __future__ import annotations

from collections import deque
from itertools import product

from hypothesis import strategies as st
from strategies import out_len


def closure(graph, start):
    seen, todo = set(), deque([start])
    while todo:
        for nxt in graph.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def invert(preds):
    succ = {}
    for cell, ps in preds.items():
        for p in ps:
            succ.setdefault(p, set()).add(cell)
    return succ


def all_cells(net):
    for name in net.names:
        c, h, w = net.grid(name)
        yield from ((name, *i) for i in product(range(c), range(h), range(w)))


def pick(data, cells, n):
    cells = sorted(cells, key=repr)
    if len(cells) <= n:
        return cells
    return [cells[data.draw(st.integers(0, len(cells) - 1), label="cell")] for _ in range(n)]


_WINDOWED = ("conv", "maxpool", "avgpool", "relu", "leakyrelu", "sigmoid", "tanh", "silu", "gelu")


def brute_graph(net):
    """{cell: set of cells it is computed from} for every activation cell, and each layer's
    shape; any graph of layers (each reads the layers named in its ``inputs``)."""
    preds, shapes = {}, {"input": net.input_shape}
    for layer in net.layers:
        name, srcs = layer.name, layer.inputs
        ins = [shapes[s] for s in srcs]
        src, shape = srcs[0], ins[0]
        c_in, h_in, w_in = shape if len(shape) == 3 else (shape[0], 1, 1)
        if layer.kind == "add":                  # the same cell of every input
            for cell in product(*(range(v) for v in shape)):
                preds[(name, *cell)] = {(s, *cell) for s in srcs}
        elif layer.kind == "concat":             # the inputs' channels one after another
            off = 0
            for s, (cs, hs, ws) in zip(srcs, ins):
                for ch, r, col in product(range(cs), range(hs), range(ws)):
                    preds[(name, off + ch, r, col)] = {(s, ch, r, col)}
                off += cs
            shape = (off, h_in, w_in)
        elif layer.kind in _WINDOWED:
            if not hasattr(layer, "kernel_size"):        # element-wise: its own cell
                (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (1, 1), (1, 1), (0, 0), (1, 1)
            else:
                (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
                dh, dw = layer.dilation if layer.kind == "conv" else (1, 1)
            ceil = getattr(layer, "ceil_mode", False)
            ho, wo = out_len(h_in, kh, sh, ph, dh, ceil), out_len(w_in, kw, sw, pw, dw, ceil)
            c_out = layer.out_channels if layer.kind == "conv" else c_in
            groups = getattr(layer, "groups", 1)          # conv: output co reads its group's channels
            per_in, per_out = c_in // groups, c_out // groups
            for co, oh, ow in product(range(c_out), range(ho), range(wo)):
                ps = set()
                chans = ([(co // per_out * per_in + k, k) for k in range(per_in)] if layer.kind == "conv"
                         else [(co, None)])
                for ci, k in chans:
                    for i, j in product(range(kh), range(kw)):
                        ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                        if 0 <= ih < h_in and 0 <= iw < w_in:
                            ps.add((src, ci, ih, iw))
                            if layer.kind == "conv":
                                ps.add((f"{name}.weight", co, k, i, j))
                if layer.kind == "conv" and layer.bias is not None:
                    ps.add((f"{name}.bias", co))
                preds[(name, co, oh, ow)] = ps
            shape = (c_out, ho, wo) if len(shape) == 3 else (c_out,)
        elif layer.kind == "batchnorm":           # one cell and its channel's statistics
            for ci, ih, iw in product(range(c_in), range(h_in), range(w_in)):
                preds[(name, ci, ih, iw)] = {(src, ci, ih, iw)} | {(f"{name}.{k}", ci) for k in
                                                                   ("weight", "bias", "running_mean", "running_var")
                                                                   if getattr(layer, k) is not None}
        elif layer.kind in ("adaptiveavgpool", "adaptivemaxpool"):
            ho, wo = layer.output_size              # PyTorch: [floor(i*n/out), ceil((i+1)*n/out))
            for co, oh, ow in product(range(c_in), range(ho), range(wo)):
                preds[(name, co, oh, ow)] = {
                    (src, co, ih, iw)
                    for ih in range(oh * h_in // ho, -(-(oh + 1) * h_in // ho))
                    for iw in range(ow * w_in // wo, -(-(ow + 1) * w_in // wo))}
            shape = (c_in, ho, wo)
        elif layer.kind == "flatten":
            for ci, ih, iw in product(range(c_in), range(h_in), range(w_in)):
                preds[(name, ci * h_in * w_in + ih * w_in + iw, 0, 0)] = {(src, ci, ih, iw)}
            shape = (c_in * h_in * w_in,)
        elif layer.kind == "linear":
            for o in range(layer.out_features):
                ps = {(src, i, 0, 0) for i in range(c_in)} | {(f"{name}.weight", o, i) for i in range(c_in)}
                if layer.bias is not None:
                    ps.add((f"{name}.bias", o))
                preds[(name, o, 0, 0)] = ps
            shape = (layer.out_features,)
        else:
            raise AssertionError(layer.kind)
        shapes[name] = shape
    return preds, shapes
