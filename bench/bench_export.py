"""Export speed and memory: sheetconv's writer against XlsxWriter's write_formula and openpyxl's write_only.

The workload is the issue's million-formula workbook: a 3x512x512 input through
conv(3, 12), conv(12, 16), conv(16, 16), all 3x3, stride 2, padding 1, with ReLU
(1,114,112 formula cells, each with its stored value). Each side runs in a fresh
subprocess, so its peak resident memory (ru_maxrss) is its own.

    python bench/bench_export.py                    # full run (the baseline takes minutes)
    python bench/bench_export.py --baseline-cells 200000   # baseline on fewer cells

The baselines write the same kind of cells (a two-channel 3x3 conv formula with its
stored value) through each library's public API in its streaming mode.

Targets: >= 250,000 formula cells/s and <= 300 MB peak for sheetconv's writer.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TARGET_RATE = 250_000
TARGET_MB = 300


def bench_net():
    from sheetconv import Conv2d, Network, ReLU
    net = Network([Conv2d(3, 12, 3, stride=2, padding=1), ReLU(),
                   Conv2d(12, 16, 3, stride=2, padding=1), ReLU(),
                   Conv2d(16, 16, 3, stride=2, padding=1), ReLU()], input_shape=(3, 512, 512))
    return net.init_weights(0)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_sheetconv(out: str) -> dict:
    import numpy as np

    from sheetconv.xlsx.writer import write_workbook
    net = bench_net()
    x = np.random.default_rng(0).uniform(size=net.input_shape)
    t, cpu = time.perf_counter(), time.process_time()
    result = write_workbook(net, x, out, force=True)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"formulas": result.formulas, "cells": result.cells, "seconds": seconds, "cpu": cpu,
            "bytes": os.path.getsize(out), "peak_mb": _peak_mb()}


def child_xlsxwriter(out: str, n: int) -> dict:
    """n formula cells with values through XlsxWriter's public write_formula, constant_memory."""
    import xlsxwriter
    from xlsxwriter.utility import xl_col_to_name
    width = 256
    cols = [xl_col_to_name(c) for c in range(width + 3)]
    t, cpu = time.perf_counter(), time.process_time()
    wb = xlsxwriter.Workbook(out, {"constant_memory": True})
    ws = wb.add_worksheet("conv")
    for i in range(n):
        r, c, f = _bench_formula(cols, i, width)
        ws.write_formula(r, c, f, None, 0.1234567890123 * (i % 97))
    wb.close()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"formulas": n, "seconds": seconds, "cpu": cpu, "bytes": os.path.getsize(out), "peak_mb": _peak_mb()}


def _bench_formula(cols, i: int, width: int) -> tuple[int, int, str]:
    r, c = divmod(i, width)
    return r, c, (f"=MAX(0,SUMPRODUCT({cols[c]}{r + 3}:{cols[c + 2]}{r + 5},$AH$3:$AJ$5)"
                  f"+SUMPRODUCT({cols[c]}{r + 33}:{cols[c + 2]}{r + 35},$AH$7:$AJ$9)+$AK$3)")


def child_openpyxl(out: str, n: int) -> dict:
    """n formula cells through openpyxl's write_only mode (it stores no cached values)."""
    import openpyxl
    from openpyxl.utils import get_column_letter
    width = 256
    cols = [get_column_letter(c + 1) for c in range(width + 3)]
    t, cpu = time.perf_counter(), time.process_time()
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("conv")
    row = []
    for i in range(n):
        r, c, f = _bench_formula(cols, i, width)
        row.append(f)
        if c == width - 1 or i == n - 1:
            ws.append(row)
            row = []
    wb.save(out)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"formulas": n, "seconds": seconds, "cpu": cpu, "bytes": os.path.getsize(out), "peak_mb": _peak_mb()}


def run_child(*args) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-cells", type=int, default=None,
                    help="formula cells for the XlsxWriter baseline (default: as many as sheetconv writes)")
    args = ap.parse_args()
    if args.child:
        kind, out, *rest = args.child
        res = (child_sheetconv(out) if kind == "sheetconv" else child_xlsxwriter(out, int(rest[0]))
               if kind == "xlsxwriter" else child_openpyxl(out, int(rest[0])))
        print(json.dumps(res))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_child("sheetconv", os.path.join(tmp, "ours.xlsx"))
        n = args.baseline_cells or ours["formulas"]
        base = run_child("xlsxwriter", os.path.join(tmp, "base.xlsx"), str(n))
        opx = run_child("openpyxl", os.path.join(tmp, "opx.xlsx"), str(n))
    rate, base_rate = ours["formulas"] / ours["seconds"], base["formulas"] / base["seconds"]
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes slow the wall-clock figures)")
    print("workload: 3x512x512 -> conv(3,12) -> conv(12,16) -> conv(16,16), 3x3 stride 2 padding 1, ReLU")
    print(f"{'':28}{'sheetconv':>14}{'XlsxWriter write_formula':>28}{'openpyxl write_only':>22}")
    rows = [("formula cells", "formulas", ",", lambda d: d["formulas"]), ("seconds", "", ".2f", lambda d: d["seconds"]),
            ("CPU seconds", "", ".2f", lambda d: d["cpu"]),
            ("formula cells / s", "", ",.0f", lambda d: d["formulas"] / d["seconds"]),
            ("formula cells / CPU s", "", ",.0f", lambda d: d["formulas"] / d["cpu"]),
            ("peak memory (MB, maxrss)", "", ".0f", lambda d: d["peak_mb"]),
            ("file size (MB)", "", ".1f", lambda d: d["bytes"] / 1e6)]
    for label, _, fmt, get in rows:
        print(f"{label:28}{get(ours):>14{fmt}}{get(base):>28{fmt}}{get(opx):>22{fmt}}")
    print(f"speed ratio sheetconv / XlsxWriter: {rate / base_rate:.1f}x, / openpyxl: "
          f"{rate / (opx['formulas'] / opx['seconds']):.1f}x; all cells written by sheetconv "
          f"(constants and titles too): {ours['cells']:,}")
    print(f"targets: >= {TARGET_RATE:,} cells/s: {'met' if rate >= TARGET_RATE else 'NOT met'}; "
          f"<= {TARGET_MB} MB: {'met' if ours['peak_mb'] <= TARGET_MB else 'NOT met'}")


if __name__ == "__main__":
    main()
