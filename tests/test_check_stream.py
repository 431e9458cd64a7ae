"""Streaming check and highlight: the sheet reader agrees with openpyxl, check works on
highlighted copies, a copy changes only the styles and the traced sheet, memory stays
bounded, torch is imported only when asked, ``python -m sheetconv`` runs.

Oracles: openpyxl's own reading of the same files (formulas and stored values), the
untouched workbook's bytes, a subprocess's peak resident memory.
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import openpyxl
import pytest
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from click.testing import CliRunner

import sheetconv as sc
from sheetconv.check import check_workbook
from sheetconv.cli import cli
from sheetconv.errors import SheetconvError
from sheetconv.sheet.layout import Layout
from sheetconv.tracing import open_workbook
from sheetconv.xlsx import stream
from sheetconv.xlsx.package import open_zip, read_workbook_parts
from sheetconv.xlsx.writer import write_workbook

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    folder = tmp_path_factory.mktemp("books")
    out = {}
    for name, net, x in [("conv-example", sc.preset("conv-example"), sc.digit(0)),
                         ("simple-cnn", sc.preset("simple-cnn", seed=1), sc.digit(3)),
                         ("pool-relu", sc.Network([sc.MaxPool2d(2), sc.ReLU()], (2, 8, 8)),
                          np.random.default_rng(0).uniform(-1, 1, (2, 8, 8)))]:
        write_workbook(net, x, folder / f"{name}.xlsx")
        out[name] = (net, folder / f"{name}.xlsx")
    return out


def rows_of(path, sheet_index=0, reader=stream.iter_rows):
    with open_zip(path) as zf:
        sheets, _ = read_workbook_parts(zf, str(path))
        return list(reader(zf, sheets[sheet_index].part, str(path)))


def as_openpyxl_sees(rows, shared=None):
    """{(row, col): (formula '=...' or None, stored value)} from the stream reader's rows."""
    out = {}
    for r, cells in rows:
        for c in cells:
            value = stream.cell_value(c, shared, "x")
            out[(r, c[0])] = ("=" + c[3] if c[3] is not None else None, value)
    return out


