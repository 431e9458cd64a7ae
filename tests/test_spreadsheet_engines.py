"""Generated workbooks recalculated by LibreOffice and Gnumeric agree with NumPy and torch.

Every workbook's stored formula results are overwritten with a sentinel before the
engines see it, so a match can only come from the engines' own recalculation of our
formulas. Each activation cell is then compared, at float64, with the NumPy engine and
with torch: max abs error <= 1e-9. All LibreOffice conversions of this module run in
one soffice start.
"""
from __future__ import annotations

import re
import shutil
import zipfile

import numpy as np
import openpyxl
import pytest
from defusedxml import ElementTree

from sheetconv import (
    GELU,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    Network,
    ReLU,
    Sigmoid,
    SiLU,
    Tanh,
    digit,
    preset,
)
from sheetconv.interop.verify import torch_activations
from sheetconv.sheet import a1 as xlref
from sheetconv.sheet.explain import EXPLAIN_SHEET, explain
from sheetconv.sheet.layout import Layout
from sheetconv.sheet.prediction import PREDICTION_SHEET, class_cell, has_prediction, prob_cells
from sheetconv.xlsx import recalc
from sheetconv.xlsx import writer as export

pytestmark = pytest.mark.filterwarnings("ignore:Workbook contains no default style")

TOL = 1e-9
SENTINEL = -777.0      # no activation of these networks can take this value


def net_padded_dilated():
    """Non-square kernel, stride, dilation, padding; max pool and avg pool without pad counting; two Linears."""
    return Network([
        Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), ReLU(),
        MaxPool2d(2, stride=1, padding=1),
        AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        Flatten(), Linear(36, 4, relu=True), Linear(4, 3),
    ], input_shape=(2, 9, 8))


def net_unfused():
    """Dilated padded conv, avg pool counting padding, a bias-free conv, a standalone ReLU, max pool."""
    return Network([
        Conv2d(1, 2, 3, padding=2, dilation=2),
        AvgPool2d((2, 3), stride=(2, 1), padding=1),
        Conv2d(2, 3, (1, 3), stride=2, bias=False), ReLU(),
        MaxPool2d((3, 2), stride=(1, 2), padding=(1, 0)),
        Flatten(), Linear(18, 2, bias=False),
    ], input_shape=(1, 10, 10), fuse_relu=False)


def net_wide():
    """A 5x4 kernel over three channels with asymmetric padding, then a strided 2x2 max pool."""
    return Network([
        Conv2d(3, 4, (5, 4), stride=(1, 2), padding=(2, 1), relu=True),
        MaxPool2d(2),
        Conv2d(4, 2, 2, dilation=(2, 1), padding=(1, 0)),
    ], input_shape=(3, 8, 11))


def net_residual():
    """A graph: a residual add with a fused ReLU, a strided block whose shortcut is an average
    pool (fastbook's, in ceil mode: 7 -> 4 like the conv) and a 1x1 conv, a concatenation
    along channels, then Flatten and Linear."""
    def named(layer, name, inputs=None):
        layer.name, layer.inputs = name, None if inputs is None else tuple(inputs)
        return layer
    return Network([
        named(Conv2d(2, 3, 3, padding=1, relu=True), "stem"),
        named(Conv2d(3, 3, 3, padding=1), "b1"), named(Add(relu=True), "res1", ["b1", "stem"]),
        named(Conv2d(3, 4, 3, stride=2, padding=1), "down"), named(AvgPool2d(2, ceil_mode=True), "short", ["res1"]),
        named(Conv2d(3, 4, 1), "proj"), named(Add(), "res2", ["down", "proj"]),
        named(Concat(), "cat", ["res2", "proj"]), Flatten(), Linear(8 * 4 * 4, 3),
    ], input_shape=(2, 7, 7))


def net_ceil():
    """Pools in ceil mode: an average pool counting padding whose last windows hang past it
    (divided by the part inside the padded grid), then a max pool whose last window is one cell."""
    return Network([
        Conv2d(1, 2, 3, padding=1, relu=True),
        AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        MaxPool2d(2, ceil_mode=True),
        Flatten(), Linear(18, 3),
    ], input_shape=(1, 8, 8))


