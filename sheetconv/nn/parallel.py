"""The engine's worker threads: as many as NumPy's BLAS is set to use.

One setting governs the whole engine, as ``torch.set_num_threads`` governs torch:
threadpoolctl's ``threadpool_limits(n, "blas")``, or ``OPENBLAS_NUM_THREADS`` (or
``OMP_NUM_THREADS``) at start-up. BLAS splits its own products; what is split here is
the memory-bound NumPy work around them that NumPy runs on one thread (window
reductions, the copies that build im2col matrices), which releases the GIL while it runs.

Only jobs whose every share is at least ``MIN_SHARE`` bytes are split: handing work to
another Python thread and back costs tens of microseconds on a virtual machine (the
GIL's wake-ups), so small jobs run in the calling thread. (Measured on 2 cores: the
stem's max pool went from 14.3 to 4.8 ms, in cache-sized blocks split over two threads,
its im2col copies from 5.3 to 3.3 ms; simple-cnn at batch 1024, whose work comes in
1 MiB pieces, ran slower split over threads than on one.)

Invariants:

* ``run(fn, n, nbytes)`` calls ``fn(start, stop)`` on disjoint, contiguous ranges that
  cover ``range(n)``, and returns only when every call has returned; an exception in
  any call is raised in the caller (the first, in range order).
* Shares may write disjoint parts of one array of the caller's (a matrix being built);
  each runs in one thread from start to stop, so scratch memory a share takes for
  itself (``kernels._scratch``, per thread) is never used by two shares at once.
* The workers start on first use and again in a forked child (a fork copies no threads).
* ``run`` returns (or raises) only after every share has stopped, an interrupt included:
  a share still running would write into the caller's arrays.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import lru_cache

__all__ = ["threads", "parts", "shares", "run", "MIN_SHARE"]

MIN_SHARE = 1 << 21     # bytes of a job each thread must get for the job to be split

_lock = threading.Lock()
_pool = None     # concurrent.futures.ThreadPoolExecutor, made on first use


def _forget_workers() -> None:
    """In a forked child: the parent's workers and lock do not exist there."""
    global _lock, _pool
    _lock, _pool = threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


@lru_cache(maxsize=1)
def _blas_controllers() -> tuple:
    """threadpoolctl's handles on the BLAS libraries loaded in this process (read once)."""
    import numpy  # noqa: F401  (its BLAS must be loaded before threadpoolctl looks)
    from threadpoolctl import ThreadpoolController
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


def threads() -> int:
    """How many threads the engine uses: NumPy's BLAS's current setting (1 if none is found)."""
    counts = [lib.num_threads for lib in _blas_controllers()]
    return max(1, min(counts)) if counts else 1


def _executor():
    """The one executor: as many workers as there are CPUs, started as shares need them."""
    from concurrent.futures import ThreadPoolExecutor
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="sheetconv")
        return _pool


def _wait_all(futures) -> None:
    """Wait for every share, even through an interrupt (a share still running writes into
    the caller's arrays); then raise the interrupt, if any."""
    from concurrent.futures import wait
    interrupted = None
    while True:
        try:
            wait(futures)
            break
        except BaseException as e:            # KeyboardInterrupt and the like: wait again first
            interrupted = interrupted or e
    if interrupted is not None:
        raise interrupted


def shares(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into ``parts`` contiguous (start, stop) ranges as equal as can be."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def parts(n: int, nbytes: int) -> int:
    """Into how many shares ``run`` splits a job of ``n`` items and ``nbytes`` bytes (BLAS is
    asked only for jobs large enough to split)."""
    most = min(n, nbytes // MIN_SHARE)
    return 1 if most <= 1 else min(most, threads())


def run(fn: Callable[[int, int], object], n: int, nbytes: int) -> None:
    """``fn(start, stop)`` over ``range(n)``, split among the engine's threads when each
    share of the job's ``nbytes`` is at least ``MIN_SHARE``; the caller runs the first share."""
    count = parts(n, nbytes)
    if count <= 1:
        fn(0, n)
        return
    (first, *rest) = shares(n, count)
    pool = _executor()
    futures = [pool.submit(fn, a, b) for a, b in rest]
    try:
        fn(*first)
    finally:
        _wait_all(futures)
    for f in futures:
        if f.exception() is not None:
            raise f.exception()
