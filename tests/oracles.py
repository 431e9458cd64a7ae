"""Test oracles written independently of the engine's code paths.

``cell_value(net, cell, acts)``: one activation computed from its definition, one
multiplication at a time (PyTorch's documented formulas: input index =
out*stride - padding + tap*dilation, taps falling outside the grid skipped), reading only
``acts`` of the layer's input and the layer's parameters. It shares nothing with the
vectorised forward pass or with Window, so agreement between them is evidence.
"""
import math

import sheetconv as sc


def _taps(o, k, s, p, d, n):
    """(tap, input index) pairs of output ``o`` that land inside [0, n)."""
    out = []
    for t in range(k):
        i = o * s - p + t * d
        if 0 <= i < n:
            out.append((t, i))
    return out


def cell_value(net, cell, acts) -> float:
    name, c, r, col = cell
    if name == "input":
        return float(acts["input"][c, r, col])
    layer = net[name]
    src = acts[net.names[net.names.index(name) - 1]]
    if src.ndim == 1:
        src = src.reshape(-1, 1, 1)
    cin, h, w = src.shape
    if isinstance(layer, sc.Flatten):
        hw = h * w
        return float(src[c // hw, (c % hw) // w, c % w])
    if isinstance(layer, sc.ReLU):
        return max(float(src[c, r, col]), 0.0)
    if isinstance(layer, (sc.LeakyReLU, sc.Sigmoid, sc.Tanh, sc.SiLU, sc.GELU)):   # torch.nn's documented formulas
        x = float(src[c, r, col])
        if isinstance(layer, sc.LeakyReLU):
            return x if x >= 0 else layer.negative_slope * x
        if isinstance(layer, sc.Sigmoid):
            return 1 / (1 + math.exp(-x))
        if isinstance(layer, sc.Tanh):
            return math.tanh(x)
        if isinstance(layer, sc.SiLU):
            return x / (1 + math.exp(-x))
        if layer.approximate == "tanh":
            return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return x * 0.5 * (1 + math.erf(x / math.sqrt(2)))
    if isinstance(layer, sc.BatchNorm2d):       # torch.nn.BatchNorm2d's documented eval-mode formula
        v = (float(src[c, r, col]) - float(layer.running_mean[c])) / math.sqrt(float(layer.running_var[c]) + layer.eps)
        if layer.affine:
            v = v * float(layer.weight[c])
        if layer.bias is not None:
            v = v + float(layer.bias[c])
        return max(v, 0.0) if layer.relu else v
    if isinstance(layer, (sc.AdaptiveAvgPool2d, sc.AdaptiveMaxPool2d)):
        # PyTorch's adaptive rule: start = floor(i * n / out), end = ceil((i + 1) * n / out)
        (oh, ow) = layer.output_size
        r0, r1 = math.floor(r * h / oh), math.ceil((r + 1) * h / oh)
        c0, c1 = math.floor(col * w / ow), math.ceil((col + 1) * w / ow)
        values = [float(src[c, i, j]) for i in range(r0, r1) for j in range(c0, c1)]
        return max(values) if isinstance(layer, sc.AdaptiveMaxPool2d) else sum(values) / len(values)
    if isinstance(layer, sc.Linear):
        v = 0.0
        for i in range(layer.in_features):
            v += float(src[i, 0, 0]) * float(layer.weight[c, i])
        if layer.bias is not None:
            v += float(layer.bias[c])
        return max(v, 0.0) if layer.relu else v
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    dh, dw = getattr(layer, "dilation", (1, 1))
    rows, cols = _taps(r, kh, sh, ph, dh, h), _taps(col, kw, sw, pw, dw, w)
    if isinstance(layer, sc.Conv2d):
        # groups (torch.nn.Conv2d): output c belongs to group c // (out/groups) and reads that
        # group's in/groups input channels, its kernel k applied to the group's k-th channel
        per_in, per_out = cin // layer.groups, layer.out_channels // layer.groups
        v = 0.0
        for k in range(per_in):
            ci = (c // per_out) * per_in + k
            for t, i in rows:
                for u, j in cols:
                    v += float(src[ci, i, j]) * float(layer.weight[c, k, t, u])
        if layer.bias is not None:
            v += float(layer.bias[c])
        return max(v, 0.0) if layer.relu else v
    values = [float(src[c, i, j]) for _, i in rows for _, j in cols]
    if isinstance(layer, sc.MaxPool2d):
        return max(values)
    if isinstance(layer, sc.AvgPool2d):
        if not layer.count_include_pad:
            return sum(values) / len(values)
        # padding counts, but not a ceil-mode window's part past it (torch's avg_pool2d: the
        # window end is min(start + k, n + p) before clipping to the input)
        rows_in = min(r * sh - ph + kh, h + ph) - (r * sh - ph)
        cols_in = min(col * sw - pw + kw, w + pw) - (col * sw - pw)
        return sum(values) / (rows_in * cols_in)
    raise AssertionError(f"no oracle for {type(layer).__name__}")
