"""Written workbooks: formulas name exactly the precedents, stored values equal the engine's.

Workbooks are read back with openpyxl (formulas, and stored values with data_only=True);
formulas are tokenized with openpyxl's Tokenizer, never with sheetconv.sheet.formulas.
"""
from __future__ import annotations

import errno
import math
import zipfile

import numpy as np
import openpyxl
import pytest
import xlsxwriter
from _xlsx_oracle import (
    ALLOWED_FUNCTIONS,
    computed_cells,
    functions,
    handmade_nets,
    param_cells,
    random_net,
    read_sheet,
    sheet_precedents,
)

from sheetconv import Conv2d, Network, SheetconvError, digit, preset
from sheetconv.sheet.a1 import MAX_COLS
from sheetconv.sheet.layout import Layout
from sheetconv.sheet.meta import META_SHEET, parse_chunks
from sheetconv.xlsx import writer as export
from sheetconv.xlsx.metadata import read_meta
from sheetconv.xlsx.writer import write_workbook

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cases():
    cases = {"conv-example": (preset("conv-example"), digit(0)), "simple-cnn": (preset("simple-cnn"), digit(3))}
    cases.update(handmade_nets())
    cases.update({f"random{s}": random_net(s) for s in (1, 2, 5, 8)})
    return cases


CASES = _cases()


def _close(a: float, b: float, tol: float = 1e-12) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


def check_workbook(path, net, x, layout, limit=8192):
    """The whole contract of the conv sheet, cell by cell."""
    formulas = read_sheet(path)
    values = read_sheet(path, data_only=True)
    acts = net.activations(x)
    seen = set()
    for cell in computed_cells(net):
        pos = layout.cell_of(cell)
        text = formulas.get(pos)
        assert isinstance(text, str) and text.startswith("="), (cell, text)
        assert len(text) <= limit and functions(text) <= ALLOWED_FUNCTIONS, text
        assert sheet_precedents(pos, formulas, layout) == net.precedents(cell, depth=1).cells(), (cell, text)
        name, c, r, col = cell
        want = float(acts[name].reshape(net.grid(name))[c, r, col])
        assert _close(values[pos], want), (cell, values[pos], want)
        seen.add(pos)
    for cell, want in param_cells(net):
        assert values[layout.cell_of(cell)] == want, cell             # constants, bit for bit
    for c, r, col in np.ndindex(net.input_shape):
        assert values[layout.cell_of(("input", c, r, col))] == float(np.asarray(x, dtype=float)[c, r, col])
    # Every other formula on the sheet is a partial-sum cell.
    for pos, text in formulas.items():
        if isinstance(text, str) and text.startswith("=") and pos not in seen:
            cell = layout.locate(*pos)
            assert cell is not None and layout.partial(cell[0]) is not None, (pos, text)
            assert len(text) <= limit and functions(text) <= ALLOWED_FUNCTIONS
    return formulas, values


@pytest.mark.parametrize("key", list(CASES))
def test_formulas_reference_exactly_the_precedents_and_values_are_the_engines(key, tmp_path):
    net, x = CASES[key]
    path = tmp_path / "book.xlsx"
    result = write_workbook(net, x, path)
    assert result.path == path and path.is_file()
    check_workbook(path, net, x, Layout.for_network(net))
    assert result.formulas == sum(int(np.prod(net.shapes[n])) for n in net.names[1:])


def _torch_partial(layer, x_src, a, b):
    torch = pytest.importorskip("torch")
    out = torch.nn.functional.conv2d(torch.from_numpy(x_src[None, a:b]), torch.from_numpy(layer.weight[:, a:b]),
                                     None, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    return out[0].numpy()


@pytest.mark.parametrize("key, limit", [("pad-stride-nonsquare+maxpool", 100), ("avgpool-exclude-pad+dilated-w", 200)])
def test_partial_sum_cells_hold_torchs_partial_convolutions(key, limit, tmp_path):
    net, x = CASES[key]
    layout = Layout.for_network(net, max_formula=limit)
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path, layout=layout)
    _, values = check_workbook(path, net, x, layout, limit)
    acts = net.activations(x)
    checked = 0
    for name in net.names[1:]:
        for g, (a, b) in enumerate(layout.partials(name)):
            want = _torch_partial(net[name], acts[net.input_of(name)], a, b)
            for idx in np.ndindex(want.shape):
                got = values[layout.cell_of((f"{name}:partial{g}", *idx))]
                assert abs(got - want[idx]) <= 1e-12 * max(1, abs(want[idx]))
                checked += 1
    assert checked > 0


