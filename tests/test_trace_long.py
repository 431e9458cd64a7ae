"""Depth-all traces of long chains (running totals): exact levels, a summarised text, a
streamed JSON equal to the dict, and a peak-memory bound measured in a subprocess.

The workbooks are made by hand, so their precedents are known by construction: with
``A1..An`` constants, ``B1 = A1`` and ``Bk = B(k-1) + Ak``, level j of ``Bn``'s trace holds
``B(n-j)`` and ``A(n-j+1)`` (j < n), and level n holds ``A1``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
from _craft_xlsx import NS, sheet_xml, write_xlsx

from sheetconv.tracing import open_workbook


def running_total(path, n: int, column: str = "B"):
    """'B': A constants, B running totals (one shared formula); 'A': A1 = 1, Ak = A(k-1) + 1."""
    write_xlsx(path, [("Sheet1", sheet_xml({}))])
    if column == "B":
        rows = ['<row r="1"><c r="A1"><v>1</v></c><c r="B1"><f>A1</f><v>1</v></c></row>',
                f'<row r="2"><c r="A2"><v>1</v></c><c r="B2"><f t="shared" si="0" ref="B2:B{n}">B1+A2</f>'
                '<v>2</v></c></row>']
        rows += [f'<row r="{r}"><c r="A{r}"><v>1</v></c><c r="B{r}"><f t="shared" si="0"/><v>{r}</v></c></row>'
                 for r in range(3, n + 1)]
    else:
        rows = ['<row r="1"><c r="A1"><v>1</v></c></row>',
                f'<row r="2"><c r="A2"><f t="shared" si="0" ref="A2:A{n}">A1+1</f><v>2</v></c></row>']
        rows += [f'<row r="{r}"><c r="A{r}"><f t="shared" si="0"/><v>{r}</v></c></row>' for r in range(3, n + 1)]
    xml = f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{NS}"><sheetData>{"".join(rows)}</sheetData></worksheet>'
    tmp = str(path) + ".tmp"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, xml if info.filename == "xl/worksheets/sheet1.xml" else src.read(info))
    os.replace(tmp, path)
    return path


def expected_levels(n: int) -> list[list[tuple]]:
    """Per level, its cells (row, col), 0-based, by construction of the B running total."""
    return [sorted([(n - 1 - j, 1), (n - j, 0)]) for j in range(1, n)] + [[(0, 0)]]


def level_cells(trace) -> list[list[tuple]]:
    return [sorted(cell for region in level for cell in region.indices()) for level in trace.levels]


def test_running_total_levels_exact(tmp_path):
    n = 60
    wb = open_workbook(running_total(tmp_path / "run.xlsx", n))
    t = wb.precedents(f"B{n}", "all")
    assert t.depth == n
    assert level_cells(t) == expected_levels(n)
    assert t.levels[0] == t.levels[-n] and t.levels[-1] == list(t.levels)[-1]
    assert t.count() == 2 * n - 1
    assert [b["range"] for b in t.complete().meta["blocks"]] == [f"A1:A{n}"]      # the constants


def test_running_total_text_is_summarised(tmp_path):
    n = 300
    t = open_workbook(running_total(tmp_path / "run.xlsx", n)).precedents(f"B{n}")
    text = t.text()
    lines = text.splitlines()
    assert f"B{n} (formula): precedents, {n} levels" in lines[0]
    assert "level 1: 2 cells" in lines and f"  Sheet1!B{n - 1}, Sheet1!A{n}  (2)" in lines
    assert f"level {n}: 1 cell" in lines and "  Sheet1!A1  (1)" in lines
    assert "level 13: 2 cells" not in lines                                     # the middle is left out ...
    assert f"... {n - 16} more levels (--format json lists them all)" in lines  # ... and counted
    assert f"{n:,} levels, {2 * n - 1:,} cells in all" in lines
    assert len(lines) < 110                       # 16 levels, the blocks, the field and its map


def test_streamed_json_equals_the_dict(tmp_path):
    n = 40
    t = open_workbook(running_total(tmp_path / "run.xlsx", n)).precedents(f"B{n}")
    doc = json.loads(t.to_json())
    assert doc == json.loads(json.dumps(t.to_dict()))
    assert json.loads(t.to_json(indent=2)) == doc
    assert len(doc["levels"]) == len(doc["sheet_levels"]) == n
    assert doc["sheet_levels"][0][0]["ranges"] == [f"B{n - 1}", f"A{n}"]
    assert doc["sheet_levels"][-1][0]["ranges"] == ["A1"]


def test_chain_down_column_a(tmp_path):
    n = 500
    t = open_workbook(running_total(tmp_path / "chain.xlsx", n, column="A")).precedents(f"A{n}", None)
    assert t.depth == n - 1
    assert level_cells(t) == [[(n - 2 - j, 0)] for j in range(n - 1)]
    assert t.count() == n - 1


def test_depth_limit_and_dependents_of_a_long_chain(tmp_path):
    n = 500
    wb = open_workbook(running_total(tmp_path / "chain.xlsx", n, column="A"))
    assert level_cells(wb.precedents(f"A{n}", 3)) == [[(n - 2, 0)], [(n - 3, 0)], [(n - 4, 0)]]
    deps = wb.dependents("A1", None)
    assert deps.depth == n - 1 and level_cells(deps) == [[(j, 0)] for j in range(1, n)]


CHILD = r"""
import json, sys
from sheetconv.tracing import open_workbook
t = open_workbook(sys.argv[1]).precedents(sys.argv[2], None)
text = t.text()
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
levels = t.meta["sheet_levels"]
print(json.dumps({"depth": t.depth, "count": t.count(), "first": levels[0][0]["ranges"],
                  "last": levels[-1][0]["ranges"], "blocks": [b["range"] for b in t.meta["blocks"]],
                  "lines": len(text.splitlines()), "peak_kb": peak}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for the peak memory")
def test_running_total_200k_rows_bounded_memory(tmp_path):
    n = 200_000
    path = running_total(tmp_path / "run200k.xlsx", n)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), f"B{n}"], capture_output=True, text=True,
                         env=env, check=True, timeout=600)
    got = json.loads(out.stdout)
    assert got["depth"] == n and got["count"] == 2 * n - 1
    assert got["first"] == [f"B{n - 1}", f"A{n}"] and got["last"] == ["A1"]
    assert got["blocks"] == [f"A1:A{n}"] and got["lines"] < 110
    assert got["peak_kb"] < 250_000, f"peak {got['peak_kb'] / 1024:.0f} MB for a {n:,}-level trace"


