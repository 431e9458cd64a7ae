"""Benchmark: the NumPy engine against PyTorch's CPU forward, and analytic dependency queries.

    python bench/bench_engine.py [--repeats 30] [--threads N]

In one run, on the same data and the same thread count (torch.set_num_threads is set to
the number of threads NumPy's BLAS uses), it times float32 forward passes of

* simple-cnn on a 64x1x28x28 batch, and
* one Conv2d(64, 64, 3, stride=2, padding=1) on an 8x64x56x56 batch,

with NumPy and with torch (warm-up first, then the median and the best of several
repeats, the two libraries in alternating blocks), and prints NumPy's time over
torch's: the target is at most 1.0. It then times a depth-all ``precedents`` query on a
5-layer network over a 224x224 input against a brute-force walk of the cell graph.
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


def blas_info() -> tuple[int, str]:
    """(threads, description) of the BLAS NumPy calls."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1, "unknown (pip install threadpoolctl to see it)"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
            return pool["num_threads"], (f"{pool['internal_api']} {pool.get('version')}, "
                                         f"kernel {pool.get('architecture')}, {pool.get('threading_layer')}")
    return os.cpu_count() or 1, "unknown"


def set_blas_threads(n: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(n, user_api="blas")


def torch_model(net, torch):
    """torch.nn.Sequential with the network's weights (float32)."""
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
    return nn.Sequential(*mods).float().eval()


def timings(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def compare(title, net, x, torch, repeats, rounds=3):
    model = torch_model(net, torch)
    tx = torch.from_numpy(x)
    ours_fn = lambda: net.forward(x, np.float32)            # noqa: E731
    with torch.inference_mode():
        theirs_fn = lambda: model(tx)                        # noqa: E731
        a, b = ours_fn(), theirs_fn().numpy()
        err = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
        ours, theirs = [], []
        for _ in range(rounds):                              # alternate blocks: no library's spinning
            ours += timings(ours_fn, repeats)                # threads steal the other's cores
            time.sleep(0.1)
            theirs += timings(theirs_fn, repeats)
            time.sleep(0.1)
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"{title}")
    print(f"  numpy  median {mo * 1e3:9.3f} ms   best {min(ours) * 1e3:9.3f} ms")
    print(f"  torch  median {mt * 1e3:9.3f} ms   best {min(theirs) * 1e3:9.3f} ms")
    print(f"  ratio numpy/torch: median {mo / mt:5.2f}x   best {min(ours) / min(theirs):5.2f}x   "
          f"(target <= 1.0x; max rel diff {err:.1e})")
    return mo / mt


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
    analytic = timings(lambda: net.precedents(cell, depth=None), repeats * 20)
    trace = net.precedents(cell, depth=None)
    t = time.perf_counter()
    brute = brute_precedents(net, cell)
    t_brute = time.perf_counter() - t
    acts = {c for c in trace.cells() if "." not in c[0]}
    assert acts == brute, "analytic and brute-force precedents differ"
    ma = statistics.median(analytic)
    print(f"depth-all precedents of {cell} in a {len(net)}-layer net ({', '.join(l.label for l in net.layers)}) "
          f"on a 3x224x224 input "
          f"({len(brute)} activation cells, input box {trace.region('input').bbox()})")
    print(f"  analytic  median {ma * 1e3:9.3f} ms")
    print(f"  brute-force graph walk {t_brute * 1e3:9.1f} ms")
    print(f"  ratio brute/analytic: {t_brute / ma:,.0f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30, help="timed runs per block (3 blocks per library)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: NumPy's BLAS count)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("this benchmark needs torch: pip install 'sheetconv[bench]'")
    threads, blas = blas_info()
    threads = args.threads or threads
    limiter = set_blas_threads(threads)
    torch.set_num_threads(threads)
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                       "OMP_NUM_THREADS") if k in os.environ}
    print(f"sheetconv {sc.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
          f"python {platform.python_version()}, {platform.machine()} ({os.cpu_count()} CPUs)")
    print(f"threads: numpy BLAS {threads}, torch {torch.get_num_threads()}; numpy BLAS: {blas}")
    print(f"environment: {env or 'no OPENBLAS_*/OMP_* variables set'}; "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    rng = np.random.default_rng(0)
    compare("simple-cnn, float32, batch 64x1x28x28", sc.preset("simple-cnn", seed=0),
            rng.random((64, 1, 28, 28), dtype=np.float32), torch, args.repeats)
    conv = sc.Network([sc.Conv2d(64, 64, 3, stride=2, padding=1)], input_shape=(64, 56, 56)).init_weights(0)
    compare("Conv2d(64, 64, 3, stride=2, padding=1), float32, batch 8x64x56x56", conv,
            rng.random((8, 64, 56, 56), dtype=np.float32), torch, max(5, args.repeats // 3))
    print()
    bench_precedents(args.repeats)
    if limiter is not None:
        limiter.restore_original_limits()


if __name__ == "__main__":
    main()
