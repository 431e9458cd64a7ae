"""`sheetconv check`: workbooks edited by hand, caught by address; untouched ones pass.

Edits are made the way a reader would make them without a spreadsheet application that
recalculates: by rewriting one cell of the sheet XML (every other stored value stays),
or with openpyxl (which drops all stored values). The expected references of a broken
formula come from the untouched workbook's own formula text, not from check.py.
"""
from __future__ import annotations

import html
import os
import re
import zipfile

import numpy as np
import openpyxl
import pytest
from click.testing import CliRunner

import sheetconv as sc
from sheetconv.check import check_workbook
from sheetconv.cli import cli
from sheetconv.sheet import a1 as xlref
from sheetconv.sheet.layout import Layout
from sheetconv.xlsx.writer import write_workbook

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ---------------------------------------------------------------- editing an xlsx by hand

def _attrs(tag: str) -> dict:
    return dict(re.findall(r'([\w:]+)="([^"]*)"', tag))


def _sheet_part(z: zipfile.ZipFile, sheet: str) -> str:
    wb = z.read("xl/workbook.xml").decode()
    rid = next(_attrs(t)["r:id"] for t in re.findall(r"<sheet\b[^>]*>", wb) if _attrs(t).get("name") == sheet)
    rels = z.read("xl/_rels/workbook.xml.rels").decode()
    target = next(_attrs(t)["Target"] for t in re.findall(r"<Relationship\b[^>]*>", rels) if _attrs(t)["Id"] == rid)
    return target.lstrip("/") if target.startswith("/") else "xl/" + target


def cell_xml(path, address: str, sheet: str = "conv") -> str:
    with zipfile.ZipFile(path) as z:
        xml = z.read(_sheet_part(z, sheet)).decode()
    return re.search(rf'<c r="{address}"[^>]*?(/>|>(.*?)</c>)', xml).group(0)


