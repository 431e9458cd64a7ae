"""Dependents from the formula index against a brute-force walk, on random workbooks with
shared formulas, absolute and mixed references, ranges, other sheets, defined names, whole
columns and rows (which reach empty cells past the used range too) and array formulas. The expected references of every formula cell come from the
generator (a shared formula's cells: its relative parts moved, as Excel moves them), not
from the index; the walk is :mod:`bruteforce`'s breadth-first closure over that graph.

Also: the column spans a dependent query reads a shape's references through (its text,
without the tokenizer) hold every column openpyxl's tokenizer finds in random formula text.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from bruteforce import invert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_formula_fuzz import FORMULA

from sheetconv.errors import SheetconvError
from sheetconv.formulagraph.index import _column_spans, _touching, build_index
from sheetconv.formulagraph.references import ShapeCache
from sheetconv.sheet.a1 import column_letters

SHEETS = ["S1", "My sheet (2)"]
ROWS, COLS = 9, 7
QROWS, QCOLS = ROWS + 3, COLS + 2              # queries also ask about empty cells past the used range
NAME_RECT = (0, 1, 1, 2, 2)                    # rate: S1!$B$2:$C$3


def _addr(r: int, c: int, abs_r: bool, abs_c: bool) -> str:
    return f"{'$' * abs_c}{column_letters(c)}{'$' * abs_r}{r + 1}"


@st.composite
def _ref(draw, host: int):
    """(text, how it moves) of one reference written in a formula on sheet ``host``."""
    kind = draw(st.sampled_from(["cell", "cell", "range", "range", "other", "name", "column", "row"]))
    if kind == "name":
        return "rate", ("name",)
    if kind == "column":
        c = draw(st.integers(0, COLS - 1))
        return f"{column_letters(c)}:{column_letters(c)}", ("column", host, c)
    if kind == "row":
        r = draw(st.integers(0, ROWS - 1))
        return f"{r + 1}:{r + 1}", ("row", host, r)
    sheet = host
    prefix = ""
    if kind == "other":
        sheet = draw(st.integers(0, 1))
        prefix = "S1!" if sheet == 0 else "'My sheet (2)'!"
    corners = []
    for _ in range(2 if kind == "range" else 1):
        corners.append((draw(st.integers(0, ROWS - 1)), draw(st.integers(0, COLS - 1)),
                        draw(st.booleans()), draw(st.booleans())))
    text = prefix + ":".join(_addr(*c) for c in corners)
    return text, ("rect", sheet, tuple(corners))


def _cells_of(move, dr: int, dc: int) -> set:
    """The cells one reference reads from a formula moved by (dr, dc) (a shared formula's
    cell): relative parts move; a reference moved off the grid reads nothing (#REF!)."""
    if move[0] == "name":
        t, r0, c0, r1, c1 = NAME_RECT
    elif move[0] == "column":
        _, t, c = move
        c += dc                                  # A:A is relative: it moves with the formula
        r0, c0, r1, c1 = 0, c, QROWS - 1, c     # every row: past the used range, as far as queries go
    elif move[0] == "row":
        _, t, r = move
        r += dr                                  # 3:3 is relative too
        r0, c0, r1, c1 = r, 0, r, QCOLS - 1     # every column, as far as queries go
    else:
        _, t, corners = move
        pts = [(r + (0 if ar else dr), c + (0 if ac else dc)) for r, c, ar, ac in corners]
        if any(r < 0 or c < 0 for r, c in pts):
            return set()
        r0, r1 = min(p[0] for p in pts), max(p[0] for p in pts)
        c0, c1 = min(p[1] for p in pts), max(p[1] for p in pts)
    return {(t, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}


@st.composite
def _workbook(draw):
    """Sheets of formulas: (per sheet, {(r, c): <c> xml}, nodes: (host cells, read cells))."""
    cells = [{}, {}]
    nodes = []
    for t in range(2):
        for _ in range(draw(st.integers(1, 7))):
            r, c = draw(st.integers(0, ROWS - 2)), draw(st.integers(0, COLS - 1))
            refs = draw(st.lists(_ref(t), min_size=1, max_size=3))
            text = "SUM(" + ",".join(x for x, _ in refs) + ")" + draw(st.sampled_from(
                ["", "+LOG10(2)*0", '+LEN("C3")*0', "+1E+2*0", "*TRUE", "+ATAN2(1,1)*0"]))
            shape = draw(st.sampled_from(["plain", "shared", "shared", "array"]))
            if shape == "plain":
                if (r, c) in cells[t]:
                    continue
                cells[t][(r, c)] = cell_xml(_addr(r, c, False, False), 0, text)
                nodes.append(({(t, r, c)}, set().union(*(_cells_of(m, 0, 0) for _, m in refs))))
            elif shape == "array":
                h = draw(st.integers(1, 2))
                box = [(r + i, c) for i in range(h) if r + i < ROWS - 1]
                if any(b in cells[t] for b in box):
                    continue
                ref = f"{_addr(r, c, False, False)}:{_addr(box[-1][0], c, False, False)}"
                cells[t][(r, c)] = cell_xml(_addr(r, c, False, False), 0, text, array=ref)
                for b in box[1:]:
                    cells[t][b] = cell_xml(_addr(*b, False, False), 0)
                nodes.append(({(t, *b) for b in box}, set().union(*(_cells_of(m, 0, 0) for _, m in refs))))
            else:                               # a shared formula down and right of its master
                h, w = draw(st.integers(1, 4)), draw(st.integers(1, 3))
                box = [(r + i, c + j) for i in range(h) for j in range(w) if r + i < ROWS - 1 and c + j < COLS]
                box = [b for b in box if b not in cells[t]]
                if not box or box[0] != (r, c):
                    continue
                si = len(nodes)
                last = box[-1]
                for i, (br, bc) in enumerate(box):
                    shared = (si, f"{_addr(r, c, False, False)}:{_addr(*last, False, False)}" if i == 0 else None)
                    cells[t][(br, bc)] = cell_xml(_addr(br, bc, False, False), 0, text if i == 0 else None,
                                                  shared=shared)
                    nodes.append(({(t, br, bc)}, set().union(*(_cells_of(m, br - r, bc - c) for _, m in refs))))
        cells[t][(ROWS - 1, COLS - 1)] = cell_xml(_addr(ROWS - 1, COLS - 1, False, False), 1)
        cells[t].setdefault((0, 0), cell_xml("A1", 1))      # the used range: the whole grid
    return cells, nodes


def _levels(nodes, start) -> list[set]:
    """Breadth-first levels of the formula cells reading ``start``, brute force."""
    readers = invert({i: read for i, (_, read) in enumerate(nodes)})        # cell -> nodes reading it
    seen = {i for i, (host, _) in enumerate(nodes) if start in host}
    frontier, out = {start}, []
    while frontier:
        new = {i for cell in frontier for i in readers.get(cell, ()) if i not in seen}
        if not new:
            break
        seen |= new
        frontier = set().union(*(nodes[i][0] for i in new))
        out.append(frontier)
    return out


def _cells_of_level(level: dict) -> set:
    return {(t, r, c) for t, rects in level.items() for r0, c0, r1, c1 in rects
            for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_workbook(), st.data())
def test_dependents_match_brute_force(book, data):
    cells, nodes = book
    with tempfile.TemporaryDirectory() as d:
        rows = [{} for _ in cells]
        for t, sheet in enumerate(cells):
            for (r, _), xml in sorted(sheet.items()):
                rows[t].setdefault(r + 1, []).append(xml)
        p = write_xlsx(Path(d) / "deps.xlsx", [(n, sheet_xml(rw)) for n, rw in zip(SHEETS, rows)],
                       names=[("rate", "S1!$B$2:$C$3", None)])
        ix = build_index(p)
    for _ in range(4):
        start = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, QROWS - 1)), data.draw(st.integers(0, QCOLS - 1)))
        expected = _levels(nodes, start)
        levels, _ = ix.dependents(*start)
        assert [_cells_of_level(lv) for lv in levels] == expected, start
        levels, _ = ix.dependents(*start, depth=1)
        assert [_cells_of_level(lv) for lv in levels] == expected[:1], start