def test_levels_compacted_at_once_match_each_level_alone(monkeypatch):
    """LevelRects.compact (vectorised, in chunks) against compact_rects level by level, and
    against brute-force cell sets: the same cells, disjoint rectangles."""
    import random
    from array import array

    import sheetconv.formulagraph.index as index
    from sheetconv.formulagraph.index import LevelRects, compact_rects

    rnd = random.Random(7)
    for chunk in (1 << 16, 5):                    # one chunk, and chunks of a few rectangles
        monkeypatch.setattr(index, "_CHUNK", chunk)
        for trial in range(200):
            buf, nlevels = array("i"), rnd.randint(1, 8)
            for lv in range(nlevels):
                for _ in range(rnd.randint(0, 12)):
                    t, r, c = rnd.randint(0, 2) if trial % 2 else 0, rnd.randint(0, 6), rnd.randint(0, 6)
                    big = trial % 3 and rnd.random() < 0.3
                    buf.extend((lv, t, r, c, r + rnd.randint(0, 3) * big, c + rnd.randint(0, 3) * big))
            raw = LevelRects.from_buffer(buf, nlevels)
            got = list(raw.compact())
            assert got == [{t: compact_rects(v) for t, v in sorted(level.items())} for level in raw]
            for before, after in zip(raw, got):
                for t in before:
                    cells = [(y, x) for a, b, c, d in after[t] for y in range(a, c + 1) for x in range(b, d + 1)]
                    assert len(cells) == len(set(cells))
                    assert set(cells) == {(y, x) for a, b, c, d in before[t]
                                          for y in range(a, c + 1) for x in range(b, d + 1)}


def test_compact_rects_of_a_cell_array_matches_tuples():
    import random

    import numpy as np

    from sheetconv.formulagraph.index import compact_rects

    rnd = random.Random(3)
    for _ in range(200):
        cells = [(rnd.randint(0, 12), rnd.randint(0, 12)) for _ in range(rnd.randint(1, 60))]
        rects = [(r, c, r, c) for r, c in cells]
        got = compact_rects(np.asarray(rects, np.int32))
        assert got == compact_rects(rects)
        covered = [(y, x) for a, b, c, d in got for y in range(a, c + 1) for x in range(b, d + 1)]
        assert sorted(covered) == sorted(set(cells))
