"""The NumPy kernels against torch.nn.functional: every variant, random shapes, both dtypes."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sheetconv.nn import kernels, parallel

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
TOL = {np.float64: 1e-10, np.float32: 1e-5}


def close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == dtype
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))




def torch_conv(x, w, b, stride, padding, dilation, groups, relu):
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))   # noqa: E731
    y = F.conv2d(t(x), t(w), t(b), stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (F.relu(y) if relu else y).numpy()


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c, o = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    # an input at least as large as the dilated kernel, padding included
    h = draw(st.integers(max(1, (kh - 1) * dilation[0] + 1 - 2 * padding[0]), 14))
    w = draw(st.integers(max(1, (kw - 1) * dilation[1] + 1 - 2 * padding[1]), 14))
    n = draw(st.integers(1, 20))
    return (n, c, h, w), (o, c // groups, kh, kw), stride, padding, dilation, groups, draw(st.booleans()), \
        draw(st.booleans()), draw(st.sampled_from([np.float64, np.float32])), draw(st.integers(0, 2**32 - 1)), \
        draw(st.booleans())


def batch_inner(x):
    """The same values with the batch innermost in memory, as batch-inner convolutions return them."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def check_conv(case):
    xs, ws, stride, padding, dilation, groups, bias, relu, dtype, seed, inner = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    x = batch_inner(x) if inner else x
    w = rng.standard_normal(ws)                              # float64 weights, as layers hold them
    b = rng.standard_normal(ws[0]) if bias else None
    before = x.copy(), w.copy()
    got = kernels.conv2d(x, w, b, stride, padding, dilation, relu, groups=groups)
    want = torch_conv(x, w.astype(dtype), None if b is None else b.astype(dtype), stride, padding, dilation,
                      groups, relu)
    close(got, want, dtype)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])


@SETTINGS
@given(conv_cases())
def test_conv2d_matches_torch(case):
    check_conv(case)


@contextlib.contextmanager
def no_gather():
    """No matrix built by the gather variant: the other variants run on small shapes."""
    saved = kernels._GATHER_MAX
    kernels._GATHER_MAX = -1
    kernels._conv_plan.cache_clear()
    try:
        yield
    finally:
        kernels._GATHER_MAX = saved
        kernels._conv_plan.cache_clear()


@SETTINGS
@given(conv_cases())
def test_conv2d_matches_torch_without_gather(case):
    with no_gather():
        check_conv(case)


@contextlib.contextmanager
def small_chunks():
    """Matrices built and multiplied in chunks of a few columns: every chunking path runs
    on small shapes."""
    saved = kernels._CHUNK_BYTES, kernels._CHUNK_MIN
    kernels._CHUNK_BYTES, kernels._CHUNK_MIN = 64, 1
    kernels._conv_plan.cache_clear()
    try:
        yield
    finally:
        kernels._CHUNK_BYTES, kernels._CHUNK_MIN = saved
        kernels._conv_plan.cache_clear()


@contextlib.contextmanager
def split_work():
    """Every job split among three threads, however small, and pools in blocks of a few
    planes: every path of the threaded work runs on small shapes."""
    saved = parallel.threads, parallel.MIN_SHARE, kernels._POOL_BLOCK
    parallel.threads, parallel.MIN_SHARE, kernels._POOL_BLOCK = (lambda: 3), 1, 64
    kernels._pool_blocks.cache_clear()
    try:
        yield
    finally:
        parallel.threads, parallel.MIN_SHARE, kernels._POOL_BLOCK = saved
        kernels._pool_blocks.cache_clear()


@SETTINGS
@given(conv_cases())
def test_conv2d_split_among_threads_matches_torch(case):
    with no_gather(), split_work():
        check_conv(case)


@SETTINGS
@given(conv_cases())
def test_conv2d_in_small_chunks_matches_torch(case):
    with no_gather(), small_chunks():
        check_conv(case)


