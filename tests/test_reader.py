"""The precedent index against a brute-force oracle: openpyxl's full loader (which expands
shared formulas itself), openpyxl's Tokenizer and range_boundaries for the references (not
sheetconv's reference parser), and a cell-by-cell graph walk, on hand-written and random
workbooks."""
from __future__ import annotations

import random
from typing import NamedTuple

import openpyxl
import pytest
import xlsxwriter
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from openpyxl.formula import Tokenizer
from openpyxl.utils import range_boundaries
from openpyxl.worksheet.formula import ArrayFormula
from xlsxwriter.utility import xl_rowcol_to_cell

from sheetconv.formulagraph.index import build_index, compact_rects
from sheetconv.tracing import FormulaWorkbook, open_workbook

# ---------------------------------------------------------------- the oracle

class OracleRef(NamedTuple):
    sheet: object            # None, a name, or (first, last) of a 3-D reference
    r0: int | None
    c0: int | None
    r1: int | None
    c1: int | None
    name: str | None = None


def references(text: str) -> list[OracleRef]:
    """A formula's references by openpyxl's Tokenizer and range_boundaries, 0-based inclusive."""
    text = text if text.startswith("=") else "=" + text
    out = []
    for tok in Tokenizer(text).items:
        if tok.type != "OPERAND" or tok.subtype != "RANGE":
            continue
        value = tok.value.lstrip("@")
        sheet = None
        if "!" in value:
            sheet, _, value = value.rpartition("!")
            if sheet.startswith("'") and sheet.endswith("'"):
                sheet = sheet[1:-1].replace("''", "'")
            if ":" in sheet:
                sheet = tuple(sheet.split(":"))
        addr = value.replace("$", "")
        try:
            c0, r0, c1, r1 = range_boundaries(addr if ":" in addr else f"{addr}:{addr}")
        except ValueError:
            out.append(OracleRef(sheet, None, None, None, None, addr))
            continue
        lo = lambda a, b: None if a is None else min(a, b) - 1          # Excel reads C:A as A:C
        hi = lambda a, b: None if a is None else max(a, b) - 1
        out.append(OracleRef(sheet, lo(r0, r1), lo(c0, c1), hi(r0, r1), hi(c0, c1)))
    return out


