"""from_torch / to_torch / load_state_dict_file against real torch modules.

The oracle is always the torch module's own output on the same input.
"""
from __future__ import annotations

import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from fastbook import conv, simple_cnn  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st
from torch import nn  # noqa: E402

import sheetconv as sc  # noqa: E402
from sheetconv.interop.state_dict import load_state_dict_file, map_state_dict  # noqa: E402
from sheetconv.interop.torch_modules import from_torch, to_torch  # noqa: E402


def torch_out(module, x: np.ndarray) -> np.ndarray:
    """The module's own float64 output."""
    import copy
    m = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


def assert_roundtrip(module, input_shape, n=3, seed=0):
    """from_torch reproduces the module in float64; to_torch gives back identical float32 outputs."""
    module.eval()
    net = from_torch(module, input_shape)
    x = np.random.default_rng(seed).standard_normal((n, *input_shape))
    ref = torch_out(module, x)
    ours = net.forward(x)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    back = to_torch(net)
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        assert torch.equal(back(xt), module(xt))
    return net


# ---------------------------------------------------------------- round trips

def test_simple_cnn_roundtrip_names_and_fusion():
    torch.manual_seed(0)
    m = simple_cnn()
    net = assert_roundtrip(m, (1, 28, 28))
    assert net.names == ["input", "conv1", "conv2", "conv3", "conv4", "conv5", "flatten"]
    assert [l.relu for l in net.layers] == [True, True, True, True, False, False]
    assert [net.shapes[n] for n in net.names[1:]] == [(4, 14, 14), (8, 7, 7), (16, 4, 4), (32, 2, 2), (2, 1, 1), (2,)]
    np.testing.assert_array_equal(net["conv3"].weight, m[2][0].weight.detach().double().numpy())


def test_to_torch_and_state_dict_keys():
    net = sc.preset("simple-cnn", seed=3)
    m = sc.to_torch(net)
    assert list(m.state_dict()) == list(net.state_dict())
    x = sc.digit(0)[None]
    np.testing.assert_allclose(net.forward(x), torch_out(m, x), rtol=1e-6, atol=1e-7)   # m holds float32 weights
    m64 = sc.to_torch(net, torch.float64)
    np.testing.assert_allclose(net.forward(x), torch_out(m64, x), rtol=1e-12, atol=1e-14)


def test_pools_and_linear_head():
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 6, (3, 5), padding=(1, 2), dilation=(1, 1)), nn.ReLU(inplace=True)),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(6, 8, 3, stride=1, padding=2, dilation=2, bias=False), nn.ReLU()),
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Sequential(nn.Linear(8 * 4 * 4, 20), nn.ReLU(), nn.Identity(), nn.Linear(20, 10)),
    )
    net = assert_roundtrip(m, (3, 16, 16), n=4)
    assert [l.kind for l in net.layers] == ["conv", "maxpool", "conv", "avgpool", "flatten", "linear", "linear"]
    assert net["conv2"].bias is None and net["fc1"].relu and not net["fc2"].relu


def test_input_shape_with_batch_and_unfused():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.ReLU())
    net = from_torch(m, (8, 1, 5, 5), fuse_relu=False)
    assert net.input_shape == (1, 5, 5) and [l.kind for l in net.layers] == ["conv", "relu", "relu"]


_CONV = st.fixed_dictionaries({
    "k": st.tuples(st.integers(1, 4), st.integers(1, 4)), "s": st.integers(1, 3),
    "p": st.integers(0, 2), "d": st.integers(1, 2), "c": st.integers(1, 4), "bias": st.booleans()})


