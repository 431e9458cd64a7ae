"""files.atomic_output: the target appears whole or not at all."""
from __future__ import annotations

import errno
import os

import pytest

from sheetconv.errors import SheetconvError
from sheetconv.xlsx.files import atomic_output


def test_success_moves_the_temp_file_onto_the_target(tmp_path):
    target = tmp_path / "out.png"
    with atomic_output(target, force=False, what="PNG") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data" and os.listdir(tmp_path) == ["out.png"]


def test_existing_target_is_refused_unless_force(tmp_path):
    target = tmp_path / "out.xlsx"
    target.write_bytes(b"old")
    with pytest.raises(SheetconvError, match="already exists.*--force"):
        with atomic_output(target, force=False, what="workbook"):
            pass
    with atomic_output(target, force=True, what="workbook") as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.xlsx"]


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("boom"),
                                 KeyboardInterrupt()])
def test_any_failure_removes_the_temp_file_and_keeps_the_target(tmp_path, exc):
    target = tmp_path / "out.xlsx"
    target.write_bytes(b"old")
    expected = SheetconvError if isinstance(exc, OSError) else type(exc)
    with pytest.raises(expected) as info:
        with atomic_output(target, force=True, what="workbook") as tmp:
            tmp.write_bytes(b"half")
            raise exc
    if expected is SheetconvError:
        assert str(info.value) == f"cannot write workbook {target}: No space left on device"
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.xlsx"]


def test_bad_folders(tmp_path, monkeypatch):
    with pytest.raises(SheetconvError, match="does not exist"):
        with atomic_output(tmp_path / "no" / "x.xlsx", force=False, what="workbook"):
            pass
    with pytest.raises(SheetconvError, match="is a folder"):
        with atomic_output(tmp_path, force=True, what="workbook"):
            pass
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(SheetconvError, match="not writable"):
        with atomic_output(tmp_path / "x.xlsx", force=False, what="workbook"):
            pass
    assert os.listdir(tmp_path) == []


def test_mode_follows_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o002)
    try:
        with atomic_output(tmp_path / "a.bin", force=False, what="file") as tmp:
            tmp.write_bytes(b"x")
            os.chmod(tmp, 0o600)                 # whatever the writer did
        with open(tmp_path / "oracle", "w"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == (tmp_path / "oracle").stat().st_mode & 0o777 == 0o664


# ---------------------------------------------------------------- races, signals, full disks

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_two_writers_to_one_new_path_exactly_one_wins(tmp_path):
    target = tmp_path / "out.xlsx"
    first, second = (atomic_output(target, force=False, what="workbook") for _ in range(2))
    a, b = first.__enter__(), second.__enter__()          # both passed the up-front check
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    first.__exit__(None, None, None)
    with pytest.raises(SheetconvError, match=r"out.xlsx already exists \(overwrite it with --force, or force=True in Python\)"):
        second.__exit__(None, None, None)
    assert target.read_bytes() == b"first" and os.listdir(tmp_path) == ["out.xlsx"]


def test_the_final_move_never_replaces_a_file_without_force(tmp_path, monkeypatch):
    """The window between any existence check and the move: the move itself must refuse."""
    target = tmp_path / "out.xlsx"
    with pytest.raises(SheetconvError, match="already exists"):
        with atomic_output(target, force=False, what="workbook") as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"theirs")                              # another writer finished first,
            monkeypatch.setattr(Path, "exists", lambda self: False)     # just after every check
    monkeypatch.undo()
    assert target.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["out.xlsx"]


def _cli(args, cwd, env=None, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "sheetconv.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_concurrent_builds_without_force(tmp_path):
    for pair in range(4):
        procs = [_cli(["build", "--digit", str(i), "--out", f"r{pair}.xlsx"], tmp_path) for i in (1, 2)]
        outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in outcomes)
        assert codes == [0, 2], outcomes
        err = next(e for code, e in outcomes if code == 2).strip()
        assert "\n" not in err and "already exists" in err, err
    assert sorted(os.listdir(tmp_path)) == [f"r{i}.xlsx" for i in range(4)]


_BIG_SPEC = ('{"input_shape": [1, 28, 28], "layers": [{"type": "Conv2d", "out_channels": 400, "kernel_size": 3, '
             '"padding": 1}]}')


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_build_force_leaves_nothing_behind(tmp_path, signum):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "big.json").write_text(_BIG_SPEC)
    (out / "big.xlsx").write_bytes(b"the old workbook")
    p = _cli(["build", "--spec", "big.json", "--out", "out/big.xlsx", "--force", "-q"], tmp_path,
             env={"TMPDIR": str(scratch)})
    deadline = time.monotonic() + 120
    while not any(n.endswith(".tmp.xlsx") and (out / n).stat().st_size > 0 for n in os.listdir(out)):
        assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else ""
        time.sleep(0.01)
    assert list(scratch.iterdir())                          # XlsxWriter's scratch folder exists mid-write
    p.send_signal(signum)
    p.wait(timeout=60)
    assert p.returncode == -signum, p.stderr.read()
    assert "Traceback" not in p.stderr.read()
    assert os.listdir(out) == ["big.xlsx"] and (out / "big.xlsx").read_bytes() == b"the old workbook"
    assert list(scratch.iterdir()) == []


def _assert_quiet_failure(p, words):
    _, err = p.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("sheetconv: error: cannot write workbook") and words in lines[0], err
    assert "Exception ignored" not in err and "Traceback" not in err


def test_a_file_size_limit_mid_write_is_one_line(tmp_path):
    """Like a full disk: the write fails (EFBIG) mid-file; one line, no finalizer traceback, no file."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    p = _cli(["build", "--preset", "simple-cnn", "--out", "x.xlsx"], tmp_path, preexec_fn=limit)
    _assert_quiet_failure(p, "File too large")
    assert os.listdir(tmp_path) == []


def test_a_full_disk_is_one_line(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        p = _cli(["build", "--preset", "simple-cnn", "--out", "disk/x.xlsx"], tmp_path)
        _assert_quiet_failure(p, "No space left on device")
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)