def openpyxl_cells(path, sheet_index=0):
    ws = openpyxl.load_workbook(path).worksheets[sheet_index]
    values = openpyxl.load_workbook(path, data_only=True).worksheets[sheet_index]
    out = {}
    for row in ws.iter_rows():
        for c in row:
            v = values.cell(c.row, c.column).value
            if c.value is None and v is None:
                continue
            formula = c.value if isinstance(c.value, str) and c.value.startswith("=") else None
            out[(c.row - 1, c.column - 1)] = (formula, float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
    return out


# ---------------------------------------------------------------- the reader

def test_reader_agrees_with_openpyxl_and_takes_the_plain_path(books, monkeypatch):
    _, path = books["simple-cnn"]
    seen = as_openpyxl_sees(rows_of(path))
    assert seen == openpyxl_cells(path)
    assert sum(f is not None for f, _ in seen.values()) > 1000

    def no_general(*a, **k):
        raise AssertionError("the general reader was used on a plain sheet")
    monkeypatch.setattr(stream, "_general_rows", no_general)
    assert rows_of(path) == rows_of(path, reader=stream._plain_rows)


def test_reader_falls_back_on_other_forms_and_still_agrees(tmp_path):
    rows = {1: [cell_xml("A1", 1.5), cell_xml("B1", "a & b <c>"), cell_xml("C1", 2, "A1&\"<\"")],
            2: [cell_xml("A2", 3), cell_xml("B2", 4, "SUM(A1:A2)", shared=("0", "B2:B3"))],
            3: [cell_xml("A3", 5), cell_xml("B3", 8, shared=("0", None))],
            5: ['<c r="D5" s="0" t="n"><v>7</v></c>', '<c r="E5"><!-- a comment --><v>9</v></c>']}
    path = write_xlsx(tmp_path / "forms.xlsx", [("S", sheet_xml(rows))])
    with pytest.raises(stream._NotPlain):
        rows_of(path, reader=stream._plain_rows)
    got = rows_of(path)
    assert got == rows_of(path, reader=stream._general_rows)
    seen = as_openpyxl_sees(got)
    mine = openpyxl_cells(path)
    assert seen.keys() == mine.keys()
    assert seen == mine
    assert seen[(2, 1)] == ("=SUM(A2:A3)", 8.0)            # a shared formula's child, moved from its master


def test_shared_array_and_attributed_formulas_take_the_plain_path_and_agree(tmp_path, monkeypatch):
    """Shared formulas (as Excel writes a filled-down column), an array formula and
    LibreOffice's aca attribute: the plain reader reads them, as the general one and openpyxl do."""
    rows = {1: [cell_xml("A1", 1), cell_xml("B1", 2, "A1*2", shared=("0", "B1:C3"))],
            2: [cell_xml("A2", 3), cell_xml("B2", 6, shared=("0", None)), cell_xml("C2", 4, shared=("0", None))],
            3: [cell_xml("A3", 5), cell_xml("B3", 10, shared=("0", None)),
                '<c r="D3"><f t="array" ref="D3:D4">A1:A2*2</f><v>2</v></c>', '<c r="E3"><f aca="false">A3+1</f><v>6</v></c>']}
    path = write_xlsx(tmp_path / "shared.xlsx", [("S", sheet_xml(rows))])
    plain = rows_of(path, reader=stream._plain_rows)
    assert plain == rows_of(path, reader=stream._general_rows)
    seen = as_openpyxl_sees(plain)
    theirs = openpyxl_cells(path)
    assert theirs.pop((2, 3)) == (None, 2.0)              # openpyxl gives an array formula as an object
    assert seen.pop((2, 3)) == ("=A1:A2*2", 2.0)
    assert seen == theirs
    assert seen[(2, 1)] == ("=A3*2", 10.0) and seen[(1, 2)] == ("=B2*2", 4.0)     # children moved from B1
    assert dict((c[0], c[4]) for c in plain[2][1])[3] == {"t": "array", "ref": "D3:D4"}

    def no_general(*a, **k):
        raise AssertionError("the general reader was used on a plain sheet")
    monkeypatch.setattr(stream, "_general_rows", no_general)
    assert rows_of(path) == plain
    # a reader that wants one cell moves that child's text alone
    lazy = stream.SharedFormulas(move=False)
    with open_zip(path) as zf:
        got = list(stream.iter_rows(zf, read_workbook_parts(zf, str(path))[0][0].part, str(path), lazy))
    assert [c[3] for c in got[2][1]][1] is None and lazy.moved("0", 2, 1) == "A3*2"
    assert open_workbook(path).stored_cell("S", 1, 2) == (4.0, "=B2*2")


@pytest.mark.parametrize("cell, read", [
    ('<c r="A1"><f t="array" ref="A1&nbsp;B1">1</f><v>1</v></c>', None),        # not an XML entity
    ('<c r="A1"><f>A2&nbsp;</f><v>1</v></c>', None),
    ('<c r="A1"><f t="array" t="shared" si="0">1</f><v>1</v></c>', None),        # a repeated attribute
    ('<c r="A1"><f t="array" ref="A1\nA1">1</f><v>1</v></c>', {"t": "array", "ref": "A1 A1"}),   # normalised
    ('<c r="A1"><f>1</f><v>1&#9;</v></c>', None),                                  # numeric references
])
def test_plain_reader_leaves_what_xml_reads_otherwise_to_expat(tmp_path, cell, read):
    """References other than XML's five entities, repeated attributes and values XML
    normalises go to the general reader, which reads them as XML says (or refuses them)."""
    path = write_xlsx(tmp_path / "odd.xlsx", [("S", sheet_xml({1: [cell]}))])
    with pytest.raises(stream._NotPlain):
        rows_of(path, reader=stream._plain_rows)
    if read is None and "&#9;" not in cell:
        with pytest.raises(SheetconvError, match="not well-formed"):
            rows_of(path)
    elif read is not None:
        assert rows_of(path)[0][1][0][4] == read
    else:
        assert rows_of(path)[0][1][0][2] == "1\t"


def test_both_readers_give_no_text_for_an_empty_formula(tmp_path):
    rows = {1: ['<c r="A1"><f/><v>1</v></c>', '<c r="B1"><f t="array" ref="B1"/><v>2</v></c>',
                '<c r="C1"><f></f><v>3</v></c>']}
    path = write_xlsx(tmp_path / "empty-f.xlsx", [("S", sheet_xml(rows))])
    plain, general = rows_of(path, reader=stream._plain_rows), rows_of(path, reader=stream._general_rows)
    assert plain == general and [c[3] for c in plain[0][1]] == [None, None, None]


def test_shared_formulas_are_compared_through_their_master(books, tmp_path):
    net, path = books["pool-relu"]
    lay = Layout.for_network(net)
    row0, col0 = lay.cell_of(("relu1", 0, 1, 0))
    cols = [openpyxl.utils.get_column_letter(col0 + 1 + j) for j in range(4)]
    shared = tmp_path / "shared.xlsx"

    def rewrite(master_text=None):
        with zipfile.ZipFile(path) as z:
            members = [(i, z.read(i)) for i in z.infolist()]
        out = []
        for info, data in members:
            if info.filename == "xl/worksheets/sheet1.xml":
                xml = data.decode()
                for j, col in enumerate(cols):
                    pat = rf'(<c r="{col}{row0 + 1}"[^>]*>)<f>([^<]*)</f>'
                    if j == 0:
                        text = master_text or re.search(pat, xml).group(2)
                        xml = re.sub(pat, lambda m, text=text: f'{m.group(1)}<f t="shared" si="0" ref="{cols[0]}'
                                                               f'{row0 + 1}:{cols[-1]}{row0 + 1}">{text}</f>', xml)
                    else:
                        xml = re.sub(pat, lambda m: f'{m.group(1)}<f t="shared" si="0"/>', xml)
                data = xml.encode()
            out.append((info, data))
        with zipfile.ZipFile(shared, "w", zipfile.ZIP_DEFLATED) as z:
            for info, data in out:
                z.writestr(info, data)

    rewrite()
    assert check_workbook(shared).ok
    rewrite(master_text="MAX(0,A1)")
    problems = check_workbook(shared).formula_problems
    assert [p.cell for p in problems] == [("relu1", 0, 1, j) for j in range(4)]


# ---------------------------------------------------------------- highlight copies

@pytest.mark.parametrize("name, cell", [("conv-example", "conv2[0,3,3]"), ("simple-cnn", "conv3[1,1,0]")])
def test_highlight_copy_passes_check_and_changes_only_styles_and_the_traced_sheet(books, tmp_path, name, cell):
    net, path = books[name]
    out = tmp_path / "hl.xlsx"
    res = CliRunner().invoke(cli, ["trace", str(path), cell, "--highlight", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["check", str(out)])
    assert res.exit_code == 0 and ": OK" in res.output, res.output

    with zipfile.ZipFile(path) as a, zipfile.ZipFile(out) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        changed = {n for n in a.namelist() if a.read(n) != b.read(n)}
        assert changed == {"xl/styles.xml", "xl/worksheets/sheet1.xml"}
        old, new = a.read("xl/worksheets/sheet1.xml").decode(), b.read("xl/worksheets/sheet1.xml").decode()
    # inside the traced sheet only style attributes, the view and conditional formats differ
    strip = lambda xml: re.sub(r' s="\d+"', "", xml.split("</sheetData>")[0].split("<sheetData>")[1])  # noqa: E731
    assert strip(old) == strip(new)
    assert openpyxl_cells(path) == openpyxl_cells(out)


# ---------------------------------------------------------------- memory, torch, entry point, progress

def _peak_mb(code: str) -> float:
    script = textwrap.dedent(code) + textwrap.dedent("""
        import resource
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(res.stdout.split()[-1])


def test_check_memory_is_bounded(tmp_path):
    net = sc.Network([sc.Conv2d(3, 8, 3, stride=2, padding=1), sc.ReLU(),
                      sc.Conv2d(8, 16, 3, stride=2, padding=1), sc.ReLU()], (3, 128, 128)).init_weights(0)
    path = tmp_path / "mid.xlsx"
    write_workbook(net, np.random.default_rng(0).uniform(size=net.input_shape), path)
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("xl/worksheets/sheet1.xml").file_size > 12e6
    base = _peak_mb("import numpy, sheetconv.check, sheetconv.sheet.formulas, sheetconv.xlsx.stream")
    peak = _peak_mb(f"from sheetconv.check import check_workbook\nassert check_workbook({str(path)!r}).ok")
    # 49,152 formulas and as many input cells (a 14 MB sheet part): a map of every value
    # would take more than the bound; the streamed check holds one chunk and one array per layer
    assert peak - base < 60, (base, peak)


def test_check_imports_torch_only_when_asked(books):
    _, path = books["conv-example"]
    code = (f"import sys\nfrom sheetconv.check import check_workbook\nr = check_workbook({str(path)!r})\n"
            f"print(r.ok, r.torch_checked, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["True", "False", "False"]
    pytest.importorskip("torch")
    res = CliRunner().invoke(cli, ["check", str(path), "--torch"])
    assert res.exit_code == 0
    torch_column = [line.split()[4] for line in res.output.splitlines() if line.startswith(("conv1 ", "conv2 "))]
    assert len(torch_column) == 2 and all(float(v) <= 1e-12 for v in torch_column)


def test_python_m_sheetconv():
    res = subprocess.run([sys.executable, "-m", "sheetconv", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("Usage: sheetconv") and "check" in res.stdout
    res = subprocess.run([sys.executable, "-m", "sheetconv", "check", "missing.xlsx"], capture_output=True, text=True)
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("tty, quiet, shown", [(True, False, True), (False, False, False), (True, True, False)])
def test_check_progress_bar_only_on_a_terminal_and_not_quiet(books, monkeypatch, tty, quiet, shown):
    import sheetconv.cli as cli_module
    monkeypatch.setattr(cli_module, "_CHECK_PROGRESS_MIN_CELLS", 0)
    monkeypatch.setattr(cli_module, "_stderr_is_tty", lambda: tty)
    _, path = books["conv-example"]
    res = CliRunner().invoke(cli, ["check", str(path)] + (["--quiet"] if quiet else []))
    assert res.exit_code == 0
    assert ("checking" in res.stderr) == shown
