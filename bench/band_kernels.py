"""A measured alternative to the engine's convolution, for ``bench_engine.py --baseline``:
the copy-free "band" convolution.

    python bench/bench_engine.py --rounds 9 --dtype float32 --only simple-cnn --baseline bench/band_kernels.py

Why it exists: at batch 1024 on two threads the engine's im2col copies run on one thread
while torch's whole forward uses both. The band form copies nothing along simple-cnn's
chain: BLAS, the only multi-threaded work NumPy has, does everything but the bias and
ReLU passes.

How: activations are kept with each image's rows contiguous, (N, H, C, W) in memory (an
NCHW input with one channel already is, and so is each band layer's output; any other
input is copied into that order first). Output row ``ho`` reads input rows
``ho*s - p .. ho*s - p + k - 1``, which are one contiguous run of ``k*C*W`` values per
image. The product of those runs (a strided view, no copy; the batch is the long side)
with a banded weight matrix of shape (k*C*W, O*W_o) gives the whole output row. One
batched ``np.matmul`` covers the rows whose taps are all inside the image; each edge row
is one more product, of the band's rows for its taps inside. Column padding is the band's
zero entries. The band is built on every call (zeros, then one scatter of the weights).

What it costs: the band holds every input column of a row, not the k a window reads, so
the multiply-adds grow by about W/k: 9.3x for simple-cnn's first layer, 1.3x for its
fourth (about 200 million multiply-adds in all at batch 1024, against 60 million). Zero
weights also multiply inputs outside each window, so an inf or NaN input would reach
every output of each output row whose taps cover its input row (0 * inf is NaN), where
torch's stays inside the windows that read it: another reason it is a measurement here,
not the engine.

Square kernels with the same stride and padding on both axes, dilation 1, one group and a
band of at most ``_BAND_MAX_BYTES`` run as bands; anything else (e.g. the 64-channel and
stem rows of the bench, whose bands would take 77-270 MB) runs through the engine's
``conv2d``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from sheetconv.nn import kernels

_BAND_MAX_BYTES = 8 << 20


@lru_cache(maxsize=64)
def _band_index(c, w, o, k, s, p):
    """Where each weight goes in the (k*C*W, O*W_o) band: flat positions and the weight's
    flat index (o, c, i, j) for every in-image tap."""
    wo = (w + 2 * p - k) // s + 1
    i, j, ci, oi, q = np.meshgrid(np.arange(k), np.arange(k), np.arange(c), np.arange(o), np.arange(wo), indexing="ij")
    col = q * s - p + j
    keep = (col >= 0) & (col < w)
    rows = (i * c + ci) * w + col
    cols = oi * wo + q
    flat_band = (rows * (o * wo) + cols)[keep]
    flat_weight = (((oi * c + ci) * k + i) * k + j)[keep]
    return flat_band, flat_weight, wo


def _rows_view(x):
    """x (N, C, H, W) as (N, H*C*W) with each image's rows contiguous, copying only if
    its memory is not already laid out that way."""
    n, c, h, w = x.shape
    t = x.transpose(0, 2, 1, 3)
    if not t[0].flags.c_contiguous:
        t = np.ascontiguousarray(t)
    return as_strided(t, (n, h * c * w), (t.strides[0], t.itemsize))


def conv2d(x, weight, bias, stride, padding, dilation, relu=False, groups=1):
    """``torch.nn.functional.conv2d`` (then ReLU) as band products; see the module docstring."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = tuple(stride), tuple(padding), tuple(dilation)
    wo = (w + 2 * pw - kw) // sw + 1
    if groups != 1 or (dh, dw) != (1, 1) or kh != kw or sh != sw or ph != pw \
            or kh * c * w * o * wo * x.itemsize > _BAND_MAX_BYTES:
        return kernels.conv2d(x, weight, bias, stride, padding, dilation, relu, groups)
    k, s, p, dt = kh, sh, ph, x.dtype
    flat_band, flat_weight, wo = _band_index(c, w, o, k, s, p)
    ho = (h + 2 * p - k) // s + 1
    row, m = c * w, o * wo
    band = np.zeros(k * row * m, dt)
    band[flat_band] = weight.astype(dt, copy=False).ravel()[flat_weight]
    band = band.reshape(k * row, m)
    src = _rows_view(x)
    out = np.empty((n, ho, m), dt)
    inside = [r for r in range(ho) if r * s - p >= 0 and r * s - p + k <= h]
    if inside:
        first, last = inside[0], inside[-1] + 1        # inside rows are consecutive
        start = (first * s - p) * row
        a = as_strided(src[:, start:], (last - first, n, k * row), (s * row * dt.itemsize, src.strides[0], dt.itemsize))
        np.matmul(a, band, out=out[:, first:last].transpose(1, 0, 2))
    for r in range(ho):
        if r in inside:
            continue
        top = r * s - p
        i0, i1 = max(0, -top), min(k, h - top)
        if i1 <= i0:                                   # every tap on the padding
            out[:, r] = 0
            continue
        np.matmul(src[:, (top + i0) * row:(top + i1) * row], band[i0 * row:i1 * row], out=out[:, r])
    if bias is not None:
        out += np.repeat(bias.astype(dt, copy=False), wo)
    if relu:
        np.maximum(out, 0, out=out)
    return out.reshape(n, ho, o, wo).transpose(0, 2, 1, 3)
