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

Stored values only show what the program that last saved the file computed: a formula's
arithmetic is verified only by recalculating it (``recalc=True``), and a file saved by a
program that does not calculate (openpyxl, pandas) has no stored values at all. The
report says which of these it checked (:attr:`CheckReport.status`).

The workbook is read once through :mod:`sheetconv.xlsx.package` (zip-bomb checks, an
entity-refusing streaming XML parser): the metadata, the precedent index (references as
the formula reader resolves them) and the values of the main sheet.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sheet import a1 as xlref
from .errors import SheetconvError
from .nn.network import Network

__all__ = ["check_workbook", "CheckReport", "LayerCheck", "FormulaProblem", "cells_to_ranges"]

TOLERANCE = 1e-9            # |a - b| <= TOLERANCE * max(1, |b|)
_AREA = 1_000_000           # a reference larger than this is reported as text, not expanded to cells


def cells_to_ranges(cells) -> list[str]:
    """A set of (row, col) as compact A1 ranges (reader.compact_rects)."""
    from .formulagraph.index import compact_rects
    return [xlref.rng(*rect) for rect in compact_rects([(r, c, r, c) for r, c in cells])]


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
    def mismatch(self) -> bool:
        """Something disagrees: a formula's references, a value, or torch."""
        values_bad = any(l.stored_bad or l.recalc_bad or not l.torch_ok for l in self.layers)
        return values_bad or bool(self.formula_problems)

    @property
    def missing_values(self) -> int:
        return sum(l.missing_values for l in self.layers)

    @property
    def values_checked(self) -> bool:
        """Every computed cell's value was compared: recalculated, or stored in the file."""
        return self.recalculated or not self.missing_values

    @property
    def status(self) -> str:
        """'mismatch'; 'unchecked' (references right, values not all checked: no stored
        values and no recalculation); or 'ok'."""
        if self.mismatch:
            return "mismatch"
        return "ok" if self.values_checked else "unchecked"

    @property
    def ok(self) -> bool:
        """References and every computed cell's value agree with the engine."""
        return self.status == "ok"

    def headline(self) -> str:
        if self.status == "mismatch":
            return f"{self.path}: MISMATCH"
        if self.status == "unchecked":
            cells = sum(l.cells for l in self.layers)
            n = self.missing_values
            what = "no stored values" if n == cells else f"{n:,} of {cells:,} computed cells have no stored value"
            return (f"{self.path}: references OK, values NOT checked ({what}; the program that saved the file "
                    f"does not calculate) - rerun with --recalc")
        if self.recalculated:
            return f"{self.path}: OK - references and the values LibreOffice recalculated agree with the engine"
        return (f"{self.path}: OK - references and stored values agree with the engine (the formulas' "
                f"arithmetic was not recalculated; --recalc checks it)")

    def __str__(self):
        def err(v):
            return "-" if v is None else f"{v:.3e}"
        head = f"{'layer':<12}{'cells':>7}{'stored':>12}{'recalc':>12}{'torch':>12}  mismatches"
        lines = [self.headline(), "max abs error per layer against the engine:", head]
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



def _read_book(path: Path):
    """(meta, precedent index, the main sheet's index, its stored values), one pass over the file."""
    from .sheet.meta import load_model
    from .xlsx.metadata import read_meta_zip
    from .formulagraph.index import build_index
    from .xlsx.package import open_zip, read_workbook_parts
    from .xlsx.cells import read_values
    with open_zip(path) as zf:                       # refuses non-xlsx files and zip bombs before parsing
        parts = read_workbook_parts(zf, str(path))
        meta = read_meta_zip(zf, str(path), parts[0])
        if meta is None:
            raise SheetconvError(f"{path}: not a sheetconv workbook (no embedded sheetconv metadata)")
        net, layout = load_model(meta)
        sheet = meta["sheet"]
        ix = build_index(str(path), zf, parts)
        s = ix.sheet_index(sheet)
        values = read_values(zf, str(path), parts[0][s])
    return net, layout, sheet, ix, s, values


