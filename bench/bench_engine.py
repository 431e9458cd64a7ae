"""Benchmark: the NumPy engine against PyTorch's CPU forward, and analytic dependency queries.

    python bench/bench_engine.py [--repeats 10] [--rounds 5] [--threads 2] [--quick] [--baseline OLD_KERNELS.py]
                                 [--only TEXT] [--dtype float32|float64]

Every row runs the same workload on the same data with NumPy and with torch, both
pinned to the same thread count (threadpoolctl for NumPy's BLAS, torch.set_num_threads
for torch). Runs are interleaved: each round goes through every row, and within a row
runs a block of NumPy calls, then a block of torch calls, so both engines see the same
load over the run; the table shows the median over all rounds, NumPy's median over
torch's (target <= 1.0x) and the GFLOP/s of both (2 x multiply-adds of the convolutions
and linear layers over the median time). Blocks, not call-by-call alternation, with a
pause between them: after a call, torch's OpenMP threads and OpenBLAS's threads spin
for a while, and with two threads on two cores a call made meanwhile by the other
engine competes with them (measured: the 8x3x224x224 stem took 87 ms right after a
torch call against 33 ms alone), which measures the two libraries' interference rather
than either engine.

Two rows per network workload: ``kernels`` calls the functions of
``sheetconv.nn.kernels`` directly, layer after layer, as the layers do (float weights
cast once, outside the timing); ``Network.forward`` goes through the public API,
including its input and parameter checks. The difference is the network-level overhead.

OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE at start-up; where they are set
(some machines set them for old OpenBLAS builds) they can slow float32 GEMMs. The
header says whether they were; to measure without them, unset both for the one command:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_engine.py``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import deque

import numpy as np

import sheetconv as sc
from sheetconv.nn import kernels

TARGET = 1.0
PAUSE = 0.2       # seconds between engines' blocks: idle OpenMP and OpenBLAS threads spin for up to ~0.1 s


def blas_info() -> str:
    """What BLAS NumPy calls, and which kernel OpenBLAS picked."""
    from threadpoolctl import threadpool_info
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return (f"{pool['internal_api']} {pool.get('version')}, kernel {pool.get('architecture')}, "
                    f"{pool.get('threading_layer')}, {pool['num_threads']} threads")
    return "unknown"


def torch_model(net, torch, dtype):
    """torch.nn.Sequential with the network's weights."""
    nn = torch.nn
    mods = []
    for layer in net.layers:
        if layer.kind == "conv":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, bias=layer.bias is not None)
        elif layer.kind == "linear":
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        elif layer.kind == "maxpool":
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif layer.kind == "avgpool":
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, count_include_pad=layer.count_include_pad)
        else:
            m = nn.ReLU()
        if layer.kind in ("conv", "linear"):
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.weight))
                if layer.bias is not None:
                    m.bias.copy_(torch.from_numpy(layer.bias))
        mods.append(m)
        if layer.relu and layer.kind != "relu":
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods).eval()
    return model.double() if dtype == np.float64 else model.float()


def kernel_chain(net, dtype, kernels=kernels):
    """The network's forward pass as direct calls of the kernels (weights cast once, here).
    With another ``kernels`` module (--baseline), what it lacks runs through the layer."""
    steps = []
    for layer in net.layers:
        if not hasattr(kernels, {"conv": "conv2d", "linear": "linear", "maxpool": "max_pool2d",
                                 "avgpool": "avg_pool2d", "relu": "relu"}.get(layer.kind, "conv2d")):
            steps.append(layer.forward)
        elif layer.kind == "conv":
            w = layer.weight.astype(dtype)
            b = None if layer.bias is None else layer.bias.astype(dtype)
            steps.append(lambda h, layer=layer, w=w, b=b: kernels.conv2d(
                h, w, b, layer.stride, layer.padding, layer.dilation, layer.relu))
        elif layer.kind == "linear":
            w = layer.weight.astype(dtype)
            b = None if layer.bias is None else layer.bias.astype(dtype)
            steps.append(lambda h, layer=layer, w=w, b=b: kernels.linear(h, w, b, layer.relu))
        elif layer.kind == "maxpool":
            steps.append(lambda h, layer=layer: kernels.max_pool2d(h, layer.kernel_size, layer.stride, layer.padding))
        elif layer.kind == "avgpool":
            steps.append(lambda h, layer=layer: kernels.avg_pool2d(h, layer.kernel_size, layer.stride, layer.padding,
                                                                   layer.count_include_pad))
        elif layer.kind == "relu":
            steps.append(kernels.relu)
        elif layer.kind == "flatten":
            steps.append(lambda h: h.reshape(h.shape[0], -1))

    def run(x):
        for step in steps:
            x = step(x)
        return x
    return run


