"""Graph networks (residual adds, concatenations) against brute force and torch.

Oracles: a per-cell graph built from each layer's hyperparameters and the layers it reads
(loops over kernel taps with PyTorch's index formula, an Add's cell reading the same cell of
every input, a Concat's channel one input's channel), walked breadth first; receptive fields
of every path recomputed by the textbook recurrences over an explicit enumeration of paths;
torch (a module built here by hand from torch.nn.functional, and torch.fx) for the numbers;
openpyxl's tokenizer for the formulas.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from _xlsx_oracle import computed_cells, references
from bruteforce import all_cells, brute_graph, closure, invert, pick
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import out_len

import sheetconv as sc
from sheetconv import Add, AvgPool2d, Concat, Conv2d, MaxPool2d, Network, ReLU
from sheetconv.sheet.formulas import formula
from sheetconv.sheet.layout import Layout

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def named(layer, name, inputs=None):
    layer.name, layer.inputs = name, None if inputs is None else tuple(inputs)
    return layer


# ---------------------------------------------------------------- random DAGs

@st.composite
def graphs(draw, max_nodes=6):
    """Random DAGs over a small input: convs (stride, padding, dilation), pools and ReLUs on
    any earlier node, residual adds (conv path + identity, or a strided path + a 1x1 strided
    conv or average pool on the shortcut), concatenations of same-sized nodes."""
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    nodes = {"input": (c, h, w)}
    layers = []
    k = 0

    def new(layer, inputs, shape):
        nonlocal k
        k += 1
        name = f"n{k}"
        layers.append(named(layer, name, inputs))
        nodes[name] = shape
        return name

    for _ in range(draw(st.integers(1, max_nodes))):
        src = draw(st.sampled_from(sorted(nodes)))
        ci, hi, wi = nodes[src]
        op = draw(st.sampled_from(["conv", "pool", "relu", "res", "down", "cat"]))
        if op == "conv":
            kk, s, p, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1)), draw(st.integers(1, 2))
            ho, wo = out_len(hi, kk, s, p, d), out_len(wi, kk, s, p, d)
            if min(ho, wo) >= 1:
                co = draw(st.integers(1, 3))
                new(Conv2d(ci, co, kk, stride=s, padding=p, dilation=d, relu=draw(st.booleans())), [src], (co, ho, wo))
        elif op == "pool":
            kk = draw(st.integers(1, 3))
            p = draw(st.integers(0, kk // 2))
            cls = draw(st.sampled_from([MaxPool2d, AvgPool2d]))
            ho, wo = out_len(hi, kk, 1, p), out_len(wi, kk, 1, p)
            if min(ho, wo) >= 1:
                new(cls(kk, 1, p), [src], (ci, ho, wo))
        elif op == "relu":
            new(ReLU(), [src], (ci, hi, wi))
        elif op == "res":                                   # x + conv(x), same shape
            kk = draw(st.sampled_from([1, 3]))
            branch = new(Conv2d(ci, ci, kk, padding=kk // 2), [src], (ci, hi, wi))
            new(Add(relu=draw(st.booleans())), [branch, src], (ci, hi, wi))
        elif op == "down" and hi >= 2 and wi >= 2:          # strided conv + (1x1 strided conv | pool) shortcut
            co = draw(st.integers(1, 3))
            ho, wo = out_len(hi, 3, 2, 1), out_len(wi, 3, 2, 1)
            branch = new(Conv2d(ci, co, 3, stride=2, padding=1), [src], (co, ho, wo))
            if draw(st.booleans()) and hi % 2 == 0 and wi % 2 == 0:
                pooled = new(AvgPool2d(2), [src], (ci, hi // 2, wi // 2))
                short = new(Conv2d(ci, co, 1), [pooled], (co, ho, wo))
            else:
                short = new(Conv2d(ci, co, 1, stride=2), [src], (co, ho, wo))
            new(Add(relu=draw(st.booleans())), [branch, short], (co, ho, wo))
        elif op == "cat":
            same = sorted(n for n, s in nodes.items() if s[1:] == (hi, wi))
            other = draw(st.sampled_from(same))
            new(Concat(), [src, other], (ci + nodes[other][0], hi, wi))
    if not layers:
        new(ReLU(), ["input"], (c, h, w))
    net = Network(layers, input_shape=(c, h, w), fuse_relu=draw(st.booleans()))
    return net.init_weights(draw(st.integers(0, 2 ** 16)))


# ---------------------------------------------------------------- the brute-force oracle

def levels_of(preds, start):
    """Level k: every cell read by a cell of level k-1 (a cell reached by paths of several
    lengths is in several levels), as repeated presses of Trace Precedents show them."""
    out, frontier = [], {start}
    while True:
        nxt = set()
        for cell in frontier:
            nxt |= preds.get(cell, set())
        if not nxt:
            return out
        out.append(nxt)
        frontier = nxt


def path_fields(net, name):
    """(size, jump, start) per axis of every path from the input to ``name``, by the textbook
    recurrences (r += (k-1) d j, start -= p j, j *= s) over an explicit list of paths."""
    if name == "input":
        return {((1, 1), (1, 1), (0, 0))}
    layer = net[name]
    out = set()
    for src in layer.inputs:
        for size, jump, start in path_fields(net, src):
            if layer.kind in ("conv", "maxpool", "avgpool"):
                k, s, p = layer.kernel_size, layer.stride, layer.padding
                d = layer.dilation if layer.kind == "conv" else (1, 1)
                size = tuple(r + (kk - 1) * dd * j for r, kk, dd, j in zip(size, k, d, jump))
                start = tuple(u - pp * j for u, pp, j in zip(start, p, jump))
                jump = tuple(j * ss for j, ss in zip(jump, s))
            out.add((size, jump, start))
    return out


# ---------------------------------------------------------------- properties

@SETTINGS
@given(graphs())
def test_shapes_follow_pytorch_formula(net):
    assert net.shapes == brute_graph(net)[1]


@SETTINGS
@given(graphs(), st.data())
def test_precedents_level_by_level_match_brute_force(net, data):
    preds, _ = brute_graph(net)
    for cell in pick(data, all_cells(net), 6):
        trace = net.precedents(cell, depth=None)
        want = levels_of(preds, cell)
        got = [{c for r in level for c in r.cells()} for level in trace.levels]
        while got and not got[-1]:          # a cell reading only padding: empty levels down to the input
            got.pop()
        assert got == want, cell
        assert trace.cells() == closure(preds, cell)
        assert net.precedents(cell, depth=1).cells() == preds.get(cell, set())


@SETTINGS
@given(graphs(), st.data())
def test_dependents_match_reverse_closure(net, data):
    preds, _ = brute_graph(net)
    succ = invert(preds)
    params = [(k, *i) for k, a in net.state_dict().items() for i in np.ndindex(a.shape)]
    for cell in pick(data, all_cells(net), 6) + pick(data, params, 4):
        assert net.dependents(cell, depth=None).cells() == closure(succ, cell), cell
        assert net.dependents(cell, depth=1).cells() == succ.get(cell, set()), cell


@SETTINGS
@given(graphs(), st.data())
def test_receptive_field_is_the_union_over_paths(net, data):
    preds, _ = brute_graph(net)
    _, H, W = net.input_shape
    for name in net.names[1:]:
        rf = net.receptive_field(name)
        fields = path_fields(net, name)
        assert set(rf.paths or [(rf.size, rf.jump, rf.start)]) == fields
        centres = {tuple(2 * u + r - 1 for u, r in zip(start, size)) for size, _, start in fields}
        assert rf.aligned == (len({j for _, j, _ in fields}) == 1 and len(centres) == 1)
        c, h, w = net.grid(name)
        for cell in pick(data, ((name, ch, r, col) for ch in range(c) for r in range(h) for col in range(w)), 3):
            inputs = {x[1:] for x in closure(preds, cell) if x[0] == "input"}
            (r0, r1), (c0, c1) = rf.region(cell[2], cell[3], (H, W), channel=cell[1])
            (u0, u1), (v0, v1) = rf.unclipped(cell[2], cell[3])
            if not inputs:
                assert r0 > r1 or c0 > c1, (cell, rf)
                continue
            rows, cols = sorted({x[1] for x in inputs}), sorted({x[2] for x in inputs})
            assert (r0, r1, c0, c1) == (rows[0], rows[-1], cols[0], cols[-1]), (cell, rf)
            assert u0 <= r0 and r1 <= u1 and v0 <= c0 and c1 <= v1


@SETTINGS
@given(graphs())
def test_formulas_reference_exactly_the_precedents(net):
    layout = Layout.for_network(net)
    for cell in computed_cells(net):
        text = formula(net, layout, cell)
        refs = {layout.locate(*pos) for pos in references(text)}
        assert None not in refs, text
        assert refs == net.precedents(cell, depth=1).cells(), (cell, text)


@SETTINGS
@given(graphs())
def test_spec_round_trip_keeps_the_graph(net):
    again = Network.from_spec(json.loads(json.dumps(net.spec())))
    assert again.spec() == net.spec()
    assert [l.inputs for l in again.layers] == [l.inputs for l in net.layers]
    again.load_state_dict(net.state_dict())
    x = np.random.default_rng(0).standard_normal(net.input_shape)
    np.testing.assert_array_equal(again.forward(x), net.forward(x))


SPEC = """
input_shape = [1, 8, 8]

