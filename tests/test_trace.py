"""`sheetconv trace` and open_workbook on sheetconv workbooks: the analytic answer equals the
answer read from the workbook's own formulas for every cell of both presets; the text, JSON,
HTML, highlighted copy and PNG say what the book shows (the 7 x 7 field of conv2)."""
from __future__ import annotations

import itertools
import json
import os
import re
import warnings

import numpy as np
import openpyxl
import pytest
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from _xlsx_oracle import sheet_references
from click.testing import CliRunner
from PIL import Image

import sheetconv as sc
from sheetconv.cli import cli
from sheetconv.formulagraph.index import compact_rects
from sheetconv.nn.network import parse_grid_ref
from sheetconv.tracing import FormulaWorkbook, SheetconvWorkbook, open_workbook
from sheetconv.xlsx.highlight import LEVEL_COLORS
from sheetconv.xlsx.writer import write_workbook


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


SIDE_SHEETS = ("explain", "prediction")


def side_rects(trace):
    """Per level, {side sheet: its cells as canonical rectangles} (the sheets around the
    network's, whose formulas read its cells)."""
    return [{name: compact_rects([(a, c, b - 1, d - 1) for reg in level if reg.name == name
                                  for rows, cols in reg.boxes for a, b in rows for c, d in cols])
             for name in SIDE_SHEETS if any(reg.name == name for reg in level)}
            for level in trace.levels]


def all_cells(net):
    cells = []
    for name in net.names:
        c, h, w = net.grid(name)
        cells += [(name, i, r, q) for i in range(c) for r in range(h) for q in range(w)]
    for pname, arr in net.state_dict().items():
        cells += [(pname, *idx) for idx in itertools.product(*map(range, arr.shape))]
    return cells


def _analytic_equals_formulas(wb, cells) -> int:
    fw = wb.formulas
    assert isinstance(fw, FormulaWorkbook)
    checked = 0
    for cell in cells:
        row, col = wb.layout.cell_of(cell)
        queries = [("dependents", None)] if "." in cell[0] else [("precedents", None), ("precedents", 1),
                                                                 ("dependents", None)]
        for direction, depth in queries:
            analytic = getattr(wb, direction)(cell, depth)
            formulas = getattr(fw, direction)((wb.sheet, row, col), depth)
            assert wb.sheet_levels(analytic) == formula_rects(formulas, wb.sheet), (cell, direction, depth)
            # the worked cell's and the prediction's formulas, as Trace Dependents reaches them
            assert side_rects(analytic) == side_rects(formulas), (cell, direction, depth)
            assert all(r.name in (wb.sheet, *SIDE_SHEETS) for level in formulas.levels for r in level)
            checked += 1
    return checked


