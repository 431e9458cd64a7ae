"""`sheetconv trace` and open_workbook on sheetconv workbooks: the analytic answer equals the
answer read from the workbook's own formulas for every cell of both presets; the text, JSON,
HTML, highlighted copy and PNG say what the book shows (the 7 x 7 field of conv2)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner
from PIL import Image

import sheetconv as sc
from sheetconv.cli import cli
from sheetconv.export import write_workbook
from sheetconv.reader import compact_rects
from sheetconv.workbook import FormulaWorkbook, SheetconvWorkbook, open_workbook, parse_grid_ref

from _craft_xlsx import cell_xml, sheet_xml, write_xlsx


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    d = tmp_path_factory.mktemp("books")
    out = {}
    for name in ("conv-example", "simple-cnn"):
        net = sc.preset(name)
        out[name] = write_workbook(net, sc.digit(0), d / f"{name}.xlsx", force=True).path
    return out


def formula_rects(trace, sheet):
    return [compact_rects([(a, c, b - 1, d - 1) for reg in level if reg.name == sheet
                           for rows, cols in reg.boxes for a, b in rows for c, d in cols])
            for level in trace.levels]


def all_cells(net):
    cells = []
    for name in net.names:
        c, h, w = net.grid(name)
        cells += [(name, i, r, q) for i in range(c) for r in range(h) for q in range(w)]
    for pname, arr in net.state_dict().items():
        cells += [(pname, *idx) for idx in itertools.product(*map(range, arr.shape))]
    return cells


@pytest.mark.parametrize("preset", ["conv-example", "simple-cnn"])
def test_analytic_equals_formulas_for_every_cell(books, preset):
    wb = open_workbook(books[preset])
    assert isinstance(wb, SheetconvWorkbook)
    fw = wb.formulas
    assert isinstance(fw, FormulaWorkbook)
    checked = 0
    for cell in all_cells(wb.net):
        row, col = wb.layout.cell_of(cell)
        queries = [("dependents", None)] if "." in cell[0] else [("precedents", None), ("precedents", 1),
                                                                 ("dependents", None)]
        for direction, depth in queries:
            analytic = getattr(wb, direction)(cell, depth)
            formulas = getattr(fw, direction)((wb.sheet, row, col), depth)
            assert wb.sheet_levels(analytic) == formula_rects(formulas, wb.sheet), (cell, direction, depth)
            assert all(r.name == wb.sheet for level in formulas.levels for r in level)   # summary, meta: no part
            checked += 1
    assert checked > 1000


def _check_both_paths(wb, directions=(("precedents", None), ("precedents", 1), ("dependents", None),
                                       ("dependents", 1))):
    fw = wb.formulas
    for cell in all_cells(wb.net):
        row, col = wb.layout.cell_of(cell)
        for direction, depth in directions:
            if direction == "precedents" and "." in cell[0]:
                continue
            analytic = getattr(wb, direction)(cell, depth)
            formulas = getattr(fw, direction)((wb.sheet, row, col), depth)
            assert wb.sheet_levels(analytic) == formula_rects(formulas, wb.sheet), (cell, direction, depth)


@pytest.mark.parametrize("layers,shape", [
    # partial sums (a small formula limit forces them), dilation, non-square kernels, pools, Linear
    (lambda: [sc.Conv2d(6, 2, 3, stride=2, padding=1), sc.ReLU(), sc.Conv2d(2, 5, 3, padding=1),
              sc.Conv2d(5, 3, 2, dilation=2)], (6, 9, 8)),
    (lambda: [sc.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)), sc.MaxPool2d(2), sc.Flatten(),
              sc.Linear(18, 4, relu=True), sc.Linear(4, 2)], (2, 9, 8)),
    (lambda: [sc.Conv2d(1, 3, 3, padding=1), sc.AvgPool2d(2, padding=1), sc.Conv2d(3, 4, 3, stride=2)], (1, 10, 10)),
])
def test_both_paths_on_other_networks(tmp_path, layers, shape):
    from sheetconv.layout import Layout
    net = sc.Network(layers(), input_shape=shape).init_weights(3)
    layout = Layout.for_network(net, max_formula=200)
    x = np.random.default_rng(0).uniform(size=shape)
    path = write_workbook(net, x, tmp_path / "n.xlsx", force=True, layout=layout).path
    _check_both_paths(open_workbook(path))


def test_conv2_cell_text(books):
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[0,3,3]"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "size 7 x 7" in text and "not clipped" in text
    assert "level 1:" in text and "level 2:" in text
    assert "conv1 ch 0" in text and "conv1 ch 1" in text and "conv2.weight" in text
    rows = [line.strip() for line in text.splitlines() if set(line.strip()) <= {".", "#"} and len(line.strip()) == 28]
    assert len(rows) == 28
    marked = [(y, x) for y, line in enumerate(rows) for x, ch in enumerate(line) if ch == "#"]
    net = sc.preset("conv-example")
    (r0, r1), (c0, c1) = net.receptive_field("conv2").region(3, 3, (28, 28))
    assert marked == [(y, x) for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)]
    assert (r1 - r0 + 1, c1 - c0 + 1) == (7, 7)


def test_border_clipping_and_a1_input(books):
    wb = open_workbook(books["conv-example"])
    t = wb.precedents("conv2[0,0,0]")
    info = t.input_info()
    assert info["size"] == [4, 4] and info["clipped"] == {"top": 3, "bottom": 0, "left": 3, "right": 0}
    assert "3 rows at the top" in t.text()
    same = wb.precedents(t.meta["cell"])                      # the same cell by its A1 address
    assert same.levels == t.levels
    assert parse_grid_ref("conv2[0, 3,3]") == ("conv2", 0, 3, 3)


def test_dependents_and_params(books):
    wb = open_workbook(books["conv-example"])
    t = wb.dependents("input[0,5,5]")
    assert [r.name for level in t.levels for r in level] == ["conv1", "conv2"]
    t = wb.dependents(("conv1.weight", 0, 0, 1, 1))
    assert t.levels[0][0].name == "conv1"
    w = wb.precedents(("conv1.weight", 0, 0, 1, 1))
    assert w.levels == [] and "a constant" in w.text()


def test_json_and_html(books):
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[1,6,6]", "--format", "json",
                                      "--depth", "1"])
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["direction"] == "precedents" and doc["depth"] == 1
    assert {e["grid"] for e in doc["sheet_levels"][0]} == {"conv1", "conv2.weight", "conv2.bias"}
    assert all(e["ranges"] for e in doc["sheet_levels"][0])
    t = open_workbook(books["conv-example"]).precedents("conv2[0,3,3]")
    page = t._repr_html_()
    assert page.count("<tr>") == 28 and page.count("#4a90d9") == 49


def test_highlight_copy(books, tmp_path):
    out = tmp_path / "hl.xlsx"
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[0,3,3]", "--highlight", str(out)])
    assert result.exit_code == 0, result.output
    wb = open_workbook(books["conv-example"])
    t = wb.precedents("conv2[0,3,3]")
    lay = wb.layout
    ws = openpyxl.load_workbook(out)["conv"]
    root = ws.cell(*(v + 1 for v in lay.cell_of(("conv2", 0, 3, 3))))
    assert root.border.left.style == "thick" and root.border.left.color.rgb.endswith("00A000")
    filled = {(c.row - 1, c.column - 1) for row in ws.iter_rows() for c in row
              if c.fill is not None and c.fill.fill_type == "solid"}
    expected = {(y, x) for level in wb.sheet_levels(t) for r0, c0, r1, c1 in level
                for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)}
    assert filled == expected
    sheet_names = openpyxl.load_workbook(out).sheetnames
    assert sheet_names == ["conv", "summary", "_sheetconv"]
    bad = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "A1", "--highlight",
                                   str(books["conv-example"])])
    assert bad.exit_code == 2 and "being traced" in bad.output


def test_png(books, tmp_path):
    out = tmp_path / "rf.png"
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[0,3,3]", "--png", str(out)])
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    px = img.shape[0] // 28
    assert img.shape[:2] == (28 * px, 28 * px)
    tinted = (img[..., 0] - img[..., 2]) > 30                 # the outlines and fills are warm colours
    ys, xs = np.nonzero(tinted)
    assert (ys.min() // px, ys.max() // px, xs.min() // px, xs.max() // px) == (9, 15, 9, 15)


def test_generic_workbook_with_array_formula(tmp_path):
    sheet = sheet_xml({
        2: [cell_xml("A2", 1), cell_xml("B2", 2), cell_xml("C2", 3)],
        4: [cell_xml("A4", 1), cell_xml("E4", 1, "MAX(0,SUM(A2:C4*$AD$11:$AF$13))", array="E4")],
        11: [cell_xml("AD11", 1)],
    })
    p = write_xlsx(tmp_path / "excel.xlsx", [("My sheet (2)", sheet)])
    result = CliRunner().invoke(cli, ["trace", str(p), "'My sheet (2)'!E4"])
    assert result.exit_code == 0, result.output
    assert "'My sheet (2)'!A2:C4, 'My sheet (2)'!AD11:AF13  (18)" in result.output
    result = CliRunner().invoke(cli, ["trace", str(p), "'My sheet (2)'!A2", "--dependents", "--format", "json"])
    doc = json.loads(result.output)
    assert doc["sheet_levels"][0][0]["ranges"] == ["E4"]


def test_generic_highlight_and_png(tmp_path):
    rows = {r: [cell_xml(f"{c}{r}", (r * 7 + ord(c)) % 10) for c in "ABCD"] for r in range(1, 6)}
    rows[7] = [cell_xml("B7", 0, "SUM(A1:B2)+'Other (1)'!A1"), cell_xml("C7", 0, "B7*C1")]
    data = sheet_xml({1: [cell_xml("A1", 2)]})
    p = write_xlsx(tmp_path / "g.xlsx", [("Main", sheet_xml(rows)), ("Other (1)", data)])
    hl, png = tmp_path / "hl.xlsx", tmp_path / "g.png"
    result = CliRunner().invoke(cli, ["trace", str(p), "C7", "--highlight", str(hl), "--png", str(png)])
    assert result.exit_code == 0, result.output
    wb = openpyxl.load_workbook(hl)
    filled = {(ws.title, c.coordinate) for ws in wb for row in ws.iter_rows() for c in row
              if c.fill is not None and c.fill.fill_type == "solid"}
    assert filled == {("Main", a) for a in ("B7", "C1", "A1", "A2", "B1", "B2")} | {("Other (1)", "A1")}
    assert wb["Main"]["C7"].border.top.style == "thick"
    img = Image.open(png)
    assert img.size[0] > 0 and img.size[1] > 0
