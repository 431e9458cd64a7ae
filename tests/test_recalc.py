"""The engine harness: LibreOffice and Gnumeric really recalculate what we give them.

Every formula cell is written with a deliberately wrong stored value (999), so a
harness that merely re-reads cached values cannot pass. Expected values are worked
out by hand.
"""
from __future__ import annotations

import shutil

import openpyxl
import pytest
import xlsxwriter

from sheetconv.errors import SheetconvError
from sheetconv.xlsx import recalc

pytestmark = pytest.mark.filterwarnings("ignore:Workbook contains no default style")

WRONG = 999

# (cell, formula, expected value computed by hand from the constants below)
CASES = [
    ("A4", "=SUMPRODUCT(A1:C1,A2:C2)", 1 * 4 + 2 * -5 + 3 * 6),                 # 12
    ("B4", "=SUMPRODUCT(A1:B2,D1:E2)", 1 * 0.5 + 2 * -1 + 4 * 2 + -5 * 0.25),   # 5.25
    ("C4", "=MAX(0,SUMPRODUCT(A1:C1,A2:C2)-100)", 0),
    ("D4", "=MAX(0,SUMPRODUCT(A1:C1,A2:C2)+$F$1)", 12 + 0.75),
    ("E4", "=AVERAGE(A1:C2)", (1 + 2 + 3 + 4 - 5 + 6) / 6),
    ("F4", "=MAX(A1:C2)", 6),
    ("G4", "=MAX(A2:B2)", 4),
    ("H4", "='other sheet'!A1*3+SUMPRODUCT(A1:B1,'other sheet'!A1:B1)", 0.5 * 3 + 1 * 0.5 + 2 * -2),
    ("I4", "=A4+E4", 12 + 11 / 6),                                          # a formula of formulas
]


def _write(path):
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("conv")
    other = wb.add_worksheet("other sheet")
    ws.write_row("A1", [1, 2, 3, 0.5, -1, 0.75])
    ws.write_row("A2", [4, -5, 6, 2, 0.25])
    other.write_row("A1", [0.5, -2])
    for ref, formula, _ in CASES:
        ws.write_formula(ref, formula, None, WRONG)
    wb.close()
    return path


def _values(path):
    ws = openpyxl.load_workbook(path, data_only=True)["conv"]
    return {ref: ws[ref].value for ref, _, _ in CASES}


def _check(path):
    got = _values(path)
    for ref, formula, want in CASES:
        assert got[ref] == pytest.approx(want, abs=1e-12), f"{ref} {formula}: got {got[ref]}, expected {want}"


@pytest.fixture(scope="module")
def lo_batch(tmp_path_factory, engine_required):
    """One LibreOffice start for this module: two workbooks from two folders, one recalculated in place."""
    engine_required("libreoffice")
    d = tmp_path_factory.mktemp("lo")
    (d / "a").mkdir()
    (d / "b").mkdir()
    inplace = _write(d / "a" / "funcs.xlsx")
    other = _write(d / "b" / "second.xlsx")
    assert set(_values(inplace).values()) == {WRONG}   # the trap is armed
    outs = recalc.recalc_libreoffice([inplace, other], d / "a")
    return inplace, other, outs


@pytest.mark.engine("libreoffice")
def test_libreoffice_recalculates_wrong_stored_values(lo_batch):
    inplace, other, outs = lo_batch
    assert outs == [inplace, inplace.parent / "second.xlsx"]
    for out in outs:
        _check(out)


@pytest.mark.engine("libreoffice")
def test_libreoffice_keeps_formulas_and_leaves_sources(lo_batch):
    inplace, other, outs = lo_batch
    ws = openpyxl.load_workbook(outs[1])["conv"]
    for ref, formula, _ in CASES:
        assert ws[ref].value.replace("$", "") == formula.replace("$", "")
    assert set(_values(other).values()) == {WRONG}          # the source in another folder is untouched
    assert not [p for p in inplace.parent.iterdir() if p.name.startswith(".")]   # no staging leftovers


@pytest.mark.engine("gnumeric")
def test_gnumeric_recalculates_wrong_stored_values(tmp_path):
    src = _write(tmp_path / "funcs.xlsx")
    out = recalc.recalc_gnumeric(src, tmp_path / "out.xlsx")
    assert out == tmp_path / "out.xlsx"
    _check(out)
    assert set(_values(src).values()) == {WRONG}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["funcs.xlsx", "out.xlsx"]


