"""Trace speed: the precedent index against openpyxl's read-only reader, query latency,
the analytic model, and pycel (a peer that builds a dependency graph from formulas).

Workload: the issue's million-formula workbook, written by sheetconv.xlsx.writer: a 3x512x512
input through conv(3, 12), conv(12, 16), conv(16, 16), all 3x3, stride 2, padding 1, with
ReLU (1,114,112 formulas). The formula path is timed on it as on any xlsx (it reads the
formulas, not the embedded spec).

    python bench/bench_trace.py                       # writes the workbook once, then reuses it
    python bench/bench_trace.py --book /tmp/big.xlsx --rounds 3

Printed: index build vs openpyxl read-only iteration (wall and CPU seconds, best of
--rounds, interleaved; target ratio <= 1.5), a depth-all precedent query from the last
layer (target < 1 s), a dependent query from an input pixel, the analytic trace
(target < 1 ms), and pycel answering the same conv2 query on conv-example.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np


def bench_net():
    from sheetconv import Conv2d, Network, ReLU
    net = Network([Conv2d(3, 12, 3, stride=2, padding=1), ReLU(),
                   Conv2d(12, 16, 3, stride=2, padding=1), ReLU(),
                   Conv2d(16, 16, 3, stride=2, padding=1), ReLU()], input_shape=(3, 512, 512))
    return net.init_weights(0)


def timed(fn):
    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def rss_mb() -> float:
    """Resident memory now (not the peak), in MB; 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return 0.0


