"""Formula texts: each references exactly the engine's precedents, with portable functions only.

The oracle tokenizes each formula with openpyxl's Tokenizer, maps every referenced cell
back through the layout and compares with ``Network.precedents(cell, depth=1)``.
"""
from __future__ import annotations

import pytest
from _xlsx_oracle import ALLOWED_FUNCTIONS, computed_cells, functions, handmade_nets, random_net, references

from sheetconv import AvgPool2d, Conv2d, Network, preset
from sheetconv.sheet import a1 as xlref
from sheetconv.sheet.formulas import formula
from sheetconv.sheet.layout import Layout


def _nets():
    nets = {"conv-example": preset("conv-example"), "simple-cnn": preset("simple-cnn")}
    nets.update({k: n for k, (n, _) in handmade_nets().items()})
    nets.update({f"random{s}": random_net(s)[0] for s in range(25)})
    return nets


NETS = _nets()


def _expand(text, layout, net):
    out = set()
    for pos in references(text):
        cell = layout.locate(*pos)
        assert cell is not None, f"{text!r} reads {pos}, which is no cell"
        if layout.partial(cell[0]) is not None:
            out |= _expand(formula(net, layout, cell), layout, net)
        else:
            out.add(cell)
    return out


def _check_all(net, layout, limit=8192):
    for cell in computed_cells(net):
        text = formula(net, layout, cell)
        assert text.startswith("=") and len(text) <= limit
        assert functions(text) <= ALLOWED_FUNCTIONS, text
        assert _expand(text, layout, net) == net.precedents(cell, depth=1).cells(), (cell, text)


@pytest.mark.parametrize("key", list(NETS))
def test_formula_references_equal_engine_precedents(key):
    net = NETS[key]
    _check_all(net, Layout.for_network(net))


@pytest.mark.parametrize("key, limit", [("simple-cnn", 400), ("pad-stride-nonsquare+maxpool", 100),
                                        ("avgpool-exclude-pad+dilated-w", 200), ("grouped-conv", 200)])
def test_partial_sums_still_reference_exactly_the_precedents(key, limit):
    net = NETS[key]
    layout = Layout.for_network(net, max_formula=limit)        # a low limit forces splitting on small layers
    assert any(layout.partials(n) for n in net.names[1:])
    _check_all(net, layout, limit)


def test_conv_example_formulas_read_as_in_the_issue():
    net = preset("conv-example")
    layout = Layout.for_network(net)
    # Input at B3:AC30; conv1 channel 0's kernel at AE3:AG5 (between the input and conv1), its bias
    # in the bias column below the kernels, at AE8 (see test_layout).
    assert layout.cell_of(("conv1.weight", 0, 0, 0, 0)) == (2, 30)
    assert formula(net, layout, ("conv1", 0, 0, 0)) == "=MAX(0,SUMPRODUCT(B3:C4,$AF$4:$AG$5)+$AE$8)"
    assert formula(net, layout, ("conv1", 0, 1, 1)) == "=MAX(0,SUMPRODUCT(C4:E6,$AE$3:$AG$5)+$AE$8)"
    text = formula(net, layout, ("conv2", 1, 3, 3))
    assert text.startswith("=MAX(0,SUMPRODUCT(") and text.count("SUMPRODUCT") == 2


def test_dilated_windows_are_written_as_products():
    net = NETS["dilated+avgpool-pad"]
    layout = Layout.for_network(net)
    text = formula(net, layout, ("conv1", 0, 4, 4))
    assert "SUMPRODUCT" not in text and text.count("*") == 9


def test_average_pool_divides_by_the_kernel_area_where_padding_counts():
    net = Network([AvgPool2d(3, stride=2, padding=1)], (1, 5, 5))
    layout = Layout.for_network(net)
    assert formula(net, layout, ("pool1", 0, 0, 0)) == "=SUM(B3:C4)/9"
    assert formula(net, layout, ("pool1", 0, 1, 1)) == "=AVERAGE(C4:E6)"
    net2 = Network([AvgPool2d(3, stride=2, padding=1, count_include_pad=False)], (1, 5, 5))
    assert formula(net2, Layout.for_network(net2), ("pool1", 0, 0, 0)) == "=AVERAGE(B3:C4)"


def test_a_window_entirely_in_padding_is_just_the_bias():
    net = NETS["pad-only-corners"]
    layout = Layout.for_network(net)
    row, col = layout.cell_of(("conv1.bias", 1))
    assert formula(net, layout, ("conv1", 1, 0, 0)) == "=" + xlref.cell(row, col, absolute=True)
    assert formula(net, layout, ("conv2", 0, 0, 0)) == "=0"


def test_many_channels_stay_under_excels_formula_limit():
    net = Network([Conv2d(300, 2, 1, padding=1)], (300, 2, 2))
    net.init_weights(0)
    layout = Layout.for_network(net)
    assert layout.partials("conv1")
    _check_all(net, layout)