def sampled_cells(net, every: int = 23):
    """A fixed sample: every corner and the centre of every grid and parameter tensor, and every
    ``every``-th cell in between (the same cells on every run)."""
    cells = all_cells(net)
    keep = set(cells[::every])
    for name in net.names:
        c, h, w = net.grid(name)
        for i in {0, c - 1}:
            keep |= {(name, i, r, q) for r in {0, h // 2, h - 1} for q in {0, w // 2, w - 1}}
    for pname, arr in net.state_dict().items():
        keep |= {(pname, *idx) for idx in itertools.product(*({0, n // 2, n - 1} for n in arr.shape))}
    return [cell for cell in cells if cell in keep]


@pytest.mark.parametrize("preset", ["conv-example", "simple-cnn"])
def test_analytic_equals_formulas_on_a_fixed_sample_of_cells(books, preset):
    wb = open_workbook(books[preset])
    assert isinstance(wb, SheetconvWorkbook)
    cells = sampled_cells(wb.net)
    assert len(cells) > 100 and {c[0] for c in cells} >= set(wb.net.names)
    assert _analytic_equals_formulas(wb, cells) > 200


@pytest.mark.exhaustive
@pytest.mark.parametrize("preset", ["conv-example", "simple-cnn"])
def test_analytic_equals_formulas_for_every_cell(books, preset):
    wb = open_workbook(books[preset])
    assert isinstance(wb, SheetconvWorkbook)
    assert _analytic_equals_formulas(wb, all_cells(wb.net)) > 1000


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
            assert side_rects(analytic) == side_rects(formulas), (cell, direction, depth)


@pytest.mark.parametrize("layers,shape", [
    # partial sums (a small formula limit forces them), dilation, non-square kernels, pools, Linear
    (lambda: [sc.Conv2d(6, 2, 3, stride=2, padding=1), sc.ReLU(), sc.Conv2d(2, 5, 3, padding=1),
              sc.Conv2d(5, 3, 2, dilation=2)], (6, 9, 8)),
    (lambda: [sc.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)), sc.MaxPool2d(2), sc.Flatten(),
              sc.Linear(18, 4, relu=True), sc.Linear(4, 2)], (2, 9, 8)),
    (lambda: [sc.Conv2d(1, 3, 3, padding=1), sc.AvgPool2d(2, padding=1), sc.Conv2d(3, 4, 3, stride=2)], (1, 10, 10)),
])
def test_both_paths_on_other_networks(tmp_path, layers, shape):
    from sheetconv.sheet.layout import Layout
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
    assert page.count('<img src="data:image/png;base64,') == 1          # the level panels, inline
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    assert body.count("<tr>") == 9                                      # one row per text line of the levels
    assert "conv!K12:Q18" in body and "white-space:pre-wrap" in page    # long lines wrap


def test_html_of_a_network_trace_names_each_grid():
    t = sc.preset("simple-cnn").precedents(("conv2", 0, 3, 3), depth=None)
    body = t._repr_html_().split("<tbody>")[1].split("</tbody>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in body.split("<tr>")[1:]]
    assert [r[:3] for r in rows] == [["1", "conv1", "36"], ["1", "conv2.weight", "36"], ["1", "conv2.bias", "1"],
                                     ["2", "input", "49"], ["2", "conv1.weight", "36"], ["2", "conv1.bias", "4"]]
    assert rows[0][3] == "[0:4, 5:8, 5:8]" and rows[3][3] == "[0, 9:16, 9:16]"
    for draw in (t.figure, lambda: t.to_png("never.png")):     # pictures come from a workbook's values
        with pytest.raises(sc.SheetconvError, match=r"^a network's trace has no pictures.*open_workbook") as e:
            draw()
        assert "\n" not in str(e.value)
    assert not os.path.exists("never.png")


def test_level_colours_cycle_without_the_traced_cells_green():
    from sheetconv.xlsx.highlight import level_color
    colours = [level_color(k) for k in range(1, 30)]
    assert level_color(0) == LEVEL_COLORS[0] and LEVEL_COLORS[0] not in colours
    assert colours[:len(LEVEL_COLORS) - 1] == LEVEL_COLORS[1:]                 # each level its own, then again
    assert all(a != b for a, b in zip(colours, colours[1:]))


def outlines(ws, skip=()) -> dict:
    """(row, col) 0-based -> {side: colour} of every cell with a medium border side."""
    out = {}
    for row in ws.iter_rows():
        for c in row:
            if (c.row - 1, c.column - 1) in skip:
                continue
            sides = {name: getattr(c.border, name).color.rgb[-6:] for name in ("left", "right", "top", "bottom")
                     if getattr(c.border, name).style == "medium"}
            if sides:
                out[(c.row - 1, c.column - 1)] = sides
    return out


def expected_outlines(nearest: dict) -> dict:
    """The boxes Trace Precedents draws: a traced cell's side where its neighbour is not in the
    same level (``nearest``: cell -> its nearest level), in the level's colour."""
    out = {}
    for (y, x), k in nearest.items():
        around = {"left": (y, x - 1), "right": (y, x + 1), "top": (y - 1, x), "bottom": (y + 1, x)}
        sides = {name: LEVEL_COLORS[k + 1] for name, cell in around.items() if nearest.get(cell) != k}
        if sides:
            out[(y, x)] = sides
    return out


def test_highlight_copy(books, tmp_path):
    out = tmp_path / "hl.xlsx"
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[0,3,3]", "--highlight", str(out)])
    assert result.exit_code == 0, result.output
    wb = open_workbook(books["conv-example"])
    t = wb.precedents("conv2[0,3,3]")
    lay = wb.layout
    ws = openpyxl.load_workbook(out)["conv"]
    root = ws.cell(*(v + 1 for v in lay.cell_of(("conv2", 0, 3, 3))))
    assert root.border.left.style == "thick" and root.border.left.color.rgb.endswith(LEVEL_COLORS[0])
    nearest = {}
    for k, level in reversed(list(enumerate(wb.sheet_levels(t)))):
        nearest.update({(y, x): k for r0, c0, r1, c1 in level for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)})
    assert outlines(ws, skip={(root.row - 1, root.column - 1)}) == expected_outlines(nearest)
    assert {k for k in nearest.values()} == {0, 1}
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["conv", "summary", "explain", "_sheetconv"]
    assert book.active.title == "conv" and book.calculation.fullCalcOnLoad
    addr = openpyxl.utils.get_column_letter(root.column) + str(root.row)
    view = book["conv"].sheet_view
    assert [sel.activeCell for sel in view.selection] == [addr] and view.selection[0].sqref == addr
    corner = view.pane.topLeftCell if view.pane is not None else view.topLeftCell
    c0, r0, _, _ = openpyxl.utils.range_boundaries(corner + ":" + corner)
    assert r0 <= root.row < r0 + 10 and c0 <= root.column < c0 + 10            # scrolled to the cell
    # the heatmaps stay on every cell, the traced ones included: outlines, not fills
    source = openpyxl.load_workbook(books["conv-example"])["conv"]
    assert [(str(cf.sqref), [r.type for r in cf.rules]) for cf in ws.conditional_formatting] == \
        [(str(cf.sqref), [r.type for r in cf.rules]) for cf in source.conditional_formatting]
    assert not any(c.fill is not None and c.fill.fill_type == "solid" for row in ws.iter_rows() for c in row)
    mode = os.stat(out).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    bad = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "A1", "--highlight",
                                   str(books["conv-example"])])
    assert bad.exit_code == 2 and "being traced" in bad.output
    before = out.read_bytes()
    again = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "A1", "--highlight", str(out)])
    assert again.exit_code == 2 and "--force" in again.output and again.output.count("\n") == 1
    assert out.read_bytes() == before
    forced = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "A1", "--highlight", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_bytes() != before


