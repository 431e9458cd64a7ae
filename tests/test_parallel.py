"""The engine's worker threads (sheetconv.nn.parallel): how jobs are split, errors, forks,
and the thread count following NumPy's BLAS; large real jobs against torch."""
import multiprocessing
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sheetconv.nn import kernels, parallel


@pytest.mark.parametrize("n, parts", [(0, 2), (1, 3), (5, 2), (7, 3), (100, 7), (3, 3)])
def test_shares_cover_the_range_in_order(n, parts):
    got = parallel.shares(n, parts)
    assert [i for a, b in got for i in range(a, b)] == list(range(n))
    assert all(b > a for a, b in got) and len(got) == min(n, parts)
    sizes = [b - a for a, b in got]
    assert not sizes or max(sizes) - min(sizes) <= 1


@pytest.fixture
def three_threads(monkeypatch):
    monkeypatch.setattr(parallel, "threads", lambda: 3)


def test_run_splits_a_large_job_among_threads(three_threads):
    calls, lock = [], threading.Lock()

    def fn(a, b):
        time.sleep(0.05)
        with lock:
            calls.append((a, b, threading.get_ident()))
    parallel.run(fn, 10, 3 * parallel.MIN_SHARE)
    assert sorted((a, b) for a, b, _ in calls) == [(0, 3), (3, 6), (6, 10)]
    assert len({t for _, _, t in calls}) == 3
    assert threading.get_ident() in {t for _, _, t in calls}      # the caller runs a share


@pytest.mark.parametrize("nbytes, n, parts", [(parallel.MIN_SHARE - 1, 10, 1), (2 * parallel.MIN_SHARE, 10, 2),
                                              (100 * parallel.MIN_SHARE, 2, 2), (100 * parallel.MIN_SHARE, 1, 1)])
def test_run_splits_only_into_shares_of_min_share_bytes(three_threads, nbytes, n, parts):
    calls = []
    parallel.run(lambda a, b: calls.append((a, b)), n, nbytes)
    assert len(calls) == parts and sorted(calls) == parallel.shares(n, parts)


def test_run_raises_a_share_error_after_every_share_is_done(three_threads):
    done = []

    def fn(a, b):
        if a == 0:
            raise ValueError("first share")
        time.sleep(0.1)
        done.append(a)
    with pytest.raises(ValueError, match="first share"):
        parallel.run(fn, 3, 3 * parallel.MIN_SHARE)
    assert sorted(done) == [1, 2]

    def late(a, b):
        if a == 2:
            raise KeyError("third share")
    with pytest.raises(KeyError, match="third share"):
        parallel.run(late, 3, 3 * parallel.MIN_SHARE)


def test_thread_count_follows_blas_setting():
    with threadpool_limits(1, "blas"):
        assert parallel.threads() == 1
    with threadpool_limits(2, "blas"):
        assert parallel.threads() == 2


def _child_split(queue):
    calls = []
    parallel.run(lambda a, b: calls.append((a, b)), 4, 4 * parallel.MIN_SHARE)
    queue.put(sorted(calls))


def test_workers_start_again_in_a_forked_child(monkeypatch):
    monkeypatch.setattr(parallel, "threads", lambda: 2)
    parallel.run(lambda a, b: None, 2, 2 * parallel.MIN_SHARE)     # the parent's workers exist
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_split, args=(queue,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=1) == [(0, 2), (2, 4)]


torch = pytest.importorskip("torch")


def test_large_jobs_on_two_threads_match_torch(monkeypatch):
    """Sizes whose every share is large, as on a real run: a stem-like layer and its pools."""
    splits = []
    shares = parallel.shares
    monkeypatch.setattr(parallel, "shares", lambda n, parts: splits.append(parts) or shares(n, parts))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 224, 224)).astype(np.float32)
    w, b = rng.standard_normal((48, 3, 7, 7)).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    with threadpool_limits(2, "blas"):
        assert parallel.threads() == 2
        y = kernels.conv2d(x, w, b, (2, 2), (3, 3), (1, 1), True)
        pooled = kernels.max_pool2d(y, (3, 3), (2, 2), (1, 1))
        avg = kernels.avg_pool2d(y, (3, 3), (2, 2), (1, 1), False)
    # the matrix (cut into pieces, the pieces shared) and both pools were split in two
    assert splits.count(2) == 4
    F = torch.nn.functional
    ty = F.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=3))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(pooled, F.max_pool2d(ty, 3, 2, 1).numpy())
    np.testing.assert_allclose(avg, F.avg_pool2d(ty, 3, 2, 1, count_include_pad=False).numpy(), rtol=1e-4, atol=1e-4)
