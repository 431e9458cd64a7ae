"""The convolution kernel of the forward pass: one matrix product per layer, in NumPy.

``conv2d`` is PyTorch's conv2d (cross-correlation, zero padding, stride, dilation) on an
(N, C, H, W) batch. Layers (layers.py) call it; the spreadsheet never does: a cell's
formula follows the per-cell arithmetic of ``Network.cell_value`` instead.
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["conv2d", "relu_"]


_scratch_space = threading.local()


def _scratch(role: str, shape: tuple, dtype) -> np.ndarray:
    """A per-thread scratch array, reused across calls: fresh large arrays cost page faults."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    bufs = _scratch_space.__dict__.setdefault("bufs", {})
    buf = bufs.get(role)
    if buf is None or buf.size < nbytes:
        buf = bufs[role] = np.empty(nbytes + 4096, np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def relu_(a: np.ndarray) -> None:
    """ReLU in place (NaN stays NaN, like torch.relu)."""
    np.maximum(a, 0, out=a)


def _row_length(size: int, itemsize: int) -> int:
    """A row stride of at least ``size`` items that is not a multiple of 4 KiB (cache aliasing)."""
    length = -(-size // 16) * 16
    return length + 16 if (length * itemsize) % 4096 == 0 else length


@lru_cache(maxsize=256)
def _conv_plan(n, c, h, w, kh, kw, stride, padding, dilation):
    """Everything about a convolution's data movement that depends on shapes alone."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    hq, wq = -(-hp // sh), -(-wp // sw)
    wide = hq * wq <= 2 * ho * wo
    inner = n > 1 and n >= wq                          # batch innermost
    if not wide:
        return _Plan(ho, wo, hq, wq, False, inner, ho * wo * n, 0, 0, (), ())
    size = ho * wq * n if inner else n * hq * wq       # batch inner: rows past H_o are all at the end
    # the phases the taps read; where each phase's first real row and column go; tap offsets
    use = sorted({((i * dh) % sh, (j * dw) % sw) for i in range(kh) for j in range(kw)})
    fills = []
    for m, (a, b) in enumerate(use):
        y0, x0 = -((a - ph) // sh), -((b - pw) // sw)           # first phase row/col on the image
        r0, c0 = y0 * sh + a - ph, x0 * sw + b - pw              # ... and its image row/col
        if r0 < h and c0 < w:
            fills.append((m, y0, y0 + len(range(r0, h, sh)), x0, x0 + len(range(c0, w, sw)),
                          slice(r0, None, sh), slice(c0, None, sw)))
    step = n if inner else 1
    taps = tuple((i, j, use.index(((i * dh) % sh, (j * dw) % sw)), ((i * dh // sh) * wq + j * dw // sw) * step)
                 for i in range(kh) for j in range(kw))
    extra = max(off for *_, off in taps)
    return _Plan(ho, wo, hq, wq, True, inner, size, len(use), max(n * hq * wq, size + extra), tuple(fills), taps)


class _Plan(NamedTuple):
    ho: int
    wo: int
    hq: int
    wq: int
    wide: bool
    inner: bool
    size: int
    phases: int
    phase_len: int
    fills: tuple
    taps: tuple


def conv2d(x, weight, bias, stride, padding, dilation, relu=False):
    """2-D convolution (PyTorch's cross-correlation) of an (N, C, H, W) batch, as one matrix product.

    The zero-padded input is split into stride phases: phase (a, b) holds padded rows
    a, a+s_h, ... and columns b, b+s_w, ... of every image. Each channel of a phase is
    stored flat, either image by image (N, H, W) or, for batches larger than a row is
    long, with the batch innermost (H, W, N) so that copies move runs of N values. A
    kernel tap then reads one phase at a fixed offset, so its im2col row is a plain slice
    of that phase: building the (taps*C, L) matrix costs one contiguous copy per tap. The
    product with the (O, taps*C) weights (bias as an extra column against a row of ones)
    gives every output on a "wide" grid of W_q columns per row, of which the first W_o
    are real. When that grid would waste more than half the work (kernel large against
    the image), the matrix is gathered from the padded input directly instead.

    Returns an (N, O, H_o, W_o) view in ``x.dtype``; it is not C-contiguous (with the
    batch innermost its memory is (O, H_o, W_o, N)-ordered, which the next convolution
    reads fastest).
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    plan = _conv_plan(n, c, h, w, kh, kw, tuple(stride), tuple(padding), tuple(dilation))
    ho, wo, hq, wq, size = plan.ho, plan.wo, plan.hq, plan.wq, plan.size
    dt = x.dtype
    k = kh * kw * c
    rows = k + (bias is not None)
    length = _row_length(size, dt.itemsize)
    cols = _scratch("cols", (rows, length), dt)[:, :size]
    xt = x.transpose(1, 2, 3, 0)                                          # (C, H, W, N)
    if plan.wide:
        phases = _scratch("phases", (plan.phases, c, plan.phase_len), dt)
        phases.fill(0)
        grid = phases[:, :, :n * hq * wq]
        if plan.inner:
            grid = grid.reshape(-1, c, hq, wq, n)
        else:
            grid = grid.reshape(-1, c, n, hq, wq).transpose(0, 1, 3, 4, 2)
        for m, y0, y1, x0, x1, rows_in, cols_in in plan.fills:
            grid[m, :, y0:y1, x0:x1] = xt[:, rows_in, cols_in]
        taps = cols[:k].reshape(kh * kw, c, size)
        for t, (_, _, m, off) in enumerate(plan.taps):
            taps[t] = phases[m, :, off:off + size]
    else:
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        xp = _scratch("phases", (c, h + 2 * ph, w + 2 * pw, n), dt)
        if ph or pw:
            xp.fill(0)
        xp[:, ph:ph + h, pw:pw + w] = xt
        bc, bh, bw, bn = xp.strides
        view = np.ndarray((kh, kw, c, ho, wo, n), dt, xp, 0, (dh * bh, dw * bw, bc, sh * bh, sw * bw, bn))
        cols[:k].reshape(kh, kw, c, ho, wo, n)[...] = view
    wmat = np.empty((o, rows), dt)
    wmat[:, :k] = weight.transpose(0, 2, 3, 1).reshape(o, k)
    if bias is not None:
        cols[k] = 1
        wmat[:, k] = bias
    whole = np.empty((o, length), dt)
    out = whole[:, :size]
    np.matmul(wmat, cols, out=out)
    if relu:
        relu_(out)
    if not plan.wide:
        return out.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)
    if plan.inner:
        return out.reshape(o, ho, wq, n)[:, :, :wo].transpose(3, 0, 1, 2)
    return out.reshape(o, n, hq, wq)[:, :, :ho, :wo].transpose(1, 0, 2, 3)
