"""The NumPy forward pass against PyTorch, on random networks.

Two oracles: ``torch.nn`` modules built here from the same weights (independent of
sheetconv's own code), and ``sheetconv.verify``, which the CLI reports from.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sheetconv as sc
from sheetconv.verify import torch_activations

torch = pytest.importorskip("torch")
nn = torch.nn

SETTINGS = settings(max_examples=70, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOL = {np.float64: 1e-10, np.float32: 1e-5}


def out_len(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@st.composite
def networks(draw, max_size=20, max_ch=4, max_layers=3):
    """Random chains: Conv2d (kernel 1-5, also non-square; stride 1-3; padding 0-2; dilation 1-2),
    ReLU, MaxPool2d / AvgPool2d, and optionally Flatten + Linear heads."""
    c, h, w = draw(st.integers(1, max_ch)), draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    shape = (c, h, w)
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(["conv", "conv", "relu", "maxpool", "avgpool"]))
        if kind == "relu":
            layers.append(sc.ReLU())
            continue
        if kind == "conv":
            k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
            s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
            d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        else:
            k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
            s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
            d = (1, 1)
        ho, wo = out_len(h, k[0], s[0], p[0], d[0]), out_len(w, k[1], s[1], p[1], d[1])
        if ho < 1 or wo < 1:
            continue
        if kind == "conv":
            co = draw(st.integers(1, max_ch))
            layers.append(sc.Conv2d(c, co, k, stride=s, padding=p, dilation=d, bias=draw(st.booleans())))
            c = co
        elif kind == "maxpool":
            layers.append(sc.MaxPool2d(k, stride=s, padding=p))
        else:
            layers.append(sc.AvgPool2d(k, stride=s, padding=p, count_include_pad=draw(st.booleans())))
        h, w = ho, wo
    if draw(st.booleans()):
        layers.append(sc.Flatten())
        feats = c * h * w
        for _ in range(draw(st.integers(1, 2))):
            out = draw(st.integers(1, 6))
            layers.append(sc.Linear(feats, out, bias=draw(st.booleans())))
            if draw(st.booleans()):
                layers.append(sc.ReLU())
            feats = out
    if not layers:
        layers.append(sc.ReLU())
    net = sc.Network(layers, input_shape=shape, fuse_relu=draw(st.booleans()))
    net.init_weights(draw(st.integers(0, 2 ** 16)))
    return net


def torch_modules(net):
    """One torch.nn module per sheetconv layer, with the same weights."""
    mods = []
    for layer in net.layers:
        if layer.kind == "conv":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None,
                          dtype=torch.float64)
        elif layer.kind == "linear":
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=torch.float64)
        elif layer.kind == "maxpool":
            m = nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding)
        elif layer.kind == "avgpool":
            m = nn.AvgPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding,
                             count_include_pad=layer.count_include_pad)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        elif layer.kind == "relu":
            m = nn.ReLU()
        else:
            raise AssertionError(layer.kind)
        if layer.kind in ("conv", "linear"):
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.weight))
                if layer.bias is not None:
                    m.bias.copy_(torch.from_numpy(layer.bias))
            if layer.relu:
                m = nn.Sequential(m, nn.ReLU())
        mods.append(m)
    return mods


def torch_outputs(net, x, dtype):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    h = torch.from_numpy(np.asarray(x, dtype=np.float64)).to(tdt)
    single = h.ndim == 3
    if single:
        h = h[None]
    out = {}
    with torch.no_grad():
        for layer, m in zip(net.layers, torch_modules(net)):
            h = m.to(tdt)(h)
            out[layer.name] = h[0].numpy() if single else h.numpy()
    return out


def assert_close(ours, theirs, tol, what):
    assert ours.shape == theirs.shape, what
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(ours.astype(np.float64), theirs.astype(np.float64), rtol=tol, atol=tol * scale,
                               err_msg=what)


@settings(SETTINGS, max_examples=150)
@given(networks(), st.sampled_from([None, 1, 3]), st.sampled_from([np.float64, np.float32]), st.integers(0, 2 ** 16))
def test_forward_matches_torch_nn(net, batch, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = net.input_shape if batch is None else (batch, *net.input_shape)
    x = rng.standard_normal(shape)
    ours = net.activations(x, dtype)
    theirs = torch_outputs(net, x, dtype)
    for layer in net.layers:
        assert ours[layer.name].dtype == dtype
        assert_close(ours[layer.name], theirs[layer.name], TOL[dtype], f"{layer.name} {net!r}")
    np.testing.assert_array_equal(net.forward(x, dtype), ours[net.layers[-1].name])


@SETTINGS
@given(networks(max_layers=2), st.sampled_from([None, 2]), st.sampled_from([np.float64, np.float32]))
def test_verify_report_within_tolerance(net, batch, dtype):
    x = np.random.default_rng(0).uniform(0, 1, net.input_shape if batch is None else (batch, *net.input_shape))
    report = sc.verify(net, x, dtype)
    assert [l.name for l in report.layers] == [l.name for l in net.layers]
    assert report.ok(), str(report)
    # verify's own torch activations agree with the independent torch.nn modules
    theirs = torch_outputs(net, x, dtype)
    for name, arr in torch_activations(net, x, dtype).items():
        if name != "input":
            assert_close(arr, theirs[name], TOL[dtype], name)


@pytest.mark.parametrize("name", ["conv-example", "simple-cnn"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_presets_match_torch_on_digits(name, dtype):
    net = sc.preset(name, seed=3)
    x = np.stack([sc.digit(i) for i in range(10)])
    theirs = torch_outputs(net, x, dtype)
    ours = net.activations(x, dtype)
    for layer in net.layers:
        assert_close(ours[layer.name], theirs[layer.name], TOL[dtype], layer.name)
    single = net.activations(x[4], dtype)
    for layer in net.layers:
        assert_close(single[layer.name], theirs[layer.name][4], TOL[dtype], layer.name)


def test_verify_detects_a_wrong_engine(monkeypatch):
    net = sc.preset("conv-example")
    x = sc.digit(0)
    good = sc.verify(net, x)
    assert good.ok() and good.max_rel < 1e-12
    layer = net["conv2"]
    real = type(layer).forward
    monkeypatch.setattr(layer, "forward", lambda h: real(layer, h) * (1 + 1e-6))
    bad = sc.verify(net, x)
    assert not bad.ok()
    assert [l.name for l in bad.layers if l.max_rel > 1e-8] == ["conv2"]