def test_many_input_channels_split_under_excels_formula_limit(tmp_path):
    net = Network([Conv2d(300, 2, 1, padding=1)], (300, 2, 2)).init_weights(1)
    x = np.random.default_rng(0).normal(size=net.input_shape)
    layout = Layout.for_network(net)
    assert len(layout.partials("conv1")) >= 2
    path = tmp_path / "wide.xlsx"
    write_workbook(net, x, path)
    formulas, _ = check_workbook(path, net, x, layout)
    # Unsplit, the interior cell's SUMPRODUCTs would not fit one formula.
    parts = [layout.cell_of((f"conv1:partial{g}", 0, 1, 1)) for g in range(len(layout.partials("conv1")))]
    assert sum(len(formulas[p]) for p in parts) > 8192


def test_a_wide_network_wraps_within_excels_columns(tmp_path):
    net = Network([Conv2d(1, 1, (1, 3)), Conv2d(1, 1, (1, 3))], (1, 1, 6000)).init_weights(2)
    x = np.random.default_rng(1).normal(size=net.input_shape)
    path = tmp_path / "wide.xlsx"
    write_workbook(net, x, path)
    layout = Layout.for_network(net)
    formulas, _ = check_workbook(path, net, x, layout)
    assert max(c for _, c in formulas) < MAX_COLS
    assert len(layout.header_rows) == 2                       # a second band of rows


def _sheet_xml_order(path):
    """(row, col) of every cell of the conv sheet, in file order, from the raw XML."""
    import re

    from openpyxl.utils.cell import column_index_from_string, coordinate_from_string
    with zipfile.ZipFile(path) as z:
        xml = z.read("xl/worksheets/sheet1.xml").decode()
    out = []
    for row in re.finditer(r'<row r="(\d+)"[^>]*>(.*?)</row>', xml):
        for ref in re.findall(r'<c r="([A-Z]+\d+)"', row.group(2)):
            col, r = coordinate_from_string(ref)
            assert r == int(row.group(1)), (ref, row.group(1))
            out.append((r, column_index_from_string(col)))
    return out


@pytest.mark.parametrize("max_rows", [None, 1500])
def test_cells_are_stored_in_row_then_column_order_as_excel_requires(tmp_path, max_rows):
    net, x = CASES["simple-cnn"]
    layout = Layout.for_network(net, **({"max_rows": max_rows, "max_cols": 60} if max_rows else {}))
    assert max_rows is None or len(layout.header_rows) > 1
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path, layout=layout)
    order = _sheet_xml_order(path)
    assert order == sorted(order) and len(set(order)) == len(order)
    if max_rows:
        check_workbook(path, net, x, layout)


def test_workbook_metadata_round_trips(tmp_path):
    net, x = CASES["flatten-linear"]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    meta = read_meta(path)
    assert meta["format"] == "sheetconv" and meta["format_version"] == 2 and meta["sheet"] == "conv"
    assert meta["dtype"] == "float64" and meta["sheetconv_version"]
    again = Network.from_spec(meta["spec"])
    assert again.spec() == net.spec() and again.shapes == net.shapes
    layout = Layout.from_json(meta["layout"], again)
    assert layout.to_json() == Layout.for_network(net).to_json()
    wb = openpyxl.load_workbook(path, read_only=True)
    assert wb.sheetnames == ["conv", "summary", "explain", "prediction", META_SHEET]
    assert wb[META_SHEET].sheet_state == "veryHidden"
    wb.close()