class Row:
    """One workload: a NumPy callable and a torch callable on the same input."""

    def __init__(self, title, ours, theirs, flops, repeats, baseline=None):
        self.title, self.ours, self.theirs, self.flops, self.repeats = title, ours, theirs, flops, repeats
        self.baseline = baseline
        self.t_ours: list[float] = []
        self.t_theirs: list[float] = []
        self.t_base: list[float] = []

    def check(self):
        a = np.asarray(self.ours())
        b = self.theirs().numpy()
        self.err = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
        if self.baseline is not None:
            c = np.asarray(self.baseline())
            self.base_err = float(np.abs(c - b).max() / max(np.abs(b).max(), 1e-30))

    def round(self):
        """A block of calls per engine (a warm-up call, then ``repeats`` timed ones), with a
        pause between blocks: each engine's idle threads stop spinning before the other runs."""
        fns = [(self.ours, self.t_ours), (self.theirs, self.t_theirs)]
        if self.baseline is not None:
            fns.append((self.baseline, self.t_base))
        for fn, out in fns:
            fn()
            for _ in range(self.repeats):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
            time.sleep(PAUSE)

    def line(self):
        mo, mt = statistics.median(self.t_ours), statistics.median(self.t_theirs)
        ratio = mo / mt
        verdict = "met" if ratio <= TARGET else "MISSED"
        flops = (f"{self.flops / mo / 1e9:7.1f} {self.flops / mt / 1e9:7.1f}" if self.flops
                 else f"{'-':>7} {'-':>7}")
        base = ""
        if self.t_base:
            mb = statistics.median(self.t_base)
            base = f"  baseline {mb * 1e3:9.3f} ms {mb / mt:5.2f}x  {self.base_err:.0e}"
        return (f"{self.title:<58} {mo * 1e3:9.3f} {mt * 1e3:9.3f} {ratio:6.2f}x  <= {TARGET:.1f}x {verdict:<6} "
                f"{flops}  {self.err:.0e}{base}")


def network_rows_of(title, net, x, dtype, torch, repeats, baseline):
    dt = np.dtype(dtype)
    x = x.astype(dt)
    model = torch_model(net, torch, dt)
    tx = torch.from_numpy(x)
    flops = 2 * net.macs() * x.shape[0]
    chain = kernel_chain(net, dt)
    base = None if baseline is None else (lambda chain=kernel_chain(net, dt, baseline): chain(x))
    tag = f"{title}, {dt.name}"
    return [Row(f"{tag}: kernels", lambda: chain(x), lambda: model(tx), flops, repeats, base),
            Row(f"{tag}: Network.forward", lambda: net.forward(x, dt), lambda: model(tx), flops, repeats)]