def edit_cell(path, address: str, formula: str | None = None, value: float | None = None, sheet: str = "conv",
              raw: str | None = None):
    """Rewrite one cell's formula and/or stored value (or its whole XML: ``raw``) inside the
    xlsx; every other byte stays."""
    with zipfile.ZipFile(path) as z:
        part = _sheet_part(z, sheet)
        members = [(info, z.read(info)) for info in z.infolist()]
    xml = dict((i.filename, d) for i, d in members)[part].decode()
    m = re.search(rf'<c r="{address}"[^>]*?(/>|>(.*?)</c>)', xml)
    new = m.group(0)
    if formula is not None:
        new = re.sub(r"<f>.*?</f>", lambda _: f"<f>{html.escape(formula, quote=False)}</f>", new)
    if value is not None:
        new = re.sub(r"<v>.*?</v>", lambda _: f"<v>{value!r}</v>", new)
    if raw is not None:
        new = raw
    assert new != m.group(0)
    xml = xml[:m.start()] + new + xml[m.end():]
    with zipfile.ZipFile(f"{path}.tmp", "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in members:
            out.writestr(info, xml.encode() if info.filename == part else data)
    os.replace(f"{path}.tmp", path)


def formula_of(path, address):
    return html.unescape(re.search(r"<f>(.*?)</f>", cell_xml(path, address)).group(1))


def range_cells(ranges) -> set[tuple[int, int]]:
    """Cells of A1 ranges such as 'B3:D5' or '$AH$3' (the test's own expansion)."""
    out = set()
    for text in ranges:
        r0, c0, r1, c1 = xlref.parse_range(text.replace("$", ""))
        out |= {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
    return out


def refs_in(formula: str) -> list[str]:
    return re.findall(r"\$?[A-Z]{1,3}\$?[0-9]+(?::\$?[A-Z]{1,3}\$?[0-9]+)?", formula)


def torch_convs(net, x, state=None) -> dict[str, np.ndarray]:
    """The oracle: torch's own F.conv2d (+ F.relu) on the layers' hyperparameters and weights,
    for networks of convolutions only; with ``pre=True`` names also the values before the ReLU."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    state = state or net.state_dict()
    h = torch.from_numpy(np.asarray(x, np.float64)[None])
    out = {}
    for layer in net.layers:
        if layer.kind == "flatten":
            continue
        assert layer.kind == "conv" and layer.dilation == (1, 1), layer
        pre = F.conv2d(h, torch.from_numpy(state[f"{layer.name}.weight"]),
                       torch.from_numpy(state[f"{layer.name}.bias"]), stride=layer.stride, padding=layer.padding)
        h = F.relu(pre) if layer.relu else pre
        out[layer.name], out[f"{layer.name} pre"] = h[0].numpy(), pre[0].numpy()
    return out


# ---------------------------------------------------------------- fixtures

def _pools_and_head():
    net = sc.Network([sc.Conv2d(2, 3, (3, 2), padding=1, dilation=(2, 1)), sc.ReLU(), sc.MaxPool2d(2, padding=1),
                      sc.AvgPool2d(3, stride=1, padding=1), sc.AvgPool2d(2, padding=1, count_include_pad=False),
                      sc.Flatten(), sc.Linear(36, 5), sc.ReLU(), sc.Linear(5, 2, bias=False)], (2, 9, 10))
    return net.init_weights(1), np.random.default_rng(0).random((2, 9, 10))


def _partial_sums():
    net = sc.Network([sc.Conv2d(300, 2, 3, padding=1)], (300, 3, 3)).init_weights(2)
    return net, np.random.default_rng(1).random((300, 3, 3))


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """Untouched workbooks, written once; tests copy the one they edit."""
    folder = tmp_path_factory.mktemp("books")
    cases = {"conv-example": (sc.preset("conv-example"), sc.digit(0)),
             "simple-cnn": (sc.preset("simple-cnn", seed=1), sc.digit(3)),
             "pools-head": _pools_and_head(), "partial-sums": _partial_sums()}
    out = {}
    for name, (net, x) in cases.items():
        write_workbook(net, x, folder / f"{name}.xlsx")
        out[name] = (net, x, folder / f"{name}.xlsx")
    return out


def copy_of(books, name, tmp_path):
    net, x, path = books[name]
    dst = tmp_path / path.name
    dst.write_bytes(path.read_bytes())
    return net, x, dst


def address(net, cell):
    return xlref.cell(*Layout.for_network(net).cell_of(cell))


# ---------------------------------------------------------------- untouched workbooks pass

@pytest.mark.parametrize("name", ["conv-example", "simple-cnn", "pools-head", "partial-sums"])
def test_untouched_workbook_passes(books, name):
    net, x, path = books[name]
    report = check_workbook(path, torch=True)
    assert report.ok, str(report)
    assert report.torch_checked and not report.formula_problems
    assert [l.name for l in report.layers] == [l.name for l in net.layers]
    assert [l.cells for l in report.layers] == [int(np.prod(net.grid(l.name))) for l in net.layers]
    assert all(l.stored_max_err is not None and l.stored_max_err <= 1e-12 for l in report.layers)
    assert all(l.torch_max_err <= 1e-12 for l in report.layers)
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 0 and "OK" in res.output


# ---------------------------------------------------------------- hand-broken formulas

def test_broken_formula_reported_with_address_and_expected_references(books, tmp_path):
    net, x, path = copy_of(books, "conv-example", tmp_path)
    addr = address(net, ("conv2", 1, 3, 3))
    original = formula_of(path, addr)
    first = refs_in(original)[0]                                   # the conv1 window of channel 0, e.g. AK8:AM10
    r0, c0, r1, c1 = xlref.parse_range(first.replace("$", ""))
    shifted = xlref.rng(r0 + 1, c0, r1 + 1, c1)                    # one row down: reads the wrong cells
    edit_cell(path, addr, formula=original.replace(first, shifted, 1))

    report = check_workbook(path)
    assert not report.ok
    [problem] = report.formula_problems
    assert problem.address == f"conv!{addr}" and problem.cell == ("conv2", 1, 3, 3)
    assert range_cells(problem.expected) == range_cells(refs_in(original))
    assert range_cells(problem.found) == range_cells(refs_in(original.replace(first, shifted, 1)))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 1
    assert f"conv!{addr}" in res.output and "should reference" in res.output
    # a formula that reads no cell at all says so once, then what it should read
    edit_cell(path, addr, formula="1+1")
    [problem] = check_workbook(path).formula_problems
    assert problem.problem == "formula references no cell" and problem.found == []
    assert str(problem) == (f"conv!{addr} (conv2[1,3,3]): formula references no cell; "
                            f"it should reference {', '.join(problem.expected)}")


def test_broken_formula_in_partial_sum_and_linear(books, tmp_path):
    net, x, path = copy_of(books, "partial-sums", tmp_path)
    layout = Layout.for_network(net)
    part = xlref.cell(*layout.cell_of(("conv1:partial0", 0, 1, 1)))
    original = formula_of(path, part)
    first = refs_in(original)[0]
    r0, c0, r1, c1 = xlref.parse_range(first.replace("$", ""))
    edit_cell(path, part, formula=original.replace(first, xlref.rng(r0, c0 + 1, r1, c1 + 1), 1))
    report = check_workbook(path)
    # the output cell that adds this partial sum no longer reads its precedents
    [problem] = report.formula_problems
    assert problem.address == f"conv!{address(net, ('conv1', 0, 1, 1))}"
    assert "through the partial sums" in problem.problem and part in problem.problem

    net, x, path = copy_of(books, "pools-head", tmp_path)
    addr = address(net, ("fc2", 1, 0, 0))
    original = formula_of(path, addr)
    edit_cell(path, addr, formula=original + "+" + address(net, ("fc1.bias", 0)))
    [problem] = check_workbook(path).formula_problems
    assert problem.address == f"conv!{addr}" and "also reads" in problem.problem


def test_formula_replaced_by_constant_with_openpyxl(books, tmp_path):
    net, x, path = copy_of(books, "simple-cnn", tmp_path)
    addr = address(net, ("conv3", 5, 2, 1))
    wb = openpyxl.load_workbook(path)
    expected = refs_in(wb["conv"][addr].value)
    wb["conv"][addr].value = 0.5
    wb.save(path)                                                  # openpyxl keeps no stored values
    report = check_workbook(path)
    [problem] = report.formula_problems
    assert problem.address == f"conv!{addr}" and "constant" in problem.problem
    assert range_cells(problem.expected) == range_cells(expected)
    assert any("no stored value" in n for n in report.notes)
    assert all(l.stored_max_err is None for l in report.layers if l.name != "conv3")


# ---------------------------------------------------------------- stored values

def test_edited_stored_value_is_caught(books, tmp_path):
    net, x, path = copy_of(books, "simple-cnn", tmp_path)
    addr = address(net, ("conv4", 7, 1, 0))
    edit_cell(path, addr, value=123.0)
    report = check_workbook(path)
    assert not report.ok and not report.formula_problems
    bad = {l.name: l for l in report.layers if l.stored_bad}
    assert list(bad) == ["conv4"] and bad["conv4"].stored_bad == 1 and bad["conv4"].stored_first_bad == f"conv!{addr}"
    assert bad["conv4"].stored_max_err > 100
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 1 and f"first conv!{addr}" in res.output


def test_edited_input_without_recalculation_is_stale(books, tmp_path):
    net, x, path = copy_of(books, "conv-example", tmp_path)
    edit_cell(path, address(net, ("input", 0, 10, 10)), value=0.75)
    report = check_workbook(path)
    # the engine runs on the edited input; the stored values downstream still show the old one
    edited = x.copy()
    edited[0, 10, 10] = 0.75
    changed = np.abs(torch_convs(net, edited)["conv1"] - torch_convs(net, x)["conv1"]) > 1e-9
    conv1 = next(l for l in report.layers if l.name == "conv1")
    assert conv1.stored_bad == int(changed.sum()) > 0 and not report.ok and report.status == "mismatch"


def _halve_instead_of_relu(books, tmp_path):
    """conv2's MAX(0, s) rewritten as 0.5*(s) at a cell where s != 0, saved with openpyxl (no stored values)."""
    net, x, path = copy_of(books, "conv-example", tmp_path)
    pre = torch_convs(net, x)["conv2 pre"]
    cell = ("conv2", *np.unravel_index(np.argmax(np.abs(pre)), pre.shape))
    assert pre[cell[1:]] != 0
    addr = address(net, cell)
    wb = openpyxl.load_workbook(path)
    formula = wb["conv"][addr].value
    assert formula.startswith("=MAX(0,") and formula.endswith(")")
    wb["conv"][addr].value = "=0.5*(" + formula[len("=MAX(0,"):]
    wb.save(path)
    return path, addr


def test_no_stored_values_is_not_reported_ok(books, tmp_path):
    path, addr = _halve_instead_of_relu(books, tmp_path)
    report = check_workbook(path)
    assert report.status == "unchecked" and not report.ok and not report.mismatch and not report.formula_problems
    assert all(l.stored_max_err is None for l in report.layers)
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 3, res.output
    first = res.output.splitlines()[0]
    assert "references OK, values NOT checked (no stored values" in first and "rerun with --recalc" in first
    assert ": OK" not in res.output and "NOT verified" in res.output


@pytest.mark.engine("libreoffice")
def test_no_stored_values_recalc_catches_changed_arithmetic(books, tmp_path):
    path, addr = _halve_instead_of_relu(books, tmp_path)
    res = CliRunner().invoke(cli, ["check", str(path), "--recalc"])
    assert res.exit_code == 1, res.output
    assert res.output.startswith(f"{path}: MISMATCH") and f"1 recalculated (first conv!{addr})" in res.output
    assert "rerun" not in res.output and "run with --recalc" not in res.output
    assert "their recalculated values were checked" in res.output


def test_stored_values_ok_says_arithmetic_not_recalculated(books):
    res = CliRunner().invoke(cli, ["check", str(books["simple-cnn"][2])])
    assert res.exit_code == 0
    assert "OK - references and stored values agree" in res.output and "not recalculated" in res.output


# ---------------------------------------------------------------- LibreOffice recalculation

@pytest.mark.engine("libreoffice")
def test_recalc_edited_input_and_weight_are_consistent(books, tmp_path):
    net, x, path = copy_of(books, "conv-example", tmp_path)
    edit_cell(path, address(net, ("input", 0, 10, 10)), value=0.75)
    edit_cell(path, address(net, ("conv2.weight", 1, 0, 2, 2)), value=-0.5)
    wrong = ("conv2", 0, 6, 6)
    edit_cell(path, address(net, wrong), value=99.0)               # a wrong stored value LibreOffice must fix

    # Without recalculation the stored values downstream of the edits are stale: exactly the
    # cells where torch's output on the edited input and weight differs from the original.
    edited_x = x.copy()
    edited_x[0, 10, 10] = 0.75
    edited_state = net.state_dict()
    edited_state["conv2.weight"] = edited_state["conv2.weight"].copy()
    edited_state["conv2.weight"][1, 0, 2, 2] = -0.5
    before, after = torch_convs(net, x), torch_convs(net, edited_x, edited_state)
    stale = {name: np.abs(after[name] - before[name]) > 1e-9 for name in ("conv1", "conv2")}
    stale["conv2"][wrong[1:]] = True
    report = check_workbook(path)
    assert {l.name: l.stored_bad for l in report.layers} == {k: int(v.sum()) for k, v in stale.items()}
    assert stale["conv2"].sum() > 1 and not report.ok

    # LibreOffice recalculates the file's formulas: everything agrees with the engine on the edited cells.
    res = CliRunner().invoke(cli, ["check", str(path), "--recalc"])
    assert res.exit_code == 0, res.output
    assert "OK - references and the values LibreOffice recalculated agree" in res.output


@pytest.mark.engine("libreoffice")
def test_recalc_catches_wrong_arithmetic(books, tmp_path):
    net, x, path = copy_of(books, "simple-cnn", tmp_path)
    act = torch_convs(net, x)["conv2"]
    cell = ("conv2", *np.unravel_index(np.argmax(act), act.shape))   # a positive cell: the ReLU lets it through
    addr = address(net, cell)
    original = formula_of(path, addr)
    bias = original.rindex("+$")                                     # ...+$BN$71): the bias term
    assert net["conv2"].bias[cell[1]] != 0
    edit_cell(path, addr, formula=original[:bias] + "-" + original[bias + 1:])   # same references, wrong sum
    report = check_workbook(path)
    assert report.ok                                 # the stored value is the old one: only recalculation sees it
    report = check_workbook(path, recalc=True)
    assert not report.formula_problems
    conv2 = next(l for l in report.layers if l.name == "conv2")
    assert conv2.recalc_bad >= 1 and conv2.recalc_first_bad == f"conv!{addr}" and not report.ok


# ---------------------------------------------------------------- bad input

def test_bad_input_exits_2(tmp_path, books):
    plain = tmp_path / "plain.xlsx"
    wb = openpyxl.Workbook()
    wb.active["A1"] = 1
    wb.save(plain)
    (tmp_path / "junk.xlsx").write_bytes(b"not a zip")
    net, x, path = copy_of(books, "conv-example", tmp_path)
    wb = openpyxl.load_workbook(path)
    wb["conv"][address(net, ("input", 0, 3, 4))].value = "dark"
    wb.save(path)
    for book, words in [(plain, "not a sheetconv workbook"), (tmp_path / "junk.xlsx", "not a zip file"),
                        (tmp_path / "missing.xlsx", "no such file"), (path, "input cell")]:
        res = CliRunner().invoke(cli, ["check", str(book)])
        assert res.exit_code == 2, res.output
        err = res.stderr.strip()
        assert words in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("raw, words", [
    ('<c r="{a}" t="s"><v>999</v></c>', "cell conv!{a} points at shared string '999', which does not exist"),
    ('<c r="{a}"><v>lots</v></c>', "input cell conv!{a} holds 'lots'; expected a number"),
    ('<c r="{a}"><v>NaN</v></c>', "input cell conv!{a} holds nan; expected a finite number"),
    ('<c r="ZZZZ1"><v>1</v></c>', "cell reference 'ZZZZ1' lies outside the sheet"),
])
def test_malformed_cells_are_one_line_errors(books, tmp_path, raw, words):
    net, x, path = copy_of(books, "conv-example", tmp_path)
    a = address(net, ("input", 0, 3, 4))
    edit_cell(path, a, raw=raw.format(a=a))
    res = CliRunner().invoke(cli, ["check", str(path)])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert words.format(a=a) in err and "\n" not in err and "Traceback" not in err