def test_dependents_through_a_long_shared_formula_across_columns(tmp_path):
    """A shared formula filling many columns: each cell reads the one to its left and a
    fixed cell; the dependents of that fixed cell are the whole block, of A1 the first cell."""
    rows = {r: [cell_xml(f"A{r}", 1)] + [cell_xml(f"{column_letters(c)}{r}", 0, "A1+$A$5" if (r, c) == (1, 1) else None,
                                                  shared=(0, "B1:Z3" if (r, c) == (1, 1) else None))
                                         for c in range(1, 26)] for r in range(1, 4)}
    rows[5] = [cell_xml("A5", 2)]
    ix = build_index(write_xlsx(tmp_path / "wide.xlsx", [("S", sheet_xml(rows))]))
    levels, _ = ix.dependents(0, 4, 0, depth=1)
    assert _cells_of_level(levels[0]) == {(0, r, c) for r in range(3) for c in range(1, 26)}
    levels, _ = ix.dependents(0, 0, 0)
    assert [_cells_of_level(lv) for lv in levels] == [{(0, 0, c)} for c in range(1, 26)]


@settings(max_examples=400, deadline=None)
@given(FORMULA)
def test_shape_spans_hold_every_column_the_tokenizer_finds(text):
    cache = ShapeCache()
    sid, runs = cache.split(text)
    spans = _column_spans(cache.shapes[sid])
    if spans is None:
        return                                   # searched by every dependent query
    tmpl = cache.template(sid, runs)
    for e in tmpl.refs:                          # plain: cells and ranges of cells only
        assert e[0] == "rect" and e[2] and e[3] and not isinstance(e[1], tuple), (text, e)
        cols = [c for c, _ in e[3]]
        assert any(a <= min(cols) and max(cols) <= b for a, b in spans), (text, e, spans)
    try:
        refs = cache.refs(sid, runs)
    except SheetconvError:
        return
    for ref in refs:
        assert ref.name is None and ref.table is None and ref.parts is None and ref.c0 is not None, (text, ref)


