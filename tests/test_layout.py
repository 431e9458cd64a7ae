"""The sheet layout: every cell has one place, blocks never overlap, Excel's limits hold."""
from __future__ import annotations

import itertools

import pytest
from _xlsx_oracle import handmade_nets, param_cells, random_net

from sheetconv import Conv2d, Flatten, Linear, Network, SheetconvError, preset
from sheetconv.sheet.a1 import MAX_COLS, MAX_ROWS
from sheetconv.sheet.layout import Layout


def _nets():
    nets = {k: preset(k) for k in ("conv-example", "simple-cnn", "conv-course")}
    nets.update({k: n for k, (n, _) in handmade_nets().items()})
    nets.update({f"random{s}": random_net(s)[0] for s in range(6)})
    return nets


NETS = _nets()


def _all_cells(net):
    for name in net.names:
        c, h, w = net.grid(name)
        yield from ((name, *i) for i in itertools.product(range(c), range(h), range(w)))
    yield from (cell for cell, _ in param_cells(net))


CHAR_PX = 6.5         # widest average character of an 8-point bold title, in pixels
HEAD_PX = 7.5         # the same for the 9-point header


def _px(width: float) -> int:
    """Excel's pixel width of a column ``width`` characters wide."""
    return int(width * 7 + 5)


def _span(layout, left: int, text: str, char_px: float) -> int:
    """Columns from ``left`` that ``text`` covers when drawn unwrapped."""
    need, cols = len(text) * char_px, 0
    while need > 0:
        need -= _px(layout.column_width(left + cols))
        cols += 1
    return max(cols, 1)


def _occupied(layout):
    """{(row, col): what} for every block cell and every cell a title covers; fails on any overlap."""
    seen = {}
    for b in layout.blocks:
        cells = [(b.top - 1, b.left + j, "title") for j in range(_span(layout, b.left, b.title, CHAR_PX))]
        cells += [(r, c, "cell") for r in range(b.top, b.top + b.height) for c in range(b.left, b.left + b.width)]
        for r, c, what in cells:
            assert (r, c) not in seen, f"{b} overlaps {seen[(r, c)]} at {(r, c)}"
            seen[(r, c)] = (b.grid, b.key, what)
    return seen


@pytest.mark.parametrize("key", list(NETS))
def test_every_cell_has_one_place_and_locate_inverts_it(key):
    net = NETS[key]
    layout = Layout.for_network(net)
    places = {}
    for cell in _all_cells(net):
        pos = layout.cell_of(cell)
        assert pos not in places, f"{cell} and {places[pos]} share {pos}"
        places[pos] = cell
        assert layout.locate(*pos) == cell
        assert 1 <= pos[0] < MAX_ROWS and 0 <= pos[1] < MAX_COLS
    # Nothing else on the sheet is a cell: brute force over the whole extent.
    rows, cols = layout.extent
    found = {(r, c) for r in range(rows) for c in range(cols) if layout.locate(r, c) is not None}
    assert found == set(places)


@pytest.mark.parametrize("key", list(NETS))
def test_blocks_and_titles_never_overlap_and_tile_the_cells(key):
    net = NETS[key]
    layout = Layout.for_network(net)
    seen = _occupied(layout)
    cells = {layout.cell_of(cell) for cell in _all_cells(net)}
    assert {p for p, v in seen.items() if v[2] == "cell"} == cells
    assert all(r >= 1 for r, _ in seen), "row 0 is the header"
    heads = set(layout.header_rows)
    assert 0 in heads and not any(r in heads for r, _ in seen)