# shapes for each variant (the plan says which it chose; see kernels' docstring)
VARIANTS = [
    ("gather", False, (1, 1, 28, 28), (4, 1, 3, 3), (2, 2), (1, 1), (1, 1), 1),
    ("gather", False, (2, 4, 9, 9), (4, 1, 3, 3), (1, 1), (1, 1), (1, 1), 4),                 # depthwise
    ("wide", False, (8, 6, 20, 20), (6, 3, 3, 3), (2, 2), (1, 1), (1, 1), 2),
    ("wide", False, (6, 3, 30, 30), (8, 3, 3, 3), (2, 2), (1, 1), (1, 1), 1),
    ("wide", True, (6, 4, 30, 30), (8, 2, 3, 3), (2, 2), (1, 1), (1, 1), 2),                # batch-inner memory
    ("direct", False, (40, 3, 12, 12), (8, 3, 3, 3), (2, 2), (1, 1), (1, 1), 1),               # batch >= row
    ("direct", True, (40, 4, 12, 12), (8, 2, 3, 3), (2, 2), (1, 1), (1, 1), 2),
    ("wide", False, (8, 2, 80, 67), (3, 2, 3, 2), (3, 2), (2, 0), (2, 1), 1),                 # dilation, strides
    ("direct", False, (256, 3, 6, 6), (5, 3, 5, 5), (1, 1), (0, 0), (1, 1), 1),
    ("direct", True, (256, 3, 6, 6), (5, 3, 5, 5), (1, 1), (0, 0), (1, 1), 1),
    ("direct", False, (64, 4, 7, 7), (4, 2, 4, 3), (3, 1), (2, 1), (1, 2), 2),                # any memory layout
    ("direct", True, (64, 4, 7, 7), (4, 2, 4, 3), (3, 1), (2, 1), (1, 2), 2),
]


@pytest.mark.parametrize("mode, inner, xs, ws, stride, padding, dilation, groups", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias, relu", [(True, True), (False, False)])
def test_conv2d_each_variant(mode, inner, xs, ws, stride, padding, dilation, groups, dtype, bias, relu):
    n, c, h, w = xs
    plan = kernels._conv_plan(n, c, h, w, ws[2], ws[3], stride, padding, dilation, groups, bias)
    assert plan.mode == mode
    check_conv((xs, ws, stride, padding, dilation, groups, bias, relu, dtype, 7, inner))


@pytest.mark.parametrize("mode, inner, xs, ws, stride, padding, dilation, groups", VARIANTS)
def test_conv2d_each_variant_in_small_chunks(mode, inner, xs, ws, stride, padding, dilation, groups):
    n, c, h, w = xs
    with small_chunks():
        plan = kernels._conv_plan(n, c, h, w, ws[2], ws[3], stride, padding, dilation, groups, True)
        assert plan.mode == mode
        check_conv((xs, ws, stride, padding, dilation, groups, True, True, np.float32, 11, inner))


@pytest.mark.parametrize("mode, inner, xs, ws, stride, padding, dilation, groups", VARIANTS)
def test_conv2d_each_variant_split_among_threads(mode, inner, xs, ws, stride, padding, dilation, groups):
    n, c, h, w = xs
    with split_work():
        plan = kernels._conv_plan(n, c, h, w, ws[2], ws[3], stride, padding, dilation, groups, False)
        assert plan.mode == mode
        check_conv((xs, ws, stride, padding, dilation, groups, False, True, np.float64, 13, inner))


def test_conv2d_reads_any_memory_layout_and_results_survive_later_calls():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 3, 12, 10))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    outs = []
    for x in (base, np.asfortranarray(base), base.transpose(3, 2, 1, 0).copy().transpose(3, 2, 1, 0),
              np.pad(base, ((0, 0), (0, 0), (0, 0), (0, 5)))[..., :10], base[:1], base[:, :, :5]):
        outs.append((kernels.conv2d(x, w, b, (2, 1), (1, 1), (1, 1), False), x))
    for got, x in outs:                                     # all computed before any is checked
        close(got, torch_conv(x, w, b, (2, 1), (1, 1), (1, 1), 1, False), np.float64)
    # a conv output (a strided view) fed to the next conv
    first = outs[0][0]
    w2 = rng.standard_normal((2, 4, 3, 3))
    close(kernels.conv2d(first, w2, None, (2, 2), (0, 0), (1, 1), False),
          torch_conv(first, w2, None, (2, 2), (0, 0), (1, 1), 1, False), np.float64)


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 13))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), 13))
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 5)), h, w)
    return shape, (kh, kw), stride, padding, draw(st.sampled_from([np.float64, np.float32])), \
        draw(st.integers(0, 2**32 - 1)), draw(st.booleans())