def test_windows_of_every_height_down_one_column(tmp_path):
    """SUM(A{r}:A{r+h}) windows, h from 0 to 150 (some taller than the row window the
    search reads short references in), 400 rows: the readers of each input cell are the
    windows holding it, found by brute force."""
    rng = np.random.default_rng(7)
    n = 400
    heights = rng.integers(0, 151, n)
    rows = {r: [cell_xml(f"A{r}", 1)] for r in range(1, n + 152)}
    for r in range(1, n + 1):
        rows[r].append(cell_xml(f"B{r}", 0, f"SUM(A{r}:A{r + heights[r - 1]})"))
    ix = build_index(write_xlsx(tmp_path / "windows.xlsx", [("S", sheet_xml(rows))]))
    for row in [0, 1, 63, 64, 65, 130, 200, 399, 450, 549]:
        levels, _ = ix.dependents(0, row, 0)
        expected = {(0, r - 1, 1) for r in range(1, n + 1) if r - 1 <= row <= r - 1 + heights[r - 1]}
        assert [_cells_of_level(lv) for lv in levels] == ([expected] if expected else []), row


@pytest.mark.parametrize("spread", [40, 5000])
def test_touching_many_rectangles_against_brute_force(spread):
    """More than a few frontier rectangles: a painted box (small spread) or batches (large)."""
    rng = np.random.default_rng(spread)

    def rects(n, size):
        r0, c0 = rng.integers(0, spread, n), rng.integers(0, spread, n)
        return np.stack([r0, c0, r0 + rng.integers(0, size, n), c0 + rng.integers(0, size, n)], 1)
    front = [tuple(r) for r in rects(70, max(4, spread // 30)).tolist()]
    cand = rects(3000, max(6, spread // 30))
    got = _touching(front, *(cand[:, k] for k in (0, 1, 2, 3)))
    want = [any(a <= q1 and c >= q0 and b <= p1 and d >= p0 for q0, p0, q1, p1 in front) for a, b, c, d in cand.tolist()]
    assert got.tolist() == want and any(want)