def net_partial_sums():
    """Convs whose formulas are split into partial sums (with a 400-character formula limit)."""
    return Network([
        Conv2d(2, 4, 3, padding=1, relu=True),
        Conv2d(4, 7, (3, 2), stride=2, padding=1, dilation=(2, 1), relu=True),
        Conv2d(7, 2, 2),
    ], input_shape=(2, 7, 6))


def net_batchnorm():
    """BatchNorm2d (fused ReLU, no affine, no bias), grouped and depthwise convs, adaptive pools that overlap."""
    return Network([
        Conv2d(2, 4, 3, padding=1), BatchNorm2d(4), ReLU(),
        Conv2d(4, 4, 3, groups=4, bias=False), BatchNorm2d(4, eps=1e-3, affine=False), LeakyReLU(0.1),
        Conv2d(4, 6, (2, 1), groups=2), BatchNorm2d(6, bias=False),
        AdaptiveAvgPool2d((3, 2)), AdaptiveMaxPool2d((2, 1)),
        Flatten(), Linear(12, 3),
    ], input_shape=(2, 9, 8))


def net_activations():
    """Sigmoid, Tanh, SiLU, GELU (exact and tanh), a grouped conv with partial sums, a global average pool."""
    return Network([
        Conv2d(2, 4, 3, padding=1), Sigmoid(), Conv2d(4, 4, 3, groups=2, padding=1), Tanh(),
        Conv2d(4, 6, 3, padding=1, groups=2), SiLU(), GELU(), Conv2d(6, 6, 1), GELU("tanh"),
        AdaptiveAvgPool2d(1), Flatten(), Linear(6, 3), LeakyReLU(-0.5),
    ], input_shape=(2, 7, 6))


def _random_statistics(net, seed):
    """Running statistics and affine parameters of every BatchNorm2d (a seeded init leaves them 1s and 0s).

    Kept inside (-1, 1) like the weights: LibreOffice saves 15 significant digits, so the
    constants it writes back are exact to 1e-15 only below 1 in magnitude (check_constants)."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, BatchNorm2d):
            for key, value in layer.params().items():
                setattr(layer, key, rng.uniform(0.2 if key == "running_var" else -0.95, 0.95, value.shape))
    return net


SMALL_FORMULA_LIMIT = {"partial_sums": 400, "activations": 130}

# The cell each case's explain sheet works through (None: the default, the centre of the last conv):
# a conv with padding and ReLU, a dilated conv at the corner, a pool counting padding, a max pool,
# a Linear with ReLU, a standalone ReLU, a conv with partial sums.
# (batchnorm-bn / activations-gelu / adaptive: the kind's own formula over conv-sheet references;
# residual-add: an Add with its ReLU, residual-cat: a Concat channel of its second input;
# residual-short, ceil, ceil-max: ceil-mode windows hanging past the grid, ceil's past the padding too)
EXPLAIN = {"conv-example": None, "simple-cnn": None, "conv-course": "fc1[7]", "padded_dilated": "fc1[2]",
           "unfused": "pool1[1,0,0]", "wide": "pool1[2,1,1]", "partial_sums": "conv3[1,1,2]",
           "unfused-relu": "relu1[2,1,3]", "dilated-corner": "conv1[1,0,0]", "batchnorm": "conv2[3,0,5]",
           "activations": "conv3[4,3,2]", "batchnorm-bn": "bn1[2,3,4]", "batchnorm-adaptive": "pool1[1,2,1]",
           "activations-gelu": "act4[5,1,2]", "activations-leaky": "act6[2]",
           "residual": "down[1,2,1]", "resnet-mini": "res2_conv1[1,3,3]",
           "residual-add": "res1[1,2,3]", "residual-cat": "cat[5,1,2]", "residual-short": "short[2,3,3]",
           "ceil": "pool1[1,4,4]", "ceil-max": "pool2[0,2,2]"}


def _random_input(net, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=net.input_shape)


def _cases():
    """name -> (network, input)."""
    cases = {
        "conv-example": (preset("conv-example"), digit(0)),
        "simple-cnn": (preset("simple-cnn", seed=1), digit(3)),
        "conv-course": (preset("conv-course", seed=2), digit(1)),
        "resnet-mini": (preset("resnet-mini", seed=3), digit(4)),
    }
    for i, make in enumerate([net_padded_dilated, net_unfused, net_wide, net_partial_sums, net_batchnorm,
                              net_activations, net_residual, net_ceil]):
        net = _random_statistics(make().init_weights(10 + i), 30 + i)
        cases[make.__name__.removeprefix("net_")] = (net, _random_input(net, 20 + i))
    for extra in ("batchnorm-bn", "batchnorm-adaptive", "activations-gelu", "activations-leaky", "residual-add",
                  "residual-cat", "residual-short", "ceil-max"):
        cases[extra] = cases[extra.split("-")[0]]
    cases["unfused-relu"] = cases["unfused"]
    cases["dilated-corner"] = cases["unfused"]
    return cases


# ------------------------------------------------------------------ workbook surgery

_FORMULA_VALUE = re.compile(rb"(<f\b[^>]*>[^<]*</f>|<f\b[^>]*/>)<v>[^<]*</v>")


def sheet_part(path, sheet):
    """The zip member holding worksheet ``sheet`` of the xlsx at ``path``."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
          "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
          "p": "http://schemas.openxmlformats.org/package/2006/relationships"}
    with zipfile.ZipFile(path) as z:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    rid = next(s.get(f"{{{ns['r']}}}id") for s in book.iterfind("m:sheets/m:sheet", ns) if s.get("name") == sheet)
    target = next(r.get("Target") for r in rels.iterfind("p:Relationship", ns) if r.get("Id") == rid)
    return target.lstrip("/") if target.startswith("/") else "xl/" + target