@st.composite
def random_sequential(draw):
    """A random nested nn.Sequential of convs, ReLUs and pools, then maybe a Linear head."""
    h = w = draw(st.integers(6, 16))
    c = draw(st.integers(1, 3))
    input_shape = (c, h, w)
    mods = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg"]))
        if kind == "conv":
            cfg = draw(_CONV)
            k, s, d = cfg["k"], cfg["s"], cfg["d"]
            p = min(cfg["p"], k[0] // 2 + 1)
            if any((ki - 1) * d + 1 > n + 2 * p for ki, n in zip(k, (h, w))):
                continue
            block = [nn.Conv2d(c, cfg["c"], k, stride=s, padding=p, dilation=d, bias=cfg["bias"])]
            if draw(st.booleans()):
                block.append(nn.ReLU())
            c = cfg["c"]
            h, w = ((n + 2 * p - (ki - 1) * d - 1) // s + 1 for ki, n in zip(k, (h, w)))
        else:
            k = draw(st.integers(1, 3))
            if k > min(h, w):
                continue
            s, p = draw(st.integers(1, 2)), draw(st.integers(0, k // 2))
            block = [nn.MaxPool2d(k, s, p) if kind == "max" else
                     nn.AvgPool2d(k, s, p, count_include_pad=draw(st.booleans()))]
            h, w = ((n + 2 * p - k) // s + 1 for n in (h, w))
        mods.append(nn.Sequential(*block) if draw(st.booleans()) else block[0] if len(block) == 1 else nn.Sequential(*block))
    mods.append(nn.Flatten())
    if draw(st.booleans()):
        mods.append(nn.Sequential(nn.Linear(c * h * w, 5), nn.ReLU(), nn.Linear(5, 3)))
    if draw(st.booleans()):                               # one more level of nesting
        cut = draw(st.integers(0, len(mods)))
        mods = mods[:cut] + [nn.Sequential(*mods[cut:])] if cut < len(mods) else mods
    return nn.Sequential(*mods), input_shape


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_sequential(), st.integers(0, 2**31 - 1))
def test_random_nested_sequentials_roundtrip(model_and_shape, seed):
    m, input_shape = model_and_shape
    torch.manual_seed(seed)
    for p in m.parameters():                          # make the weights depend on the drawn seed
        nn.init.uniform_(p, -1, 1)
    assert_roundtrip(m, input_shape, n=2, seed=seed % 1000)


# ---------------------------------------------------------------- refused modules

class Residual(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv = nn.Conv2d(n, n, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


class Scaled(nn.Module):         # a block torch.fx traces, with an operation sheetconv has no formula for
    def __init__(self, n):
        super().__init__()
        self.conv = nn.Conv2d(n, n, 3, padding=1)

    def forward(self, x):
        return self.conv(x) * 2


class MySequential(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


@pytest.mark.parametrize("model, path, words", [
    (nn.Sequential(conv(1, 4), nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))), "1.1", ["BatchNorm2d"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout(0.2)), "1", ["Dropout", "training", "eval()"]),
    (nn.Sequential(conv(1, 4), Scaled(4)), "1", ["Scaled", "operator.mul", "not supported"]),
    (nn.Sequential(conv(1, 4), nn.ConvTranspose2d(4, 4, 3)), "1", ["ConvTranspose2d"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")), "0", ["padding_mode", "reflect"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding="same")), "0", ["string padding", "same"]),
    (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "0", ["MaxPool2d", "return_indices"]),
    (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), "0", ["AvgPool2d", "divisor_override"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Softplus()), "1", ["Softplus"]),
    (nn.Sequential(MySequential(nn.Conv2d(1, 4, 3))), "0", ["MySequential"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(26, 3)), "1", ["Linear", "Flatten"]),
])
def test_unsupported_modules_name_type_and_path(model, path, words):
    features = nn.Sequential()
    features.add_module("features", model)
    with pytest.raises(sc.SheetconvError) as e:
        from_torch(features, (1, 28, 28))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"features.{path} (")
    for word in words:
        assert word in msg


def _with_running_stats(m, shape, seed=0):
    """Train-mode passes give every BatchNorm non-trivial running statistics; random affine too."""
    torch.manual_seed(seed)
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        if bn.affine:
            nn.init.uniform_(bn.weight, 0.5, 2.0)
        if bn.bias is not None:
            nn.init.uniform_(bn.bias, -1.0, 1.0)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, *shape) * 3 + 1)
    return m.eval()


def test_fold_batchnorm_matches_the_module_in_eval_mode():
    m = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                      nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, bias=False), nn.Dropout(0.5),
                                    nn.BatchNorm2d(6, eps=1e-3, affine=False), nn.ReLU()),
                      nn.Conv2d(6, 2, 3), nn.Flatten())
    _with_running_stats(m, (1, 12, 12))
    net = from_torch(m, (1, 12, 12), fold_batchnorm=True)
    assert [l.label for l in net.layers] == ["conv1 (ReLU)", "conv2 (ReLU)", "conv3", "flatten"]
    assert net["conv2"].bias is not None                     # BatchNorm's shift lands in a new bias
    x = np.random.default_rng(1).standard_normal((4, 1, 12, 12))
    np.testing.assert_allclose(net.forward(x), torch_out(m, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model, words", [
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), "fold_batchnorm=True"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4).eval()), "it follows 1 (ReLU)"),
    (lambda: nn.Sequential(nn.BatchNorm2d(1).eval(), nn.Conv2d(1, 4, 3)), "it follows nothing"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4).train()), "training mode"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False).eval()),
     "no running statistics"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 3), nn.BatchNorm1d(3).eval()), "only BatchNorm2d"),
])
def test_fold_batchnorm_refusals(model, words):
    with pytest.raises(sc.SheetconvError) as e:
        from_torch(model(), (1, 6, 6), fold_batchnorm="fold" not in words)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_eval_batchnorm_becomes_visible_cells_and_matches_the_module():
    m = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                      nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, bias=False), nn.BatchNorm2d(6, eps=1e-3, affine=False)),
                      nn.Conv2d(6, 2, 3), nn.BatchNorm2d(2, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    _with_running_stats(m, (1, 12, 12))
    net = from_torch(m, (1, 12, 12))
    assert [l.label for l in net.layers] == ["conv1", "bn1 (ReLU)", "conv2", "bn2", "conv3", "bn3", "pool1",
                                             "flatten"]
    np.testing.assert_array_equal(net["bn1"].running_var, m[0][1].running_var.double().numpy())
    assert net["bn2"].weight is None and net["bn3"].bias is None and net["bn3"].weight is not None
    x = np.random.default_rng(1).standard_normal((4, 1, 12, 12))
    np.testing.assert_allclose(net.forward(x), torch_out(m, x), rtol=1e-10, atol=1e-12)
    # the module's own state dict loads onto the network; num_batches_tracked is not a cell
    state = {k: v.double().numpy() for k, v in m.state_dict().items()}
    assert any(k.endswith("num_batches_tracked") for k in state)
    assert set(map_state_dict(state, net)) == set(net.state_dict())
    assert "bn1.running_mean" in net.state_dict() and net.param_count() == sum(p.numel() for p in m.parameters())
    back = to_torch(net, torch.float64)
    np.testing.assert_allclose(torch_out(back, x), torch_out(m, x), rtol=1e-10, atol=1e-12)


def test_grouped_and_depthwise_convolutions_and_activations_round_trip():
    m = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1, groups=2), nn.LeakyReLU(0.1),
                      nn.Conv2d(6, 6, 3, stride=2, groups=6, bias=False), nn.BatchNorm2d(6), nn.SiLU(),
                      nn.Conv2d(6, 4, 1, groups=2), nn.GELU(), nn.AdaptiveMaxPool2d((2, 3)), nn.Tanh(),
                      nn.Flatten(), nn.Linear(24, 3), nn.Sigmoid())
    _with_running_stats(m, (2, 9, 9))
    net = assert_roundtrip(m, (2, 9, 9))
    assert [l.groups for l in net.layers if l.kind == "conv"] == [2, 6, 2]
    assert net["conv2"].weight.shape == (6, 1, 3, 3)


