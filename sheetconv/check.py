"""Check a sheetconv workbook, possibly edited by hand, against the engine and torch.

``check_workbook(path)`` reads the embedded spec and layout (meta.py), takes the input
pixels and the weights from the cells — whatever the reader typed there — runs the
engine on them and compares:

- every computed cell's stored value (or, with ``recalc=True``, the value LibreOffice
  computes from the file's formulas) with the engine, max error per layer;
- the engine with torch, per layer (when torch is installed);
- every computed cell's formula references with the precedents the spec says it has
  (``Network.precedents(cell, depth=1)`` mapped through the layout): a formula that no
  longer reads what it should is reported by its address, with what it should reference.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import xlref
from .errors import SheetconvError
from .network import Network
from .regions import runs_from_indices

__all__ = ["check_workbook", "CheckReport", "LayerCheck", "FormulaProblem", "formula_references", "cells_to_ranges"]

TOLERANCE = 1e-9            # |a - b| <= TOLERANCE * max(1, |b|)


# ---------------------------------------------------------------- formula references

def formula_references(formula: str, sheet: str, cache=None) -> tuple[set[tuple[int, int]], list[str]]:
    """Cells of ``sheet`` a formula references, and references it cannot place there.

    The second list holds references to other sheets, whole rows or columns, and defined
    names, as text. ``cache``: a formula_refs.ShapeCache, which tokenizes each formula
    shape once (formulas that differ only in row numbers share one).
    """
    from .formula_refs import references
    cells: set[tuple[int, int]] = set()
    other: list[str] = []
    try:
        if cache is None:
            refs = references(formula)
        else:
            unreadable = len(cache.unreadable)
            sid, runs = cache.split(formula)
            if len(cache.unreadable) > unreadable:
                raise SheetconvError(f"cannot read formula {formula[:80]!r}")
            refs = cache.refs(sid, runs)
    except SheetconvError as e:
        return cells, [str(e)]
    for ref in refs:
        where = "" if ref.sheet in (None, sheet) else f"{xlref.quote_sheet(str(ref.sheet))}!"
        if ref.name is not None:
            other.append(where + ref.name)
        elif where or ref.r0 is None or ref.c0 is None:
            rows = "" if ref.r0 is None else (ref.r0 + 1, ref.r1 + 1)
            cols = "" if ref.c0 is None else (xlref.cell(0, ref.c0)[:-1], xlref.cell(0, ref.c1)[:-1])
            if rows and cols:
                other.append(where + xlref.rng(ref.r0, ref.c0, ref.r1, ref.c1))
            else:
                other.append(where + (f"{cols[0]}:{cols[1]}" if cols else f"{rows[0]}:{rows[1]}"))
        elif (ref.r1 - ref.r0 + 1) * (ref.c1 - ref.c0 + 1) > 1_000_000:
            other.append(xlref.rng(ref.r0, ref.c0, ref.r1, ref.c1))
        else:
            cells.update((r, c) for r in range(ref.r0, ref.r1 + 1) for c in range(ref.c0, ref.c1 + 1))
    return cells, other


def cells_to_ranges(cells) -> list[str]:
    """A set of (row, col) as compact A1 ranges: column runs per row, stacked over consecutive rows."""
    rows: dict[int, list[int]] = {}
    for r, c in cells:
        rows.setdefault(r, []).append(c)
    boxes, active, prev = [], {}, None          # active: column run -> first row
    for r in sorted(rows):
        runs = set(runs_from_indices(rows[r]))
        for run, top in list(active.items()):
            if prev != r - 1 or run not in runs:
                boxes.append((top, run[0], prev, run[1] - 1))
                del active[run]
        for run in runs:
            active.setdefault(run, r)
        prev = r
    boxes += [(top, run[0], prev, run[1] - 1) for run, top in active.items()]
    return [xlref.rng(*box) for box in sorted(boxes)]


# ---------------------------------------------------------------- report

@dataclass
class LayerCheck:
    name: str
    cells: int
    stored_max_err: float | None = None        # None: no stored values to compare
    stored_bad: int = 0
    stored_first_bad: str | None = None        # address of the first mismatching cell
    recalc_max_err: float | None = None
    recalc_bad: int = 0
    recalc_first_bad: str | None = None
    torch_max_err: float | None = None
    torch_ok: bool = True
    missing_values: int = 0


@dataclass
class FormulaProblem:
    address: str                 # 'conv!F7'
    cell: tuple                  # (layer, c, r, col)
    problem: str
    expected: list[str]          # ranges the spec says the formula reads
    found: list[str]             # ranges the formula reads

    def __str__(self):
        return (f"{self.address} ({self.cell[0]}[{','.join(map(str, self.cell[1:]))}]): {self.problem}; "
                f"it should reference {', '.join(self.expected) or 'nothing'}"
                + (f", it references {', '.join(self.found)}" if self.found else ""))


@dataclass
class CheckReport:
    path: str
    layers: list[LayerCheck]
    formula_problems: list[FormulaProblem] = field(default_factory=list)
    recalculated: bool = False
    torch_checked: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        values_bad = any(l.stored_bad or l.recalc_bad or not l.torch_ok for l in self.layers)
        return not values_bad and not self.formula_problems

    def __str__(self):
        def err(v):
            return "-" if v is None else f"{v:.3e}"
        head = f"{'layer':<12}{'cells':>7}{'stored':>12}{'recalc':>12}{'torch':>12}  mismatches"
        lines = [f"{self.path}: {'OK' if self.ok else 'MISMATCH'}", "max abs error per layer against the engine:",
                 head]
        for l in self.layers:
            bad = []
            if l.stored_bad:
                bad.append(f"{l.stored_bad} stored (first {l.stored_first_bad})")
            if l.recalc_bad:
                bad.append(f"{l.recalc_bad} recalculated (first {l.recalc_first_bad})")
            if not l.torch_ok:
                bad.append("torch disagrees")
            lines.append(f"{l.name:<12}{l.cells:>7}{err(l.stored_max_err):>12}{err(l.recalc_max_err):>12}"
                         f"{err(l.torch_max_err):>12}  {'; '.join(bad) or '-'}")
        if self.formula_problems:
            lines.append(f"{len(self.formula_problems)} formula(s) do not reference what the spec says:")
            lines += [f"  {p}" for p in self.formula_problems[:20]]
            if len(self.formula_problems) > 20:
                lines.append(f"  ... {len(self.formula_problems) - 20} more")
        if self.recalculated:
            lines.append("recalc: values LibreOffice computed from the file's formulas; stored values are shown, "
                         "not judged (they go stale when a cell is edited without recalculating)")
        lines += self.notes
        return "\n".join(lines)


# ---------------------------------------------------------------- reading the workbook

def _read_sheet(path: Path, sheet: str, data_only: bool) -> dict[tuple[int, int], object]:
    """Non-empty cells of one sheet as {(row, col): value}, 0-based; formulas as '=...' text."""
    import openpyxl
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except Exception as e:                      # openpyxl raises many kinds for a damaged file
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise SheetconvError(f"{path}: cannot read the workbook ({type(e).__name__}: {first})") from None
    try:
        if sheet not in wb.sheetnames:
            raise SheetconvError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(wb.sheetnames)})")
        out = {}
        for row in wb[sheet].iter_rows():
            for c in row:
                v = getattr(c, "value", None)
                if v is None:
                    continue
                if hasattr(v, "text"):                  # ArrayFormula
                    v = v.text
                out[(c.row - 1, c.column - 1)] = v
        return out
    finally:
        wb.close()


def _number(v, what: str, address: str) -> float:
    if v is None:
        return 0.0                                      # an empty cell counts as 0 in a formula
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SheetconvError(f"{what} cell {address} holds {v!r}; expected a number")
    if not math.isfinite(v):
        raise SheetconvError(f"{what} cell {address} holds {v!r}; expected a finite number")
    return float(v)


def _layer_cells(net: Network, name: str):
    c, h, w = net.grid(name)
    for ch in range(c):
        for r in range(h):
            for col in range(w):
                yield (name, ch, r, col)


def check_workbook(path, recalc: bool = False, tolerance: float = TOLERANCE) -> CheckReport:
    """Compare a sheetconv workbook's cells with the engine and torch (see the module docstring)."""
    from . import meta as meta_mod
    from .layout import Layout
    from .reader import open_zip
    path = Path(path)
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file (expected a sheetconv .xlsx workbook)")
    open_zip(path).close()                      # refuses non-xlsx files and zip bombs before parsing
    meta = meta_mod.read_meta(path)
    if meta is None:
        raise SheetconvError(f"{path}: not a sheetconv workbook (no embedded sheetconv metadata)")
    try:
        net = Network.from_spec(meta["spec"])
        layout = Layout.from_json(meta["layout"], net)
    except (KeyError, TypeError) as e:
        raise SheetconvError(f"{path}: damaged sheetconv metadata ({type(e).__name__}: {e})") from None
    sheet = meta.get("sheet") or layout.sheet

    def addr(rc) -> str:
        return f"{xlref.quote_sheet(sheet)}!{xlref.cell(*rc)}"

    formulas = _read_sheet(path, sheet, data_only=False)
    stored = _read_sheet(path, sheet, data_only=True)
    report = CheckReport(str(path), [], recalculated=recalc)
    if recalc:
        from .recalc import recalc_libreoffice
        with tempfile.TemporaryDirectory(prefix="sheetconv-check-") as tmp:
            out = recalc_libreoffice([path], tmp)[0]
            values = _read_sheet(out, sheet, data_only=True)
    else:
        values = stored

    # Input and weights from the cells, as the spreadsheet would compute with them.
    x = np.zeros(net.input_shape)
    for cell in _layer_cells(net, "input"):
        rc = layout.cell_of(cell)
        x[cell[1:]] = _number(values.get(rc), "input", addr(rc))
    state = {}
    for key, arr in net.state_dict().items():
        new = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            rc = layout.cell_of((key, *idx))
            new[idx] = _number(values.get(rc), key, addr(rc))
        state[key] = new
    net.load_state_dict(state)
    acts = net.activations(x)

    torch_errs = None
    try:
        from .verify import verify
        torch_errs = {l.name: l for l in verify(net, x).layers}
        report.torch_checked = True
    except SheetconvError as e:
        report.notes.append(f"torch not compared: {e}")

    formula_check = _FormulaCheck(net, layout, formulas, sheet)
    missing = 0
    for layer in net.layers:
        lc = LayerCheck(layer.name, 0)
        ref = acts[layer.name].reshape(net.grid(layer.name))
        for cell in _layer_cells(net, layer.name):
            lc.cells += 1
            rc = formula_check.pos[cell]
            want = float(ref[cell[1:]])
            v = stored.get(rc)
            if v is None:
                lc.missing_values += 1
            else:                                       # with recalc, stale stored values are expected
                _compare(lc, "stored", v, want, addr(rc), tolerance, judged=not recalc)
            if recalc:
                _compare(lc, "recalc", values.get(rc), want, addr(rc), tolerance, judged=True)
            problem = formula_check(cell)
            if problem:
                report.formula_problems.append(FormulaProblem(addr(rc), cell, *problem))
        if torch_errs is not None:
            t = torch_errs[layer.name]
            lc.torch_max_err = t.max_abs
            lc.torch_ok = t.max_rel <= 1e-10
        missing += lc.missing_values
        report.layers.append(lc)
    if missing:
        report.notes.append(f"{missing} computed cells have no stored value (the file was saved by a program that "
                            f"does not calculate); run with --recalc to compare recalculated values")
    return report


