"""Hostile formula workbooks: time and peak memory of a trace, per case, side by side.

Each case is a small crafted xlsx (written once into --dir) and one query, run in a fresh
subprocess (so peak RSS is the query's own) with a time limit and an address-space cap:

    tok120        3 KB file, 120 distinct 8,000-character formulas; trace an unrelated cell
    tok120-one    the same file; trace one of the long formulas (one tokenizer run)
    tok120-deps   the same file; dependents of A1 (every formula tokenized once)
    long64k       one 63,999-character formula; trace it
    running-1M    B1 = A1, Bn = B(n-1) + An down all 1,048,576 rows; depth-all trace of the last
    sum150k       Z1 = SUM(A1:A150000), each An reads one scattered cell; depth-all trace of Z1
    empty-c       a ~5 MB xlsx holding ~800 MB of empty <c/> elements; trace a cell

    python bench/bench_hostile.py                                # this tree
    python bench/bench_hostile.py --tree /tmp/old-sheetconv      # and another, side by side

Printed: per case and tree, wall seconds and peak RSS (MB), or what stopped it (timeout,
the memory cap, or the one-line error it refused the file with).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from _craft_xlsx import cell_xml, sheet_xml, write_xlsx  # noqa: E402


def col(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def make_tok120(path):
    rows = {1: [cell_xml("A1", 1), cell_xml("B1", 0, "A1+1")]}
    for i in range(120):
        body = f"{col(i + 2)}1" + "+1" * ((8000 - 6) // 2)
        rows[i + 2] = [cell_xml(f"C{i + 2}", 0, body[:8000])]
    write_xlsx(path, [("Sheet1", sheet_xml(rows))])


def make_long(path):
    body = "A1" + "+1" * ((63_999 - 3) // 2)
    write_xlsx(path, [("Sheet1", sheet_xml({1: [cell_xml("A1", 1), cell_xml("B1", 0, body[:63_998])]}))])


def _stream_sheet(path, rows_xml):
    """A worksheet streamed into the zip (rows_xml yields XML pieces), as write_xlsx lays it out."""
    write_xlsx(path, [("Sheet1", sheet_xml({}))])
    tmp = str(path) + ".tmp"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                dst.writestr(info.filename, src.read(info))
        ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
        with dst.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{ns}"><sheetData>'.encode())
            for piece in rows_xml():
                fh.write(piece.encode())
            fh.write(b"</sheetData></worksheet>")
    os.replace(tmp, path)


def make_running(path):
    n = 1_048_576

    def rows():
        yield '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><f>A1</f><v>1</v></c></row>'
        yield '<row r="2"><c r="A2"><v>1</v></c><c r="B2"><f t="shared" si="0" ref="B2:B%d">B1+A2</f><v>2</v></c></row>' % n
        for r in range(3, n + 1):
            yield f'<row r="{r}"><c r="A{r}"><v>1</v></c><c r="B{r}"><f t="shared" si="0"/><v>{r}</v></c></row>'
    _stream_sheet(path, rows)


def make_sum150k(path):
    rnd = random.Random(5)
    n = 150_000

    def rows():
        yield f'<row r="1"><c r="A1"><f>C{rnd.randint(1, 900_000)}*1</f></c><c r="Z1"><f>SUM(A1:A{n})</f></c></row>'
        for r in range(2, n + 1):
            yield f'<row r="{r}"><c r="A{r}"><f>{col(rnd.randint(2, 5000))}{rnd.randint(1, 900_000)}*1</f></c></row>'
    _stream_sheet(path, rows)


def make_empty_c(path, total=800_000_000):
    """Empty cells with a little random whitespace, so the part compresses about 160:1 (a
    perfectly repetitive one is refused by the compression-ratio bound before any parsing)."""
    rnd = random.Random(1)
    block = "<c/>" * 32

    def rows():
        yield '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><f>A1</f></c></row>'
        r, written = 2, 0
        while written < total:
            row = f'<row r="{r}">' + "".join(block + " " * rnd.randrange(8) for _ in range(500)) + "</row>"
            written += len(row)
            r += 1
            yield row
    _stream_sheet(path, rows)


CASES = {
    "tok120": (make_tok120, "tok120.xlsx", "B1", None, False),
    "tok120-one": (make_tok120, "tok120.xlsx", "C50", None, False),
    "tok120-deps": (make_tok120, "tok120.xlsx", "A1", None, True),
    "long64k": (make_long, "long64k.xlsx", "B1", None, False),
    "running-1M": (make_running, "running.xlsx", "B1048576", None, False),
    "sum150k": (make_sum150k, "sum150k.xlsx", "Z1", None, False),
    "empty-c": (make_empty_c, "empty_c.xlsx", "B1", None, False),
}

CHILD = r"""
import resource, sys, time
import sheetconv
assert sheetconv.__file__.startswith(sys.argv[5]), sheetconv.__file__
t = time.perf_counter()
from sheetconv.errors import SheetconvError
from sheetconv.tracing import open_workbook
path, ref, depth, deps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
try:
    wb = open_workbook(path)
    tr = wb.trace(ref, None if depth == "all" else int(depth), dependents=deps)
    what = f"{len(tr.levels) if hasattr(tr, 'levels') else '?'} levels"
except SheetconvError as e:
    what = "refused: " + str(e)[-90:]
print(f"{time.perf_counter() - t:.2f}\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}\t{what}")
"""


def run(tree: str, path: Path, ref: str, deps: bool, timeout: float, cap_mb: int) -> str:
    env = dict(os.environ, PYTHONPATH=tree)

    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (cap_mb << 20, cap_mb << 20))
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), ref, "all", "1" if deps else "0", tree],
                             env=env, cwd=tree, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s (timeout)"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: {last[:90]}"
    secs, mb, what = out.stdout.strip().split("\t")
    return f"{float(secs):7.2f} s {float(mb):7.0f} MB  {what}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", default=[], help="another source tree to compare (repeatable)")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "sheetconv-bench-hostile"))
    ap.add_argument("--case", action="append", help="run only these cases")
    ap.add_argument("--timeout", type=float, default=150)
    ap.add_argument("--cap-mb", type=int, default=3000, help="address-space cap per run")
    args = ap.parse_args(argv)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    trees = [str(HERE)] + args.tree
    for name in args.case or list(CASES):
        make, fname, ref, _, deps = CASES[name]
        path = out / fname
        if not path.exists():
            make(path)
        size = path.stat().st_size
        for tree in trees:
            label = "this tree" if tree == str(HERE) else tree
            print(f"{name:12s} {size / 1e6:7.2f} MB file  {label:22s} {run(tree, path, ref, deps, args.timeout, args.cap_mb)}",
                  flush=True)


if __name__ == "__main__":
    main()