def test_training_mode_batchnorm_is_refused():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(sc.SheetconvError, match=r"^1 \(BatchNorm2d\): in training mode .*module.eval\(\)"):
        from_torch(m, (1, 6, 6))


def test_dropout_in_eval_mode_is_dropped_and_hooks_refused():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.3), nn.Flatten()).eval()
    assert [l.kind for l in assert_roundtrip(m, (1, 6, 6)).layers] == ["conv", "flatten"]
    m[0].register_forward_hook(lambda mod, inp, out: out * 2)
    with pytest.raises(sc.SheetconvError, match=r"^0 \(Conv2d\): forward hooks"):
        from_torch(m, (1, 6, 6))


def test_bad_input_shape_and_empty():
    with pytest.raises(sc.SheetconvError, match="expects 3 input channels"):
        from_torch(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 8, 8))
    with pytest.raises(sc.SheetconvError, match="no layer that computes"):
        from_torch(nn.Sequential(nn.Identity()), (1, 8, 8))
    with pytest.raises(sc.SheetconvError, match="input_shape"):
        from_torch(nn.Sequential(nn.ReLU()), (8, 8))


# ---------------------------------------------------------------- state-dict files

def test_state_dict_file_fastai_keys_roundtrip(tmp_path):
    torch.manual_seed(7)
    m = simple_cnn()
    path = tmp_path / "model.pt"
    torch.save(m.state_dict(), path)
    net = sc.preset("simple-cnn", seed=0)
    mapped = load_state_dict_file(path, net)
    assert list(mapped) == list(net.state_dict()) and list(m.state_dict())[0] == "0.0.weight"
    x = np.stack([sc.digit(i) for i in range(3)])
    np.testing.assert_allclose(net.forward(x), torch_out(m, x), rtol=1e-10, atol=1e-12)