def openpyxl_iterate(path):
    import openpyxl
    wb = openpyxl.load_workbook(path, read_only=True)
    n = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            n += len(row)
    wb.close()
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--book", default=os.path.join(tempfile.gettempdir(), "sheetconv-bench-trace-1M.xlsx"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--small", default=None, help="conv-example workbook for the pycel comparison")
    args = ap.parse_args(argv)

    import sheetconv as sc
    from sheetconv.formulagraph.index import build_index
    from sheetconv.sheet.layout import Layout
    from sheetconv.tracing import FormulaWorkbook, open_workbook
    from sheetconv.xlsx.writer import write_workbook

    net = bench_net()
    book = Path(args.book)
    if not book.exists():
        x = np.random.default_rng(0).uniform(size=net.input_shape)
        r, wall, _ = timed(lambda: write_workbook(net, x, book, force=True))
        print(f"wrote {book}: {r.formulas:,} formulas in {wall:.1f} s")
    print(f"workbook: {book} ({book.stat().st_size / 1e6:.1f} MB)")

    # ---------------------------------------------------------------- index build vs openpyxl
    best = {"index": [1e9, 1e9], "openpyxl": [1e9, 1e9]}
    ix = None
    for k in range(args.rounds):
        for name in ("openpyxl", "index") if k % 2 == 0 else ("index", "openpyxl"):
            if name == "index":
                ix = None
                gc.collect()
                ix, wall, cpu = timed(lambda: build_index(book))
            else:
                n_cells, wall, cpu = timed(lambda: openpyxl_iterate(book))
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
            print(f"  round {k + 1}: {name:8s} {wall:6.2f} s wall  {cpu:6.2f} s cpu")
    (iw, ic), (ow, oc) = best["index"], best["openpyxl"]
    print(f"index build      {iw:7.2f} s wall {ic:7.2f} s cpu   ({ix.nformulas:,} formulas, {len(ix.cache)} shapes)")
    print(f"openpyxl r/o     {ow:7.2f} s wall {oc:7.2f} s cpu   (iterating {n_cells:,} cells, values_only)")
    print(f"ratio            {iw / ow:7.2f} wall     {ic / oc:7.2f} cpu   (target <= 1.5)")
    import resource
    print(f"peak RSS so far  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.0f} MB "
          f"(index: {ix.memory_bytes() / 1e6:.0f} MB of arrays)")

    # ---------------------------------------------------------------- queries on the index
    fw = FormulaWorkbook(str(book), ix, "conv")
    layout = Layout.for_network(net)
    last = net.names[-1]
    _, h, w = net.grid(last)
    cell = (last, 7, h // 2, w // 2)
    row, col = layout.cell_of(cell)
    tr, wall, _ = timed(lambda: fw.precedents(("conv", row, col)))
    n = tr.count()
    print(f"precedents depth all of {last}[7,{h // 2},{w // 2}] ({tr.meta['cell']}): {wall * 1e3:8.1f} ms "
          f"({tr.depth} levels, {n:,} cells; target < 1 s)")
    tr, wall, _ = timed(lambda: fw.precedents(("conv", row, col)))
    print(f"  again (formula references cached):                      {wall * 1e3:8.1f} ms")
    prow, pcol = layout.cell_of(("input", 0, 256, 256))
    before, rss = ix.memory_bytes(), rss_mb()
    tr, wall, _ = timed(lambda: fw.dependents(("conv", prow, pcol)))
    print(f"dependents depth all of input[0,256,256], first call:     {wall * 1e3:8.1f} ms "
          f"(groups formulas by shape; {tr.depth} levels, {tr.count():,} cells; target < 2 s)")
    tr, wall, _ = timed(lambda: fw.dependents(("conv", prow, pcol)))
    print(f"  again:                                                  {wall * 1e3:8.1f} ms")
    prow, pcol = layout.cell_of(("input", 2, 0, 511))
    tr, wall, _ = timed(lambda: fw.dependents(("conv", prow, pcol)))
    print(f"  input[2,0,511] (a corner, first call):                  {wall * 1e3:8.1f} ms ({tr.count():,} cells)")
    print(f"  index arrays {before / 1e6:.0f} MB -> {ix.memory_bytes() / 1e6:.0f} MB after the dependent queries; "
          f"RSS {rss:.0f} -> {rss_mb():.0f} MB")

    # ---------------------------------------------------------------- analytic
    reps = 2000
    t_engine = timeit.timeit(lambda: net.precedents(cell, None), number=reps) / reps
    print(f"analytic precedents (net.precedents, depth all):          {t_engine * 1e6:8.1f} us (target < 1 ms)")
    small_net = sc.preset("conv-example")
    t_small = timeit.timeit(lambda: small_net.precedents(("conv2", 0, 3, 3), None), number=reps) / reps
    print(f"analytic precedents, conv-example conv2[0,3,3]:           {t_small * 1e6:8.1f} us")

    # ---------------------------------------------------------------- pycel on conv-example
    small = Path(args.small) if args.small else Path(tempfile.gettempdir()) / "sheetconv-bench-conv-example.xlsx"
    if not small.exists():
        write_workbook(small_net, sc.digit(0), small, force=True)
    wb = open_workbook(small)
    a1 = wb.precedents("conv2[0,3,3]").meta["cell"]
    t_wb = timeit.timeit(lambda: wb.precedents("conv2[0,3,3]").count(), number=200) / 200
    print(f"open_workbook(conv-example).precedents (analytic, mapped): {t_wb * 1e3:7.3f} ms")
    fw_small, wall_ix, _ = timed(lambda: FormulaWorkbook(str(small), build_index(small), "conv"))
    ours, wall_q, _ = timed(lambda: fw_small.precedents(a1))
    print(f"sheetconv formula index on conv-example: build {wall_ix * 1e3:7.1f} ms, query {wall_q * 1e3:6.2f} ms, "
          f"{ours.count()} cells")
    try:
        import networkx as nx
        from pycel import ExcelCompiler
    except ImportError as e:                      # pragma: no cover
        print(f"pycel not available: {e}")
        return 0
    (xl, _), wall_load, _ = timed(lambda: (lambda x: (x, x.evaluate(a1)))(ExcelCompiler(filename=str(small))))
    anc, wall_anc, _ = timed(lambda: nx.ancestors(xl.dep_graph, xl.cell_map[a1]))
    cells = {n.address.address for n in anc if not getattr(n.address, "is_range", False)}
    print(f"pycel on conv-example: load + evaluate (builds its graph) {wall_load * 1e3:7.1f} ms, "
          f"ancestors {wall_anc * 1e3:6.2f} ms, {len(cells)} cells "
          f"({'same' if len(cells) == ours.count() else 'DIFFERENT'} count as sheetconv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