def _recalculated_values(path: Path, sheet: str) -> dict:
    from .xlsx.package import open_zip, read_workbook_parts
    from .xlsx.cells import read_values
    from .xlsx.recalc import recalc_libreoffice
    with tempfile.TemporaryDirectory(prefix="sheetconv-check-") as tmp:
        out = recalc_libreoffice([path], tmp)[0]
        with open_zip(out) as zf:
            sheets, _ = read_workbook_parts(zf, str(out))
            info = next((i for i in sheets if i.name == sheet), None)
            if info is None:
                raise SheetconvError(f"{path}: LibreOffice's recalculated copy has no sheet {sheet!r}")
            return read_values(zf, str(out), info)


def _number(v, what: str, address: str) -> float:
    if v is None:
        return 0.0                                      # an empty cell counts as 0 in a formula
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SheetconvError(f"{what} cell {address} holds {v!r:.60}; expected a number")
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
    path = Path(path)
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file (expected a sheetconv .xlsx workbook)")
    net, layout, sheet, ix, s, stored = _read_book(path)

    def addr(rc) -> str:
        return f"{xlref.quote_sheet(sheet)}!{xlref.cell(*rc)}"

    report = CheckReport(str(path), [], recalculated=recalc)
    values = _recalculated_values(path, sheet) if recalc else stored

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
        from .interop.verify import verify
        torch_report = verify(net, x)
        torch_errs = {l.name: l for l in torch_report.layers}
        report.torch_checked = True
    except SheetconvError as e:
        report.notes.append(f"torch not compared: {e}")

    formula_check = _FormulaCheck(net, layout, ix, s, stored)
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
            lc.torch_ok = type(torch_report)(torch_report.dtype, [t]).ok()     # verify's own tolerance
        report.layers.append(lc)
    if report.missing_values:
        if recalc:
            report.notes.append(f"{report.missing_values:,} computed cells have no stored value (the file was saved "
                                f"by a program that does not calculate); their recalculated values were checked")
        else:
            report.notes.append(f"{report.missing_values:,} computed cells have no stored value (the file was saved "
                                f"by a program that does not calculate): their values were NOT verified; run "
                                f"with --recalc to recalculate the formulas and compare")
    if ix.cache.unreadable:
        report.notes.append(f"{len(ix.cache.unreadable)} formula(s) could not be parsed, e.g. "
                            f"{ix.cache.unreadable[0][:80]!r}")
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
    """Compares each computed cell's formula references (the precedent index's) with the spec's precedents."""

    def __init__(self, net: Network, layout, ix, s: int, stored: dict):
        self.net, self.ix, self.s, self.stored = net, ix, s, stored
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
        rc = self.pos[cell]
        fid = self.ix.formula_at(self.s, *rc)
        if fid is None:
            v = self.stored.get(rc)
            what = "is empty" if v is None else f"holds the constant {v!r:.40}"
            return f"{what}, expected a formula", cells_to_ranges(expected), []
        helpers: set = set()
        found, other = self.references(fid, helpers)
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

    def references(self, fid: int, seen: set):
        """Cells of the main sheet formula ``fid`` reads, and its other references as text.

        A referenced formula cell that is no activation (a partial sum) is replaced by its
        own references; references to other sheets and huge ranges are kept as text."""
        ix, s = self.ix, self.s
        found: set = set()
        other: list[str] = []
        for t, r0, c0, r1, c1 in ix.refs(fid):
            if t != s:
                other.append(f"{xlref.quote_sheet(ix.sheets[t].name)}!{xlref.rng(r0, c0, r1, c1)}")
            elif (r1 - r0 + 1) * (c1 - c0 + 1) > _AREA:
                other.append(xlref.rng(r0, c0, r1, c1))
            else:
                found.update((r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
        out = set()
        for rc in found:
            sub = None if rc in self.known else ix.formula_at(s, *rc)
            if sub is None:
                out.add(rc)
            elif rc not in seen and sub != fid:
                seen.add(rc)
                more, more_other = self.references(sub, seen)
                out |= more
                other += more_other
        return out, other