def test_state_dict_file_own_names_and_fastai_wrapper(tmp_path):
    src = sc.preset("simple-cnn", seed=5)
    m = to_torch(src, torch.float64)
    torch.save(m.state_dict(), tmp_path / "own.pt")
    torch.save({"model": m.state_dict(), "opt": {"lr": 0.1, "state": {}}}, tmp_path / "learn.pth")
    x = sc.digit(2)
    for name in ("own.pt", "learn.pth"):
        net = sc.preset("simple-cnn", seed=0)
        load_state_dict_file(tmp_path / name, net)
        np.testing.assert_allclose(net.forward(x), torch_out(m, x[None])[0], rtol=1e-12, atol=1e-14)


def test_state_dict_shape_mismatch_names_layer_and_shapes(tmp_path):
    m = nn.Sequential(conv(1, 4), conv(4, 8, ks=5), conv(8, 16), conv(16, 32), conv(32, 2, act=False), nn.Flatten())
    torch.save(m.state_dict(), tmp_path / "m.pt")
    with pytest.raises(sc.SheetconvError) as e:
        load_state_dict_file(tmp_path / "m.pt", sc.preset("simple-cnn"))
    msg = str(e.value)
    assert "conv2" in msg and "(8, 4, 5, 5)" in msg and "(8, 4, 3, 3)" in msg and "1.0.weight" in msg


def test_state_dict_wrong_count_and_order(tmp_path):
    m = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4))
    torch.save(m.state_dict(), tmp_path / "bn.pt")
    net = sc.Network([sc.Conv2d(1, 4, 3, stride=2, padding=1)], (1, 8, 8))
    with pytest.raises(sc.SheetconvError, match="holds 6 tensors.*network has 2 parameters"):
        load_state_dict_file(tmp_path / "bn.pt", net)
    torch.save({"a.bias": torch.zeros(4), "a.weight": torch.zeros(4, 1, 3, 3)}, tmp_path / "swapped.pt")
    with pytest.raises(sc.SheetconvError, match="'a.bias' would land on 'conv1.weight'"):
        load_state_dict_file(tmp_path / "swapped.pt", net)