def test_a_format_1_workbook_is_refused_with_a_rebuild_hint():
    from sheetconv.sheet.meta import build_meta, load_model, to_chunks
    net, _ = CASES["conv-example"]
    old = {**build_meta(net, Layout.for_network(net)), "format_version": 1,
           "layout": {"version": 1, "sheet": "conv", "max_formula": 8192, "stripes": []}}
    with pytest.raises(SheetconvError, match="older sheetconv.*rebuild"):
        load_model(parse_chunks(to_chunks(old)))


def test_metadata_longer_than_one_chunk(tmp_path):
    net = Network([Conv2d(300, 2, 1, padding=1)], (300, 2, 2)).init_weights(1)
    path = tmp_path / "book.xlsx"
    write_workbook(net, np.zeros(net.input_shape), path)
    wb = openpyxl.load_workbook(path, read_only=True)
    chunks = [r[0] for r in wb[META_SHEET].iter_rows(values_only=True)]
    wb.close()
    assert all(len(c) <= 30000 for c in chunks)
    assert parse_chunks(chunks) == read_meta(path)


def test_read_meta_of_other_files(tmp_path):
    plain = tmp_path / "plain.xlsx"
    wb = xlsxwriter.Workbook(str(plain))
    wb.add_worksheet().write("A1", 1)
    wb.close()
    assert read_meta(plain) is None
    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a workbook")
    with pytest.raises(SheetconvError, match=r"junk\.xlsx is not a zip file \(expected an \.xlsx workbook\)"):
        read_meta(junk)
    with pytest.raises(SheetconvError, match="no such file"):
        read_meta(tmp_path / "missing.xlsx")
    for bad in (['{"format": "other"}'], ['{"format": "sheetconv", "format_version": 9, "spec": 1, '
                                          '"layout": 1, "sheet": "conv"}'], ["{not json"]):
        with pytest.raises(SheetconvError):
            parse_chunks(bad)


def test_sheet_features_heatmaps_frozen_header_recalc_on_load(tmp_path):
    net, x = CASES["conv-example"]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    with zipfile.ZipFile(path) as z:
        assert 'fullCalcOnLoad="1"' in z.read("xl/workbook.xml").decode()
    wb = openpyxl.load_workbook(path)
    ws = wb["conv"]
    assert ws.freeze_panes == "A2"
    assert 40 <= ws.sheet_view.zoomScale <= 100
    scaled = set()
    for rng in ws.conditional_formatting:
        assert all(rule.type == "colorScale" and len(rule.colorScale.color) in (2, 3) for rule in rng.rules)
        for cr in rng.sqref.ranges:
            scaled |= {(r - 1, c - 1) for r in range(cr.min_row, cr.max_row + 1)
                       for c in range(cr.min_col, cr.max_col + 1)}
    layout = Layout.for_network(net)
    for b in layout.blocks:
        assert (b.top, b.left) in scaled and (b.bottom, b.right) in scaled, b
    assert ws.sheet_view.showGridLines is False
    # Printing: landscape, one page wide.
    assert ws.page_setup.orientation == "landscape"
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert (ws.page_setup.fitToWidth or 1) == 1 and ws.page_setup.fitToHeight == 0    # 1 is the default
    # Titles above blocks, layer names in the header row.
    for b in layout.blocks:
        assert ws.cell(b.top, b.left + 1).value == b.title           # openpyxl is 1-based: row above
    assert ws["B1"].value.startswith("input")
    wb.close()