class Oracle:
    """Every formula cell's precedent cells, listed one by one."""

    def __init__(self, path):
        wb = openpyxl.load_workbook(path)
        self.names = [ws.title for ws in wb.worksheets]
        self.defined = {(None, n.lower()): d.attr_text for n, d in wb.defined_names.items()}
        for ws in wb.worksheets:                              # sheet-scoped names live on the sheet
            self.defined.update({(ws.title, n.lower()): d.attr_text for n, d in ws.defined_names.items()})
        cells, texts = {}, {}
        used = {}
        for ws in wb.worksheets:
            rows = [c.row - 1 for row in ws.iter_rows() for c in row if c.value is not None]
            cols = [c.column - 1 for row in ws.iter_rows() for c in row if c.value is not None]
            used[ws.title] = (min(rows), min(cols), max(rows), max(cols)) if rows else None
            for row in ws.iter_rows():
                for c in row:
                    v = c.value
                    if isinstance(v, ArrayFormula):
                        rng = ws[v.ref]
                        rng = rng if isinstance(rng, tuple) else ((rng,),)
                        for line in (rng if isinstance(rng[0], tuple) else (rng,)):
                            for cc in line:
                                texts[(ws.title, cc.row - 1, cc.column - 1)] = v.text
                    elif isinstance(v, str) and v.startswith("="):
                        texts[(ws.title, c.row - 1, c.column - 1)] = v
        self.used = used
        self.whole = {}                # formula cell -> whole rows / columns, to the sheet's edge
        for cell, text in texts.items():
            self.whole[cell] = []
            cells[cell] = self._expand(references(text), cell[0], wholes=self.whole[cell])
        self.graph = cells

    def _expand(self, refs, host, depth=0, wholes=None):
        """The cells the references read (whole rows and columns: within the used range);
        whole rows and columns also go to ``wholes`` as they reach: to the sheet's edge."""
        out = set()
        for ref in refs:
            if ref.name is not None:
                scope = host if ref.sheet is None else ref.sheet
                text = self.defined.get((scope, ref.name.lower()), self.defined.get((None, ref.name.lower())))
                if text and depth < 5:
                    out |= self._expand(references("=" + text), host, depth + 1, wholes)
                continue
            sheets = [host] if ref.sheet is None else (
                self.names[self.names.index(ref.sheet[0]):self.names.index(ref.sheet[1]) + 1]
                if isinstance(ref.sheet, tuple) else [ref.sheet])
            for s in sheets:
                r0, c0, r1, c1 = ref.r0, ref.c0, ref.r1, ref.c1
                if (r0 is None or c0 is None) and wholes is not None:
                    wholes.append((s, 0 if r0 is None else r0, 0 if c0 is None else c0,
                                   1_048_575 if r0 is None else r1, 16_383 if c0 is None else c1))
                if r0 is None or c0 is None:
                    u = self.used[s]
                    if u is None:
                        continue
                    if r0 is None:
                        r0, r1 = u[0], u[2]
                    if c0 is None:
                        c0, c1 = u[1], u[3]
                out |= {(s, y, x) for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)}
        return out

    def precedents(self, cell, depth=None):
        if cell not in self.graph:
            return []
        seen, frontier, levels = {cell}, [cell], []
        while frontier and (depth is None or len(levels) < depth):
            level = set()
            for f in frontier:
                level |= self.graph[f]
            levels.append(level)
            frontier = [g for g in level if g in self.graph and g not in seen]
            seen |= set(frontier)
        return levels

    def dependents(self, cell, depth=None):
        """Formula cells reading the previous level; whole rows and columns read every cell
        of the sheet, empty ones past the used range too."""
        seen = {cell} if cell in self.graph else set()
        frontier, levels = {cell}, []

        def reads(f):
            return self.graph[f] & frontier or any(t == s and a <= y <= c and b <= x <= d for s, a, b, c, d in self.whole[f]
                                                   for t, y, x in frontier)
        while depth is None or len(levels) < depth:
            new = {f for f in self.graph if f not in seen and reads(f)}
            if not new:
                break
            seen |= new
            levels.append(new)
            frontier = new
        return levels


def cells_of(trace):
    return [{(r.name, y, x) for r in level for rows, cols in r.boxes for a, b in rows for c, d in cols
             for y in range(a, b) for x in range(c, d)} for level in trace.levels]


# ---------------------------------------------------------------- hand-written, as Excel writes it

@pytest.fixture(scope="module")
def excel_like(tmp_path_factory):
    path = tmp_path_factory.mktemp("x") / "excel_like.xlsx"
    s1 = sheet_xml({
        1: [cell_xml("A1", 1), cell_xml("B1", 2), cell_xml("C1", 3), cell_xml("D1", 6, "SUM(A1:C1)")],
        2: [cell_xml("A2", 4), cell_xml("B2", 5), cell_xml("C2", 6), cell_xml("D2", 15, "SUM(A2:C2)", shared=(0, "D2:D4"))],
        3: [cell_xml("A3", 1), cell_xml("D3", 1, "", shared=(0, None))],
        4: [cell_xml("D4", 0, "", shared=(0, None)),
            cell_xml("E4", 1, "MAX(0,SUM(A2:C4*$AD$11:$AF$13))", array="E4")],
        5: [cell_xml("A5", 0, "'My sheet (2)'!B2+rate+Data!A:A"), cell_xml("B5", 0, "E4*2")],
        6: [cell_xml("A6", 0, "B6+1"), cell_xml("B6", 0, "C6+1"), cell_xml("C6", 0, "A6+1")],
        7: [cell_xml("A7", 0, "SUM(Sheet1:Data!A1)"), cell_xml("B7", 0, "A7*2", shared=(1, "B7:D8")),
            cell_xml("C7", 0, "", shared=(1, None)), cell_xml("D7", 0, "", shared=(1, None))],
        8: [cell_xml("B8", 0, "", shared=(1, None)), cell_xml("F8", 0, "G1:H2*2", array="F8:G9")],
        11: [cell_xml("AD11", 1), cell_xml("AF13", 2)],
    }, dimension="A1:XFD1048576")
    s2 = sheet_xml({2: [cell_xml("B2", 7, "'My sheet (2)'!C3*2")], 3: [cell_xml("C3", 1)]})
    s3 = sheet_xml({1: [cell_xml("A1", 1)], 2: [cell_xml("A2", 2)]})
    return write_xlsx(path, [("Sheet1", s1), ("My sheet (2)", s2), ("Data", s3)],
                      names=[("rate", "Sheet1!$A$1:$B$1", None)])


