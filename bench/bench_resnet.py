"""Graph networks as workbooks: build, trace and check time of torchvision's resnet18 front
(stem, max pool, two BasicBlocks at 3x64x64) and of the resnet-mini preset.

Each step is timed in this process, in order (torch imported before the first timing):

- from_torch: the front traced with torch.fx (BatchNorm folded into the convs, so the
  workbook's cells are convs, ReLUs, the max pool and the residual adds);
- build: ``write_workbook`` (formulas, stored values, metadata);
- open + trace: ``open_workbook`` then every level of a cell's precedents (down to the input),
  and one level;
- check: ``check_workbook`` (every formula read back and compared with the engine's
  precedents, every stored value with the engine's activations).

    python bench/bench_resnet.py              # both networks, about a minute
    python bench/bench_resnet.py --only mini

Printed per row: wall seconds and formulas per second where it applies. Timings vary with
the machine's load: compare rows of one run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def timed(label: str, fn, per: int | None = None):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    rate = f"   {per / dt:>12,.0f} formulas/s" if per else ""
    print(f"  {label:<34}{dt:>9.2f} s{rate}", flush=True)
    return out


def run(name: str, net, x, cell: str, folder: Path):
    import sheetconv as sc
    from sheetconv.check import check_workbook
    from sheetconv.sheet.layout import Layout
    from sheetconv.xlsx.writer import formula_count
    n = formula_count(net, Layout.for_network(net))
    print(f"{name}: {len(net)} layers, {net.param_count():,} parameters, {n:,} formulas")
    path = folder / f"{name}.xlsx"
    try:
        timed("build (write_workbook)", lambda: sc.write_workbook(net, x, path, force=True), n)
    except sc.SheetconvError as e:          # a layer kind the sheet cannot lay out yet
        print(f"  not built: {e}")
        return
    print(f"  {'file size':<34}{path.stat().st_size / 1e6:>9.1f} MB")
    book = timed("open_workbook", lambda: sc.open_workbook(path))
    timed(f"trace {cell}, all levels", lambda: book.precedents(cell, None).complete())
    timed(f"trace {cell}, one level", lambda: book.precedents(cell, 1).complete())
    report = timed("check (check_workbook)", lambda: check_workbook(path), n)
    print(f"  check ok: {getattr(report, 'ok', report)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["front", "mini"], default=None)
    args = ap.parse_args(argv)
    import torch
    from test_resnet import ResNet18Front

    import sheetconv as sc
    print(f"python bench/bench_resnet.py{' --only ' + args.only if args.only else ''}")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        if args.only in (None, "front"):
            torch.manual_seed(0)
            model = ResNet18Front().double().eval()
            net = timed("resnet18 front: from_torch (fx)",
                        lambda: sc.from_torch(model, (3, 64, 64), fold_batchnorm=True))
            x = np.random.default_rng(0).standard_normal((3, 64, 64))
            run("resnet18-front", net, x, "add2[5,7,7]", folder)
        if args.only in (None, "mini"):
            net = timed("resnet-mini: preset", lambda: sc.preset("resnet-mini"))
            run("resnet-mini", net, sc.digit(0), "fc[3]", folder)


if __name__ == "__main__":
    main()
