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