def test_excel_like_examples(excel_like):
    wb = open_workbook(excel_like)
    assert isinstance(wb, FormulaWorkbook)
    t = wb.precedents("E4")                                   # array (CSE) formula
    assert cells_of(t) == [{("Sheet1", y, x) for y in range(1, 4) for x in range(3)}
                           | {("Sheet1", y, x) for y in range(10, 13) for x in range(29, 32)}]
    (region,) = t.levels[0]                                   # compact: two boxes, not 18 cells
    assert len(region.boxes) == 2 and len(region) == 18
    assert t.ranges() == ["Sheet1!A2:C4", "Sheet1!AD11:AF13"]
    assert t.complete().meta["sheet_levels"][0][0]["ranges"] == ["A2:C4", "AD11:AF13"]
    t = wb.precedents("D4")                                   # shared formula child: SUM(A4:C4)
    assert t.complete().meta["sheet_levels"][0][0]["ranges"] == ["A4:C4"]
    t = wb.precedents("A5")                                   # quoted sheet, defined name, whole column
    assert cells_of(t) == [{("My sheet (2)", 1, 1), ("Sheet1", 0, 0), ("Sheet1", 0, 1), ("Data", 0, 0),
                            ("Data", 1, 0)}, {("My sheet (2)", 2, 2)}]
    t = wb.precedents("'my sheet (2)'!B2")                     # sheet names are case-insensitive
    assert cells_of(t) == [{("My sheet (2)", 2, 2)}]
    t = wb.precedents("G9")                                   # a cell inside an array formula's range
    assert cells_of(t)[0] == {("Sheet1", y, x) for y in range(0, 2) for x in range(6, 8)}


def test_cycle_reported_not_looped(excel_like):
    wb = open_workbook(excel_like)
    t = wb.precedents("A6")
    assert t.meta["cycle"][0] == t.meta["cycle"][-1]
    assert set(t.meta["cycle"]) == {"Sheet1!A6", "Sheet1!B6", "Sheet1!C6"}
    assert "circular reference" in t.text()
    d = wb.dependents("B6")
    assert d.meta.get("cycle")


def test_constant_and_empty_cells(excel_like):
    wb = open_workbook(excel_like)
    t = wb.precedents("A1")
    assert t.levels == [] and t.meta["kind"] == "constant" and "a constant: no precedents" in t.text()
    t = wb.precedents("Z99")
    assert t.levels == [] and t.meta["kind"] == "empty"


@pytest.mark.parametrize("depth", [None, 1, 2])
def test_excel_like_against_oracle(excel_like, depth):
    oracle = Oracle(excel_like)
    wb = open_workbook(excel_like)
    cells = set(oracle.graph) | {c for pre in oracle.graph.values() for c in pre}
    for sheet, r, c in sorted(cells):
        assert cells_of(wb.precedents((sheet, r, c), depth)) == oracle.precedents((sheet, r, c), depth), (sheet, r, c)
        assert cells_of(wb.dependents((sheet, r, c), depth)) == oracle.dependents((sheet, r, c), depth), (sheet, r, c)


