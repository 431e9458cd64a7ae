"""Network: the vectorized forward pass against the cell-by-cell formula arithmetic, and structure."""
from functools import partial
from itertools import product

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import cell_value
from strategies import networks as random_networks

import sheetconv as sc

torch = pytest.importorskip("torch")
F = torch.nn.functional

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


# ---------------------------------------------------------------- a Network never changes what it is given

def test_two_networks_from_the_same_layer_objects():
    conv, relu, pool = sc.Conv2d(1, 2, 3), sc.ReLU(), sc.MaxPool2d(2)
    n1 = sc.Network([conv, relu, pool], input_shape=(1, 8, 8))
    n2 = sc.Network([conv, relu, pool], input_shape=(1, 8, 8), seed=3)
    assert conv.name is None and conv.relu is False and relu.name is None and pool.name is None
    for net in (n1, n2):
        assert [l.label for l in net.layers] == ["conv1 (ReLU)", "pool1"]     # ReLU fused once, not twice
        assert all(a is not b for a, b in zip(net.layers, (conv, pool)))
    assert n1["conv1"].weight is not n2["conv1"].weight
    assert not np.array_equal(n1["conv1"].weight, n2["conv1"].weight)         # seeds 0 and 3
    before = n2["conv1"].weight.copy()
    n1["conv1"].weight[...] = 1.0
    np.testing.assert_array_equal(n2["conv1"].weight, before)
    x = np.random.default_rng(0).standard_normal((1, 8, 8))
    for net in (n1, n2):                                       # each against torch with its own weights
        w, b = (torch.from_numpy(net["conv1"].params()[k]) for k in ("weight", "bias"))
        want = F.max_pool2d(F.relu(F.conv2d(torch.from_numpy(x)[None], w, b)), 2)[0].numpy()
        np.testing.assert_allclose(net.forward(x), want, rtol=1e-12, atol=1e-14)


def test_failed_construction_leaves_the_layers_untouched():
    conv, relu, fc = sc.Conv2d(1, 2, 3), sc.ReLU(), sc.Linear(5, 2)
    conv.weight = np.full((2, 1, 3, 3), 0.5)
    with pytest.raises(sc.SheetconvError, match="fc1.*Flatten"):
        sc.Network([conv, relu, fc], input_shape=(1, 8, 8))
    assert conv.relu is False and conv.name is None and relu.name is None and fc.name is None
    np.testing.assert_array_equal(conv.weight, np.full((2, 1, 3, 3), 0.5))
    net = sc.Network([conv, relu, sc.Flatten(), sc.Linear(72, 2)], input_shape=(1, 8, 8))
    np.testing.assert_array_equal(net["conv1"].weight, np.full((2, 1, 3, 3), 0.5))   # explicit weights kept


def test_weights_are_validated_on_assignment():
    net = sc.preset("conv-example")
    with pytest.raises(sc.SheetconvError) as e:
        net["conv1"].weight = np.zeros((3, 3))
    assert all(w in str(e.value) for w in ("conv1.weight", "(2, 1, 3, 3)", "(3, 3)"))
    for bad in (np.nan, np.inf):
        w = np.zeros((2, 2, 3, 3))
        w[1, 0, 2, 2] = bad
        with pytest.raises(sc.SheetconvError, match="conv2.weight.*NaN or Inf"):
            net["conv2"].weight = w
    with pytest.raises(sc.SheetconvError, match="conv1.bias"):
        net["conv1"].bias = ["a", "b"]
    with pytest.raises(sc.SheetconvError, match="no bias"):
        sc.Conv2d(1, 1, 1, bias=False).bias = np.zeros(1)
    assert np.all(net["conv2"].weight != 0)                     # nothing was stored by the refused assignments


def test_integer_index_as_torch():
    net = sc.preset("simple-cnn")
    module = sc.to_torch(net)
    assert net[0] is net["conv1"] and net[-1] is net["flatten"] and net[4] is net["conv5"]
    assert type(module[0]).__name__ == type(net[0]).__name__     # torch counts modules the same way here
    with pytest.raises(sc.SheetconvError, match="out of range"):
        net[6]


