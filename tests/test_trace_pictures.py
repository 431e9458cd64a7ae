"""Level pictures, trace text and foreign or edited workbooks.

Oracles: the workbook's own formulas (the precedent index, mapped back through the layout)
for the panels of sheetconv workbooks; openpyxl for stored formulas; hand-built workbooks
whose blocks are known by construction for the foreign case."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner
from openpyxl.utils import get_column_letter as col
from openpyxl.worksheet.formula import ArrayFormula

import sheetconv as sc
from sheetconv.cli import cli
from sheetconv.pictures import touching_groups
from sheetconv.tracing import open_workbook
from sheetconv.xlsx.writer import write_workbook


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    d = tmp_path_factory.mktemp("books")
    return {name: write_workbook(sc.preset(name), sc.digit(0), d / f"{name}.xlsx", force=True).path
            for name in ("conv-example", "simple-cnn")}


def _formula_cells_by_layer(wb, cell):
    """Per level, {layer: {(channel, row, col)}} of the activation cells the workbook's formulas
    reach from ``cell`` (the formula index, each sheet cell located through the layout)."""
    row, col_ = wb.layout.cell_of(cell)
    trace = wb.formulas.precedents((wb.sheet, row, col_), None)
    out = []
    for level in trace.levels:
        per: dict = {}
        for region in level:
            for rows, cols in region.boxes:
                for a, b in rows:
                    for c, d in cols:
                        for y in range(a, b):
                            for x in range(c, d):
                                hit = wb.layout.locate(y, x)
                                if hit is not None and hit[0] in wb.net.shapes:
                                    per.setdefault(hit[0], set()).add(tuple(hit[1:]))
        out.append(per)
    return out


@pytest.mark.parametrize("preset,cell", [("conv-example", ("conv2", 0, 3, 3)), ("conv-example", ("conv2", 1, 0, 6)),
                                         ("simple-cnn", ("conv3", 5, 2, 1)), ("simple-cnn", ("conv2", 3, 0, 0))])
def test_panels_equal_the_formulas_level_by_level(books, preset, cell):
    wb = open_workbook(books[preset])
    trace = wb.precedents(cell)
    panels = trace.panels()
    assert [p.level for p in panels] == list(range(len(panels)))
    assert panels[0].layer == cell[0] and panels[0].tiles[0].cells() == {cell[2:]}
    want = _formula_cells_by_layer(wb, cell)
    assert len(panels) == len(want) + 1
    for panel, per in zip(panels[1:], want):
        assert list(per) == [panel.layer]
        drawn = {(t.channel, y, x) for t in panel.tiles for y, x in t.cells()}
        assert panel.hidden == 0 and drawn == per[panel.layer], panel.title()
        assert panel.count == len(per[panel.layer])


def test_conv_example_grows_from_one_to_three_to_seven(books):
    panels = open_workbook(books["conv-example"]).precedents("conv2[0,3,3]").panels()
    assert [(p.layer, p.size, len(p.tiles)) for p in panels] == [("conv2", (1, 1), 1), ("conv1", (3, 3), 2),
                                                                 ("input", (7, 7), 1)]
    digit = sc.digit(0)[0]
    np.testing.assert_allclose(panels[2].tiles[0].values, digit, atol=1e-12)    # the digit underneath
    fig = open_workbook(books["conv-example"]).precedents("conv2[0,3,3]").figure()
    assert [p.layer for p in fig.sheetconv_panels] == ["conv2", "conv1", "input"]


def test_a_graph_trace_draws_its_first_levels_within_the_panel_budget_and_its_last(tmp_path):
    from sheetconv.pictures import MAX_PANELS
    net = sc.preset("resnet-mini")
    path = write_workbook(net, sc.digit(0), tmp_path / "rn.xlsx").path
    trace = open_workbook(path).precedents("res3[0,3,3]")
    panels = trace.panels()
    # the layers each level reaches, from the network's own trace (a panel per layer)
    layers = [[r.name for r in level if r.name in net.shapes]
              for level in net.precedents(("res3", 0, 3, 3), depth=None).levels]
    n = len(layers)
    assert n == 17 and len(panels) <= MAX_PANELS < 1 + sum(map(len, layers))
    first = 0
    while 1 + sum(map(len, layers[:first + 1])) + len(layers[-1]) <= MAX_PANELS:
        first += 1
    want = [(0, "res3")] + [(k + 1, name) for k in range(first) for name in layers[k]] + \
        [(n, name) for name in layers[-1]]
    assert [(p.level, p.layer) for p in panels] == want
    assert panels[-1].skipped == (first + 1, n - 1) and panels[-1].title().startswith(f"(levels {first + 1} to 16 not drawn)")
    assert [p.skipped for p in panels[:-1]] == [None] * (len(panels) - 1)


def test_layers_named_like_the_side_sheets(tmp_path):
    """Layers called 'explain' and 'prediction' next to the sheets of those names: the traces
    and pictures tell a layer's grid from a sheet's cells."""
    convs = [sc.Conv2d(1, 2, 3, stride=2, padding=1, relu=True), sc.Conv2d(2, 2, 3, stride=2, padding=1)]
    convs[0].name, convs[1].name = "explain", "prediction"
    net = sc.Network(convs + [sc.Flatten(), sc.Linear(2 * 7 * 7, 3)], (1, 28, 28)).init_weights(0)
    path = write_workbook(net, sc.digit(0), tmp_path / "named.xlsx", explain="prediction[0,1,1]").path
    wb = open_workbook(path)
    t = wb.dependents("explain[0,2,2]")                         # in the worked cell's window
    panels = t.panels()
    grids = [(p.level, p.layer) for p in panels if p.kind == "grid"]
    sheets = {(p.level, p.layer) for p in panels if p.kind == "sheet"}
    assert grids[:3] == [(0, "explain"), (1, "prediction"), (2, "flatten")]
    assert ("explain", "prediction") == tuple(sorted({name for _, name in sheets}))   # both sheets' cells reached
    assert sum(p.count for p in panels if p.kind == "sheet") == \
        sum(len(r) for level in t.levels for r in level if len(r.shape) == 2)
    # a cell of the explain sheet is that sheet's, not the layer's
    first = wb.precedents("explain!A7", depth=1)
    assert first.meta["engine"] == "formulas" and first.root == ("explain", 6, 0)


def _addr(cell) -> str:
    """The sheet address of a conv-example cell, from the layout (not written out by hand)."""
    from sheetconv.sheet.a1 import cell as a1
    from sheetconv.sheet.layout import Layout
    return a1(*Layout.for_network(sc.preset("conv-example")).cell_of(cell))


def test_text_shows_value_and_formula_first(books):
    wb = open_workbook(books["conv-example"])
    stored = openpyxl.load_workbook(books["conv-example"])["conv"][_addr(("conv2", 0, 3, 3))].value
    lines = wb.precedents("conv2[0,3,3]").text().splitlines()
    assert lines[1].strip().startswith("value: ")
    assert lines[2].strip() == f"formula: {stored}"
    doc = json.loads(wb.precedents("conv2[0,3,3]", 1).to_json())
    assert doc["format_version"] == 2 and "inclusive" in doc["convention"]
    assert doc["formula"] == stored
    e = doc["sheet_levels"][0][0]
    r0, c0, r1, c1 = e["rects"][0]
    assert (r1 - r0 + 1) * (c1 - c0 + 1) == e["count"] == 9


def test_a_vector_layer_is_one_range(tmp_path):
    net = sc.Network([sc.Conv2d(1, 1, 3, padding=1), sc.Flatten(), sc.Linear(784, 2)], (1, 28, 28))
    net.init_weights(0)
    path = write_workbook(net, sc.digit(0), tmp_path / "fc.xlsx", force=True).path
    wb = open_workbook(path)
    first, last = wb.layout.cell_of(("flatten", 0, 0, 0)), wb.layout.cell_of(("flatten", 783, 0, 0))
    from sheetconv.sheet.a1 import rng
    text = wb.precedents(("fc1", 1, 0, 0), 1).text()
    assert f"conv!{rng(*first, *last)}  (784)" in text, text


def _fastai_book(path, active_second=True):
    """A course-style sheet: a 28x28 input at A1:AB28, kernels at AD1:AF3 and AD5:AF7, conv1 as
    single-cell array formulas at AH1:BG26, conv2 at BI1:CF24; a notes sheet first."""
    wb = openpyxl.Workbook()
    notes = wb.active
    notes.title = "notes"
    notes["A1"] = "read me"
    ws = wb.create_sheet("conv")
    rng_ = np.random.default_rng(0)
    for r in range(28):
        for c in range(28):
            ws.cell(r + 1, c + 1, float(rng_.random()))
    for k0 in (1, 5):
        for r in range(3):
            for c in range(3):
                ws.cell(k0 + r, 30 + c, float(rng_.normal()))
    for r in range(26):
        for c in range(26):
            ref = f"{col(34 + c)}{r + 1}"
            ws[ref] = ArrayFormula(ref, f"=MAX(0,SUM({col(c + 1)}{r + 1}:{col(c + 3)}{r + 3}*$AD$1:$AF$3))")
    for r in range(24):
        for c in range(24):
            ref = f"{col(61 + c)}{r + 1}"
            ws[ref] = ArrayFormula(ref, f"=MAX(0,SUM({col(34 + c)}{r + 1}:{col(36 + c)}{r + 3}*$AD$5:$AF$7))")
    if active_second:
        wb.active = 1
    wb.save(path)
    return path


def test_foreign_workbook_blocks_and_active_sheet(tmp_path):
    path = _fastai_book(tmp_path / "course.xlsx")
    wb = open_workbook(path)
    assert wb.default_sheet == "conv"                      # the sheet Excel opens on
    trace = wb.precedents("BI1").complete()                # conv2 at (0, 0); complete(): read the cell
    assert trace.meta["cell"] == "conv!BI1"
    assert trace.meta["formula"] == "{=MAX(0,SUM(AH1:AJ3*$AD$5:$AF$7))}"
    blocks = {(b["range"], tuple(b["size"])) for b in trace.meta["blocks"]}
    assert blocks == {("A1:E5", (5, 5)), ("AD1:AF3", (3, 3)), ("AD5:AF7", (3, 3))}
    text = trace.text()
    assert "in 3 contiguous blocks" in text and "conv!A1:E5  5 x 5" in text
    panels = trace.panels()
    deepest = panels[-1]
    assert [t.label for t in deepest.tiles] == ["conv!A1:E5 (5 x 5)", "conv!AD1:AF3 (3 x 3)"]
    assert {cell for t in deepest.tiles for cell in t.cells()} == \
        {(r, c) for r in range(5) for c in range(5)} | {(r, c) for r in range(3) for c in range(29, 32)}
    # without the active tab, the first visible sheet, as before
    plain = open_workbook(_fastai_book(tmp_path / "first.xlsx", active_second=False))
    assert plain.default_sheet == "notes"


def test_png_of_a_foreign_workbook(tmp_path):
    path = _fastai_book(tmp_path / "course.xlsx")
    out = tmp_path / "course.png"
    result = CliRunner().invoke(cli, ["trace", str(path), "BI1", "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000


def test_far_reference_draws_in_bounded_memory(tmp_path):
    wb = openpyxl.Workbook()
    wb.active["A1"] = 1
    wb.active["B1"] = "=A1+XFD60000"
    wb.save(tmp_path / "far.xlsx")
    code = textwrap.dedent(f"""
        from sheetconv.tracing import open_workbook
        t = open_workbook({str(tmp_path / 'far.xlsx')!r}).precedents("B1")
        t.to_png({str(tmp_path / 'far.png')!r})
        # VmHWM: this process's own peak (getrusage's ru_maxrss also carries the parent's over fork)
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
        print(t.meta["blocks"], int(hwm.split()[1]) // 1024)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    blocks, peak_mb = run.stdout.rsplit(" ", 1)
    assert "'A1'" in blocks and "'XFD60000'" in blocks
    assert int(peak_mb) < 400, peak_mb


def test_a_deep_chain_draws_its_first_levels_and_its_last_in_bounded_memory(tmp_path):
    """A running total down 3,000 rows (B1 = A1, Bn = B(n-1) + An) traced from its last
    cell has 3,000 levels: level k holds B(3000-k) and A(3001-k), level 3,000 holds A1."""
    n = 3000
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    for r in range(1, n + 1):
        ws[f"A{r}"] = 1
        ws[f"B{r}"] = "=A1" if r == 1 else f"=B{r - 1}+A{r}"
    wb.save(tmp_path / "running.xlsx")
    code = textwrap.dedent(f"""
        from sheetconv.pictures import MAX_LEVELS
        from sheetconv.tracing import open_workbook
        t = open_workbook({str(tmp_path / 'running.xlsx')!r}).precedents("B{n}")
        fig = t.figure()
        fig.savefig({str(tmp_path / 'running.png')!r}, dpi=40)
        panels = fig.sheetconv_panels
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
        print(MAX_LEVELS, len(t.levels), [p.level for p in panels], [sorted(p.tiles[0].cells()) for p in panels[-2:]],
              panels[-1].title(), int(hwm.split()[1]) // 1024, sep="\t")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    most, levels, drawn, cells, title, peak_mb = run.stdout.strip().split("\t")
    most = int(most)
    assert int(levels) == n
    assert eval(drawn) == list(range(most)) + [n]
    # the last level drawn before the gap, k: B(3000-k) and A(3001-k), 0-based; the last level: A1
    k = most - 1
    assert eval(cells) == [[(n - k - 1, 1), (n - k, 0)], [(0, 0)]]
    assert title.startswith(f"(levels {most:,} to {n - 1:,} not drawn) level {n:,}: sheet S, 1 block, 1 cell")
    assert int(peak_mb) < 400, peak_mb


def test_values_near_boxes_are_the_stored_values_there(tmp_path):
    """A picture reads only the cells its windows can reach: the same values openpyxl reads there."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    rnd = np.random.default_rng(3)
    for r in range(1, 301):
        for c in range(1, 12):
            if rnd.random() < 0.6:
                ws.cell(r, c, float(rnd.integers(-9, 9)) if rnd.random() < 0.8 else f"t{r},{c}")
    wb.save(tmp_path / "near.xlsx")
    boxes = [(-5, -3, 10, 4), (100, 2, 140, 20), (290, 0, 400, 1), (120, 5, 130, 6)]
    theirs = openpyxl.load_workbook(tmp_path / "near.xlsx", data_only=True)["S"]
    want = {(c.row - 1, c.column - 1): c.value for row in theirs.iter_rows() for c in row if c.value is not None
            and any(a <= c.row - 1 <= b and l <= c.column - 1 <= r for a, l, b, r in boxes)}
    book = open_workbook(tmp_path / "near.xlsx")
    got = book.values_near("S", boxes)
    assert got == want and len(got) > 100
    assert got == {k: v for k, v in book.values("S").items() if k in want}


def test_edited_sheetconv_workbook_answers_from_its_formulas(books, tmp_path):
    path = tmp_path / "edited.xlsx"
    shutil.copy(books["conv-example"], path)
    book = openpyxl.load_workbook(path)
    root, way = _addr(("conv2", 0, 3, 3)), _addr(("conv1", 0, 5, 5))
    book["conv"][root] = "=MAX(0,K12)"
    book.save(path)
    wb = open_workbook(path)
    trace = wb.precedents("conv2[0,3,3]")
    assert trace.meta["engine"] == "formulas"
    assert [[(r.name, r.boxes) for r in level] for level in trace.levels] == \
        [[("conv", ((((11, 12),), ((10, 11),)),))]]
    text = trace.text()
    assert "formula: =MAX(0,K12)" in text and "answered from the formulas" in text
    assert "not the one the network's spec gives" in text
    doc = json.loads(trace.to_json())
    assert doc["edited_level"] == 1 and doc["spec_formula"].startswith("=MAX(0,SUMPRODUCT(")
    # a cell whose formulas were left alone is still answered analytically, without a note
    other = wb.precedents("conv2[1,3,3]")
    assert other.meta["engine"] == "analytic" and not other.meta.get("notes")
    # an edit on the way is found: conv1[0,5,5] (read by conv2[0,3,3]) now reads B2
    book["conv"][root] = openpyxl.load_workbook(books["conv-example"])["conv"][root].value
    book["conv"][way] = "=B2"
    book.save(path)
    deep = open_workbook(path).precedents("conv2[0,3,3]")
    assert deep.meta["engine"] == "formulas" and deep.meta["edited_level"] == 2
    assert any(r.name == "conv" and (1, 1) in {(a, c) for rows, cols in r.boxes for a, _ in rows for c, _ in cols}
               for r in deep.levels[1])


def test_touching_groups_against_brute_force():
    rng_ = np.random.default_rng(1)
    for _ in range(50):
        rects = []
        for _ in range(rng_.integers(1, 12)):
            r0, c0 = rng_.integers(0, 15, 2)
            rects.append((int(r0), int(c0), int(r0 + rng_.integers(0, 3)), int(c0 + rng_.integers(0, 3))))
        cells: dict = {}
        for i, (a, b, c, d) in enumerate(rects):
            for y in range(a, c + 1):
                for x in range(b, d + 1):
                    cells.setdefault((y, x), []).append(i)
        # brute force: flood fill over cells, 8-neighbours
        seen, comps = set(), []
        for start in cells:
            if start in seen:
                continue
            comp, todo = set(), [start]
            while todo:
                y, x = todo.pop()
                if (y, x) in seen or (y, x) not in cells:
                    continue
                seen.add((y, x))
                comp.update(cells[(y, x)])
                todo += [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            comps.append(comp)
        want = sorted(sorted({rects[i] for i in c}) for c in comps)
        got = sorted(sorted(set(g)) for g in touching_groups(rects))
        assert got == want


def test_network_and_trace_html(books):
    page = sc.preset("simple-cnn")._repr_html_()
    assert page.count("<tr>") == 1 + 1 + 6 and "63 x 63" in page
    page = open_workbook(books["conv-example"])._repr_html_()
    assert "sheetconv workbook" in page
    assert "sheets: conv, summary, explain (default conv)" in page          # not the hidden metadata sheet


def test_unedited_workbook_is_confirmed_by_one_streamed_read_not_the_index(books, monkeypatch, tmp_path):
    """The formulas on the path are compared with the spec's by text; only where one differs is
    the whole sheet's formula index built (and then it answers)."""
    import sheetconv.tracing as tracing

    def no_index(*a, **k):
        raise AssertionError("the formula index was built for an unedited workbook")

    monkeypatch.setattr(tracing, "build_index", no_index)
    trace = open_workbook(books["simple-cnn"]).precedents("conv3[1,1,0]")
    assert trace.meta["engine"] == "analytic" and not trace.meta.get("notes")
    assert trace.count() == sc.preset("simple-cnn").precedents(("conv3", 1, 1, 0), None).count()
    path = tmp_path / "edited.xlsx"
    shutil.copy(books["conv-example"], path)
    book = openpyxl.load_workbook(path)
    book["conv"][_addr(("conv1", 0, 5, 5))] = "=B2"          # on conv2[0,3,3]'s path
    book.save(path)
    with pytest.raises(AssertionError, match="formula index was built"):
        open_workbook(path).precedents("conv2[0,3,3]")
