"""The NumPy forward kernels: convolution, pooling, ReLU and linear, on NCHW batches.

Every function computes what the ``torch.nn.functional`` function of the same name
computes (cross-correlation with zero padding, stride, dilation and groups; max pooling
with -inf padding; average pooling with PyTorch's divisor rules), in the input's dtype,
and never writes to its arguments. Layers call them; the spreadsheet never does: a
cell's formula follows its layer kind's formula text instead.

Invariants:

* Everything that depends on shapes alone (output sizes, phase layouts, slices, index
  arrays, the choice of variant) is planned once per shape and cached (``lru_cache``):
  a repeated call only moves data.
* Large temporaries live in per-thread scratch buffers reused across calls (fresh
  large arrays cost page faults); a result never aliases scratch memory, so results
  survive later calls, in any thread.
* Results may be strided views (a convolution returns a view of its matrix product);
  callers that need raw memory order use ``np.ascontiguousarray``.

Which variant runs for which shape, and why (measured on 2 cores, OpenBLAS, float32;
see bench/bench_engine.py):

* ``conv2d`` builds an im2col matrix and multiplies it by the weights (one product per
  group). Where the product is thin (at most 32 outputs per group, so memory-bound), the
  matrix is built and multiplied in column chunks of about ``_CHUNK_BYTES`` (1 MiB),
  each chunk's copies, product and ReLU done while it is in cache (with the direct variant
  below, simple-cnn at batch 1024 took 6.8-8.0 ms against 8.2-11.5 ms with whole
  matrices on the wide grid, one thread or two; chunks alone: 7.0 against 8.1 ms, one
  thread). Wider products
  are done whole: chunks of them ran 10-25% faster on one thread but up to 30% slower
  on two, where BLAS's threads split each small product poorly. The matrix is built one
  of three ways, chosen by shape alone in ``_conv_plan``:
  - "gather": matrices of at most ``_GATHER_MAX`` items (batch 1 and other tiny
    layers, where per-call overhead dominates): one ``np.take`` through a cached index
    array, rows in the weights' own memory order so the weights need no copy.
  - "direct": batch innermost in memory (copies move runs of N values; an NCHW input
    is transposed straight into the zero-padded buffer in cache-sized blocks: one copy
    fewer than transposing first, 4.7 against 5.3 ms on simple-cnn at batch 1024, one
    thread), each chunk one strided copy from the
    zero-padded input. Used when the batch is at least as large as a phase row is
    long, and when the wide grid below would waste more than half the work.
  - "wide": small batches. The zero-padded input split into stride phases, each tap
    one contiguous slice copy, the product computed on a slightly wider grid (see
    ``conv2d``). Against "direct" on the same shapes: contiguous copies where direct's
    runs would be N values short. (With a large batch, direct wins: 1.05x against
    1.30x torch's time on simple-cnn at batch 1024, one thread, no wasted columns.)
  Measured and rejected: splitting the chunks over Python threads with BLAS at one
  thread each (slower than BLAS's own threads on each chunk's product: 8.2 ms against
  5.5 ms on the 64-channel layer, 7.6 against 6.1 on simple-cnn at batch 1024, 2
  threads; the work is mostly copies, which share the memory bandwidth);
  ``np.einsum(optimize=True)`` over a ``sliding_window_view``
  (no faster than the im2col product on the 64-channel layer: it materialises the
  same matrix); one GEMM per tap accumulated into the output (k*k products with
  K = C run well under the BLAS rate and the accumulations cost more than the copies
  they save: 9.5 ms against 6 ms on Conv2d(64, 64, 3, s2) over 8x64x56x56).
* ``max_pool2d`` / ``avg_pool2d`` are separable: one pass of strided ``np.maximum`` /
  ``np.add`` per tap along the height, into scratch, then per tap along the width
  (k_h + k_w passes instead of a k_h*k_w window reduction). Padding is never
  materialised: each tap only touches the outputs whose window it falls in, which
  is exactly -inf padding for max and zero padding for the sum.
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from . import parallel
from .window import Window

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "linear", "relu", "relu_"]

# im2col matrices of at most this many items are built by one gather (see the module docstring)
_GATHER_MAX = 1 << 15
# im2col matrices are built and multiplied in column chunks of about this many bytes (at
# least _CHUNK_MIN columns): each chunk's product and ReLU run while it is in cache
_CHUNK_BYTES = 1 << 20
_CHUNK_MIN = 256
_CHUNK_MAX_OUT = 32      # products with more outputs per group are done whole (see _chunk_columns)
# pools run block by block of about this many bytes of input (each block's passes in cache)
_POOL_BLOCK = 1 << 21

_scratch_space = threading.local()


def _scratch(role: str, shape: tuple, dtype) -> np.ndarray:
    """A per-thread scratch array, reused across calls: fresh large arrays cost page faults.
    The last view handed out per role is kept, so a repeated call costs one lookup."""
    space = _scratch_space.__dict__
    last = space.get(role)
    if last is not None and last[0] == shape and last[1] == dtype:
        return last[2]
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    bufs = space.setdefault("bufs", {})
    buf = bufs.get(role)
    if buf is None or buf.size < nbytes:
        buf = bufs[role] = np.empty(nbytes + 4096, np.uint8)
    view = buf[:nbytes].view(dtype).reshape(shape)
    space[role] = (shape, dtype, view)
    return view


# ---------------------------------------------------------------- elementwise and linear

def relu_(a: np.ndarray) -> None:
    """ReLU in place (NaN stays NaN, like torch.relu)."""
    np.maximum(a, 0, out=a)


def relu(a: np.ndarray) -> np.ndarray:
    """ReLU into a new array (NaN stays NaN, like torch.relu)."""
    return np.maximum(a, 0)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, relu: bool = False) -> np.ndarray:
    """``torch.nn.functional.linear`` on an (N, F) batch: x @ weight.T + bias, in x's dtype."""
    out = x @ weight.astype(x.dtype, copy=False).T
    if bias is not None:
        out += bias.astype(x.dtype, copy=False)
    if relu:
        relu_(out)
    return out