@pytest.mark.parametrize("key", list(NETS))
def test_headers_fit_their_groups_in_three_lines_and_do_not_overlap(key):
    layout = Layout.for_network(NETS[key])
    taken = set()
    for h in layout.headers:
        px = sum(_px(layout.column_width(c)) for c in range(h.left, h.left + h.width))
        words, lines, line = h.text.split(), 1, 0.0
        for w in words:                                      # greedy word wrap
            need = len(w) * HEAD_PX + (HEAD_PX if line else 0)
            if line and line + need > px:
                lines, line = lines + 1, len(w) * HEAD_PX
            else:
                line += need
            assert len(w) * HEAD_PX <= px, (h, w)
        assert lines <= 3, h
        cols = {(h.row, c) for c in range(h.left, h.left + h.width)}
        assert not cols & taken, h
        taken |= cols


@pytest.mark.parametrize("key", ["conv-example", "simple-cnn", "conv-course"])
def test_reading_order_input_then_filters_then_output(key):
    net = preset(key)
    layout = Layout.for_network(net)
    for name in net.names[1:]:
        src = layout.cell_of((net.input_of(name), 0, 0, 0))[1]
        out = layout.cell_of((name, 0, 0, 0))[1]
        assert src < out
        if net[name].kind in ("conv", "linear"):
            w = layout.cell_of((f"{name}.weight", *([0] * (4 if net[name].kind == "conv" else 2))))[1]
            b = layout.cell_of((f"{name}.bias", 0))[1]
            assert src < w < out and src < b < out, name
    for b in layout.blocks:
        if b.grid.endswith(".weight") and isinstance(b.key, tuple):
            o, i = b.key
            assert b.title == f"in {i}→out {o}"
    assert any("input ch → output ch" in h.text for h in layout.headers)


def test_simple_cnn_fits_in_300_rows():
    rows, cols = Layout.for_network(preset("simple-cnn")).extent
    assert rows <= 300, rows


def test_kernels_are_tiled_in_a_grid_and_channels_side_by_side():
    layout = Layout.for_network(preset("simple-cnn"))
    k = layout.panel("conv4.weight")
    assert k.grid_rows > 1 and k.grid_cols > 1
    a = layout.panel("conv3")
    assert a.grid_rows > 1 and a.grid_cols > 1


def test_conv_example_reads_like_the_fastai_sheet():
    net = preset("conv-example")
    layout = Layout.for_network(net)
    assert layout.sheet == "conv"
    assert layout.cell_of(("input", 0, 0, 0)) == (2, 1)              # B3, titled in B2
    titles = {b.title for b in layout.blocks}
    assert {"input", "conv1 ch 0", "in 0→out 1", "in 1→out 0", "bias"} <= titles
    # conv1's two channels one above the other, each with its filters left of it.
    assert layout.cell_of(("conv1", 1, 0, 0))[0] > layout.cell_of(("conv1", 0, 13, 0))[0]
    assert layout.cell_of(("conv1.weight", 1, 0, 0, 0))[1] < layout.cell_of(("conv1", 0, 0, 0))[1]
    k00, k01 = layout.cell_of(("conv2.weight", 0, 0, 0, 0)), layout.cell_of(("conv2.weight", 0, 1, 0, 0))
    assert k00[1] == k01[1] and k01[0] > layout.cell_of(("conv2.weight", 0, 0, 2, 0))[0]   # input channels down
    k10 = layout.cell_of(("conv2.weight", 1, 0, 0, 0))
    assert k10[0] == k00[0] and k10[1] > layout.cell_of(("conv2.weight", 0, 0, 0, 2))[1]   # outputs across


def test_linear_weights_are_transposed_to_pair_with_the_input_column():
    net = NETS["flatten-linear"]
    layout = Layout.for_network(net)
    top, col = layout.cell_of(("fc1.weight", 3, 0))
    for i in range(18):
        assert layout.cell_of(("fc1.weight", 3, i)) == (top + i, col)          # a column per output
        assert layout.cell_of(("flatten", i, 0, 0))[0] == layout.cell_of(("flatten", 0, 0, 0))[0] + i


