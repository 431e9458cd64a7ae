"""The NumPy forward pass against PyTorch, on random networks.

Two oracles: ``torch.nn`` modules built here from the same weights (independent of
sheetconv's own code), and ``sheetconv.interop.verify``, which the CLI reports from.
"""
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import networks as random_networks

import sheetconv as sc

# this module's sizes; keywords given at a call site override them
networks = partial(random_networks, max_size=20, max_ch=4, max_layers=3, max_conv_kernel=5, max_features=6)
from sheetconv.interop.verify import torch_activations

torch = pytest.importorskip("torch")
nn = torch.nn

SETTINGS = settings(max_examples=70, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOL = {np.float64: 1e-10, np.float32: 1e-5}






def torch_modules(net):
    """One torch.nn module per sheetconv layer, with the same weights."""
    mods = []
    for layer in net.layers:
        if layer.kind == "conv":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None,
                          groups=layer.groups, dtype=torch.float64)
        elif layer.kind == "linear":
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=torch.float64)
        elif layer.kind == "maxpool":
            m = nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding, ceil_mode=layer.ceil_mode)
        elif layer.kind == "avgpool":
            m = nn.AvgPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding,
                             count_include_pad=layer.count_include_pad, ceil_mode=layer.ceil_mode)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        elif layer.kind == "relu":
            m = nn.ReLU()
        elif layer.kind == "batchnorm":
            m = nn.BatchNorm2d(layer.num_features, eps=layer.eps, affine=layer.affine,
                               bias=layer.bias is not None or not layer.affine, dtype=torch.float64).eval()
            with torch.no_grad():
                m.running_mean.copy_(torch.from_numpy(layer.running_mean))
                m.running_var.copy_(torch.from_numpy(layer.running_var))
        elif layer.kind == "adaptiveavgpool":
            m = nn.AdaptiveAvgPool2d(layer.output_size)
        elif layer.kind == "adaptivemaxpool":
            m = nn.AdaptiveMaxPool2d(layer.output_size)
        elif layer.kind == "leakyrelu":
            m = nn.LeakyReLU(layer.negative_slope)
        elif layer.kind == "sigmoid":
            m = nn.Sigmoid()
        elif layer.kind == "tanh":
            m = nn.Tanh()
        elif layer.kind == "silu":
            m = nn.SiLU()
        elif layer.kind == "gelu":
            m = nn.GELU(approximate=layer.approximate)
        else:
            raise AssertionError(layer.kind)
        if layer.kind in ("conv", "linear", "batchnorm"):
            with torch.no_grad():
                if layer.weight is not None:
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