def test_summary_sheet_lists_each_layer(tmp_path):
    net, x = CASES["flatten-linear"]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    ws = openpyxl.load_workbook(path)["summary"]
    rows = {r[0]: r for r in ws.iter_rows(min_row=6, values_only=True) if r[0]}
    assert list(rows)[: len(net.names)] == ["input"] + [l.label for l in net.layers]
    conv = rows[net["conv1"].label]
    # 2 filters of 1x3x3 over a 3x3 output: parameters and multiply-accumulates by hand.
    assert conv[1] == "conv" and conv[3] == "2 x 3 x 3"
    assert conv[4] == 2 * 9 + 2 and conv[5] == 2 * 3 * 3 * 9
    assert conv[6] == "3 x 3" and conv[7] == "2 x 2"
    assert rows[net["fc1"].label][4] == 18 * 5 + 5 and rows[net["fc1"].label][6] == "whole input"
    assert rows["total"][4] == sum(a.size for a in net.state_dict().values())
    assert ws["A5"].value == "layer"
    intro = ws["A3"].value
    assert "constants" in intro and "every cell" not in intro.lower().replace("every computed cell", "")


def test_two_builds_are_byte_identical(tmp_path):
    net, x = CASES["simple-cnn"]
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    write_workbook(net, x, a, title="t")
    write_workbook(net, x, b, title="t")
    assert a.read_bytes() == b.read_bytes()


def test_refuses_to_overwrite_without_force(tmp_path):
    net, x = CASES["conv-example"]
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"precious")
    with pytest.raises(SheetconvError, match="already exists.*--force"):
        write_workbook(net, x, path)
    assert path.read_bytes() == b"precious"
    write_workbook(net, x, path, force=True)
    assert read_meta(path) is not None


@pytest.fixture
def private_tmpdir(tmp_path, monkeypatch):
    """A fresh $TMPDIR, to see that nothing is left in it."""
    import tempfile
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_failure_half_way_leaves_no_file(tmp_path, monkeypatch, private_tmpdir):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    net, x = CASES["simple-cnn"]
    real = export._Rows.panel

    def failing(self, st):
        for i, item in enumerate(real(self, st)):
            if st.grid == "conv3" and i == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            yield item

    monkeypatch.setattr(export._Rows, "panel", failing)
    path = tmp_path / "book.xlsx"
    with pytest.raises(SheetconvError, match="No space left on device"):
        write_workbook(net, x, path)
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"old")                   # with --force, the old file survives a failure
    with pytest.raises(SheetconvError):
        write_workbook(net, x, path, force=True)
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]
    assert list(private_tmpdir.iterdir()) == []


def test_a_full_disk_while_packaging_leaves_no_file(tmp_path, monkeypatch, private_tmpdir):
    import xlsxwriter.workbook as xw_workbook
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()

    class FullDisk(zipfile.ZipFile):
        def write(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xw_workbook, "ZipFile", FullDisk)
    net, x = CASES["conv-example"]
    with pytest.raises(SheetconvError, match="cannot write .*No space left on device"):
        write_workbook(net, x, tmp_path / "book.xlsx")
    assert list(tmp_path.iterdir()) == []
    assert list(private_tmpdir.iterdir()) == []        # nor any of XlsxWriter's temporary files