# ---------------------------------------------------------------- convolution

def _row_length(size: int, itemsize: int) -> int:
    """A row stride of at least ``size`` items that is not a multiple of 4 KiB (cache aliasing)."""
    length = -(-size // 16) * 16
    return length + 16 if (length * itemsize) % 4096 == 0 else length


class _Plan(NamedTuple):
    mode: str           # "gather", "wide" or "direct"
    ho: int
    wo: int
    hq: int
    wq: int
    size: int           # columns of the im2col matrix
    phases: int
    phase_len: int
    fills: tuple
    taps: tuple
    index: np.ndarray | None    # gather: (groups, rows, size) indices into [x..., 0]


def _gather_index(n, c, h, w, kh, kw, stride, padding, dilation, groups, ho, wo):
    """Indices of the im2col matrix into ``[x.ravel()..., 0]``: rows (group, channel of the
    group, tap), the order of the weights' own memory, columns (image, output row, output
    column); taps on the padding read the trailing 0."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    cg = c // groups
    y = (np.arange(kh)[:, None] * dh + np.arange(ho)[None, :] * sh - ph).reshape(1, 1, kh, 1, 1, ho, 1)
    x = (np.arange(kw)[:, None] * dw + np.arange(wo)[None, :] * sw - pw).reshape(1, 1, 1, kw, 1, 1, wo)
    chan = np.arange(c).reshape(groups, cg, 1, 1, 1, 1, 1)
    flat = ((np.arange(n).reshape(1, 1, 1, 1, n, 1, 1) * c + chan) * h + y) * w + x
    idx = np.where((y >= 0) & (y < h) & (x >= 0) & (x < w), flat, n * c * h * w)
    idx = np.ascontiguousarray(idx.reshape(groups, cg * kh * kw, n * ho * wo), dtype=np.intp)
    idx.flags.writeable = False
    return idx


def _conv_gather(x, weight, bias, plan, groups):
    """The gather variant: one ``np.take`` builds the matrix, one product per group, bias added after."""
    n, c, h, w = x.shape
    dt = x.dtype
    ext = _scratch("ext", (n * c * h * w + 1,), dt)
    ext[:-1].reshape(x.shape, copy=False)[...] = x
    ext[-1] = 0
    o = weight.shape[0]
    wmat = weight.astype(dt, copy=False)
    if groups == 1:
        out = np.dot(wmat.reshape(o, -1), ext.take(plan.index[0]))
    else:
        out = np.matmul(wmat.reshape(groups, o // groups, -1), ext.take(plan.index)).reshape(o, plan.size)
    if bias is not None:
        out += bias.astype(dt, copy=False)[:, None]
    return out


@lru_cache(maxsize=256)
def _conv_plan(n, c, h, w, kh, kw, stride, padding, dilation, groups, bias):
    """Everything about a convolution's data movement that depends on shapes alone."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    hq, wq = -(-hp // sh), -(-wp // sw)
    rows = kh * kw * c // groups + bias
    if rows * groups * n * ho * wo <= _GATHER_MAX:
        index = _gather_index(n, c, h, w, kh, kw, stride, padding, dilation, groups, ho, wo)
        return _Plan("gather", ho, wo, hq, wq, n * ho * wo, 0, 0, (), (), index)
    if (n > 1 and n >= wq) or hq * wq > 2 * ho * wo:   # batch inner, or the wide grid would waste over half
        return _Plan("direct", ho, wo, hq, wq, ho * wo * n, 0, 0, (), (), None)
    size = n * hq * wq
    # the phases the taps read; where each phase's first real row and column go; tap offsets
    use = sorted({((i * dh) % sh, (j * dw) % sw) for i in range(kh) for j in range(kw)})
    fills = []
    for m, (a, b) in enumerate(use):
        y0, x0 = -((a - ph) // sh), -((b - pw) // sw)           # first phase row/col on the image
        r0, c0 = y0 * sh + a - ph, x0 * sw + b - pw              # ... and its image row/col
        if r0 < h and c0 < w:
            fills.append((m, y0, y0 + len(range(r0, h, sh)), x0, x0 + len(range(c0, w, sw)),
                          slice(r0, None, sh), slice(c0, None, sw)))
    taps = tuple((use.index(((i * dh) % sh, (j * dw) % sw)), (i * dh // sh) * wq + j * dw // sw)
                 for i in range(kh) for j in range(kw))
    extra = max(off for _, off in taps)
    return _Plan("wide", ho, wo, hq, wq, size, len(use), size + extra, tuple(fills), taps, None)


def _batch_last_into(out, x):
    """x (N, C, H, W) copied into ``out``, a (C, H, W, N) array: in blocks of 64 images
    unless x's memory is already batch-last (each block's reads stay in cache, where one
    transposing copy would miss on every item)."""
    src = x.transpose(1, 2, 3, 0)
    n = x.shape[0]
    if n == 1 or x.strides[0] == x.itemsize:
        out[...] = src
        return
    for i in range(0, n, 64):
        out[..., i:i + 64] = src[..., i:i + 64]


def _fill_phases(x, plan, dt):
    """The zero-padded input split into its stride phases, in scratch: (phase, C, flat grid);
    channels shared among the engine's threads."""
    n, c, _, _ = x.shape
    phases = _scratch("phases", (plan.phases, c, plan.phase_len), dt)
    grid = phases[:, :, :n * plan.hq * plan.wq].reshape(-1, c, n, plan.hq, plan.wq, copy=False)
    src = x.transpose(1, 0, 2, 3)

    def fill(first, last):
        phases[:, first:last].fill(0)
        for m, y0, y1, x0, x1, rows_in, cols_in in plan.fills:
            grid[m, first:last, :, y0:y1, x0:x1] = src[first:last, :, rows_in, cols_in]
    parallel.run(fill, c, phases.nbytes)
    return phases


def _copy_taps(phases, plan, cols, start, stop, groups):
    """Columns [start, stop) of the im2col matrix into ``cols`` (groups, taps*C/groups, >= stop-start):
    each tap one contiguous slice of its phase."""
    c, width = phases.shape[1], stop - start
    if groups == 1:
        taps = cols[0].reshape(len(plan.taps), c, cols.shape[2], copy=False)
        for t, (m, off) in enumerate(plan.taps):
            taps[t, :, :width] = phases[m, :, off + start:off + stop]
    else:
        taps = cols.reshape(groups, len(plan.taps), c // groups, cols.shape[2], copy=False)
        for t, (m, off) in enumerate(plan.taps):
            taps[:, t, :, :width] = phases[m, :, off + start:off + stop].reshape(groups, c // groups, width)


def _direct_source(x, plan, kh, kw, stride, padding, dilation, groups, dt):
    """The im2col matrix as a strided view (groups, kh, kw, C/groups, H_o, W_o, N) of the
    zero-padded input, batch innermost, held in scratch."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = _scratch("phases", (c, h + 2 * ph, w + 2 * pw, n), dt)
    if ph:                                   # the border only: the copy below fills the rest
        xp[:, :ph] = 0
        xp[:, ph + h:] = 0
    if pw:
        xp[:, ph:ph + h, :pw] = 0
        xp[:, ph:ph + h, pw + w:] = 0
    _batch_last_into(xp[:, ph:ph + h, pw:pw + w], x)
    bc, bh, bw, bn = xp.strides
    shape = (groups, kh, kw, c // groups, plan.ho, plan.wo, n)
    return np.ndarray(shape, dt, xp, 0, ((c // groups) * bc, dh * bh, dw * bw, bc, sh * bh, sw * bw, bn))


def _direct_chunks(ho, wo, n, step):
    """(column start, column stop, output-row slice, output-column slice) covering the
    (H_o, W_o, N) columns in pieces of about ``step`` columns: whole output rows where one
    fits, else runs of output columns within a row."""
    row = wo * n
    if step >= row:
        per = step // row
        return [(r * row, min(ho, r + per) * row, slice(r, min(ho, r + per)), slice(None)) for r in range(0, ho, per)]
    per = max(1, step // n)
    return [((r * wo + q) * n, (r * wo + min(wo, q + per)) * n, slice(r, r + 1), slice(q, min(wo, q + per)))
            for r in range(ho) for q in range(0, wo, per)]


def _weight_matrix(weight, bias, groups, dt):
    """(groups, O/groups, taps*C/groups [+1]) in the im2col matrix's row order, the bias as a last column."""
    o = weight.shape[0]
    og, k = o // groups, weight[0].size
    wmat = np.empty((groups, og, k + (bias is not None)), dt)
    wmat[:, :, :k] = weight.transpose(0, 2, 3, 1).reshape(groups, og, k)
    if bias is not None:
        wmat[:, :, k] = bias.reshape(groups, og)
    return wmat


def _chunk_columns(size, groups, rows, og, itemsize):
    """Columns per chunk: about ``_CHUNK_BYTES`` of matrix for a thin product (at most
    ``_CHUNK_MAX_OUT`` outputs per group: memory-bound, each column feeds few
    multiply-adds), the whole matrix otherwise (compute-bound: BLAS threads split small
    products poorly)."""
    if og > _CHUNK_MAX_OUT:
        return size
    return min(size, max(_CHUNK_MIN, _CHUNK_BYTES // (groups * rows * itemsize) // 64 * 64))


def _conv_im2col(x, weight, bias, plan, groups, kh, kw, stride, padding, dilation, relu):
    """The wide and direct variants: the bias as a row of ones in the matrix, which is
    built and multiplied in column chunks of about ``_CHUNK_BYTES``, each chunk's copies,
    product and ReLU done while it is in cache. A product done whole (one chunk) has its
    matrix built by all the engine's threads, piece by piece (``parallel``)."""
    o = weight.shape[0]
    dt = x.dtype
    wmat = _weight_matrix(weight, bias, groups, dt)
    rows, k = wmat.shape[2], wmat.shape[2] - (bias is not None)
    og, size = o // groups, plan.size
    whole = np.empty((o, _row_length(size, dt.itemsize)), dt)
    step = _chunk_columns(size, groups, rows, og, dt.itemsize)
    if plan.mode == "wide":
        phases = _fill_phases(x, plan, dt)
        chunks = [(start, min(size, start + step), None, None) for start in range(0, size, step)]
    else:
        view = _direct_source(x, plan, kh, kw, stride, padding, dilation, groups, dt)
        chunks = _direct_chunks(plan.ho, plan.wo, x.shape[0], step)
        step = max(stop - start for start, stop, _, _ in chunks)
    cols = _scratch("cols", (groups, rows, _row_length(step, dt.itemsize)), dt)
    if bias is not None:
        cols[:, k] = 1
    if plan.mode == "wide":
        def fill(pieces, at):
            for start, stop, _, _ in pieces:
                _copy_taps(phases, plan, cols[:, :k, start - at:], start, stop, groups)
    else:
        def fill(pieces, at):
            for start, stop, out_rows, out_cols in pieces:
                part = view[..., out_rows, out_cols, :]
                cols[:, :k, start - at:stop - at].reshape(part.shape, copy=False)[...] = part
    if len(chunks) == 1:
        # one whole product: its matrix is built by all the engine's threads, piece by piece
        nbytes = groups * k * size * dt.itemsize
        parts = parallel.parts(size, nbytes)
        if plan.mode == "wide":
            pieces = [(a, b, None, None) for a, b in parallel.shares(size, parts)]
        else:
            pieces = _direct_chunks(plan.ho, plan.wo, x.shape[0], -(-size // parts))
        parallel.run(lambda a, b: fill(pieces[a:b], 0), len(pieces), nbytes)
        _product(wmat, cols[:, :, :size], whole[:, :size], groups, og, relu)
        return whole[:, :size]
    for chunk in chunks:
        start, stop = chunk[:2]
        fill([chunk], start)
        _product(wmat, cols[:, :, :stop - start], whole[:, start:stop], groups, og, relu)
    return whole[:, :size]


def _product(wmat, cols, out, groups, og, relu):
    """out (O, width) = the weights times the matrix, group by group; then ReLU in place."""
    if groups == 1:
        np.matmul(wmat[0], cols[0], out=out)
    else:
        np.matmul(wmat, cols, out=out.reshape(groups, og, out.shape[1], copy=False))
    if relu:
        relu_(out)


def conv2d(x, weight, bias, stride, padding, dilation, relu=False, groups=1):
    """``torch.nn.functional.conv2d`` (then ReLU if ``relu``) of an (N, C, H, W) batch.

    ``weight`` is (O, C/groups, kh, kw) and ``bias`` (O,) or None, in any float dtype
    (cast to x's); stride, padding and dilation are (h, w) pairs. Output channel o reads
    the input channels of its group g = o // (O/groups) only, as in torch.

    The im2col matrix has one row per (group, tap, input channel of the group) and one
    column per output position; the product with the (O, rows) weights is one BLAS call
    per group. The variant that builds it is chosen by shape (module docstring):

    * gather: one ``np.take`` through a cached index array; the bias is added after.
    * wide: the zero-padded input split into stride phases: phase (a, b) holds padded
      rows a, a+s_h, ... and columns b, b+s_w, ... of every image, each channel stored
      flat, image by image (N, H, W). A kernel tap reads one phase at a fixed offset, so
      its rows are one contiguous slice copy. The product gives every output on a
      "wide" grid of H_q x W_q positions per image, of which H_o x W_o are real.
    * direct: the zero-padded input with the batch innermost (C, H, W, N); the matrix
      is a strided view of it, columns in (H_o, W_o, N) order.

    In both, the bias is a row of ones in the matrix against a bias column of the
    weights. Returns an (N, O, H_o, W_o) array in x's dtype, usually a non-contiguous
    view (direct's memory is (O, H_o, W_o, N)-ordered, which the next convolution reads
    fastest).
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    plan = _conv_plan(n, c, h, w, kh, kw, stride, padding, dilation, groups, bias is not None)
    if plan.mode == "gather":
        out = _conv_gather(x, weight, bias, plan, groups)
        if relu:
            relu_(out)
    else:
        out = _conv_im2col(x, weight, bias, plan, groups, kh, kw, stride, padding, dilation, relu)
    ho, wo = plan.ho, plan.wo
    if plan.mode == "gather":
        return out.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    if plan.mode == "direct":
        return out.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)
    return out.reshape(o, n, plan.hq, plan.wq)[:, :, :ho, :wo].transpose(1, 0, 2, 3)


# ---------------------------------------------------------------- pooling

@lru_cache(maxsize=512)
def _pool_axis(n: int, k: int, s: int, p: int, ceil_mode: bool = False) -> tuple[int, tuple, bool, np.ndarray, np.ndarray]:
    """One axis of a pool: output size, per tap (output slice, input slice) over the taps
    that land inside the input for some output, whether the first tap covers every output,
    how many taps land inside for each output (the divisor without padding) and how many
    inside the padded input (the divisor with padding; short only for a ceil-mode window)."""
    win = Window(k, s, p, 1, ceil_mode)
    o = win.out_size(n)
    taps, count = [], np.zeros(o, np.int64)
    for j in range(k):
        lo, hi = win.tap_outputs(j, n, o)
        if hi > lo:
            start = win.index(lo, j)
            taps.append((slice(lo, hi), slice(start, start + (hi - lo - 1) * s + 1, s), hi - lo == o))
            count[lo:hi] += 1
    taps.sort(key=lambda t: not t[2])                  # a tap that covers everything first
    padded = np.array([win.padded_taps(i, n) for i in range(o)], np.int64)
    count.flags.writeable = padded.flags.writeable = False
    return o, tuple((a, b) for a, b, _ in taps), taps[0][2], count, padded


def _pool_pass(x, axis, k, s, p, ceil_mode, ufunc, fill, out):
    """Reduce windows along ``axis`` (2 or 3) of x into ``out`` with ``ufunc``; out-of-range taps are skipped."""
    _, taps, first_full = _pool_axis(x.shape[axis], k, s, p, ceil_mode)[:3]
    at = (slice(None),) * axis
    if first_full:
        np.copyto(out, x[at + (taps[0][1],)])
        taps = taps[1:]
    else:
        out.fill(fill)
    for so, si in taps:
        dst = out[at + (so,)]
        ufunc(dst, x[at + (si,)], out=dst)


@lru_cache(maxsize=256)
def _pool_blocks(n: int, c: int, plane: int, channels_inner: bool) -> tuple:
    """(images, channels) slices cutting an (N, C) batch of planes of ``plane`` bytes into
    blocks of about ``_POOL_BLOCK`` bytes, each a compact piece of memory: whole channels
    of the batch where one fits, else runs of images of one channel; with the channels
    innermost in memory (NHWC), runs of whole images."""
    if n * c * plane == 0:
        return ((slice(None), slice(None)),)
    if channels_inner:
        per = max(1, _POOL_BLOCK // (c * plane))
        return tuple((slice(i, i + per), slice(None)) for i in range(0, n, per))
    if n * plane <= _POOL_BLOCK:
        per = max(1, _POOL_BLOCK // (n * plane))
        return tuple((slice(None), slice(i, i + per)) for i in range(0, c, per))
    per = max(1, _POOL_BLOCK // plane)
    return tuple((slice(i, i + per), slice(j, j + 1)) for j in range(c) for i in range(0, n, per))


def _pool(x, kernel_size, stride, padding, ceil_mode, ufunc, fill):
    """Separable window reduction, block by block of planes (each block's passes run in
    cache; blocks are shared among the engine's threads): along the height into
    scratch, then along the width into the result."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x.shape
    tall = not (kh == 1 and sh == 1 and ph == 0)
    wide = not (kw == 1 and sw == 1 and pw == 0)
    ho = _pool_axis(h, kh, sh, ph, ceil_mode)[0] if tall else h
    wo = _pool_axis(w, kw, sw, pw, ceil_mode)[0] if wide else w
    out = np.empty((n, c, ho, wo), x.dtype)
    blocks = _pool_blocks(n, c, h * w * x.itemsize, c > 1 and abs(x.strides[1]) < abs(x.strides[3]))

    def work(first, last):
        for images, channels in blocks[first:last]:
            rows = src = x[images, channels]
            if tall:
                rows = _scratch("pool", src.shape[:2] + (ho, w), x.dtype)
                _pool_pass(src, 2, kh, sh, ph, ceil_mode, ufunc, fill, out=rows)
            if wide:
                _pool_pass(rows, 3, kw, sw, pw, ceil_mode, ufunc, fill, out=out[images, channels])
            else:
                out[images, channels] = rows
    parallel.run(work, len(blocks), x.nbytes)
    return out


def max_pool2d(x: np.ndarray, kernel_size, stride, padding, ceil_mode: bool = False) -> np.ndarray:
    """``torch.nn.functional.max_pool2d`` of an (N, C, H, W) batch: -inf padding.

    kernel_size, stride and padding are (h, w) pairs (padding at most half the kernel,
    as torch requires, so every window holds at least one input cell, in ceil mode too).
    Exact: a max does not depend on the order of its terms. NaN propagates as in torch.
    """
    return _pool(x, tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode, np.maximum, -np.inf)


@lru_cache(maxsize=256)
def _avg_divisor(h, w, kernel_size, stride, padding, ceil_mode, count_include_pad, dtype) -> int | np.ndarray:
    """The divisor of each window: the input cells it covers, padding included when
    ``count_include_pad`` (a ceil-mode window's overhang past the padding never is). The
    kernel's area itself where every window has it (one scalar division), else an
    (H_o, W_o) array."""
    which = 4 if count_include_pad else 3
    rows = _pool_axis(h, kernel_size[0], stride[0], padding[0], ceil_mode)[which]
    cols = _pool_axis(w, kernel_size[1], stride[1], padding[1], ceil_mode)[which]
    area = kernel_size[0] * kernel_size[1]
    d = np.outer(rows, cols).astype(dtype)
    if not d.size or d.min() == area:
        return area
    d.flags.writeable = False
    return d


def avg_pool2d(x: np.ndarray, kernel_size, stride, padding, count_include_pad: bool = True,
               ceil_mode: bool = False) -> np.ndarray:
    """``torch.nn.functional.avg_pool2d`` of an (N, C, H, W) batch: zero padding.

    The window sum is divided by the number of cells the window covers: padding
    included when ``count_include_pad`` (torch's default), but never the part of a
    ceil-mode window past the padding, as torch.
    """
    kernel_size, stride, padding = tuple(kernel_size), tuple(stride), tuple(padding)
    total = _pool(x, kernel_size, stride, padding, ceil_mode, np.add, 0)
    total /= _avg_divisor(x.shape[2], x.shape[3], kernel_size, stride, padding, ceil_mode, count_include_pad, x.dtype)
    return total