def test_map_state_dict_numpy_positional_and_own_keys():
    """Arrays from a torch module's state dict (as an .npz would hold them) land where torch uses them."""
    torch.manual_seed(3)
    m = simple_cnn()
    arrays = {k: v.numpy() for k, v in m.state_dict().items()}          # '0.0.weight', ...: positional
    net = sc.preset("simple-cnn", seed=0)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    mapped = map_state_dict(arrays, net)
    assert all(np.array_equal(net.state_dict()[k], before[k]) for k in before)      # net untouched
    assert all(v.dtype == np.float64 for v in mapped.values())
    net.load_state_dict(mapped)
    x = np.stack([sc.digit(i) for i in range(2)])
    np.testing.assert_allclose(net.forward(x), torch_out(m, x), rtol=1e-6, atol=1e-6)   # float32 weights
    own = {k: v.numpy() for k, v in to_torch(net, torch.float64).state_dict().items()}
    shuffled = dict(reversed(list(own.items())))                         # own names: order does not matter
    assert all(np.array_equal(map_state_dict(shuffled, net)[k], own[k]) for k in own)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update({"1.0.weight": np.zeros((8, 4, 5, 5))}),
     r"layer conv2 \(ReLU\) weight: '1.0.weight' has shape \(8, 4, 5, 5\), the network expects \(8, 4, 3, 3\)"),
    (lambda d: d.pop("4.0.bias"), "holds 9 tensors.*network has 10 parameters"),
    (lambda d: d.update({"0.0.weight": np.full((4, 1, 3, 3), "a")}), "'0.0.weight' .* has dtype <U1"),
    (lambda d: d.update({"0.0.bias": np.array([0, np.nan, 0, 0])}), "'0.0.bias' .* holds NaN"),
    (lambda d: d.clear(), "expected a non-empty mapping"),
])
def test_map_state_dict_errors(edit, words):
    arrays = {k: v.numpy() for k, v in simple_cnn().state_dict().items()}
    edit(arrays)
    with pytest.raises(sc.SheetconvError, match=words) as e:
        map_state_dict(arrays, sc.preset("simple-cnn"), source="w.npz")
    assert str(e.value).startswith("w.npz: ") and "\n" not in str(e.value)


def test_map_state_dict_does_not_import_torch():
    code = ("import sys, numpy as np, sheetconv as sc; from sheetconv.interop.state_dict import map_state_dict; "
            "net = sc.preset('conv-example'); map_state_dict(net.state_dict(), net); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


class _Marker:
    """Unpickling this would create a file: proof that code ran."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arbitrary_pickles_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "code-ran"
    net = sc.preset("conv-example")
    torch.save({"conv1.weight": _Marker(str(marker))}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Marker(str(marker)), f)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(sc.SheetconvError, match="weights_only=True") as e:
            load_state_dict_file(tmp_path / name, net)
        assert "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [
    (lambda: torch.zeros(3), "got Tensor"),
    (lambda: [torch.zeros(3)], "got list"),
    (lambda: {}, "empty mapping"),
    (lambda: {"conv1.weight": torch.zeros(2, 1, 3, 3), "conv1.bias": 3}, "entry 'conv1.bias' is int"),
])
def test_not_a_state_dict(tmp_path, content, words):
    torch.save(content(), tmp_path / "x.pt")
    with pytest.raises(sc.SheetconvError, match=words):
        load_state_dict_file(tmp_path / "x.pt", sc.preset("conv-example"))


def test_unreadable_state_dict_files(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a torch file at all")
    for path, words in [(tmp_path / "garbage.pt", "not a PyTorch state dict"), (tmp_path / "missing.pt", "no such file"),
                        (tmp_path, "is a directory")]:
        with pytest.raises(sc.SheetconvError, match=words):
            load_state_dict_file(path, sc.preset("conv-example"))


def test_importing_sheetconv_does_not_import_torch():
    code = "import sys, sheetconv; sheetconv.from_torch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