@SETTINGS
@given(pool_cases(), st.booleans())
def test_pools_match_torch(case, count_include_pad):
    check_pools(case, count_include_pad)


@SETTINGS
@given(pool_cases(), st.booleans())
def test_pools_in_blocks_split_among_threads_match_torch(case, count_include_pad):
    with split_work():
        check_pools(case, count_include_pad)


def check_pools(case, count_include_pad):
    shape, k, s, p, dtype, seed, ceil_mode = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if seed % 3 == 1:                                           # any memory layout: W before H,
        x = x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)
    elif seed % 3 == 2:                                         # channels last (NHWC)
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    before = x.copy()
    tx = torch.from_numpy(np.ascontiguousarray(x))
    got = kernels.max_pool2d(x, k, s, p, ceil_mode)
    want = F.max_pool2d(tx, k, s, p, ceil_mode=ceil_mode).numpy()
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)                  # a max is exact
    got = kernels.avg_pool2d(x, k, s, p, count_include_pad, ceil_mode)
    close(got, F.avg_pool2d(tx, k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad).numpy(), dtype)
    np.testing.assert_array_equal(x, before)


def test_max_pool_pads_with_minus_infinity_and_keeps_nan():
    x = -np.ones((1, 1, 3, 3)) * 5
    x[0, 0, 2, 2] = np.nan
    tx = torch.from_numpy(x)
    got = kernels.max_pool2d(x, (2, 2), (1, 1), (1, 1))
    np.testing.assert_array_equal(got, F.max_pool2d(tx, 2, 1, 1).numpy())
    assert (got[~np.isnan(got)] == -5).all() and np.isnan(got).sum() == 4


def test_pools_of_an_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    for got, want in ((kernels.max_pool2d(x, (3, 3), (2, 2), (1, 1)), F.max_pool2d(torch.from_numpy(x), 3, 2, 1)),
                      (kernels.avg_pool2d(x, (2, 2), (2, 2), (0, 0)), F.avg_pool2d(torch.from_numpy(x), 2, 2))):
        assert got.shape == tuple(want.shape) == (0, 3, 4, 4) and got.dtype == np.float32


def test_pool_results_survive_later_calls():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 3, n, n)) for n in (9, 20, 9)]
    outs = [kernels.max_pool2d(x, (3, 3), (2, 2), (1, 1)) for x in xs]
    for x, y in zip(xs, outs):
        np.testing.assert_array_equal(y, F.max_pool2d(torch.from_numpy(x), 3, 2, 1).numpy())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias, relu", [(True, True), (False, False)])
def test_linear_and_relu(dtype, bias, relu):
    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((3, 6)), rng.standard_normal(3) if bias else None
    x = rng.standard_normal((4, 6)).astype(dtype)
    t = lambda a: torch.from_numpy(a.astype(dtype))           # noqa: E731
    want = F.linear(t(x), t(w), None if b is None else t(b))
    want = (F.relu(want) if relu else want).numpy()
    close(kernels.linear(x, w, b, relu), want, dtype)
    y = np.array([-1.0, 0.0, 2.0, np.nan], dtype)
    np.testing.assert_array_equal(kernels.relu(y), F.relu(torch.from_numpy(y)).numpy())
    kernels.relu_(y)
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 2.0, np.nan], dtype))