def test_png(books, tmp_path):
    out = tmp_path / "rf.png"
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[0,3,3]", "--png", str(out)])
    assert result.exit_code == 0, result.output
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 600     # three panels, one above the other


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
    # C7 = B7*C1 (level 1), B7 = SUM(A1:B2)+'Other (1)'!A1 (level 2): one box per block of a level
    main = {(0, 2): 0, (6, 1): 0} | {(y, x): 1 for y in (0, 1) for x in (0, 1)}
    assert outlines(wb["Main"], skip={(6, 2)}) == expected_outlines(main)
    assert outlines(wb["Other (1)"]) == expected_outlines({(0, 0): 1})
    assert outlines(wb["Main"])[(0, 0)] == {"left": LEVEL_COLORS[2], "top": LEVEL_COLORS[2]}    # a corner of the box
    assert wb["Main"]["C7"].border.top.style == "thick"
    assert Image.open(png).format == "PNG"


@pytest.mark.parametrize("args,words", [
    (["--highlight", "{d}/missing/hl.xlsx"], ["does not exist"]),
    (["--highlight", "{d}/hl.png"], [".xlsx"]),
    (["--png", "{d}/rf.jpg"], [".png"]),
    (["--png", "{d}"], ["folder"]),
])
def test_output_paths_checked_before_tracing(books, tmp_path, monkeypatch, args, words):
    import sheetconv.tracing as wbmod
    monkeypatch.setattr(wbmod, "open_workbook", lambda *a: pytest.fail("traced before checking the output"))
    args = [a.format(d=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv2[0,3,3]", *args])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert all(w in result.output for w in words), result.output


def test_references_are_case_insensitive_and_one_based(books):
    wb = open_workbook(books["conv-example"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # no XlsxWriter warning reaches the user
        lower, upper = wb.precedents("bm6"), wb.precedents("BM6")
        assert lower.levels == upper.levels and lower.meta["cell"] == "conv!BM6"
        assert lower.root == ("conv2", 0, 3, 3)
        assert wb.precedents("conv!$b$3").levels == wb.precedents("conv!B3").levels
        result = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "bm6"])
    assert result.exit_code == 0 and result.output.startswith("conv!BM6 = conv2[0,3,3]")
    bad = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "BM0"])
    assert bad.exit_code == 2 and "not a valid cell reference" in bad.output and "rows start at 1" in bad.output
    assert "-1" not in bad.output
    # A1 references ignore case, layer names do not: the error says which name was meant
    for ref, meant in [("CONV2[0,3,3]", "'conv2'"), ("Conv1.Weight[0,0,0,0]", "'conv1.weight'"),
                       ("conv1.Weight[0,0,0,0]", "'conv1.weight'")]:
        bad = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), ref])
        assert bad.exit_code == 2 and f"(did you mean {meant}?)" in bad.output and bad.output.count("\n") == 1
    bad = CliRunner().invoke(cli, ["trace", str(books["conv-example"]), "conv9[0,0,0]"])
    assert bad.exit_code == 2 and "did you mean" not in bad.output


