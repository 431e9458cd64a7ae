"""Hand-made workbooks whose precedents are known by construction: Excel Tables and
structured references, defined-name chains and cycles, ranges with the sheet on both ends,
range chains and chains ending in a name, lower-case error literals, whitespace between
tokens, workbooks without a digit in any formula, strict Open XML, lower-case cell
addresses, and zip members compressed with a method zipfile cannot read.

Expected precedents are written out as A1 text below (the layout of each crafted file);
openpyxl reads the same files as a second opinion where it can (values, table columns)."""
from __future__ import annotations

import zipfile

import openpyxl
import pytest
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from click.testing import CliRunner
from openpyxl.utils import range_boundaries

from sheetconv.cli import cli
from sheetconv.errors import SheetconvError
from sheetconv.formulagraph.index import build_index
from sheetconv.xlsx import package
from sheetconv.xlsx.cells import read_values


def cells_of(a1_ranges, sheet) -> set[tuple]:
    """'B2:C3' texts -> {(sheet, row, col)}, expanded with openpyxl's range_boundaries."""
    out = set()
    for text in a1_ranges:
        c0, r0, c1, r1 = range_boundaries(text if ":" in text else f"{text}:{text}")
        out |= {(sheet, r - 1, c - 1) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
    return out


def direct(ix, sheet: str, a1: str) -> set[tuple]:
    """The cells a formula cell reads directly (level 1), as {(sheet name, row, col)}."""
    c0, r0, _, _ = range_boundaries(f"{a1}:{a1}")
    levels, _ = ix.precedents(ix.sheet_index(sheet), r0 - 1, c0 - 1, depth=1)
    out = set()
    for t, rects in (levels[0] if levels else {}).items():
        for a, b, c, d in rects:
            out |= {(ix.sheets[t].name, r, k) for r in range(a, c + 1) for k in range(b, d + 1)}
    return out


# ---------------------------------------------------------------- Excel Tables

TABLE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<table xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" id="1" name="Table1"
 displayName="Table1" ref="A1:D6" totalsRowCount="1">
<autoFilter ref="A1:D5"/>
<tableColumns count="4"><tableColumn id="1" name="Region"/><tableColumn id="2" name="Sales"/>
<tableColumn id="3" name="Cost"/><tableColumn id="4" name="a]b#c'd"/></tableColumns>
<tableStyleInfo name="TableStyleMedium2" showFirstColumn="0" showLastColumn="0" showRowStripes="1"/>
</table>"""

SHEET_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/table"
 Target="../tables/table1.xml"/></Relationships>"""

TABLE_PARTS = '<tableParts count="1"><tablePart r:id="rId1"/></tableParts></worksheet>'

# (sheet, cell, formula, expected precedents on Sheet1 by construction)
TABLE_CASES = [
    ("Sheet2", "A1", "SUM(Table1[Sales])", ["B2:B5"]),
    ("Sheet2", "A2", "SUM(Table1[#All])", ["A1:D6"]),
    ("Sheet2", "A3", "SUM(Table1[#Data])", ["A2:D5"]),
    ("Sheet2", "A4", "COUNTA(Table1[#Headers])", ["A1:D1"]),
    ("Sheet2", "A5", "SUM(Table1[#Totals])", ["A6:D6"]),
    ("Sheet2", "A6", "SUM(Table1[[Region]:[Cost]])", ["A2:C5"]),
    ("Sheet2", "A7", "COUNTA(Table1[[#Headers],[#Data],[Sales]])", ["B1:B5"]),
    ("Sheet2", "A8", "SUM(Table1[[a']b'#c''d]])", ["D2:D5"]),
    ("Sheet2", "A9", "SUM(table1[ sales ])", ["B2:B5"]),
    ("Sheet2", "A10", "SUM(Table1)", ["A2:D5"]),
    ("Sheet2", "A11", "SUM(Table1[[#Data],[#Totals],[Cost]:[Sales]])", ["B2:C6"]),
    ("Sheet2", "A12", "SUM(Table1[Nope])+A1", []),             # no such column: #REF!, only A1 of Sheet2
    ("Sheet1", "D3", "[@Sales]*2", ["B3"]),
    ("Sheet1", "D4", "Table1[[#This Row],[Cost]]+Table1[@[Region]:[Sales]]", ["C4", "A4:B4"]),
    ("Sheet1", "D2", "SUM([Sales])", ["B2:B5"]),
    ("Sheet1", "B6", "SUBTOTAL(109,[Sales])", ["B2:B5"]),
]


@pytest.fixture(scope="module")
def table_book(tmp_path_factory):
    s1 = {1: [cell_xml(a, h) for a, h in zip(("A1", "B1", "C1", "D1"), ("Region", "Sales", "Cost", "a]b#c'd"))]}
    for r in range(2, 6):
        s1[r] = [cell_xml(f"A{r}", f"R{r}"), cell_xml(f"B{r}", r * 10), cell_xml(f"C{r}", r)]
    s2 = {}
    for sheet, ref, formula, _ in TABLE_CASES:
        rows = s1 if sheet == "Sheet1" else s2
        r = int(ref[1:])
        rows.setdefault(r, []).append(cell_xml(ref, 0, formula))
        rows[r].sort(key=lambda c: c.split('"')[1])
    p = write_xlsx(tmp_path_factory.mktemp("tables") / "tables.xlsx",
                   [("Sheet1", sheet_xml(s1).replace("</worksheet>", TABLE_PARTS)), ("Sheet2", sheet_xml(s2))],
                   extra={"xl/tables/table1.xml": TABLE_XML.encode(),
                          "xl/worksheets/_rels/sheet1.xml.rels": SHEET_RELS.encode()})
    return p


def test_table_definition_read_as_openpyxl_reads_it(table_book):
    ix = build_index(table_book)
    _, table = ix.tables["table1"]
    wb = openpyxl.load_workbook(table_book)
    theirs = wb["Sheet1"].tables["Table1"]
    c0, r0, c1, r1 = range_boundaries(theirs.ref)
    assert table.ref == (r0 - 1, c0 - 1, r1 - 1, c1 - 1)
    assert list(table.columns) == [c.name for c in theirs.tableColumns]
    assert table.totals_rows == theirs.totalsRowCount == 1


@pytest.mark.parametrize("sheet,ref,formula,expected", TABLE_CASES, ids=[c[2] for c in TABLE_CASES])
def test_structured_references(table_book, sheet, ref, formula, expected):
    want = cells_of(expected, "Sheet1")
    if ref == "A12":
        want = {("Sheet2", 0, 0)}
    assert direct(build_index(table_book), sheet, ref) == want


def test_table_dependents(table_book):
    ix = build_index(table_book)
    levels, _ = ix.dependents(0, 2, 1, depth=1)              # Sheet1!B3 (Sales, row 3)
    got = {(ix.sheets[t].name, r, c) for t, rects in levels[0].items() for a, b, c1, d in rects
           for r in range(a, c1 + 1) for c in range(b, d + 1)}
    readers = {("Sheet1", 2, 3), ("Sheet1", 1, 3), ("Sheet1", 5, 1), ("Sheet1", 3, 3)} - {("Sheet1", 3, 3)}
    readers |= {("Sheet2", r, 0) for r in (0, 1, 2, 5, 6, 8, 9, 10)}
    assert got == readers                                    # D4 reads row 4 only; A4, A5 headers/totals


# ---------------------------------------------------------------- names, chains, ranges

def test_name_chains_of_any_length_and_cycles(tmp_path):
    names = [(f"hop_{i}", f"hop_{i + 1}", None) for i in range(1, 12)] + [("hop_12", "Sheet1!$C$3", None)]
    names += [("loop_a", "loop_b+Sheet1!$D$1", None), ("loop_b", "loop_a", None)]
    sheet = sheet_xml({1: [cell_xml("A1", 0, "hop_1*2"), cell_xml("B1", 0, "loop_a+E1")], 3: [cell_xml("C3", 5)]})
    ix = build_index(write_xlsx(tmp_path / "names.xlsx", [("Sheet1", sheet)], names=names))
    assert direct(ix, "Sheet1", "A1") == {("Sheet1", 2, 2)}
    assert direct(ix, "Sheet1", "B1") == {("Sheet1", 0, 3), ("Sheet1", 0, 4)}
    assert any("loop_a" in w and "itself" in w for w in ix.warnings), ix.warnings


def test_sheet_on_both_ends_and_range_chains(tmp_path):
    names = [("f", "CORE!$G$2:$H$5", None)]
    core = sheet_xml({1: [cell_xml("A1", 0, "SUM(B2:E5:f)"), cell_xml("B1", 0, "SUM(CORE!A9:CORE!B10)"),
                          cell_xml("C1", 0, "ROW(Z112:AA113:AF112:AF113 AB113:AD114)")]})
    ix = build_index(write_xlsx(tmp_path / "chains.xlsx", [("CORE", core)], names=names))
    assert direct(ix, "CORE", "A1") == cells_of(["B2:H5"], "CORE")
    assert len(direct(ix, "CORE", "A1")) == 28
    assert direct(ix, "CORE", "B1") == cells_of(["A9:B10"], "CORE")
    assert direct(ix, "CORE", "C1") == cells_of(["Z112:AF113", "AB113:AD114"], "CORE")


@pytest.mark.parametrize("formula,expected", [
    ("'other sheet'!#ref!+B1", ["B1"]),
    ("IF(ISNA(C1),#n/a,#div/0!)+D1", ["C1", "D1"]),
    ("A1+\tB1", ["A1", "B1"]),
    ("SUM(A1,\nB1)", ["A1", "B1"]),
    ("SUM(A1,\r\n\tB1:C2)", ["A1", "B1:C2"]),
])
def test_error_literals_and_whitespace(tmp_path, formula, expected):
    sheet = sheet_xml({9: [cell_xml("Z9", 0, formula)]})
    ix = build_index(write_xlsx(tmp_path / "w.xlsx", [("Sheet1", sheet), ("other sheet", sheet_xml({}))]))
    assert direct(ix, "Sheet1", "Z9") == cells_of(expected, "Sheet1")
    assert not ix.cache.unreadable


def test_dependents_when_no_formula_has_a_digit(tmp_path):
    sheet = sheet_xml({1: [cell_xml("A1", 3), cell_xml("B1", 0, "TRUE()"), cell_xml("C1", 0, 'CELL("width",A:A )')]})
    ix = build_index(write_xlsx(tmp_path / "nodigit.xlsx", [("Sheet1", sheet)]))
    levels, _ = ix.dependents(0, 0, 0)
    assert levels == [{0: [(0, 2, 0, 2)]}]


# ---------------------------------------------------------------- strict Open XML

STRICT = {
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main": "http://purl.oclc.org/ooxml/spreadsheetml/main",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships":
        "http://purl.oclc.org/ooxml/officeDocument/relationships",
}


def test_strict_open_xml_read_like_transitional(tmp_path):
    s1 = sheet_xml({1: [cell_xml("A1", 2), cell_xml("B1", "x")], 2: [cell_xml("A2", 0, "A1*3+rate")]})
    plain = write_xlsx(tmp_path / "plain.xlsx", [("Sheet1", s1)], names=[("rate", "Sheet1!$B$1", None)])
    strict = tmp_path / "strict.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(strict, "w") as dst:
        for info in src.infolist():
            data = src.read(info).decode()
            for a, b in STRICT.items():
                data = data.replace(a, b)
            dst.writestr(info.filename, data)
    with zipfile.ZipFile(strict) as z:
        assert "purl.oclc.org" in z.read("xl/workbook.xml").decode()
        assert "schemas.openxmlformats.org/spreadsheetml" not in z.read("xl/worksheets/sheet1.xml").decode()
    ix = build_index(strict)
    assert direct(ix, "Sheet1", "A2") == {("Sheet1", 0, 0), ("Sheet1", 0, 1)}
    with package.open_zip(strict) as zf:
        sheets, _ = package.read_workbook_parts(zf, str(strict))
        assert read_values(zf, str(strict), sheets[0]) == {(0, 0): 2.0, (0, 1): "x", (1, 0): 0.0}


# ---------------------------------------------------------------- lower-case addresses

def test_lower_case_cell_addresses_agree_with_openpyxl(tmp_path):
    sheet = sheet_xml({1: [cell_xml("a1", 4), cell_xml("b1", 0, "a1*2")], 2: [cell_xml("aB2", 1, "B1+1")]})
    p = write_xlsx(tmp_path / "lower.xlsx", [("Sheet1", sheet)])
    ws = openpyxl.load_workbook(p)["Sheet1"]
    theirs = {(c.row - 1, c.column - 1): c.value for row in ws.iter_rows() for c in row if c.value is not None}
    assert theirs == {(0, 0): 4, (0, 1): "=a1*2", (1, 27): "=B1+1"}
    with package.open_zip(p) as zf:
        sheets, _ = package.read_workbook_parts(zf, str(p))
        values = read_values(zf, str(p), sheets[0])
    assert set(values) == set(theirs)
    ix = build_index(p)
    assert ix.formula_at(0, 0, 1) is not None and ix.formula_at(0, 1, 27) is not None
    assert direct(ix, "Sheet1", "AB2") == {("Sheet1", 0, 1)}
    assert direct(ix, "Sheet1", "B1") == {("Sheet1", 0, 0)}


# ---------------------------------------------------------------- unreadable compression

def _set_method(path, method: int):
    """Rewrite every member's compression method field (local and central headers)."""
    data = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = data.find(sig)
        while i >= 0:
            data[i + off:i + off + 2] = method.to_bytes(2, "little")
            i = data.find(sig, i + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("method,words", [(98, "ppmd"), (9, "deflate64"), (97, "wavpack")])
def test_unreadable_compression_method_refused_in_open_zip(tmp_path, method, words):
    p = tmp_path / "m.xlsx"
    sheet = sheet_xml({1: [cell_xml("A1", 1), cell_xml("B1", 0, "A1")]})
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as zf:
        src = write_xlsx(tmp_path / "src.xlsx", [("Sheet1", sheet)])
        with zipfile.ZipFile(src) as s:
            for info in s.infolist():
                zf.writestr(info.filename, s.read(info))
    _set_method(p, method)
    with pytest.raises(SheetconvError) as e:
        package.open_zip(p)
    msg = str(e.value)
    assert "\n" not in msg and str(method) in msg and words in msg and "expected" in msg
    for args in (["trace", str(p), "B1"], ["check", str(p)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert result.output.count("\n") == 1 and "method" in result.output


# ---------------------------------------------------------------- empty cells

def test_empty_cells_without_position_keep_later_cells_where_openpyxl_puts_them(tmp_path):
    row1 = '<c/><c/> <c><v>5</v></c><c r="E1"><v>1</v></c><c/>\n<c/><c><f>C1+E1</f><v>6</v></c>'
    row2 = '<c r="B2"/><c/><c><v>7</v></c>'
    xml = sheet_xml({}).replace("<sheetData>", f'<sheetData><row r="1">{row1}</row><row r="2">{row2}</row>')
    p = write_xlsx(tmp_path / "empty.xlsx", [("Sheet1", xml)])
    ws = openpyxl.load_workbook(p)["Sheet1"]
    theirs = {(c.row - 1, c.column - 1): c.value for row in ws.iter_rows() for c in row if c.value is not None}
    assert theirs == {(0, 2): 5, (0, 4): 1, (0, 7): "=C1+E1", (1, 3): 7}
    with package.open_zip(p) as zf:
        sheets, _ = package.read_workbook_parts(zf, str(p))
        assert set(read_values(zf, str(p), sheets[0])) == set(theirs)
    ix = build_index(p)
    assert ix.formula_at(0, 0, 7) is not None
    assert direct(ix, "Sheet1", "H1") == {("Sheet1", 0, 2), ("Sheet1", 0, 4)}


def test_too_many_empty_cells_in_a_row_refused(tmp_path):
    xml = sheet_xml({}).replace("<sheetData>", '<sheetData><row r="1">' + "<c/>" * 16_385 + "</row>")
    p = write_xlsx(tmp_path / "wide.xlsx", [("Sheet1", xml)])
    with pytest.raises(SheetconvError, match="after column XFD"):
        build_index(p)


PEAK = r"""
import resource, sys
from sheetconv.tracing import open_workbook
print(open_workbook(sys.argv[1]).precedents("B1").ranges())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_sheet_padded_with_empty_cells_traced_in_bounded_memory(tmp_path):
    """~200 MB of empty <c/> (a 1 MB file): traced, peak memory bounded (measured in a subprocess)."""
    import subprocess
    import sys
    p = tmp_path / "padded.xlsx"
    write_xlsx(p, [("Sheet1", sheet_xml({}))])
    row = "<c/>" * 16_000
    src = zipfile.ZipFile(p)
    out = tmp_path / "padded2.xlsx"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                dst.writestr(info.filename, src.read(info))
        with dst.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(src.read("xl/worksheets/sheet1.xml").split(b"<sheetData>")[0] + b"<sheetData>")
            fh.write(b'<row r="1"><c r="A1"><v>1</v></c><c r="B1"><f>A1</f></c></row>')
            for r in range(2, 3_200):
                fh.write(f'<row r="{r}">{row}</row>'.encode())
            fh.write(b"</sheetData></worksheet>")
    src.close()
    code = "from sheetconv.xlsx import package; package.LIMITS.max_ratio = 1e6\n" + PEAK   # repetitive on purpose
    import os
    from pathlib import Path

    import sheetconv
    env = dict(os.environ, PYTHONPATH=str(Path(sheetconv.__file__).resolve().parents[1]))
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-500:]
    ranges, peak = res.stdout.strip().splitlines()
    assert ranges == "['Sheet1!A1']"
    assert int(peak) < 400, f"peak {peak} MB"