def test_bad_target_and_bad_input(tmp_path):
    net, x = CASES["conv-example"]
    with pytest.raises(SheetconvError, match="does not exist"):
        write_workbook(net, x, tmp_path / "nope" / "book.xlsx")
    with pytest.raises(SheetconvError, match="is a folder"):
        write_workbook(net, x, tmp_path, force=True)
    with pytest.raises(SheetconvError, match="expected shape"):
        write_workbook(net, np.zeros((1, 5, 5)), tmp_path / "book.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_values_keep_full_float64_precision(tmp_path):
    net = Network([Conv2d(1, 1, 2)], (1, 3, 3))
    net.load_state_dict({"conv1.weight": np.full((1, 1, 2, 2), 1 / 3), "conv1.bias": np.array([math.pi])})
    x = np.full((1, 3, 3), 0.1 + 0.2)               # 0.30000000000000004 needs 17 digits
    path = tmp_path / "p.xlsx"
    write_workbook(net, x, path)
    values = read_sheet(path, data_only=True)
    layout = Layout.for_network(net)
    assert values[layout.cell_of(("input", 0, 0, 0))] == 0.1 + 0.2
    assert values[layout.cell_of(("conv1.bias", 0))] == math.pi
    assert values[layout.cell_of(("conv1", 0, 0, 0))] == net.activations(x)["conv1"][0, 0, 0]


def test_non_finite_activations_are_refused_naming_the_layer(tmp_path):
    net = preset("conv-example")
    x = np.full(net.input_shape, 1.7e308)                 # finite, but conv1's sums overflow
    with pytest.raises(SheetconvError, match=r"conv1 \(ReLU\).* not finite"):
        write_workbook(net, x, tmp_path / "book.xlsx")
    net["conv2"].bias[0] = np.inf                         # assignment would refuse it; in place it gets through
    with pytest.raises(SheetconvError, match=r"conv2\.bias.*NaN or Inf"):
        write_workbook(net, digit(0), tmp_path / "book.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_new_files_get_the_usual_mode_for_the_umask(tmp_path):
    import os
    net, x = CASES["conv-example"]
    old = os.umask(0o027)
    try:
        write_workbook(net, x, tmp_path / "book.xlsx")
        with open(tmp_path / "plain", "w"):              # the oracle: a file created the ordinary way
            pass
    finally:
        os.umask(old)
    mode = (tmp_path / "book.xlsx").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777 == 0o640


def test_concurrent_builds_do_not_disturb_each_others_zip_settings(tmp_path):
    import threading

    import xlsxwriter.workbook as xw_workbook
    net, x = CASES["simple-cnn"]
    write_workbook(net, x, tmp_path / "serial.xlsx", title="t")
    errors = []

    def build(i):
        try:
            write_workbook(net, x, tmp_path / f"t{i}.xlsx", title="t")
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert xw_workbook.ZipFile is zipfile.ZipFile
    serial = (tmp_path / "serial.xlsx").read_bytes()
    assert all((tmp_path / f"t{i}.xlsx").read_bytes() == serial for i in range(4))


def test_same_cells_compares_content_not_bytes(tmp_path):
    net, x = CASES["conv-example"]
    a, b, c = tmp_path / "a.xlsx", tmp_path / "b.xlsx", tmp_path / "c.xlsx"
    write_workbook(net, x, a, title="t")
    with zipfile.ZipFile(a) as src, zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():                     # the same members, stored instead of deflated
            dst.writestr(info.filename, src.read(info))
    assert a.read_bytes() != b.read_bytes() and export.same_cells(a, b)
    write_workbook(net, digit(1), c, title="t")
    assert not export.same_cells(a, c)
    other = net.state_dict()
    other["conv2.bias"] = other["conv2.bias"] + 1
    net2 = preset("conv-example")
    net2.load_state_dict(other)
    write_workbook(net2, x, c, title="t", force=True)
    assert not export.same_cells(a, c)
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"not a zip")
    assert not export.same_cells(a, junk) and not export.same_cells(a, tmp_path / "missing.xlsx")


# ------------------------------------------------------------------ reading the sheet as a learner would

SCREEN = (1400, 700)        # the grid area of a 1440x900 screen without ribbon, formula bar, tabs, task bar


def _col_px(ws, col: int) -> int:
    """Pixel width of 0-based column ``col`` from the stored width (ECMA-376: Calibri 11, digit 7 px)."""
    width = 8.43
    for d in ws.column_dimensions.values():              # openpyxl groups equal columns as min..max
        if d.min and d.max and d.min <= col + 1 <= d.max and d.width:
            width = d.width
    return int((256 * width + int(128 / 7)) / 256 * 7)


def test_conv_example_input_conv1_and_conv2_fit_a_1440x900_screen_at_the_saved_zoom(tmp_path):
    net, x = CASES["conv-example"]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    layout = Layout.for_network(net)
    ws = openpyxl.load_workbook(path)["conv"]
    zoom = ws.sheet_view.zoomScale / 100
    assert zoom >= 0.6                                              # still readable
    last = layout.cell_of(("conv2", 1, 6, 6))                        # the bottom-right cell of the three layers
    bottom = max(layout.cell_of(("conv1", 1, 13, 13))[0], last[0], layout.cell_of(("input", 0, 27, 27))[0])
    width = sum(_col_px(ws, c) for c in range(last[1] + 1)) * zoom
    default = ws.sheet_format.defaultRowHeight
    height = sum((ws.row_dimensions[r + 1].height or default) for r in range(bottom + 1)) * 96 / 72 * zoom
    assert width <= SCREEN[0] and height <= SCREEN[1], (width, height, zoom)
    assert ws.sheet_view.showGridLines is False


def test_one_number_format_per_kind_of_block(tmp_path):
    net, x = CASES["flatten-linear"]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    layout = Layout.for_network(net)
    ws = openpyxl.load_workbook(path)["conv"]
    kinds = {}
    for b in layout.blocks:
        kind = ("weight" if b.grid.endswith(".weight") and b.key is None else
                "param" if "." in b.grid else "input" if b.grid == "input" else "act")
        for r in range(b.top, b.bottom + 1):
            for c in range(b.left, b.right + 1):
                kinds.setdefault(kind, set()).add(ws.cell(r + 1, c + 1).number_format)
    assert kinds == {"input": {"0.00"}, "act": {"0.00"}, "param": {"0.00"}, "weight": {"0.000"}}, kinds


@pytest.mark.parametrize("key", ["simple-cnn", "flatten-linear"])
def test_prediction_sheet_holds_torchs_softmax_and_argmax(key, tmp_path):
    torch = pytest.importorskip("torch")
    from sheetconv.interop.verify import torch_activations
    from sheetconv.sheet.prediction import PREDICTION_SHEET, class_cell, prob_cells
    net, x = CASES[key]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    values = read_sheet(path, PREDICTION_SHEET, data_only=True)
    formulas = read_sheet(path, PREDICTION_SHEET)
    logits = torch.from_numpy(torch_activations(net, x, np.float64)[net.names[-1]].ravel())
    want = torch.softmax(logits, dim=0).numpy()
    got = np.array([values[rc] for rc in prob_cells(net)])
    assert np.abs(got - want).max() <= 1e-12
    assert values[class_cell(net)] == int(torch.argmax(logits))
    assert functions(formulas[class_cell(net)]) == {"MATCH", "MAX"}
    assert all(functions(formulas[rc]) == {"SUM"} for rc in prob_cells(net))


def test_no_prediction_sheet_without_a_1d_output(tmp_path):
    net, x = CASES["conv-example"]
    path = tmp_path / "book.xlsx"
    write_workbook(net, x, path)
    assert openpyxl.load_workbook(path, read_only=True).sheetnames == ["conv", "summary", "explain", "_sheetconv"]


def test_sheet_xml_estimate_is_close_above_the_written_part(tmp_path):
    """The size estimate, checked against the part actually written (zipfile's own record)."""
    for net in (preset("conv-example"), Network([Conv2d(3, 8, 3, stride=2, padding=1), Conv2d(8, 16, 3, padding=1)],
                                                 input_shape=(3, 48, 48)).init_weights(0)):
        layout = Layout.for_network(net)
        x = np.random.default_rng(0).uniform(size=net.input_shape)
        out = write_workbook(net, x, tmp_path / "book.xlsx", force=True).path
        real = zipfile.ZipFile(out).getinfo("xl/worksheets/sheet1.xml").file_size
        est = export.sheet_xml_estimate(net, layout)
        assert real <= est <= 1.6 * real, (real, est)


def test_a_sheet_past_the_part_limit_is_refused_before_any_work(tmp_path, monkeypatch):
    net = preset("conv-example")
    est = export.sheet_xml_estimate(net, Layout.for_network(net))
    monkeypatch.setattr(export, "SHEET_PART_LIMIT", est - 1)
    monkeypatch.setattr(type(net), "activations", lambda *a, **k: pytest.fail("computed before refusing"))
    with pytest.raises(SheetconvError, match=r"GiB of XML .*ZIP64.*LibreOffice"):
        write_workbook(net, digit(0), tmp_path / "big.xlsx")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert write_workbook(net, digit(0), tmp_path / "ok.xlsx").formulas > 0


def _export_peak_mb(shape: tuple[int, int, int] | None, out) -> float:
    """Peak resident memory (VmHWM, MB) of a fresh interpreter that imports the writer and, given
    a spec shape, writes conv(3,8) + conv(8,16) (3x3, stride 2, ReLU) of a random input to ``out``."""
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent(f"""
        import numpy as np
        from sheetconv import Conv2d, Network, ReLU
        from sheetconv.xlsx.writer import write_workbook
        shape = {shape!r}
        if shape is not None:
            net = Network([Conv2d(3, 8, 3, stride=2, padding=1), ReLU(),
                           Conv2d(8, 16, 3, stride=2, padding=1), ReLU()], shape).init_weights(0)
            write_workbook(net, np.random.default_rng(0).uniform(size=shape), {str(out)!r})
        status = open("/proc/self/status").read()
        print(int(status.split("VmHWM:")[1].split()[0]) / 1024)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.split()[-1])


def test_export_memory_is_flat_in_the_workbooks_size(tmp_path):
    small, large = tmp_path / "small.xlsx", tmp_path / "large.xlsx"
    base = _export_peak_mb(None, tmp_path / "none.xlsx")
    peak_small = _export_peak_mb((3, 32, 32), small)
    peak_large = _export_peak_mb((3, 256, 256), large)
    with zipfile.ZipFile(large) as z:
        xml = z.getinfo("xl/worksheets/sheet1.xml").file_size
    assert xml > 40e6          # 196,608 formulas and 196,608 input cells
    # Rows leave memory as they are written: the 40+ MB sheet part (as str, more) is never held;
    # what grows is the engine's float64 activations (about 3 MB here) and one row at a time.
    assert peak_large - base < 40, (base, peak_small, peak_large, xml)
    assert peak_large - peak_small < 20, (base, peak_small, peak_large, xml)


@pytest.mark.parametrize("key, limit", [("grouped-conv", 8192), ("pad-stride-nonsquare+maxpool", 100),
                                        ("big-kernel-stride3", 8192), ("random5", 8192)])
def test_rows_formatted_at_once_equal_the_cells_markup_one_by_one(key, limit):
    net, x = CASES[key]
    layout = Layout.for_network(net, max_formula=limit)
    rows = export._Rows(net, layout, net.activations(x, np.float64), {}, None)
    rng = np.random.default_rng(0)
    col = openpyxl.utils.get_column_letter

    def markup(left, row, texts, values, style):
        return "".join(f'<c r="{col(left + 1 + j)}{row}" s="{style}">' + (f"<f>{t}</f>" if t else "") + f"<v>{v!r}</v></c>"
                       for j, (t, v) in enumerate(zip(texts, values)))

    templated = 0
    for name in net.names[1:]:
        lf = export.LayerFormulas(net, layout, name)
        lettered: dict = {}                            # shared by the layer's rows, as the writer does
        c, h, w = net.grid(name)
        for g in [None, *range(len(layout.partials(name)))]:
            for o, r in np.ndindex(c, h):
                tpl = lf.row_template(o, r, partial=g)
                if tpl is None:
                    continue
                values = (rng.normal(size=w) * 10.0 ** rng.integers(-20, 20, size=w)).tolist()
                got: list = []
                rows.templated(got, 3, 17 + r, tpl, values, 5, lettered)
                texts = lf.row(o, r) if g is None else lf.partial_row(g, o, r)
                assert "".join(got) == markup(3, 17 + r, texts, values, 5), (name, g, o, r)
                templated += 1
        values = rng.normal(size=w).tolist() + [0.0, -1e-300, 1.5e300]
        got = []
        rows.nums(got, 4, 9, values, 2)
        assert "".join(got) == markup(4, 9, [None] * len(values), values, 2)
    assert templated > 0