def test_huge_dimension_claim_allocates_nothing(excel_like):
    ix = build_index(excel_like)                              # the sheet claims A1:XFD1048576
    assert ix.sheets[0].bounds[2] < 20 and ix.sheets[0].bounds[3] < 40


# ---------------------------------------------------------------- random workbooks written by XlsxWriter

def random_book(path, seed, n_formulas=250):
    rnd = random.Random(seed)
    sheets = ["Sheet1", "My sheet (2)", "It's"]
    wb = xlsxwriter.Workbook(path)
    wss = [wb.add_worksheet(s) for s in sheets]
    formulas = {}
    for ws in wss:
        for r in range(12):
            for c in range(6):
                if rnd.random() < 0.7:
                    ws.write_number(r, c, rnd.random())
    wb.define_name("block", "='My sheet (2)'!$A$1:$B$3")
    wb.define_name("Sheet1!local", "=Sheet1!$C$2")
    for _ in range(n_formulas):
        s = rnd.randrange(3)
        r, c = rnd.randrange(12, 40), rnd.randrange(0, 10)
        terms = []
        for _ in range(rnd.randint(1, 4)):
            kind = rnd.random()
            if kind < 0.08:
                terms.append("SUM(block)")
            elif kind < 0.12:
                terms.append("local" if s == 0 else "1")
            elif kind < 0.16:
                terms.append(f"SUM({'ABCDEF'[rnd.randrange(6)]}:{'ABCDEF'[rnd.randrange(6)]})")
            else:
                r0, c0 = rnd.randrange(40), rnd.randrange(10)
                a = xl_rowcol_to_cell(r0, c0, rnd.random() < .3, rnd.random() < .3)
                if rnd.random() < 0.5:
                    a += ":" + xl_rowcol_to_cell(r0 + rnd.randrange(4), c0 + rnd.randrange(3),
                                                 rnd.random() < .3, rnd.random() < .3)
                t = rnd.randrange(4)
                if t < 3 and t != s:
                    q = sheets[t]
                    a = (f"'{q.replace(chr(39), chr(39) * 2)}'" if not q.isalnum() else q) + "!" + a
                terms.append(f"SUM({a})")
        formulas[(s, r, c)] = "=" + "+".join(terms)
    for (s, r, c), f in formulas.items():
        wss[s].write_formula(r, c, f, None, 0)
    wb.close()
    return path


@pytest.mark.parametrize("seed", [1, 2])
def test_random_workbooks_against_oracle(tmp_path, seed):
    path = random_book(tmp_path / f"r{seed}.xlsx", seed)
    oracle = Oracle(path)
    wb = open_workbook(path)
    rnd = random.Random(seed)
    targets = sorted(oracle.graph)
    plain = sorted({c for pre in oracle.graph.values() for c in pre})
    cycles = 0
    for cell in targets + rnd.sample(plain, min(60, len(plain))):
        for depth in (None, 1):
            want = oracle.precedents(cell, depth)
            got = wb.precedents(cell, depth)
            assert cells_of(got) == want, cell      # with or without a cycle: each cell expanded once
            if "cycle" in got.meta:
                cyc = got.meta["cycle"]
                assert cyc[0] == cyc[-1] and len(cyc) >= 2
                cycles += 1
            assert cells_of(wb.dependents(cell, depth)) == oracle.dependents(cell, depth), cell
    assert cycles > 0                                 # the random formulas do form cycles


def test_compact_rects_is_exact_and_canonical():
    rnd = random.Random(5)
    for _ in range(300):
        rects = []
        for _ in range(rnd.randint(1, 30)):
            a, b = rnd.randrange(20), rnd.randrange(20)
            rects.append((a, b, a + rnd.randrange(6), b + rnd.randrange(6)))
        cells = {(y, x) for a, b, c, d in rects for y in range(a, c + 1) for x in range(b, d + 1)}
        out = compact_rects(rects)
        listed = [(y, x) for a, b, c, d in out for y in range(a, c + 1) for x in range(b, d + 1)]
        assert len(listed) == len(set(listed)) and set(listed) == cells
        assert compact_rects([(y, x, y, x) for y, x in cells]) == out      # the same cells, the same answer