def build_rows(torch, dtype, repeats, quick, baseline):
    rng = np.random.default_rng(0)
    rows = []

    def network_rows(title, net, x, dtype, torch, repeats):
        return network_rows_of(title, net, x, dtype, torch, repeats, baseline)
    simple = sc.preset("simple-cnn", seed=0)
    rows += network_rows("simple-cnn 64x1x28x28", simple, rng.random((64, 1, 28, 28)), dtype, torch, repeats * 3)
    rows += network_rows("simple-cnn 1x1x28x28", simple, rng.random((1, 1, 28, 28)), dtype, torch, repeats * 10)
    rows += network_rows("simple-cnn 1024x1x28x28", simple, rng.random((1024, 1, 28, 28)), dtype, torch,
                         max(3, repeats // 2))
    conv = sc.Network([sc.Conv2d(64, 64, 3, stride=2, padding=1)], input_shape=(64, 56, 56)).init_weights(0)
    rows += network_rows("Conv2d(64,64,3,s2,p1) 8x64x56x56", conv, rng.random((8, 64, 56, 56)), dtype, torch,
                         repeats)
    if not quick:
        stem = sc.Network([sc.Conv2d(3, 64, 7, stride=2, padding=3), sc.MaxPool2d(3, 2, 1)],
                          input_shape=(3, 224, 224)).init_weights(0)
        # stem: Conv2d(3, 64, 7, stride 2, padding 3) + MaxPool2d(3, 2, 1), ResNet's first layers
        rows += network_rows("stem conv7x7s2+maxpool3s2 8x3x224x224", stem,
                             rng.random((8, 3, 224, 224)), dtype, torch, max(3, repeats // 2))
    return rows


def bench_engine(torch, repeats, rounds, quick, baseline, only=None, dtypes=(np.float32, np.float64)):
    print(f"{'workload (median of interleaved runs)':<58} {'numpy ms':>9} {'torch ms':>9} {'ratio':>7}  "
          f"{'target':<7} {'':<6} {'GFLOP/s':>7} {'(torch)':>7}  max rel diff"
          + ("  (baseline: ms, / torch, max rel diff)" if baseline is not None else ""))
    for dtype in dtypes:
        rows = [row for row in build_rows(torch, dtype, repeats, quick, baseline) if not only or only in row.title]
        with torch.inference_mode():
            for row in rows:
                row.check()
            for _ in range(rounds):
                for row in rows:
                    row.round()
        for row in rows:
            print(row.line(), flush=True)


# ---------------------------------------------------------------- dependency queries

def brute_precedents(net, cell):
    """Walk the cell graph breadth first, listing each cell's inputs by loops over kernel taps."""
    index = {name: i for i, name in enumerate(net.names)}
    seen, todo = set(), deque([cell])
    while todo:
        name, c, r, q = todo.popleft()
        i = index[name]
        if i == 0:
            continue
        layer, src = net.layers[i - 1], net.names[i - 1]
        cin, hin, win = net.grid(src)
        wh, ww = layer.windows
        chans = range(cin) if layer.channels == "all" else (c,)
        for ci in chans:
            for a in range(wh.kernel):
                y = r * wh.stride - wh.padding + a * wh.dilation
                if not 0 <= y < hin:
                    continue
                for b in range(ww.kernel):
                    x = q * ww.stride - ww.padding + b * ww.dilation
                    if 0 <= x < win:
                        key = (src, ci, y, x)
                        if key not in seen:
                            seen.add(key)
                            todo.append(key)
    return seen


def bench_precedents(repeats: int):
    net = sc.Network([sc.Conv2d(3, 8, 3, stride=2, padding=1), sc.ReLU(), sc.Conv2d(8, 16, 3, padding=1), sc.ReLU(),
                      sc.MaxPool2d(2), sc.Conv2d(16, 16, 3, stride=2, padding=1), sc.ReLU(),
                      sc.Conv2d(16, 32, 3, stride=2, padding=1)], input_shape=(3, 224, 224))
    name = net.names[-1]
    _, h, w = net.grid(name)
    cell = (name, 0, h // 2, w // 2)
    analytic = []
    for _ in range(repeats * 5):
        t = time.perf_counter()
        trace = net.precedents(cell, depth=None)
        analytic.append(time.perf_counter() - t)
    t = time.perf_counter()
    brute = brute_precedents(net, cell)
    t_brute = time.perf_counter() - t
    acts = {c for c in trace.cells() if "." not in c[0]}
    assert acts == brute, "analytic and brute-force precedents differ"
    ma = statistics.median(analytic)
    print(f"depth-all precedents of {cell} in a {len(net)}-layer net on a 3x224x224 input "
          f"({len(brute)} activation cells, input box {trace.region('input').bbox()})")
    print(f"  analytic {ma * 1e3:.3f} ms (median); brute-force graph walk {t_brute * 1e3:.1f} ms; "
          f"ratio {t_brute / ma:,.0f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per block (scaled per row)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (a NumPy and a torch block each)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines")
    ap.add_argument("--quick", action="store_true", help="leave out the stem rows")
    ap.add_argument("--only", metavar="TEXT", help="only the rows whose title contains TEXT (e.g. '1x1x28')")
    ap.add_argument("--dtype", choices=("float32", "float64"), help="only this dtype (default: both)")
    ap.add_argument("--baseline", metavar="FILE.py", help="another kernels module (e.g. an older version) "
                    "to time in the same interleaved runs (kernels rows; what it lacks runs through the layers)")
    args = ap.parse_args(argv)
    try:
        import torch
        from threadpoolctl import threadpool_limits
    except ImportError:
        sys.exit("this benchmark needs torch and threadpoolctl: pip install 'sheetconv[bench]'")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                       "OMP_NUM_THREADS") if k in os.environ}
    with threadpool_limits(args.threads, user_api="blas"):
        torch.set_num_threads(args.threads)
        print(f"sheetconv {sc.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
              f"python {platform.python_version()}, {platform.machine()} ({os.cpu_count()} CPUs)")
        print(f"threads: numpy BLAS {args.threads}, torch {torch.get_num_threads()}; numpy BLAS: {blas_info()}")
        print(f"environment: {env or 'no OPENBLAS_*/OMP_* variables set'}"
              f"{'' if 'OPENBLAS_CORETYPE' in env else ' (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset or never set)'}; "
              f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print()
        t0 = time.perf_counter()
        baseline = None
        if args.baseline:
            import importlib.util
            spec = importlib.util.spec_from_file_location("baseline_kernels", args.baseline)
            baseline = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(baseline)
            print(f"baseline kernels: {args.baseline}")
        dtypes = [np.dtype(args.dtype)] if args.dtype else [np.dtype(np.float32), np.dtype(np.float64)]
        bench_engine(torch, args.repeats, args.rounds, args.quick, baseline, args.only, dtypes)
        print(f"({time.perf_counter() - t0:.0f} s; load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())})")
        print()
        if not args.only:
            bench_precedents(args.repeats)


if __name__ == "__main__":
    main()