[[layers]]
type = "Conv2d"
name = "stem"
out_channels = 2
kernel_size = 3
padding = 1
relu = true

[[layers]]
type = "Conv2d"
name = "branch"
out_channels = 2
kernel_size = 3
padding = 1

[[layers]]
type = "Add"
name = "res"
inputs = ["branch", "stem"]
relu = true

[[layers]]
type = "Conv2d"
inputs = ["input"]
out_channels = 3
kernel_size = 1

[[layers]]
type = "Concat"
inputs = ["res", "input"]
"""


def test_spec_file_names_inputs(tmp_path):
    from sheetconv.nn.specfile import load_spec
    path = tmp_path / "res.toml"
    path.write_text(SPEC)
    net = load_spec(path)
    assert [l.inputs for l in net.layers] == [("input",), ("stem",), ("branch", "stem"), ("input",), ("res", "input")]
    assert net.shapes["cat1"] == (3, 8, 8) and net["res"].relu
    x = np.random.default_rng(0).standard_normal((1, 8, 8))
    acts = net.activations(x)
    np.testing.assert_array_equal(acts["res"], np.maximum(acts["branch"] + acts["stem"], 0))
    for bad, words in [(SPEC.replace('["branch", "stem"]', '["branch", "nope"]'), "'nope', which is not a named layer"),
                       (SPEC.replace('["branch", "stem"]', '"stem"'), "inputs must be a non-empty list"),
                       (SPEC.replace('["res", "input"]', '["res"]'), "two or more inputs"),
                       (SPEC.replace('["branch", "stem"]', '["branch", "input"]'), "same shape")]:
        path.write_text(bad)
        with pytest.raises(sc.SheetconvError, match=words) as e:
            load_spec(path)
        assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


# ---------------------------------------------------------------- torch

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


def torch_graph_forward(net, x):
    """The network computed by torch.nn.functional, written here layer kind by layer kind."""
    out = {"input": torch.from_numpy(x)}
    for layer in net.layers:
        xs = [out[n] for n in layer.inputs]
        if layer.kind == "add":
            y = sum(xs[1:], xs[0])
        elif layer.kind == "concat":
            y = torch.cat(xs, dim=1)
        elif layer.kind == "conv":
            y = F.conv2d(xs[0], torch.from_numpy(layer.weight), None if layer.bias is None else torch.from_numpy(layer.bias),
                         layer.stride, layer.padding, layer.dilation)
        elif layer.kind == "maxpool":
            y = F.max_pool2d(xs[0], layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
        elif layer.kind == "avgpool":
            y = F.avg_pool2d(xs[0], layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
                             count_include_pad=layer.count_include_pad)
        elif layer.kind == "relu":
            y = F.relu(xs[0])
        else:
            raise AssertionError(layer.kind)
        out[layer.name] = F.relu(y) if layer.relu else y
    return out


@SETTINGS
@given(graphs())
def test_numbers_against_torch(net):
    x = np.random.default_rng(1).standard_normal((2, *net.input_shape))
    ours = net.activations(x)
    theirs = torch_graph_forward(net, x)
    for name in net.names:
        np.testing.assert_allclose(ours[name], theirs[name].numpy(), rtol=1e-10, atol=1e-10, err_msg=name)
    module = sc.to_torch(net, torch.float64)
    assert set(module.state_dict()) == set(net.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), ours[net.layers[-1].name], rtol=1e-10, atol=1e-10)
    back = sc.from_torch(module, net.input_shape, fuse_relu=False)
    np.testing.assert_allclose(back.forward(x), ours[net.layers[-1].name], rtol=1e-10, atol=1e-10)


class ConvLayer(nn.Sequential):
    """fastai's ConvLayer as fastbook uses it: conv (no bias), BatchNorm, optional ReLU."""
    def __init__(self, ni, nf, ks=3, stride=1, act=True):
        layers = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), nn.BatchNorm2d(nf)]
        super().__init__(*layers, *([nn.ReLU()] if act else []))