def test_one_dimensional_cells_and_the_python_api(books):
    wb = open_workbook(books["simple-cnn"])
    net = wb.net
    assert net.shapes["flatten"] == (2,)
    assert wb.precedents("flatten[1]").levels == wb.precedents("flatten[1,0,0]").levels
    assert wb.precedents("flatten[1]").root == ("flatten", 1, 0, 0)
    assert net.precedents("flatten[1]", depth="all").cells() == net.precedents(("flatten", 1, 0, 0), None).cells()
    assert net.trace("conv2[0,3,3]", "all").cells() == net.precedents(("conv2", 0, 3, 3), None).cells()
    assert net.dependents("conv1.bias[0]", depth="all").cells() == net.dependents(("conv1.bias", 0), None).cells()
    assert wb.precedents("conv2[0,3,3]", depth="all").levels == wb.precedents("conv2[0,3,3]", None).levels
    with pytest.raises(sc.SheetconvError):
        net.precedents("conv2[0,3,3]", depth=0)
    with pytest.raises(sc.SheetconvError):
        net.precedents("conv2 0 3 3")
    text = repr(wb)
    assert str(books["simple-cnn"]) in text and "sheetconv workbook" in text and "conv5" in text


def test_text_output_merges_like_channels(books):
    result = CliRunner().invoke(cli, ["trace", str(books["simple-cnn"]), "conv5[1,0,0]"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) < 80
    doc = json.loads(CliRunner().invoke(cli, ["trace", str(books["simple-cnn"]), "conv5[1,0,0]",
                                              "--format", "json"]).output)
    conv4 = [e for e in doc["sheet_levels"][0] if e["grid"] == "conv4"]
    assert [e["channel"] for e in conv4] == list(range(32))
    (line,) = [l for l in lines if l.strip().startswith("conv4 ch ")]
    assert line.strip().startswith("conv4 ch 0-31  32 x 4 cells: conv!" + conv4[0]["ranges"][0])
    assert line.rstrip().endswith("conv!" + conv4[-1]["ranges"][0] + "  (128)")
    # every level's lines still add up to its total
    for k, level in enumerate(doc["sheet_levels"]):
        head = lines.index(next(l for l in lines if l.startswith(f"level {k + 1}:")))
        total = int(lines[head].split()[2].replace(",", ""))
        body = []
        for l in lines[head + 1:]:
            if not l.startswith("  "):
                break
            body.append(int(l.rsplit("(", 1)[1].rstrip(")").replace(",", "")))
        assert sum(body) == total == sum(e["count"] for e in level)


def test_whole_columns_of_a_full_height_sheet(tmp_path):
    p = tmp_path / "cols.xlsx"
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "My sheet"
    ws["A1"], ws["A1048576"], ws["B1"] = 1, 2, "=SUM(A:A)+SUM(C:C)+SUM(E:E)"
    book.save(p)
    t = open_workbook(p).precedents("b1")
    assert t.count() == 3 * 1_048_576
    assert t.ranges() == ["'My sheet'!A1:A1048576", "'My sheet'!C1:C1048576", "'My sheet'!E1:E1048576"]
    result = CliRunner().invoke(cli, ["trace", str(p), "b1"])
    assert result.exit_code == 0 and "level 1: 3,145,728 cells" in result.output


def test_merged_channel_lines_are_full_rectangles_of_keys():
    """Every merged text line stands for exactly the keys its label spans (brute force over random key lists)."""
    from sheetconv.nn.trace import _runs_of_channels
    from sheetconv.tracing import SheetTrace
    rnd = np.random.default_rng(3)
    for _ in range(300):
        keys = sorted({(int(a), int(b)) for a, b in rnd.integers(0, 5, size=(rnd.integers(1, 25), 2))})
        entries = [{"sheet": "conv", "grid": "w", "channel": list(k), "ranges": ["A1:B2"], "count": 4} for k in keys]
        groups = _runs_of_channels(SheetTrace(root=("conv", 0, 0), direction="precedents"), entries)
        assert [e["channel"] for g in groups for e in g] == [list(k) for k in keys]      # order kept, none lost
        for g in groups:
            got = {tuple(e["channel"]) for e in g}
            spans = [range(min(k[i] for k in got), max(k[i] for k in got) + 1) for i in range(2)]
            assert got == set(itertools.product(*spans)) and len(got) == len(g)


@pytest.mark.parametrize("book, sheet", [("conv-example", "explain"), ("simple-cnn", "explain"),
                                         ("simple-cnn", "prediction")])
def test_cells_of_the_explain_and_prediction_sheets_trace_their_own_sheet(books, book, sheet):
    """A cell of a sheet kept out of the network's traces (explain, prediction) still traces
    its own formulas: level 1 is every cell the formula names, its own sheet's included."""
    wb = open_workbook(books[book])
    ws = openpyxl.load_workbook(books[book])[sheet]
    checked = 0
    for row in ws.iter_rows():
        for cell in row:
            if not (isinstance(cell.value, str) and cell.value.startswith("=")):
                continue
            want = set(sheet_references(cell.value, sheet))
            trace = wb.precedents(f"{sheet}!{cell.coordinate}", depth=1)
            got = {(r.name, y, x) for level in trace.levels for r in level for rows, cols in r.boxes
                   for a, b in rows for c, d in cols for y in range(a, b) for x in range(c, d)}
            assert got == want, (cell.coordinate, cell.value)
            checked += 1
    assert checked >= 5


def test_a_formula_trace_of_a_sheetconv_workbook_finds_the_field_on_its_input(books):
    """Traced from the explain sheet (answered from formulas), the field is the input cells
    reached, on the input's grid, not the largest block of constants (a 3x3 kernel ties a
    first-layer window)."""
    wb = open_workbook(books["conv-example"])
    ws = openpyxl.load_workbook(books["conv-example"])["explain"]
    checked = 0
    for row in ws.iter_rows():
        for cell in row:
            if not (isinstance(cell.value, str) and cell.value.startswith("=")):
                continue
            t = wb.precedents(f"explain!{cell.coordinate}")
            reached = {wb.layout.locate(y, x) for level in t.levels for r in level if r.name == wb.sheet
                       for rows, cols in r.boxes for a, b in rows for c, d in cols for y in range(a, b) for x in range(c, d)}
            inputs = sorted(c for c in reached if c is not None and c[0] == "input")
            if not inputs:
                continue
            info = t.input_info()
            ys, xs = [c[2] for c in inputs], [c[3] for c in inputs]
            assert (info["name"], info["rows"], info["cols"], info["count"]) == \
                ("input", [min(ys), max(ys)], [min(xs), max(xs)], len(inputs)), cell.coordinate
            assert "receptive field on the input: rows" in t.text()
            checked += 1
    assert checked >= 9


def test_side_sheets_reading_too_many_cells_are_left_out_with_a_note(books, monkeypatch):
    import sheetconv.tracing as tracing
    monkeypatch.setattr(tracing, "_SIDE_CELLS", 5)
    t = open_workbook(books["conv-example"]).dependents("conv1[0,6,6]")
    assert {r.name for level in t.levels for r in level} == {"conv2"}
    assert "note: sheet explain reads more than 5 cells of sheet conv (an edited workbook): left out of the dependents" \
        in t.text()


@pytest.mark.parametrize("book", ["conv-example", "simple-cnn"])
def test_dependents_reach_the_explain_and_prediction_sheets_as_trace_dependents_does(books, book):
    """Every network cell a formula of those sheets reads (openpyxl's tokenizer says which) has
    that formula's cell among its first level of dependents; all levels, as the formula index
    of the whole workbook gives them."""
    wb = open_workbook(books[book])
    readers: dict = {}
    book_xl = openpyxl.load_workbook(books[book])
    sides = [sheet for sheet in SIDE_SHEETS if sheet in book_xl.sheetnames]
    assert sides == (["explain", "prediction"] if book == "simple-cnn" else ["explain"])
    for sheet in sides:
        ws = book_xl[sheet]
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    for name, y, x in sheet_references(cell.value, sheet):
                        if name == wb.sheet:
                            readers.setdefault((y, x), set()).add((sheet, cell.row - 1, cell.column - 1))
    assert len(readers) >= 20
    for (y, x), want in sorted(readers.items()):
        cell = wb.layout.locate(y, x)
        first = wb.dependents(cell, depth=1)
        got = {(r.name, a, c) for r in first.levels[0] if r.name in SIDE_SHEETS
               for rows, cols in r.boxes for a0, a1 in rows for c0, c1 in cols
               for a in range(a0, a1) for c in range(c0, c1)}
        assert got == want, (cell, got, want)
        analytic = wb.dependents(cell)
        formulas = wb.formulas.dependents((wb.sheet, y, x))
        assert side_rects(analytic) == side_rects(formulas), cell
        assert wb.sheet_levels(analytic) == formula_rects(formulas, wb.sheet), cell
