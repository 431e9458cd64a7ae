"""Dependency queries against a brute-force per-cell graph.

The oracle (tests/bruteforce.py) builds the explicit graph of every cell of a network by direct loops
over kernel taps with PyTorch's index formula (input = out*stride - padding +
tap*dilation, taps in the padding skipped), then walks it breadth first. The analytic
answers of ``precedents``, ``dependents`` and ``receptive_field`` must match it exactly.
"""
from functools import partial

import numpy as np
import pytest
from bruteforce import all_cells, brute_graph, closure, invert, pick
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import networks as random_networks
from strategies import out_len

import sheetconv as sc

# this module's sizes; keywords given at a call site override them
networks = partial(random_networks, max_size=9, max_ch=3, max_layers=4, max_features=4)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- helpers

def param_cells(net):
    for key, arr in net.state_dict().items():
        yield from ((key, *i) for i in np.ndindex(arr.shape))


def by_layer(cells):
    out = {}
    for cell in cells:
        out.setdefault(cell[0], set()).add(cell)
    return out


# ---------------------------------------------------------------- properties

@SETTINGS
@given(networks(), st.data())
def test_shapes_follow_pytorch_formula(net, data):
    _, shapes = brute_graph(net)
    assert net.shapes == shapes


@SETTINGS
@given(networks(), st.data())
def test_precedents_depth1_match_brute_force(net, data):
    preds, _ = brute_graph(net)
    for cell in pick(data, all_cells(net), 12):
        trace = net.precedents(cell, depth=1)
        assert trace.cells() == preds.get(cell, set()), cell


@SETTINGS
@given(networks(), st.data())
def test_precedents_all_levels_match_closure(net, data):
    preds, _ = brute_graph(net)
    for cell in pick(data, all_cells(net), 8):
        trace = net.precedents(cell, depth=None)
        want = closure(preds, cell)
        assert trace.cells() == want, cell
        # grouped per layer: level k holds layer L-k's activations (and the parameters it uses)
        want_by = by_layer(want)
        i = net.names.index(cell[0])
        assert trace.depth == i
        for k, level in enumerate(trace.levels, start=1):
            acts = [r for r in level if "." not in r.name]
            assert [r.name for r in acts] == [net.names[i - k]]
            assert acts[0].cells() == want_by.get(net.names[i - k], set())
            # exact rectangles per channel, as the spreadsheet's range references are
            rect_cells = {(acts[0].name, ch, y, x) for ch, (r0, c0, r1, c1) in acts[0].rects()
                          for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)}
            assert rect_cells == acts[0].cells()


@SETTINGS
@given(networks(), st.data())
def test_dependents_match_reverse_closure(net, data):
    preds, _ = brute_graph(net)
    succ = invert(preds)
    cells = pick(data, all_cells(net), 8) + pick(data, param_cells(net), 6)
    for cell in cells:
        trace = net.dependents(cell, depth=None)
        assert trace.cells() == closure(succ, cell), cell
        first = net.dependents(cell, depth=1)
        assert first.cells() == succ.get(cell, set()), cell


@SETTINGS
@given(networks(max_layers=3), st.data())
def test_receptive_field_region_is_bbox_of_input_precedents(net, data):
    preds, _ = brute_graph(net)
    _, H, W = net.input_shape
    spatial, flat = [], []                 # layers before Flatten; Flatten (and ReLUs) before a Linear
    for layer in net.layers:
        if layer.kind == "linear":
            break
        (flat if flat or layer.kind == "flatten" else spatial).append(layer)
    # element-wise kinds and the adaptive pools (contiguous windows that touch) keep boxes whole
    exact = all(not hasattr(l, "kernel_size") or (max(getattr(l, "dilation", (1, 1))) == 1
                                     and all(s <= k for s, k in zip(l.stride, l.kernel_size)))
                for l in spatial)
    for layer in spatial + flat:
        rf = net.receptive_field(layer.name)
        c, h, w = net.grid(layer.name)
        for cell in pick(data, ((layer.name, ch, r, col) for ch in range(c) for r in range(h) for col in range(w)), 6):
            inputs = {x[1:] for x in closure(preds, cell) if x[0] == "input"}
            (r0, r1), (c0, c1) = rf.region(cell[2], cell[3], (H, W), channel=cell[1])
            if not inputs:
                assert r0 > r1 or c0 > c1, (cell, rf)
                continue
            rows = sorted({x[1] for x in inputs})
            cols = sorted({x[2] for x in inputs})
            assert (r0, r1, c0, c1) == (rows[0], rows[-1], cols[0], cols[-1]), (cell, rf)
            if exact:
                box = {(ch, r, col) for ch in {x[0] for x in inputs}
                       for r in range(r0, r1 + 1) for col in range(c0, c1 + 1)}
                assert inputs == box, cell