def test_reprs_as_torch_shows_them():
    net = sc.Network([sc.Conv2d(1, 4, 3, stride=2, padding=1), sc.MaxPool2d(2), sc.Flatten(), sc.Linear(196, 2)],
                     input_shape=(1, 28, 28), fuse_relu=False)
    module = sc.to_torch(net)
    assert repr(net[0]) == "Conv2d(1, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    for layer, m in zip(net.layers, module):
        assert repr(layer) == repr(m)


def test_load_state_dict_reports_keys_as_torch():
    net = sc.preset("conv-example")
    module = sc.to_torch(net, dtype=torch.float64)
    state = {k: v for k, v in net.state_dict().items() if k != "conv2.bias"}
    state["extra.weight"] = np.zeros(2)
    ours = net.load_state_dict(state, strict=False)
    theirs = module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert ours.missing_keys == theirs.missing_keys == ["conv2.bias"]
    assert ours.unexpected_keys == theirs.unexpected_keys == ["extra.weight"]
    missing, unexpected = net.load_state_dict(net.state_dict())
    assert (missing, unexpected) == ([], [])


def test_precedents_and_dependents_share_one_depth_default():
    import inspect
    net = sc.preset("conv-example")
    defaults = {inspect.signature(f).parameters["depth"].default for f in (net.precedents, net.dependents)}
    assert defaults == {1}
    assert len(net.dependents(("input", 0, 10, 10)).levels) == 1
    assert len(net.precedents(("conv2", 0, 3, 3)).levels) == 1


# ---------------------------------------------------------------- initialisation

def test_a_network_made_without_weights_is_not_zero():
    net = sc.Network([sc.Conv2d(1, 4, 3, stride=2, padding=1), sc.ReLU(),
                      sc.Conv2d(4, 8, 3, stride=2, padding=1), sc.ReLU()], input_shape=(1, 28, 28))
    assert net.activations(sc.digit(0))["conv2"].max() > 0
    for layer, module in zip(net.layers, sc.to_torch(net)[::2]):
        fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)   # torch's own bound
        bound = 1 / np.sqrt(fan_in)
        for value in layer.params().values():
            assert np.abs(value).max() <= bound and np.abs(value).max() > 0.5 * bound


def test_seeded_initialisation_is_reproducible_and_keeps_explicit_weights():
    layers = [sc.Conv2d(1, 2, 3), sc.ReLU(), sc.Flatten(), sc.Linear(72, 3)]
    a, b = (sc.Network(layers, input_shape=(1, 8, 8), seed=5) for _ in range(2))
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    # the documented procedure: per layer in order, weight then bias, uniform(+-1/sqrt(fan_in))
    rng = np.random.default_rng(5)
    for name, fan_in in (("conv1", 9), ("fc1", 72)):
        bound = 1 / np.sqrt(fan_in)
        for key in ("weight", "bias"):
            want = rng.uniform(-bound, bound, size=a.state_dict()[f"{name}.{key}"].shape)
            np.testing.assert_array_equal(a.state_dict()[f"{name}.{key}"], want)
    fixed = layers[3].copy()
    fixed.weight = np.ones((3, 72))
    c = sc.Network(layers[:3] + [fixed], input_shape=(1, 8, 8), seed=5)
    np.testing.assert_array_equal(c["fc1"].weight, np.ones((3, 72)))
    np.testing.assert_array_equal(c["fc1"].bias, a["fc1"].bias)          # draws do not shift
    np.testing.assert_array_equal(c["conv1"].weight, a["conv1"].weight)


def test_zero_weights_warn_in_verify_and_write_workbook(tmp_path):
    net = sc.preset("conv-example")
    net["conv2"].weight = np.zeros((2, 2, 3, 3))
    with pytest.warns(UserWarning, match="verify: .*conv2.* all zero"):
        sc.verify(net, sc.digit(0))
    with pytest.warns(UserWarning, match="write_workbook: .*conv2.* all zero"):
        sc.write_workbook(net, sc.digit(0), tmp_path / "z.xlsx")
