"""Recalculate xlsx workbooks with real spreadsheet engines: LibreOffice and Gnumeric.

Both read a workbook, recompute every formula and write an xlsx whose cached values
are theirs, not ours — an independent check of the formulas sheetconv writes.

LibreOffice keeps the stored values of an xlsx by default, so ``recalc_libreoffice``
starts it with a fresh user profile whose settings say "always recalculate on load"
(``OOXMLRecalcMode`` and ``ODFRecalcMode`` = 0).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import SheetconvError

__all__ = ["available", "recalc_libreoffice", "recalc_gnumeric", "ENGINES"]

# engine -> (executable, Debian package that provides it)
ENGINES = {
    "libreoffice": ("soffice", "libreoffice-calc-nogui"),
    "gnumeric": ("ssconvert", "gnumeric"),
}

# 0 = always recalculate, 1 = never, 2 = ask (which headless means never).
_RECALC_ALWAYS_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">\
<value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse">\
<value>0</value></prop></item>
</oor:items>
"""


def available() -> dict[str, bool]:
    """Which engines are installed: {'libreoffice': bool, 'gnumeric': bool}."""
    return {name: shutil.which(exe) is not None for name, (exe, _) in ENGINES.items()}


def _executable(engine: str) -> str:
    exe, package = ENGINES[engine]
    path = shutil.which(exe)
    if path is None:
        raise SheetconvError(f"{engine} is not installed ({exe} not found on PATH): "
                             f"install the Debian package {package} (apt-get install {package})")
    return path


TERM_GRACE = 5.0            # seconds between SIGTERM and SIGKILL when an engine must stop


def _stop_group(proc: subprocess.Popen, grace: float):
    """SIGTERM the process group (the engine may clean up), SIGKILL it if still there after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:            # the whole group is gone already
            break
        try:
            proc.communicate(timeout=wait)     # reaps the leader and drains its pipes
        except subprocess.TimeoutExpired:
            continue
        try:                                   # the leader exited; children of the group may not have
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        break


def _run(cmd: list[str], timeout: float, what: str, env=None, grace: float = TERM_GRACE) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout (or Ctrl-C) stop the whole group:
    SIGTERM, then SIGKILL after ``grace`` seconds."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as e:            # a timeout, or Ctrl-C: leave no engine process behind
        _stop_group(proc, grace)
        if isinstance(e, subprocess.TimeoutExpired):
            raise SheetconvError(f"{what}: timed out after {timeout:g} s") from None
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def _tail(text: str) -> str:
    """The most telling line of a tool's output: its last error line, else its last line."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower() or "failed" in l.lower()]
    return (errors or lines or ["no message"])[-1]


def recalc_libreoffice(paths: Iterable[str | os.PathLike], outdir: str | os.PathLike,
                       timeout: float = 300.0) -> list[Path]:
    """Recalculate xlsx files with LibreOffice headless in one start; return the outputs.

    Each ``IN`` becomes ``outdir/IN.stem + '.xlsx'``, written whole or not at all (it may
    replace ``IN`` itself when ``outdir`` is IN's folder). The outputs are returned in the
    order of ``paths``. Raises SheetconvError naming the file that failed.
    """
    soffice = _executable("libreoffice")
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return []
    outdir = Path(outdir).resolve()
    if not outdir.is_dir():
        raise SheetconvError(f"output folder {outdir} does not exist (expected a folder for the recalculated files)")
    for p in paths:
        if not p.is_file():
            raise SheetconvError(f"{p}: no such file (expected an xlsx workbook to recalculate)")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise SheetconvError(f"{stems[p.stem]} and {p} would both be written as {p.stem}.xlsx "
                                 f"(expected distinct file names in one batch)")
        stems[p.stem] = p
    try:
        return _convert_libreoffice(soffice, paths, outdir, timeout)
    except OSError as e:
        raise SheetconvError(f"cannot write the recalculated workbooks in {outdir}: {e.strerror or e}") from None


def _convert_libreoffice(soffice: str, paths: list[Path], outdir: Path, timeout: float) -> list[Path]:
    # Convert into a staging folder beside the targets, then rename: no half-written output,
    # and an input inside ``outdir`` is only replaced once its recalculated copy exists.
    # Both folders are removed on the way out, whatever happens (ignore_cleanup_errors: a
    # file an engine still held must not hide the real error).
    with tempfile.TemporaryDirectory(prefix="sheetconv-lo-", ignore_cleanup_errors=True) as tmp, \
            tempfile.TemporaryDirectory(prefix=".recalc-", dir=outdir, ignore_cleanup_errors=True) as stage:
        user = Path(tmp, "profile", "user")
        user.mkdir(parents=True)
        (user / "registrymodifications.xcu").write_text(_RECALC_ALWAYS_XCU, encoding="utf-8")
        env = dict(os.environ, HOME=tmp)
        cmd = [soffice, f"-env:UserInstallation={Path(tmp, 'profile').as_uri()}", "--headless", "--norestore",
               "--nologo", "--nodefault", "--nolockcheck", "--convert-to", "xlsx:Calc MS Excel 2007 XML",
               "--outdir", stage, *map(str, paths)]
        what = "LibreOffice recalculation of " + ", ".join(p.name for p in paths)
        res = _run(cmd, timeout, what, env=env)
        if res.returncode != 0:
            raise SheetconvError(f"{what}: soffice exited with status {res.returncode}: "
                                 f"{_tail(res.stdout + chr(10) + res.stderr)}")
        outs = []
        for p in paths:
            staged = Path(stage, p.stem + ".xlsx")
            if not staged.is_file() or staged.stat().st_size == 0:
                raise SheetconvError(f"{p}: LibreOffice wrote no recalculated workbook "
                                     f"({_tail(res.stdout + chr(10) + res.stderr)})")
            outs.append(staged)
        final = []
        for p, staged in zip(paths, outs):
            target = outdir / (p.stem + ".xlsx")
            os.replace(staged, target)
            final.append(target)
    return final


def recalc_gnumeric(path: str | os.PathLike, out: str | os.PathLike, timeout: float = 300.0) -> Path:
    """Recalculate one xlsx with Gnumeric (``ssconvert --recalc``) into the xlsx ``out``.

    ``out`` is written whole or not at all (files.atomic_output); it may be ``path`` itself.
    """
    from .files import atomic_output
    ssconvert = _executable("gnumeric")
    path, out = Path(path).resolve(), Path(out).resolve()
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file (expected an xlsx workbook to recalculate)")
    with atomic_output(out, force=True, what="recalculated workbook") as tmp:
        cmd = [ssconvert, "--recalc", "-I", "Gnumeric_Excel:xlsx", "-T", "Gnumeric_Excel:xlsx2", str(path), str(tmp)]
        res = _run(cmd, timeout, f"Gnumeric recalculation of {path.name}")
        if res.returncode != 0:
            raise SheetconvError(f"{path}: ssconvert exited with status {res.returncode}: {_tail(res.stderr)}")
        if os.path.getsize(tmp) == 0:
            raise SheetconvError(f"{path}: Gnumeric wrote no recalculated workbook ({_tail(res.stderr)})")
    return out