def test_a_wide_network_wraps_onto_a_new_band_within_excels_columns():
    net = Network([Conv2d(1, 1, (1, 3)), Conv2d(1, 1, (1, 3))], (1, 2, 6000))
    layout = Layout.for_network(net)
    tops = [layout.panel(n).top for n in net.names]
    assert tops[0] < tops[2]                                  # conv2 starts a new band below
    assert max(p.left + p.width for p in layout.panels) <= MAX_COLS
    for cell in _all_cells(net):
        assert layout.locate(*layout.cell_of(cell)) == cell


def test_small_limits_wrap_bands_and_widen_tall_panels():
    net = preset("simple-cnn")
    layout = Layout.for_network(net, max_cols=90, max_rows=600)
    assert len({p.top for p in layout.panels}) > 2
    rows, cols = layout.extent
    assert rows <= 600 and cols <= 90
    _occupied(layout)
    for cell in _all_cells(net):
        assert layout.locate(*layout.cell_of(cell)) == cell
    net = Network([Conv2d(4, 16, 3)], (4, 4, 4))
    free = Layout.for_network(net).panel("conv1.weight")
    tight = Layout.for_network(net, max_rows=45)
    assert tight.panel("conv1.weight").per_row > free.per_row          # too tall: more kernels per grid row
    assert tight.extent[0] <= 45
    _occupied(tight)
    for cell in _all_cells(net):
        assert tight.locate(*tight.cell_of(cell)) == cell


def test_too_big_for_a_sheet_is_a_one_line_error():
    with pytest.raises(SheetconvError, match="do not fit"):
        Layout.for_network(Network([Conv2d(1, 1, 1)], (1, 2, 20000)))
    with pytest.raises(SheetconvError, match="do not fit"):
        Layout.for_network(preset("conv-example"), max_rows=20)


def test_many_input_channels_get_partial_sum_blocks():
    net = Network([Conv2d(300, 2, 1)], (300, 2, 2))
    layout = Layout.for_network(net)
    groups = layout.partials("conv1")
    assert len(groups) > 1 and groups[0][0] == 0 and groups[-1][1] == 300
    assert all(a < b for a, b in groups) and all(b == a2 for (_, b), (a2, _) in zip(groups, groups[1:]))
    pos = layout.cell_of(("conv1:partial1", 1, 1, 0))
    assert layout.locate(*pos) == ("conv1:partial1", 1, 1, 0)
    assert layout.partial("conv1:partial1") == ("conv1", 1, groups[1])
    assert layout.partial("conv1") is None
    _occupied(layout)


def test_json_round_trip_and_shape_check():
    net = NETS["flatten-linear"]
    layout = Layout.for_network(net, max_formula=200)
    again = Layout.from_json(layout.to_json(), net)
    assert again.to_json() == layout.to_json()
    assert again.blocks == layout.blocks
    other = Network([Conv2d(1, 2, 3, stride=2), Flatten(), Linear(18, 4)], (1, 7, 7))
    with pytest.raises(SheetconvError):
        Layout.from_json(layout.to_json(), other)
    with pytest.raises(SheetconvError, match="version"):
        Layout.from_json({**layout.to_json(), "version": 99}, net)
    with pytest.raises(SheetconvError, match="older sheetconv.*rebuild"):
        Layout.from_json({"version": 1, "stripes": []}, net)
    with pytest.raises(SheetconvError, match="malformed"):
        Layout.from_json({**layout.to_json(), "panels": [["x", "act"]]}, net)


def test_cell_of_rejects_cells_outside_their_block():
    layout = Layout.for_network(preset("conv-example"))
    for bad in [("conv1", 2, 0, 0), ("conv1", 0, 14, 0), ("conv1.weight", 0, 1, 0, 0), ("conv3", 0, 0, 0),
                ("conv1.bias", 2)]:
        with pytest.raises(SheetconvError):
            layout.cell_of(bad)
    assert layout.locate(0, 1) is None and layout.locate(1, 1) is None     # header and title cells