def test_receptive_field_recurrences():
    # r_l = r_(l-1) + (k_l - 1) d_l j_(l-1), j_l = j_(l-1) s_l, start u_l = u_(l-1) - p_l j_(l-1)
    net = sc.Network([sc.Conv2d(1, 1, (3, 5), stride=(2, 1), padding=(1, 2)),
                      sc.Conv2d(1, 1, 3, stride=2, dilation=2, padding=2),
                      sc.MaxPool2d(2)], input_shape=(1, 40, 40))
    rf = {n: net.receptive_field(n) for n in ("conv1", "conv2", "pool1")}
    assert (rf["conv1"].size, rf["conv1"].jump, rf["conv1"].start) == ((3, 5), (2, 1), (-1, -2))
    assert (rf["conv2"].size, rf["conv2"].jump, rf["conv2"].start) == ((3 + 2 * 2 * 2, 5 + 2 * 2 * 1), (4, 2),
                                                                        (-1 - 2 * 2, -2 - 2 * 1))
    assert (rf["pool1"].size, rf["pool1"].jump) == ((11 + 1 * 4, 9 + 1 * 2), (8, 4))


# ---------------------------------------------------------------- presets

def test_conv_example_interior_conv2_cell_reads_7x7_input():
    net = sc.preset("conv-example")
    assert net.receptive_field("conv2").size == (7, 7)
    trace = net.precedents(("conv2", 0, 3, 3), depth=None)
    inp = trace.region("input")
    assert len(inp) == 49
    assert inp.bbox() == ((0, 0), (9, 15), (9, 15))          # rows/cols 4*3-3 .. 4*3+3
    assert inp.cells() == {("input", 0, r, c) for r in range(9, 16) for c in range(9, 16)}
    assert net.receptive_field("conv2").region(3, 3, (28, 28)) == ((9, 15), (9, 15))
    # one press: the 3x3 window on both conv1 channels, conv2's 2x3x3 weights of filter 0 and its bias
    first = net.precedents(("conv2", 0, 3, 3), depth=1)
    assert first.region("conv1").cells() == {("conv1", c, r, q) for c in range(2) for r in (5, 6, 7)
                                             for q in (5, 6, 7)}
    assert len(first.region("conv2.weight")) == 18
    assert first.region("conv2.bias").cells() == {("conv2.bias", 0)}
    # a corner cell reads only the 2x2 part of its window inside the grid
    corner = net.precedents(("conv2", 1, 0, 0), depth=1)
    assert corner.region("conv1").cells() == {("conv1", c, r, q) for c in range(2) for r in (0, 1) for q in (0, 1)}
    assert corner.region("conv2.weight").cells() == {("conv2.weight", 1, i, r, q) for i in range(2)
                                                     for r in (1, 2) for q in (1, 2)}


def test_simple_cnn_shapes_and_parameters():
    net = sc.preset("simple-cnn")
    assert [net.grid(n)[1] for n in net.names if n.startswith("conv")] == [14, 7, 4, 2, 1]
    assert net.shapes["input"] == (1, 28, 28)
    assert net.shapes["conv1"] == (4, 14, 14) and net.shapes["conv5"] == (2, 1, 1)
    assert net.shapes[net.names[-1]] == (2,)
    assert net["conv1"].weight.size == 36 and net["conv1"].bias.size == 4
    assert [l.relu for l in net.layers if l.kind == "conv"] == [True, True, True, True, False]


