"""The sheet layout: every cell has one place, blocks never overlap, Excel's limits hold."""
from __future__ import annotations

import itertools

import pytest

from sheetconv import Conv2d, Flatten, Linear, Network, SheetconvError, preset
from sheetconv.sheet.layout import Layout
from sheetconv.sheet.a1 import MAX_COLS, MAX_ROWS

from _xlsx_oracle import handmade_nets, param_cells, random_net


def _nets():
    nets = {"conv-example": preset("conv-example"), "simple-cnn": preset("simple-cnn")}
    nets.update({k: n for k, (n, _) in handmade_nets().items()})
    nets.update({f"random{s}": random_net(s)[0] for s in range(6)})
    return nets


NETS = _nets()


def _all_cells(net):
    for name in net.names:
        c, h, w = net.grid(name)
        yield from ((name, *i) for i in itertools.product(range(c), range(h), range(w)))
    yield from (cell for cell, _ in param_cells(net))


def _occupied(layout):
    """{(row, col): what} for every block cell and every title cell; fails on any overlap."""
    seen = {}
    for b in layout.blocks:
        cells = [(b.top - 1, b.left, "title")] + [(r, c, "cell") for r in range(b.top, b.top + b.height)
                                                  for c in range(b.left, b.left + b.width)]
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


def test_conv_example_reads_like_the_fastai_sheet():
    net = preset("conv-example")
    layout = Layout.for_network(net)
    assert layout.sheet == "conv"
    assert layout.cell_of(("input", 0, 0, 0)) == (2, 1)              # B3, titled in B2
    titles = {b.title for b in layout.blocks}
    assert {"input 28 x 28, channel 0", "conv1 (ReLU) 14 x 14, channel 0", "filter 0/0", "bias"} <= titles
    # Layers left to right by depth, channels top to bottom, kernels beside their channel.
    x = [layout.cell_of((n, 0, 0, 0))[1] for n in net.names]
    assert x == sorted(x) and len(set(x)) == len(x)
    assert layout.cell_of(("conv1", 1, 0, 0))[0] > layout.cell_of(("conv1", 0, 13, 0))[0]
    k = layout.cell_of(("conv2.weight", 0, 0, 0, 0))
    assert k[0] == layout.cell_of(("conv2", 0, 0, 0))[0] and k[1] > layout.cell_of(("conv2", 0, 0, 6))[1]
    assert layout.cell_of(("conv2.weight", 0, 1, 0, 0))[0] > layout.cell_of(("conv2.weight", 0, 0, 2, 0))[0]


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
    tops = [s.top for s in layout.stripes]
    assert tops[0] == tops[1] < tops[2]                       # conv2 starts a new band below
    assert max(s.left + s.width for s in layout.stripes) <= MAX_COLS
    for cell in _all_cells(net):
        assert layout.locate(*layout.cell_of(cell)) == cell


def test_small_limits_wrap_bands_and_split_tall_stripes_into_column_groups():
    net = preset("simple-cnn")
    layout = Layout.for_network(net, max_cols=60, max_rows=1500)
    assert len({s.top for s in layout.stripes}) > 1
    assert any(s.groups > 1 for s in layout.stripes)
    rows, cols = layout.extent
    assert rows <= 1500 and cols <= 60
    _occupied(layout)
    for cell in _all_cells(net):
        assert layout.locate(*layout.cell_of(cell)) == cell


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


def test_cell_of_rejects_cells_outside_their_block():
    layout = Layout.for_network(preset("conv-example"))
    for bad in [("conv1", 2, 0, 0), ("conv1", 0, 14, 0), ("conv1.weight", 0, 1, 0, 0), ("conv3", 0, 0, 0),
                ("conv1.bias", 2)]:
        with pytest.raises(SheetconvError):
            layout.cell_of(bad)
    assert layout.locate(0, 1) is None and layout.locate(1, 1) is None     # header and title cells