class ResBlock(nn.Module):
    """fastbook chapter 14's ResBlock."""
    def __init__(self, ni, nf, stride=1):
        super().__init__()
        self.convs = nn.Sequential(ConvLayer(ni, nf, stride=stride), ConvLayer(nf, nf, act=False))
        self.idconv = nn.Identity() if ni == nf else ConvLayer(ni, nf, 1, act=False)
        self.pool = nn.Identity() if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x):
        return F.relu(self.convs(x) + self.idconv(self.pool(x)))


def fastbook_resnet():
    return nn.Sequential(ConvLayer(1, 8), ResBlock(8, 8), ResBlock(8, 16, 2), ResBlock(16, 32, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def randomise_batchnorm(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("size", [28, 27])
def test_fastbook_resblocks_through_fx(size):
    # at 27 the strided blocks' shortcuts need the pool's ceil mode: 27 -> 14 like the conv
    torch.manual_seed(0)
    model = randomise_batchnorm(fastbook_resnet()).double().eval()
    net = sc.from_torch(model, (1, size, size))
    assert net.is_graph and sum(l.kind == "add" for l in net.layers) == 3
    assert all(l.relu for l in net.layers if l.kind == "add")           # F.relu(x + y) fused: MAX(0, a + b)
    pools = [l for l in net.layers if l.kind == "avgpool"]
    assert [l.ceil_mode for l in pools] == [True, True]
    assert [net.shapes[l.name][1:] for l in pools] == [(14, 14), (7, 7)]
    x = np.random.default_rng(0).standard_normal((3, 1, size, size))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-10, atol=1e-10)
    assert sc.verify(net, x).ok()
    # the identity shortcut: an Add reads the block's input itself
    first_add = next(l for l in net.layers if l.kind == "add")
    assert "relu" not in first_add.inputs[1] and net[first_add.inputs[1]].relu
    folded = sc.from_torch(model, (1, size, size), fold_batchnorm=True)
    assert not any(l.kind == "batchnorm" for l in folded.layers)
    np.testing.assert_allclose(folded.forward(x), want, rtol=1e-10, atol=1e-10)


def test_chain_through_fx_equals_the_sequential_walk():
    class Wrap(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 2, 3), nn.Flatten(),
                        nn.Linear(2 * 5 * 5, 3), nn.ReLU()).double()
    a, b = sc.from_torch(seq, (1, 28, 28)), sc.from_torch(Wrap(seq), (1, 28, 28))
    assert not b.is_graph and a.spec() == b.spec()
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    assert type(sc.to_torch(a)) is nn.Sequential


def test_concat_and_torch_add_through_fx():
    class Join(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 1, 1)
            self.out, self.out2 = nn.Conv2d(4, 2, 3), nn.Conv2d(4, 2, 3)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x).relu()], dim=1)
            return torch.flatten(torch.add(self.out(y), self.out2(y)), 1)
    torch.manual_seed(2)
    model = Join().double()
    net = sc.from_torch(model, (2, 6, 6))
    assert [l.kind for l in net.layers].count("concat") == 1
    x = np.random.default_rng(3).standard_normal((2, 2, 6, 6))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x), model(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("body, words", [
    (lambda self, x: self.conv(x) * 2, ["operator.mul"]),
    (lambda self, x: torch.sigmoid(self.conv(x)), ["torch.sigmoid"]),
    (lambda self, x: self.conv(x).mean(dim=1, keepdim=True), ["tensor.mean()"]),
    (lambda self, x: torch.cat([self.conv(x), x], dim=2), ["dim=2", "channels"]),
    (lambda self, x: self.conv(x)[:, :1], ["indexing"]),
])
def test_unsupported_operations_name_the_operation_and_module(body, words):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
        forward = body
    model = nn.Sequential(nn.Conv2d(1, 1, 1), Block())
    with pytest.raises(sc.SheetconvError) as e:
        sc.from_torch(model, (1, 8, 8))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("1 (Block): ")
    for word in words:
        assert word in msg, msg


def test_graph_errors():
    with pytest.raises(sc.SheetconvError, match="comes after it"):
        Network([named(ReLU(), "a", ["b"]), named(ReLU(), "b")], (1, 4, 4))
    with pytest.raises(sc.SheetconvError, match="not a layer"):
        Network([named(ReLU(), "a", ["nope"])], (1, 4, 4))
    with pytest.raises(sc.SheetconvError, match="same shape"):
        Network([named(Conv2d(1, 2, 3), "c"), named(Add(), "s", ["c", "input"])], (1, 4, 4))
    with pytest.raises(sc.SheetconvError, match="two or more"):
        Network([Conv2d(1, 1, 3), Add()], (1, 4, 4))
    with pytest.raises(sc.SheetconvError, match="same H and W"):
        Network([named(Conv2d(1, 2, 3), "c"), named(Concat(), "s", ["c", "input"])], (1, 4, 4))


def test_layers_given_are_not_changed_and_relu_read_elsewhere_is_not_fused():
    conv, relu, add = named(Conv2d(1, 1, 3, padding=1), "c"), ReLU(), named(Add(), "s", ["c", "r"])
    layers = [conv, named(relu, "r"), add]
    net = Network(layers, (1, 5, 5))
    assert [l.inputs for l in layers] == [None, None, ("c", "r")] and relu.name == "r"
    # a ReLU after a layer that another layer reads by name keeps its own cells
    net2 = Network([named(Conv2d(1, 1, 3, padding=1), "c"), ReLU(), named(Add(), "s", ["c", "relu1"])], (1, 5, 5))
    assert [l.name for l in net2.layers] == ["c", "relu1", "s"] and not net2["c"].relu
    assert net.spec()["layers"][1].get("inputs") is None and net.spec()["layers"][2]["inputs"] == ["c", "r"]