def _rewrite_sheets(path, edit, only=None):
    """Apply ``edit(bytes) -> bytes`` to every worksheet XML of the xlsx at ``path`` (or to ``only``)."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            name = info.filename
            if (name == only) if only else (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                data = edit(data)
            zout.writestr(info, data)
    tmp.replace(path)


def corrupt_stored_values(path):
    """Overwrite every cached formula result with SENTINEL; return how many were replaced."""
    count = 0

    def edit(xml):
        nonlocal count
        xml, n = _FORMULA_VALUE.subn(lambda m: m.group(1) + b"<v>%r</v>" % SENTINEL, xml)
        count += n
        return xml
    _rewrite_sheets(path, edit)
    return count


def set_constant(path, sheet, row, col, value):
    """Change the constant (non-formula) number in the 0-based cell (row, col) of ``sheet``."""
    ref = xlref.cell(row, col).encode()
    pattern = re.compile(rb'(<c r="' + ref + rb'"(?: [^>]*)?>)<v>[^<]*</v>(</c>)')
    hits = 0

    def edit(xml):
        nonlocal hits
        xml, n = pattern.subn(lambda m: m.group(1) + b"<v>%r</v>" % float(value) + m.group(2), xml)
        hits += n
        return xml
    _rewrite_sheets(path, edit, only=sheet_part(path, sheet))
    assert hits == 1, f"expected one constant cell {ref.decode()} in the workbook, found {hits}"


# ------------------------------------------------------------------ reading results

def _formulas_outside(path, sheet):
    """Formula cells of every sheet but ``sheet``."""
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return sum(isinstance(v, str) and v.startswith("=") for name in wb.sheetnames if name != sheet
                   for row in wb[name].iter_rows(values_only=True) for v in row)
    finally:
        wb.close()


def sheet_values(path, sheet):
    """All cell values of ``sheet`` as a list of rows (cached values, i.e. what the engine computed)."""
    wb = openpyxl.load_workbook(path, data_only=True, read_only=True)
    try:
        return [list(r) for r in wb[sheet].iter_rows(values_only=True)]
    finally:
        wb.close()


def _at(rows, row, col):
    try:
        return rows[row][col]
    except IndexError:
        return None


def activation_cells(net):
    """Every computed cell (layer, c, r, col), layer by layer."""
    for name in net.names[1:]:
        C, H, W = net.grid(name)
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    yield (name, c, r, col)


def compare(net, x, layout, rows, label):
    """Max abs error of the sheet against the NumPy engine and torch; every cell must be a number."""
    ours = net.activations(x, np.float64)
    theirs = torch_activations(net, x, np.float64)
    worst_np = worst_torch = 0.0
    seen = 0
    for cell in activation_cells(net):
        name, c, r, col = cell
        row, column = layout.cell_of(cell)
        got = _at(rows, row, column)
        assert isinstance(got, (int, float)) and not isinstance(got, bool), \
            f"{label}: {cell} at {row},{column} holds {got!r}, expected a number"
        assert got != SENTINEL, f"{label}: {cell} was not recalculated"
        idx = (c, r, col) if ours[name].ndim == 3 else (c,)
        worst_np = max(worst_np, abs(got - float(ours[name][idx])))
        worst_torch = max(worst_torch, abs(got - float(theirs[name][idx])))
        seen += 1
    assert seen > 0
    assert worst_np <= TOL, f"{label}: max abs error against NumPy {worst_np:.3e}"
    assert worst_torch <= TOL, f"{label}: max abs error against torch {worst_torch:.3e}"
    return worst_np, worst_torch


def check_constants(net, x, layout, rows, label):
    """The input pixels and parameters sit where the layout says."""
    C, H, W = net.input_shape
    for c in range(C):
        for r in range(H):
            for col in range(W):
                assert _at(rows, *layout.cell_of(("input", c, r, col))) == pytest.approx(x[c, r, col], abs=1e-15), label
    for key, arr in net.state_dict().items():
        for idx in np.ndindex(arr.shape):
            assert _at(rows, *layout.cell_of((key, *idx))) == pytest.approx(arr[idx], abs=1e-15), (label, key, idx)


# ------------------------------------------------------------------ the batch

# The live test edits, inside the conv-example workbook, one input pixel and one conv1 weight.
LIVE = "conv-example"
LIVE_PIXEL, LIVE_PIXEL_VALUE = ("input", 0, 13, 12), 0.75
LIVE_WEIGHT, LIVE_WEIGHT_VALUE = ("conv1.weight", 1, 0, 1, 2), -2.5


@pytest.fixture(scope="module")
def books(tmp_path_factory, engine_required):
    """Write, corrupt and recalculate every case; LibreOffice in one start, Gnumeric per file."""
    engine_required("libreoffice")
    engine_required("gnumeric")
    d = tmp_path_factory.mktemp("engines")
    (d / "lo").mkdir()
    (d / "gn").mkdir()
    cases = _cases()
    out = {}
    sources = []
    for name, (net, x) in cases.items():
        path = d / f"{name}.xlsx"
        if name in SMALL_FORMULA_LIMIT:
            layout = Layout.for_network(net, max_formula=SMALL_FORMULA_LIMIT[name])
            assert any(layout.partials(n) for n in net.names[1:]), "the formula limit should force partial sums"
        else:
            layout = Layout.for_network(net)
        export.write_workbook(net, x, path, force=True, layout=layout, explain=EXPLAIN[name])
        stored = sheet_values(path, layout.sheet)
        extra_formulas = _formulas_outside(path, layout.sheet)
        if name == LIVE:    # the live copy keeps its stored values: stale after the edit, but plausible
            shutil.copy(path, d / "live.xlsx")
        replaced = corrupt_stored_values(path)
        out[name] = dict(net=net, x=x, layout=layout, stored=stored, replaced=replaced, src=path,
                         extra_formulas=extra_formulas)
        sources.append(path)
    # the live case: edit one pixel and one weight inside the file
    layout = out[LIVE]["layout"]
    live = d / "live.xlsx"
    set_constant(live, layout.sheet, *layout.cell_of(LIVE_PIXEL), LIVE_PIXEL_VALUE)
    set_constant(live, layout.sheet, *layout.cell_of(LIVE_WEIGHT), LIVE_WEIGHT_VALUE)
    sources.append(live)
    lo = recalc.recalc_libreoffice(sources, d / "lo")
    for name, p in zip(list(cases) + ["live"], lo):
        if name != "live":
            gn = recalc.recalc_gnumeric(out[name]["src"], d / "gn" / p.name)
            for engine, book in (("libreoffice", p), ("gnumeric", gn)):
                out[name][engine] = sheet_values(book, out[name]["layout"].sheet)
                out[name][engine + "/explain"] = sheet_values(book, EXPLAIN_SHEET)
                if has_prediction(out[name]["net"]):
                    out[name][engine + "/prediction"] = sheet_values(book, PREDICTION_SHEET)
        else:
            out["live"] = sheet_values(p, layout.sheet)
    return out


CASES = list(_cases())


@pytest.mark.engine("libreoffice", "gnumeric")
@pytest.mark.parametrize("engine", ["libreoffice", "gnumeric"])
@pytest.mark.parametrize("case", CASES)
def test_engine_matches_numpy_and_torch(books, case, engine):
    b = books[case]
    assert b["replaced"] == export.formula_count(b["net"], b["layout"]) + b["extra_formulas"]   # every formula
    check_constants(b["net"], b["x"], b["layout"], b[engine], f"{case}/{engine}")
    compare(b["net"], b["x"], b["layout"], b[engine], f"{case}/{engine}")


@pytest.mark.engine("libreoffice", "gnumeric")
@pytest.mark.parametrize("case", CASES)
def test_stored_values_match_before_corruption(books, case):
    """The values the exporter stores for non-recalculating readers are right too."""
    b = books[case]
    compare(b["net"], b["x"], b["layout"], b["stored"], f"{case}/stored")


@pytest.mark.engine("libreoffice", "gnumeric")
def test_live_edit_recomputes_downstream(books):
    b = books[LIVE]
    net, x, layout = b["net"], b["x"], b["layout"]
    x2 = x.copy()
    x2[LIVE_PIXEL[1:]] = LIVE_PIXEL_VALUE
    wkey, *widx = LIVE_WEIGHT
    state = net.state_dict()
    state[wkey] = state[wkey].copy()
    state[wkey][tuple(widx)] = LIVE_WEIGHT_VALUE
    net2 = Network.from_spec(net.spec())
    net2.load_state_dict(state)
    compare(net2, x2, layout, books["live"], "live edit/libreoffice")
    # the edits really changed downstream cells, so the stale stored values could not pass
    last = net.layers[-1].name
    assert np.abs(net.forward(x) - net2.forward(x2)).max() > 1e-3, f"the edits do not reach {last}"


@pytest.mark.engine("libreoffice", "gnumeric")
@pytest.mark.parametrize("engine", ["libreoffice", "gnumeric"])
@pytest.mark.parametrize("case", CASES)
def test_the_worked_cell_recalculates_to_the_activation(books, case, engine):
    """Every step of the explain sheet is a live formula; the last one equals torch's activation."""
    b = books[case]
    net, x = b["net"], b["x"]
    ex = explain(net, b["layout"], net.activations(x, np.float64), EXPLAIN[case])
    theirs = torch_activations(net, x, np.float64)
    name, c, r, col = ex.cell
    want = float(theirs[name].reshape(net.grid(name))[c, r, col])
    rows = b[engine + "/explain"]
    got = _at(rows, *ex.result)
    assert isinstance(got, (int, float)) and not isinstance(got, bool) and got != SENTINEL, (case, engine, got)
    assert abs(got - want) <= TOL, (case, engine, got, want)
    link = _at(rows, ex.result[0] + 2, 0)                  # the last line links the activation cell itself
    assert abs(link - want) <= TOL
    if net[name].kind == "conv":
        assert len([v for row in rows for v in row if isinstance(v, (int, float))]) > 3 * net[name].kernel_size[0]


@pytest.mark.engine("libreoffice", "gnumeric")
@pytest.mark.parametrize("engine", ["libreoffice", "gnumeric"])
@pytest.mark.parametrize("case", [c for c in CASES if has_prediction(_cases()[c][0])])
def test_softmax_and_predicted_class_equal_torchs(books, case, engine):
    torch = pytest.importorskip("torch")
    b = books[case]
    net, x = b["net"], b["x"]
    logits = torch.from_numpy(torch_activations(net, x, np.float64)[net.names[-1]].ravel())
    want = torch.softmax(logits, dim=0).numpy()
    rows = b[engine + "/prediction"]
    got = np.array([_at(rows, *rc) for rc in prob_cells(net)], dtype=float)
    assert np.abs(got - want).max() <= TOL, (case, engine, got, want)
    assert _at(rows, *class_cell(net)) == int(torch.argmax(logits))
