"""ResNets: the resnet-mini preset and torchvision's resnet18 front (stem, max pool, layer1).

torchvision cannot be installed beside this torch, so its definition of BasicBlock and of
resnet18's first modules is copied below as plain torch modules. Oracles: torch (numbers,
float64), torchinfo (parameter counts and output shapes), the receptive-field recurrences
worked by hand in the comments, and the written workbook read back by the tracer.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import sheetconv as sc
from sheetconv.nn.summary import summary_rows
from sheetconv.sheet.layout import Layout

torch = pytest.importorskip("torch")
torchinfo = pytest.importorskip("torchinfo")
nn = torch.nn

from test_graph import fastbook_resnet, randomise_batchnorm  # noqa: E402

# ---------------------------------------------------------------- torchvision's definitions (resnet.py)

def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet18Front(nn.Module):
    """resnet18 cut after layer1: conv1 7x7/2, bn1, relu, maxpool 3/2, two BasicBlocks(64)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        return self.layer1(x)


COUNTED = {"Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Linear"}


def torchinfo_rows(model, shape):
    dtype = next(model.parameters()).dtype
    stats = torchinfo.summary(model, input_size=(1, *shape), verbose=0, depth=20, dtypes=[dtype])
    rows = Counter((l.class_name, tuple(l.output_size), l.num_params)
                   for l in stats.summary_list if l.is_leaf_layer and l.class_name in COUNTED)
    return stats.total_params, rows


def our_rows(net):
    rows = summary_rows(net)
    counted = Counter((r.type.split(" + ")[0], r.output_shape, r.params) for r in rows[1:]
                      if r.type.split(" + ")[0] in COUNTED)
    return sum(r.params for r in rows), counted


@pytest.fixture(scope="module")
def front():
    torch.manual_seed(0)
    return randomise_batchnorm(ResNet18Front(), seed=1).double().eval()


def test_resnet18_front_numbers_against_torch(front):
    net = sc.from_torch(front, (3, 64, 64))
    assert [l.kind for l in net.layers].count("add") == 2 and net.is_graph
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    with torch.no_grad():
        want = front(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-10, atol=1e-10)
    # the same ReLU module called four times: each call a ReLU of its own, fused where it may be
    assert [l.label for l in net.layers if l.kind == "add"] == ["add1 (ReLU)", "add2 (ReLU)"]
    module = sc.to_torch(net, torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), want, rtol=1e-10, atol=1e-10)


def test_resnet18_front_summary_matches_torchinfo_and_shows_fields_per_stage(front):
    net = sc.from_torch(front, (3, 64, 64))
    assert our_rows(net) == torchinfo_rows(front, (3, 64, 64))
    text = net.summary()
    # r = 7 (7x7/2), + (3-1)*2 = 11 after the 3/2 max pool (jump 4), + 2*4 per 3x3 conv:
    # 19, 27 (block 1), 35, 43 (block 2); each Add joins the shortcut's narrower paths
    fields = {r.name: (r.rf_size[0], r.jump[0]) for r in summary_rows(net)[1:]}
    assert fields["conv1"] == (7, 2) and fields["pool1"] == (11, 4)
    assert fields["add1"] == (27, 4) and fields["add2"] == (43, 4)
    assert "add1 = bn3 + pool1: 2 paths, fields 11 to 27, jump 4" in text
    assert "add2 = bn5 + add1: 3 paths, fields 11 to 43, jump 4" in text


def test_resnet_mini_matches_fastbooks_resnet_in_torchinfo():
    net = sc.preset("resnet-mini")
    torch.manual_seed(0)
    assert our_rows(net) == torchinfo_rows(fastbook_resnet(), (1, 28, 28))
    assert sc.verify(net, sc.digit(0)).ok()
    assert net.is_graph and net.shapes[net.layers[-1].name] == (10,)
    layout = Layout.for_network(net)
    rows, cols = layout.extent
    cells = sum(int(np.prod(s)) for n, s in net.shapes.items() if n != "input")
    assert cells < 1_000_000 and rows < 1_000_000 and cols <= 16_384
    # the shortcut of a strided block is traceable like any precedent
    level = net.precedents(("res2", 0, 3, 3), depth=1)
    assert {r.name for r in level.levels[0]} == {"res2_bn2", "res2_idbn"}


def test_simple_cnn_bn_against_torch():
    net = sc.preset("simple-cnn-bn")
    assert [l.kind for l in net.layers].count("batchnorm") == 4
    assert sc.verify(net, sc.digit(2)).ok()


def test_resnet18_front_workbook_traces_a_cell(front, tmp_path):
    net = sc.from_torch(front, (3, 64, 64), fold_batchnorm=True)
    x = np.random.default_rng(0).standard_normal((3, 64, 64))
    path = tmp_path / "front.xlsx"
    sc.write_workbook(net, x, path)
    book = sc.open_workbook(path)
    trace = book.precedents("add2[5,7,7]", depth=None)
    engine = net.precedents(("add2", 5, 7, 7), depth=None)
    assert trace.depth == engine.depth
    inp = engine.region("input")
    assert inp.bbox()[1:] == ((7 * 4 - 21, 7 * 4 + 21), (7 * 4 - 21, 7 * 4 + 21))     # 43 x 43 around 4*7


def test_resnet_mini_formulas_reference_exactly_the_precedents():
    from _xlsx_oracle import computed_cells, references

    from sheetconv.sheet.formulas import formula
    net = sc.preset("resnet-mini")
    layout = Layout.for_network(net)
    cells = list(computed_cells(net))
    for cell in cells[::37] + [c for c in cells if c[0] in ("res1", "res3") and c[1] == 0]:
        text = formula(net, layout, cell)
        refs = {layout.locate(*pos) for pos in references(text)}
        assert refs == net.precedents(cell, depth=1).cells(), (cell, text)