def _compare(lc: LayerCheck, kind: str, value, want: float, address: str, tolerance: float, judged: bool):
    """Fold one cell's value into the layer's ``kind`` ('stored' or 'recalc') figures.

    A value that is not a number (an error such as '#VALUE!', text, an empty cell) counts
    as a mismatch with an infinite error.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    err = abs(float(value) - want) if number else math.inf
    worst = getattr(lc, f"{kind}_max_err")
    setattr(lc, f"{kind}_max_err", err if worst is None else max(worst, err))
    if judged and err > tolerance * max(1.0, abs(want)):
        setattr(lc, f"{kind}_bad", getattr(lc, f"{kind}_bad") + 1)
        if getattr(lc, f"{kind}_first_bad") is None:
            setattr(lc, f"{kind}_first_bad", address)


class _FormulaCheck:
    """Compares each computed cell's formula references with the spec's precedents."""

    def __init__(self, net: Network, layout, formulas: dict, sheet: str):
        from .formula_refs import ShapeCache
        self.net, self.formulas, self.sheet = net, formulas, sheet
        self.cache = ShapeCache()
        # Sheet position of every activation and parameter cell, computed once.
        self.pos = {}
        for name in net.names:
            for cell in _layer_cells(net, name):
                self.pos[cell] = layout.cell_of(cell)
        for key, arr in net.state_dict().items():
            for idx in np.ndindex(arr.shape):
                self.pos[(key, *idx)] = layout.cell_of((key, *idx))
        self.known = set(self.pos.values())
        self._params: dict = {}

    def expected(self, cell) -> set[tuple[int, int]]:
        out = set()
        for region in self.net.precedents(cell, depth=1).levels[0]:
            if "." in region.name:                   # weights and bias: shared by many cells
                key = (region.name, region.boxes)
                if key not in self._params:
                    self._params[key] = frozenset(self.pos[c] for c in region.cells())
                out |= self._params[key]
            else:
                out.update(self.pos[c] for c in region.cells())
        return out

    def __call__(self, cell):
        """None if the cell's formula references exactly its precedents, else (problem, expected, found)."""
        expected = self.expected(cell)
        f = self.formulas.get(self.pos[cell])
        if not (isinstance(f, str) and f.startswith("=")):
            what = "is empty" if f is None else f"holds the constant {f!r}"
            return f"{what}, expected a formula", cells_to_ranges(expected), []
        helpers: set = set()
        found, other = self.references(self.pos[cell], helpers)
        if found == expected and not other:
            return None
        missing, extra = expected - found, found - expected
        parts = []
        if missing:
            parts.append(f"misses {', '.join(cells_to_ranges(missing))}")
        if extra:
            parts.append(f"also reads {', '.join(cells_to_ranges(extra))}")
        if other:
            parts.append(f"reads {', '.join(other)}")
        if helpers:
            parts.append(f"through the partial sums {', '.join(cells_to_ranges(helpers))}")
        return "formula " + "; ".join(parts), cells_to_ranges(expected), cells_to_ranges(found) + other

    def references(self, rc, seen: set):
        """The references of the formula at ``rc``. A referenced formula cell that is no
        activation (a partial sum) is replaced by its own references."""
        found, other = formula_references(self.formulas[rc], self.sheet, self.cache)
        helpers = {ref for ref in found - self.known
                   if isinstance(self.formulas.get(ref), str) and self.formulas[ref].startswith("=")}
        out = found - helpers
        for ref in helpers:
            if ref not in seen:
                seen.add(ref)
                sub, sub_other = self.references(ref, seen)
                out |= sub
                other += sub_other
        return out, other