def test_dependents_of_an_input_pixel_in_conv_example():
    net = sc.preset("conv-example")
    preds, _ = brute_graph(net)
    trace = net.dependents(("input", 0, 11, 11), depth=None)
    assert trace.cells() == closure(invert(preds), ("input", 0, 11, 11))
    assert trace.region("conv1").cells() == {("conv1", c, r, q) for c in range(2) for r in (5, 6) for q in (5, 6)}


def test_unused_weight_tap_has_no_dependents():
    # kernel 3, padding 1 on a 1-pixel input: only the middle tap ever lands inside
    net = sc.Network([sc.Conv2d(1, 1, 3, padding=1, stride=3)], input_shape=(1, 1, 1))
    assert net.shapes["conv1"] == (1, 1, 1)
    assert net.dependents(("conv1.weight", 0, 0, 0, 0)).cells() == set()
    assert net.dependents(("conv1.weight", 0, 0, 1, 1)).cells() == {("conv1", 0, 0, 0)}
    assert net.precedents(("conv1", 0, 0, 0)).region("conv1.weight").cells() == {("conv1.weight", 0, 0, 1, 1)}


@pytest.mark.parametrize("size", [224])
def test_deep_query_on_large_input_is_compact(size):
    net = sc.Network([sc.Conv2d(3, 8, 3, stride=2, padding=1), sc.ReLU(), sc.Conv2d(8, 8, 3, padding=1),
                      sc.MaxPool2d(2), sc.Conv2d(8, 16, 3, stride=2, padding=1), sc.Conv2d(16, 16, 3, padding=1)],
                     input_shape=(3, size, size))
    name = net.names[-1]
    _, h, w = net.grid(name)
    trace = net.precedents((name, 0, h // 2, w // 2), depth=None)
    inp = trace.region("input")
    rf = net.receptive_field(name)
    (r0, r1), (c0, c1) = rf.region(h // 2, w // 2, (size, size))
    assert inp.bbox() == ((0, 2), (r0, r1), (c0, c1))
    assert len(inp) == 3 * (r1 - r0 + 1) * (c1 - c0 + 1)
    assert len(inp.boxes) == 1


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 3), st.integers(1, 3), st.integers(1, 12), st.data())
def test_window_arithmetic_against_enumeration(k, s, p, d, n, data):
    """Every Window method against a plain enumeration of (output, tap) -> input index."""
    win = sc.Window(k, s, p, d)
    n_out = out_len(n, k, s, p, d)
    if n_out < 1:
        return
    assert win.out_size(n) == n_out
    reads = {(o, t): o * s - p + t * d for o in range(n_out) for t in range(k)}   # PyTorch's definition
    for (o, t), i in reads.items():
        assert win.index(o, t) == i
    for o in range(n_out):
        inside = [t for t in range(k) if 0 <= reads[o, t] < n]
        lo, hi = win.taps(o, n)
        assert list(range(lo, hi)) == inside
        assert win.inputs(o, n) == [reads[o, t] for t in inside]
    for t in range(k):
        outs = [o for o in range(n_out) if 0 <= reads[o, t] < n]
        lo, hi = win.tap_outputs(t, n, n_out)
        assert list(range(lo, hi)) == outs
    a = data.draw(st.integers(0, n_out - 1))
    b = data.draw(st.integers(a + 1, n_out))
    used = {t for o in range(a, b) for t in range(k) if 0 <= reads[o, t] < n}
    assert {t for x, y in win.used_taps(((a, b),), n) for t in range(x, y)} == used
    ia = data.draw(st.integers(0, n - 1))
    ib = data.draw(st.integers(ia + 1, n))
    fed = {o for (o, t), i in reads.items() if ia <= i < ib}
    assert {o for x, y in sc.nn.deps.forward_runs(((ia, ib),), win, n_out) for o in range(x, y)} == fed
    assert {i for x, y in sc.nn.deps.back_runs(((a, b),), win, n) for i in range(x, y)} == \
        {reads[o, t] for o in range(a, b) for t in range(k) if 0 <= reads[o, t] < n}