@pytest.mark.engine("libreoffice")
def test_workbook_saved_by_libreoffice(tmp_path):
    """A real application's xlsx: LibreOffice re-saves a workbook with array (CSE) formulas."""
    from sheetconv.xlsx.recalc import recalc_libreoffice
    src = tmp_path / "src.xlsx"
    wb = xlsxwriter.Workbook(src)
    ws = wb.add_worksheet("My sheet (2)")
    for r in range(1, 30):
        ws.write_number(r, 1, r)
        ws.write_number(r, 2, r * 2)
        ws.write_formula(r, 0, f"=B{r + 1}*2+$C$2")
    ws.write_array_formula("E2:E2", "{=MAX(0,SUM(B2:C4*$B$11:$C$13))}")
    ws.write_array_formula("F2:G3", "{=B2:C3*2}")
    other = wb.add_worksheet("Sheet2")
    other.write_formula(0, 0, "=SUM('My sheet (2)'!E2:G3)+'My sheet (2)'!A5")
    wb.close()
    out_dir = tmp_path / "lo"
    out_dir.mkdir()
    (saved,) = recalc_libreoffice([src], out_dir)
    oracle = Oracle(saved)
    book = open_workbook(saved)
    t = book.precedents("'My sheet (2)'!E2").complete()
    assert t.meta["sheet_levels"][0][0]["ranges"] == ["B2:C4", "B11:C13"]
    t = book.precedents("'My sheet (2)'!G3").complete()          # inside the F2:G3 array
    assert t.meta["sheet_levels"][0][0]["ranges"] == ["B2:C3"]
    for cell in sorted(oracle.graph):
        for depth in (None, 1):
            assert cells_of(book.precedents(cell, depth)) == oracle.precedents(cell, depth), cell
            assert cells_of(book.dependents(cell, depth)) == oracle.dependents(cell, depth), cell


def test_compact_rects_sweep_on_a_huge_bounding_box():
    """Rectangles spread too far apart to paint (the sweep path): the same cells as a brute
    force over the cell sets, as disjoint rectangles, and the same answer as painting."""
    rnd = random.Random(3)
    for _ in range(30):
        rects = []
        for _ in range(rnd.randint(2, 25)):
            r0, c0 = rnd.choice([0, 5, 900_000]) + rnd.randint(0, 6), rnd.choice([0, 3, 9_000]) + rnd.randint(0, 6)
            rects.append((r0, c0, r0 + rnd.randint(0, 4), c0 + rnd.randint(0, 4)))
        cells = lambda rs: [(r, c) for a, b, c1, d in rs for r in range(a, c1 + 1) for c in range(b, d + 1)]
        out = compact_rects(rects)
        got = cells(out)
        assert len(got) == len(set(got)) and set(got) == set(cells(rects))
        near = [r for r in rects if r[0] < 900_000 and r[1] < 9_000]
        if near:                                   # the painted path on the near ones agrees
            assert compact_rects(near) == [r for r in out if r[0] < 900_000 and r[1] < 9_000]


def test_compact_rects_few_and_many_paths_agree():
    """Up to 8 rectangles take a plain-Python path; adding far duplicates forces the array path."""
    rnd = random.Random(11)
    for _ in range(300):
        rects = [(a, b, a + rnd.randrange(4), b + rnd.randrange(4))
                 for a, b in ((rnd.randrange(12), rnd.randrange(12)) for _ in range(rnd.randint(2, 8)))]
        few = compact_rects(rects)
        padded = rects + [(500 + i, 500, 500 + i, 500) for i in range(9)]
        many = [r for r in compact_rects(padded) if r[0] < 500]
        assert few == many
        cells = {(y, x) for a, b, c, d in rects for y in range(a, c + 1) for x in range(b, d + 1)}
        listed = [(y, x) for a, b, c, d in few for y in range(a, c + 1) for x in range(b, d + 1)]
        assert len(listed) == len(set(listed)) and set(listed) == cells
