"""check and trace --highlight: time and peak memory of the command as a user runs it.

Every row runs ``python -m sheetconv ...`` in a fresh process (imports included) and reads
that process's own peak resident memory (``os.wait4``'s rusage). Workbooks are built
into a temporary folder with ``sheetconv build`` (timed too, as the reference for the
ratio target):

- conv-example (the preset, digit 0);
- a 196,608-formula workbook: 3x256x256 input, Conv2d(3,8,3,s2,p1)+ReLU, Conv2d(8,16,3,s2,p1)+ReLU;
- the million-formula workbook: 3x512x512 through conv(3,12), conv(12,16), conv(16,16),
  3x3, stride 2, padding 1, with ReLU (1,114,112 formulas);
- a 10,000-layer workbook: 10,000 ReLU layers on a 1x2x2 input.

    python bench/bench_check.py                 # everything (several minutes; the deep build alone ~1 min)
    python bench/bench_check.py --skip-big --skip-deep

Printed per row: wall and CPU seconds, peak MB, the target; ratios against the build of
the same workbook where the target is one. Timings vary with the machine's load: compare
rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(args: list[str]) -> dict:
    """Run ``python -m sheetconv *args``; wall seconds, CPU seconds, peak MB, exit status."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sheetconv", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"sheetconv {' '.join(args)} exited {code}: {err.strip()[:300]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "mb": usage.ru_maxrss / 1024}


def row(what: str, m: dict, target: str, ok: bool | None = None, extra: str = ""):
    mark = "" if ok is None else ("  ok" if ok else "  MISSED")
    print(f"{what:<52}{m['wall']:>8.2f} s{m['cpu']:>8.2f} s{m['mb']:>8.0f} MB   {extra:<16}{target}{mark}", flush=True)


def conv_spec(path: Path, input_shape, channels) -> Path:
    layers = []
    for c in channels:
        layers += [{"type": "Conv2d", "out_channels": c, "kernel_size": 3, "stride": 2, "padding": 1},
                   {"type": "ReLU"}]
    path.write_text(json.dumps({"input_shape": list(input_shape), "layers": layers}))
    return path


def build(folder: Path, name: str, spec: Path, shape) -> tuple[Path, dict]:
    npy = folder / f"{name}.npy"
    np.save(npy, np.random.default_rng(0).uniform(size=shape))
    out = folder / f"{name}.xlsx"
    m = run(["build", "--spec", str(spec), "--npy", str(npy), "--out", str(out), "--force", "--quiet"])
    return out, m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-big", action="store_true", help="leave out the million-formula workbook")
    ap.add_argument("--skip-deep", action="store_true", help="leave out the 10,000-layer workbook")
    ap.add_argument("--dir", default=None, help="folder for the workbooks (default: a temporary one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sheetconv-bench-check-") as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{'measure':<52}{'wall':>10}{'cpu':>10}{'peak':>11}   {'ratio':<16}target")

        small = folder / "conv-example.xlsx"
        run(["build", "--preset", "conv-example", "--out", str(small), "--force", "--quiet"])
        m = run(["check", str(small), "--quiet"])
        row("check conv-example", m, "< 1 s wall", m["wall"] < 1)
        m = run(["check", str(small), "--quiet", "--torch"])
        row("check conv-example --torch", m, "(torch imported)")

        spec = conv_spec(folder / "mid.json", (3, 256, 256), (8, 16))
        mid, b = build(folder, "mid", spec, (3, 256, 256))
        row("build 196,608 formulas (3x256x256, conv 8, 16)", b, "(reference)")
        m = run(["check", str(mid), "--quiet"])
        ratio = m["wall"] / b["wall"]
        row("check 196,608 formulas", m, "<= 3x build, < 250 MB", ratio <= 3 and m["mb"] < 250,
            f"{ratio:.2f}x build")

        if not args.skip_big:
            spec = conv_spec(folder / "big.json", (3, 512, 512), (12, 16, 16))
            big, b = build(folder, "big", spec, (3, 512, 512))
            row("build 1,114,112 formulas (3x512x512)", b, "(reference)")
            m = run(["check", str(big), "--quiet"])
            row("check 1,114,112 formulas", m, "< 60 s, < 500 MB", m["wall"] < 60 and m["mb"] < 500,
                f"{m['wall'] / b['wall']:.2f}x build")
            hl = folder / "big-traced.xlsx"
            m = run(["trace", str(big), "conv3[5,30,30]", "--highlight", str(hl), "--force"])
            row("trace conv3[5,30,30] --highlight (1,114,112 formulas)", m, "< 10 s", m["wall"] < 10)
            m = run(["check", str(hl), "--quiet"])
            row("check the highlighted copy", m, "exit 0 (stored values kept)", True)

        if not args.skip_deep:
            spec = folder / "deep.json"
            spec.write_text(json.dumps({"input_shape": [1, 2, 2], "layers": [{"type": "ReLU"}] * 10_000}))
            deep, b = build(folder, "deep", spec, (1, 2, 2))
            row("build 10,000 ReLU layers (1x2x2 input)", b, "(reference)")
            m = run(["check", str(deep), "--quiet"])
            row("check 10,000 layers", m, "< 20 s", m["wall"] < 20)


if __name__ == "__main__":
    main()
