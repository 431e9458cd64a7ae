"""Network: the vectorized forward pass against the cell-by-cell formula arithmetic, and structure."""
from functools import partial
from itertools import product

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sheetconv as sc
from oracles import cell_value
from strategies import networks as random_networks

# this module's sizes; keywords given at a call site override them
networks = partial(random_networks, max_size=10, max_ch=3, max_layers=4)

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])






def every_cell(net, name):
    c, h, w = net.grid(name)
    return product(range(c), range(h), range(w))


@SETTINGS
@given(networks(), st.integers(0, 2 ** 16))
def test_cell_by_cell_equals_forward_on_every_cell(net, seed):
    x = np.random.default_rng(seed).standard_normal(net.input_shape)
    acts = net.activations(x)
    for name in net.names:
        grid = acts[name].reshape(net.grid(name))
        scale = max(float(np.abs(grid).max(initial=0.0)), 1e-300)
        for c, r, q in every_cell(net, name):
            v = cell_value(net, (name, c, r, q), acts)
            assert abs(v - grid[c, r, q]) <= 1e-12 * max(abs(grid[c, r, q]), scale), (name, c, r, q)


def test_cell_by_cell_on_presets():
    for preset in ("conv-example", "simple-cnn"):
        net = sc.preset(preset)
        acts = net.activations(sc.digit(0))
        for name in net.names:
            grid = acts[name].reshape(net.grid(name))
            for c, r, q in every_cell(net, name):
                assert cell_value(net, (name, c, r, q), acts) == pytest.approx(grid[c, r, q], rel=1e-12, abs=1e-12)


def test_cell_value_reads_only_its_precedents():
    # change every cell of the previous layer outside a cell's window: its value must not move
    net = sc.preset("conv-example", seed=1)
    acts = net.activations(sc.digit(2))
    cell = ("conv2", 1, 3, 4)
    before = cell_value(net, cell, acts)
    window = net.precedents(cell).region("conv1").indices()
    noisy = dict(acts)
    noisy["conv1"] = acts["conv1"].copy()
    for idx in np.ndindex(noisy["conv1"].shape):
        if idx not in window:
            noisy["conv1"][idx] = 1e6
    assert cell_value(net, cell, noisy) == before


def test_forward_batch_equals_single_images():
    net = sc.preset("simple-cnn", seed=2)
    x = np.stack([sc.digit(i) for i in range(4)])
    batch = net.forward(x)
    assert batch.shape == (4, 2)
    for i in range(4):
        np.testing.assert_allclose(net.forward(x[i]), batch[i], rtol=1e-13, atol=1e-15)
    assert net.forward(x[0][0]).shape == (2,)           # an (H, W) image for a 1-channel net


def test_float32_on_request():
    net = sc.preset("conv-example")
    acts = net.activations(sc.digit(0), dtype=np.float32)
    assert {a.dtype for a in acts.values()} == {np.dtype(np.float32)}
    assert net.forward(sc.digit(0)).dtype == np.float64
    with pytest.raises(sc.SheetconvError, match="float32 or float64"):
        net.forward(sc.digit(0), dtype=np.int32)


def test_relu_fusion_and_default_names():
    net = sc.Network([sc.Conv2d(1, 2, 3), sc.ReLU(), sc.MaxPool2d(2), sc.Conv2d(2, 2, 3), sc.ReLU(),
                      sc.AvgPool2d(2), sc.Flatten(), sc.Linear(18, 3), sc.ReLU(), sc.Linear(3, 2)],
                     input_shape=(1, 20, 20))
    assert net.names == ["input", "conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2"]
    assert [l.label for l in net.layers] == ["conv1 (ReLU)", "pool1", "conv2 (ReLU)", "pool2", "flatten",
                                             "fc1 (ReLU)", "fc2"]
    plain = sc.Network([sc.Conv2d(1, 2, 3), sc.ReLU(), sc.ReLU()], input_shape=(1, 5, 5), fuse_relu=False)
    assert plain.names == ["input", "conv1", "relu1", "relu2"]
    assert plain.shapes == {"input": (1, 5, 5), "conv1": (2, 3, 3), "relu1": (2, 3, 3), "relu2": (2, 3, 3)}
    assert plain.input_of("relu1") == "conv1"


def test_fused_relu_equals_separate_relu():
    a = sc.Network([sc.Conv2d(1, 3, 3, padding=1), sc.ReLU()], input_shape=(1, 6, 6)).init_weights(5)
    b = sc.Network([sc.Conv2d(1, 3, 3, padding=1), sc.ReLU()], input_shape=(1, 6, 6), fuse_relu=False)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 6, 6))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert a.forward(x).min() == 0.0


def test_state_dict_round_trip_and_spec():
    net = sc.preset("simple-cnn", seed=4)
    state = net.state_dict()
    assert list(state) == [f"conv{i}.{p}" for i in range(1, 6) for p in ("weight", "bias")]
    assert state["conv2.weight"].shape == (8, 4, 3, 3)
    assert net.param_count() == sum(v.size for v in state.values())
    again = sc.Network.from_spec(net.spec())
    assert again.names == net.names and again.shapes == net.shapes
    again.load_state_dict(state)
    x = sc.digit(5)
    np.testing.assert_array_equal(again.forward(x), net.forward(x))
    assert [l.label for l in again.layers] == [l.label for l in net.layers]


def test_seeded_weights_are_reproducible():
    a, b, c = sc.preset("simple-cnn", seed=7), sc.preset("simple-cnn", seed=7), sc.preset("simple-cnn", seed=8)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    assert not np.array_equal(a["conv3"].weight, c["conv3"].weight)
    # PyTorch's default bound: |w| <= 1/sqrt(fan_in)
    assert np.abs(a["conv2"].weight).max() <= 1 / np.sqrt(4 * 9)


def test_conv_example_default_kernels():
    net = sc.preset("conv-example")
    np.testing.assert_array_equal(net["conv1"].weight[0, 0], [[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(net["conv1"].weight[1, 0], [[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]])
    assert net.shapes == {"input": (1, 28, 28), "conv1": (2, 14, 14), "conv2": (2, 7, 7)}
    assert [l.label for l in net.layers] == ["conv1 (ReLU)", "conv2 (ReLU)"]


def test_macs():
    net = sc.preset("simple-cnn")
    assert net.macs("conv1") == 4 * 14 * 14 * 1 * 9
    assert net.macs("conv2") == 8 * 7 * 7 * 4 * 9
    assert net.macs() == sum(net.macs(n) for n in net.names[1:])
