"""Layers one by one: window arithmetic, the convolution kernel's code paths, pools, configs."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sheetconv as sc
from sheetconv.nn.kernels import conv2d
from sheetconv.nn.layers import Window

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3), st.integers(1, 25))
def test_window_taps_and_out_size(k, s, p, d, n):
    win = Window(k, s, p, d)
    assert win.span == d * (k - 1) + 1
    assert win.out_size(n) == (n + 2 * p - d * (k - 1) - 1) // s + 1          # PyTorch's formula
    for o in range(max(win.out_size(n), 0)):
        inside = [t for t in range(k) if 0 <= o * s - p + t * d < n]
        lo, hi = win.taps(o, n)
        assert list(range(lo, hi)) == inside


def torch_conv(x, w, b, stride, padding, dilation, relu):
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))   # noqa: E731
    y = F.conv2d(t(x), t(w), t(b), stride=stride, padding=padding, dilation=dilation)
    return (F.relu(y) if relu else y).numpy()


# shapes chosen to take each path of conv2d: the phase ("wide") grid and the direct gather
PATHS = [
    ((2, 3, 9, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1)),        # wide, stride 1
    ((3, 2, 11, 10), (5, 2, 3, 3), (2, 2), (1, 1), (1, 1)),      # wide, stride 2 (phases)
    ((1, 2, 13, 12), (3, 2, 3, 2), (3, 2), (2, 0), (2, 1)),      # wide, stride 3 x 2, dilation
    ((2, 1, 16, 16), (2, 1, 3, 3), (2, 2), (1, 1), (2, 2)),      # wide, dilation 2 with stride 2: one phase used
    ((2, 2, 5, 5), (3, 2, 5, 5), (1, 1), (0, 0), (1, 1)),        # direct gather: 1x1 output from a 5x5 input
    ((1, 3, 4, 7), (2, 3, 4, 3), (3, 1), (2, 1), (1, 2)),        # direct gather, padding and dilation
    ((4, 1, 1, 1), (2, 1, 3, 3), (1, 1), (1, 1), (1, 1)),        # 1x1 image, padding only around it
]


@pytest.mark.parametrize("xs, ws, stride, padding, dilation", PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias, relu", [(True, True), (False, False)])
def test_conv2d_paths_match_torch(xs, ws, stride, padding, dilation, dtype, bias, relu):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    got = conv2d(x, w, b, stride, padding, dilation, relu)
    want = torch_conv(x, w, b, stride, padding, dilation, relu)
    assert got.shape == want.shape and got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_conv2d_reads_any_memory_layout():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 3, 12, 10))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    want = torch_conv(base, w, b, (2, 1), (1, 1), (1, 1), False)
    for x in (base, np.asfortranarray(base), base.transpose(3, 2, 1, 0).copy().transpose(3, 2, 1, 0),
              np.pad(base, ((0, 0), (0, 0), (0, 0), (0, 5)))[..., :10]):
        np.testing.assert_allclose(conv2d(x, w, b, (2, 1), (1, 1), (1, 1), False), want, rtol=1e-12, atol=1e-12)
    # a conv output (a strided view) fed to the next conv
    first = conv2d(base, w, b, (1, 1), (1, 1), (1, 1), True)
    w2 = rng.standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(conv2d(first, w2, None, (2, 2), (0, 0), (1, 1), False),
                               torch_conv(np.ascontiguousarray(first), w2, None, (2, 2), (0, 0), (1, 1), False),
                               rtol=1e-12, atol=1e-12)


def test_conv2d_outputs_survive_later_calls():
    # the kernel reuses scratch memory between calls: earlier results must not change
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3))
    xs = [rng.standard_normal((2, 2, n, n)) for n in (8, 20, 5, 8)]
    outs = [conv2d(x, w, None, (1, 1), (1, 1), (1, 1), False) for x in xs]
    for x, y in zip(xs, outs):
        np.testing.assert_allclose(y, torch_conv(x, w, None, (1, 1), (1, 1), (1, 1), False), rtol=1e-12, atol=1e-12)


def test_conv2d_in_threads():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3))
    xs = [rng.standard_normal((3, 3, 10 + i, 12)) for i in range(6)]
    want = [torch_conv(x, w, None, (2, 2), (1, 1), (1, 1), True) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(20):
            got[i] = conv2d(xs[i], w, None, (2, 2), (1, 1), (1, 1), True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0)), (1, 3, 0), (3, 1, 1), (2, 3, 1)])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pools_match_torch(k, s, p, count_include_pad, ceil_mode):
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 8))
    mx = sc.MaxPool2d(k, s, p, ceil_mode=ceil_mode)
    av = sc.AvgPool2d(k, s, p, count_include_pad=count_include_pad, ceil_mode=ceil_mode)
    tx = torch.from_numpy(x)
    np.testing.assert_array_equal(mx.forward(x), F.max_pool2d(tx, k, s, p, ceil_mode=ceil_mode).numpy())
    np.testing.assert_allclose(av.forward(x), F.avg_pool2d(tx, k, s, p, ceil_mode=ceil_mode,
                                                           count_include_pad=count_include_pad).numpy(),
                               rtol=1e-12, atol=1e-14)
    # the stride PyTorch's own modules settle on (the kernel size when not given)
    as_pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)   # noqa: E731
    assert mx.stride == as_pair(torch.nn.MaxPool2d(k, s, p).stride)
    assert av.stride == as_pair(torch.nn.AvgPool2d(k, s, p).stride)


def test_linear_relu_flatten():
    rng = np.random.default_rng(4)
    fc = sc.Linear(6, 3, relu=True)
    fc.weight, fc.bias = rng.standard_normal((3, 6)), rng.standard_normal(3)
    x = rng.standard_normal((4, 6))
    want = F.relu(F.linear(torch.from_numpy(x), torch.from_numpy(fc.weight), torch.from_numpy(fc.bias))).numpy()
    np.testing.assert_allclose(fc.forward(x), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(sc.ReLU().forward(x), np.where(x > 0, x, 0))
    img = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(sc.Flatten().forward(img), torch.flatten(torch.from_numpy(img), 1).numpy())


@pytest.mark.parametrize("layer", [
    sc.Conv2d(2, 3, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False, relu=True),
    sc.MaxPool2d(3, 2, 1), sc.AvgPool2d(2, count_include_pad=False), sc.Flatten(), sc.ReLU(),
    sc.Linear(4, 2, bias=False),
])
def test_config_round_trip(layer):
    again = sc.Layer.from_config(layer.config())
    assert type(again) is type(layer) and again.config() == layer.config()
    assert repr(again) == repr(layer)
    for key, value in layer.params().items():
        assert again.params()[key].shape == value.shape


def test_parameter_layouts_and_labels():
    conv = sc.Conv2d(3, 5, (2, 4))
    assert conv.weight.shape == (5, 3, 2, 4) and conv.bias.shape == (5,)
    assert conv.kernel_size == (2, 4) and conv.stride == (1, 1) and conv.padding == (0, 0)
    assert conv.kind == "conv" and conv.channels == "all"
    assert sc.MaxPool2d(2).channels == "same" and sc.Linear(3, 2).weight.shape == (2, 3)
    net = sc.Network([sc.Conv2d(1, 2, 3), sc.ReLU(), sc.MaxPool2d(2)], input_shape=(1, 8, 8))
    assert [l.label for l in net.layers] == ["conv1 (ReLU)", "pool1"]
    assert net["conv1"].windows == (Window(3, 1, 0, 1), Window(3, 1, 0, 1))
    assert net["pool1"].windows == (Window(2, 2, 0, 1), Window(2, 2, 0, 1))