@pytest.mark.engine("gnumeric")
def test_gnumeric_in_place(tmp_path):
    src = _write(tmp_path / "funcs.xlsx")
    assert recalc.recalc_gnumeric(src, src) == src
    _check(src)


@pytest.mark.parametrize("engine", ["libreoffice", "gnumeric"])
def test_unreadable_workbook_is_named(tmp_path, engine, engine_required):
    engine_required(engine)
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"this is not a zip file")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SheetconvError, match="broken.xlsx"):
        if engine == "libreoffice":
            recalc.recalc_libreoffice([bad], out)
        else:
            recalc.recalc_gnumeric(bad, out / "broken.xlsx")
    assert list(out.iterdir()) == []


@pytest.mark.engine("libreoffice")
def test_libreoffice_timeout_is_an_error(tmp_path):
    src = _write(tmp_path / "funcs.xlsx")
    with pytest.raises(SheetconvError, match="timed out"):
        recalc.recalc_libreoffice([src], tmp_path, timeout=0.2)
    assert set(_values(src).values()) == {WRONG}


@pytest.mark.engine("libreoffice", "gnumeric")
def test_bad_arguments(tmp_path):
    src = _write(tmp_path / "funcs.xlsx")
    (tmp_path / "b").mkdir()
    twin = shutil.copy(src, tmp_path / "b" / "funcs.xlsx")
    with pytest.raises(SheetconvError, match="both be written as funcs.xlsx"):
        recalc.recalc_libreoffice([src, twin], tmp_path)
    with pytest.raises(SheetconvError, match="missing.xlsx: no such file"):
        recalc.recalc_libreoffice([tmp_path / "missing.xlsx"], tmp_path)
    with pytest.raises(SheetconvError, match="does not exist"):
        recalc.recalc_libreoffice([src], tmp_path / "nowhere")
    assert recalc.recalc_libreoffice([], tmp_path) == []
    with pytest.raises(SheetconvError, match="missing.xlsx: no such file"):
        recalc.recalc_gnumeric(tmp_path / "missing.xlsx", tmp_path / "out.xlsx")
    with pytest.raises(SheetconvError, match="does not exist"):
        recalc.recalc_gnumeric(src, tmp_path / "nowhere" / "out.xlsx")


@pytest.mark.parametrize("engine,package", [("libreoffice", "libreoffice-calc-nogui"), ("gnumeric", "gnumeric")])
def test_missing_engine_names_the_package(monkeypatch, tmp_path, engine, package):
    monkeypatch.setattr(recalc.shutil, "which", lambda name: None)
    assert recalc.available() == {"libreoffice": False, "gnumeric": False}
    src = _write(tmp_path / "funcs.xlsx")
    with pytest.raises(SheetconvError, match=f"apt-get install {package}"):
        if engine == "libreoffice":
            recalc.recalc_libreoffice([src], tmp_path)
        else:
            recalc.recalc_gnumeric(src, tmp_path / "out.xlsx")


_STUBBORN = """
import os, signal, subprocess, sys, time
flag, ignore = sys.argv[1], sys.argv[2] == "ignore"
def on_term(*_):
    open(flag + ".term", "w").close()
    if not ignore:
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(flag + ".pid", "w").write(f"{os.getpid()} {child.pid}")
open(flag, "w").close()
while True:
    time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("mode", ["ignore", "exit"])
def test_timeout_terms_then_kills_the_whole_group(tmp_path, mode):
    """SIGTERM first (the engine may clean up); a process ignoring it is SIGKILLed after the grace period."""
    import sys
    import time
    flag = tmp_path / "started"
    with pytest.raises(SheetconvError, match="stub: timed out after 1 s"):
        recalc._run([sys.executable, "-c", _STUBBORN, str(flag), mode], 1.0, "stub", grace=1.0)
    assert flag.exists() and (tmp_path / "started.term").exists()          # SIGTERM came first
    pids = [int(p) for p in (tmp_path / "started.pid").read_text().split()]
    for _ in range(50):                                                    # init reaps the orphaned grandchild
        if not any(map(_alive, pids)):
            break
        time.sleep(0.05)
    assert not any(map(_alive, pids))                                      # leader and grandchild are gone
