"""Check a sheetconv workbook, possibly edited by hand, against the engine (and torch).

``check_workbook(path)`` reads the embedded spec and layout (meta.py; the network it
describes is bounded there before anything is allocated), takes the input pixels and the
weights from the cells - whatever the reader typed there - runs the engine on them and
compares:

- every computed cell's stored value (or, with ``recalc=True``, the value LibreOffice
  computes from the file's formulas) with the engine, max error per layer;
- with ``torch=True``, the engine with torch, per layer (torch is imported only then);
- every computed cell's formula with the one sheetconv writes there (formulas.py): the
  texts are compared first, and only where a text differs are its references compared
  with the precedents the spec says it has (``Network.precedents(cell, depth=1)`` mapped
  through the layout); a formula that no longer reads what it should is reported by its
  address, with what it should reference.

Stored values only show what the program that last saved the file computed: a formula's
arithmetic is verified only by recalculating it (``recalc=True``), and a file saved by a
program that does not calculate (openpyxl, pandas) has no stored values at all. The
report says which of these it checked (:attr:`CheckReport.status`).

The main sheet is streamed once (:mod:`sheetconv.xlsx.stream`: formulas and stored values
in one pass, a row at a time) against the layout's row plan, so memory holds the network,
one value per computed cell and the formulas that differ, never a map of the sheet. An A1
address is built only for what is reported.
"""
from __future__ import annotations

import heapq
import math
import tempfile
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np

from .errors import SheetconvError
from .nn.network import Network
from .sheet import a1 as xlref
from .sheet.formulas import LayerFormulas
from .sheet.layout import Layout
from .sheet.meta import load_model
from .xlsx.metadata import read_meta_zip
from .xlsx.package import open_zip, read_workbook_parts
from .xlsx.stream import cell_value, iter_rows, read_shared_strings

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
        values_bad = any(lc.stored_bad or lc.recalc_bad or not lc.torch_ok for lc in self.layers)
        return values_bad or bool(self.formula_problems)

    @property
    def missing_values(self) -> int:
        return sum(lc.missing_values for lc in self.layers)

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
            cells = sum(lc.cells for lc in self.layers)
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
        for lc in self.layers:
            bad = []
            if lc.stored_bad:
                bad.append(f"{lc.stored_bad} stored (first {lc.stored_first_bad})")
            if lc.recalc_bad:
                bad.append(f"{lc.recalc_bad} recalculated (first {lc.recalc_first_bad})")
            if not lc.torch_ok:
                bad.append("torch disagrees")
            lines.append(f"{lc.name:<12}{lc.cells:>7}{err(lc.stored_max_err):>12}{err(lc.recalc_max_err):>12}"
                         f"{err(lc.torch_max_err):>12}  {'; '.join(bad) or '-'}")
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


# ---------------------------------------------------------------- the row plan

_INPUT, _PARAM, _FORMULA, _PARTIAL = range(4)
_PROGRESS_EVERY = 16_384


def _panel_plan(p):
    """(row, x, width, kind, payload) of one panel's cells, by row: where the writer puts the
    input, the parameters, the computed cells and the partial sums (Panel.block_rows)."""
    role = p.role
    name = p.grid.split(":")[0].rsplit(".", 1)[0]
    computed = name != "input"
    g = int(p.grid.rsplit("partial", 1)[1]) if role == "partial" else None
    for top, blocks in p.block_rows():
        for r in range(p.bh):
            row = top + 1 + r
            for k, x in blocks:
                if role == "act":
                    if not computed:
                        yield row, x, p.bw, _INPUT, (k, r)
                    elif p.vector:
                        yield row, x, 1, _FORMULA, (name, r, 0)
                    else:
                        yield row, x, p.bw, _FORMULA, (name, k, r)
                elif role == "partial":
                    yield row, x, p.bw, _PARTIAL, (name, g, k, r)
                elif role == "kernel":
                    yield row, x, p.bw, _PARAM, (p.grid, (k[0], k[1], r, slice(None)))
                elif role == "bias":
                    yield row, x, 1, _PARAM, (p.grid, (slice(r, r + 1),))
                else:                                # a Linear's matrix: input r down, outputs across
                    yield row, x, p.bw, _PARAM, (p.grid, (slice(None), r))

def _plan(layout: Layout):
    """Every panel's plan merged into sheet-row order."""
    return heapq.merge(*(_panel_plan(p) for p in layout.panels), key=itemgetter(0))


# ---------------------------------------------------------------- one pass over the sheet

class _SheetPass:
    """Streams the main sheet once against the row plan.

    Collects the input and the parameters (as numbers, an empty cell is 0), every computed
    cell's stored value (``stored``: NaN where there is none or it is no number; ``present``:
    whether a value is stored) and, with ``formulas``, the computed and partial-sum cells
    whose formula text differs from the one sheetconv writes there (``odd``, ``odd_partials``).
    """

    def __init__(self, net: Network, layout: Layout, path: str, sheet: str, formulas: bool, progress=None):
        self.net, self.layout, self.path, self.sheet = net, layout, path, sheet
        self.formulas = formulas
        self.progress = progress
        self.pending = 0
        self.x = np.zeros(net.grid("input"))
        self.state = {k: np.zeros_like(v) for k, v in net.state_dict().items()}
        self.stored = {n: np.full(net.grid(n), np.nan) for n in net.names[1:]}
        self.present = {n: np.zeros(net.grid(n), bool) for n in net.names[1:]}
        self.lfs = {n: LayerFormulas(net, layout, n) for n in net.names[1:]} if formulas else {}
        self.odd: dict = {}              # (row, col) -> (cell, formula text or None, stored value)
        self.odd_partials: dict = {}     # (row, col) -> formula text or None
        self.odd_totals: set = set()     # computed cells that read a partial sum whose text differs
        self.shared = None

    def run(self, zf, part: str):
        self.shared = read_shared_strings(zf, self.path)
        plan = _plan(self.layout)
        seg = next(plan, None)
        last = -1
        empty: dict = {}
        for row, cells in iter_rows(zf, part, self.path):
            if row <= last:
                raise SheetconvError(f"{self.path}: sheet {self.sheet!r} lists row {row + 1} after row {last + 1}; "
                                     "the workbook is corrupt")
            last = row
            while seg is not None and seg[0] < row:
                self._segment(seg, empty)
                seg = next(plan, None)
            if seg is None or seg[0] > row:
                continue
            by_col = {c[0]: c for c in cells}
            while seg is not None and seg[0] == row:
                self._segment(seg, by_col)
                seg = next(plan, None)
        while seg is not None:
            self._segment(seg, empty)
            seg = next(plan, None)
        if self.progress is not None and self.pending:
            self.progress(self.pending)
        return self

    # -- segments
    def _segment(self, seg, by_col: dict):
        row, x, width, kind, payload = seg
        if kind == _FORMULA:
            self._computed(row, x, width, payload, by_col)
        elif kind == _PARTIAL:
            if self.formulas:
                self._partial(row, x, payload, by_col)
        elif kind == _INPUT:
            o, dy = payload
            self.x[o, dy, :] = self._numbers(row, x, width, by_col, "input")
        else:
            key, idx = payload
            self.state[key][idx] = self._numbers(row, x, width, by_col, key)

    def _numbers(self, row: int, x: int, width: int, by_col: dict, what: str):
        get = by_col.get
        cells = [get(col) for col in range(x, x + width)]
        if all(c is not None and c[1] is None and c[2] is not None for c in cells):
            try:
                out = np.array([c[2] for c in cells], dtype=float)
                if np.isfinite(out).all():
                    return out
            except ValueError:
                pass
        return [self._number(row, x + j, c, what) for j, c in enumerate(cells)]

    def _number(self, row: int, col: int, c, what: str) -> float:
        if c is None or c[2] is None:
            return 0.0                                   # an empty cell counts as 0 in a formula
        v = self._value(c, row, col)
        f = v if isinstance(v, float) else None
        if f is None:
            raise SheetconvError(f"{what} cell {self._addr(row, col)} holds {v!r:.60}; expected a number")
        if not math.isfinite(f):
            raise SheetconvError(f"{what} cell {self._addr(row, col)} holds {f!r}; expected a finite number")
        return f

    def _computed(self, row: int, x: int, width: int, payload, by_col: dict):
        name, o, r = payload
        get = by_col.get
        cells = [get(col) for col in range(x, x + width)]
        if self.formulas:
            texts = self.lfs[name].row(o, r)
            for j in [j for j, c, t in zip(range(width), cells, texts, strict=True) if c is None or c[3] != t]:
                c = cells[j]
                if c is None:
                    self.odd[(row, x + j)] = ((name, o, r, j), None, None)
                else:
                    self.odd[(row, x + j)] = ((name, o, r, j), c[3], self._value(c, row, x + j))
        present = [c is not None and c[2] is not None for c in cells]
        vals = None
        if all(c is None or c[1] is None for c in cells):
            try:
                vals = np.array([None if c is None else c[2] for c in cells], dtype=float)   # None: NaN
            except ValueError:
                vals = None
        if vals is None:
            vals = [math.nan if not p else self._float(self._value(c, row, x + j))
                    for j, (c, p) in enumerate(zip(cells, present, strict=True))]
        self.stored[name][o, r, :] = vals          # a 1-D layer: feature o, row 0, one cell
        self.present[name][o, r, :] = present
        if self.progress is not None:
            self.pending += width
            if self.pending >= _PROGRESS_EVERY:
                self.progress(self.pending)
                self.pending = 0

    @staticmethod
    def _float(v) -> float:
        return v if isinstance(v, float) else math.nan

    def _partial(self, row: int, x: int, payload, by_col: dict):
        name, g, o, r = payload
        texts = self.lfs[name].partial_row(g, o, r)
        for j, text in enumerate(texts):
            c = by_col.get(x + j)
            f = None if c is None else c[3]
            if f != text:
                self.odd_partials[(row, x + j)] = f
                self.odd_totals.add((name, o, r, j))

    def _value(self, c, row: int, col: int):
        return cell_value(c, self.shared, f"{self.path}: cell {self._addr(row, col)}")

    def _addr(self, row: int, col: int) -> str:
        return f"{xlref.quote_sheet(self.sheet)}!{xlref.cell(row, col)}"


# ---------------------------------------------------------------- formulas whose text differs

class _References:
    """Compares a formula's references with the spec's precedents (only for texts that differ)."""

    def __init__(self, net: Network, layout: Layout, sheet: str, done: _SheetPass):
        self.net, self.layout, self.sheet, self.done = net, layout, sheet, done
        self._params: dict = {}

    def expected(self, cell) -> set[tuple[int, int]]:
        out = set()
        cell_of = self.layout.cell_of
        for region in self.net.precedents(cell, depth=1).levels[0]:
            if "." in region.name:                   # weights and bias: shared by many cells
                key = (region.name, region.boxes)
                if key not in self._params:
                    self._params[key] = frozenset(cell_of(c) for c in region.cells())
                out |= self._params[key]
            else:
                out.update(cell_of(c) for c in region.cells())
        return out

    def problem(self, cell, rc, text, value):
        """None if the formula ``text`` at ``rc`` references exactly ``cell``'s precedents,
        else (problem, expected ranges, found ranges)."""
        expected = self.expected(cell)
        if text is None:
            what = "is empty" if value is None else f"holds the constant {value!r:.40}"
            return f"{what}, expected a formula", cells_to_ranges(expected), []
        helpers: set = set()
        found, other = self.references(text, {rc}, helpers)
        if found == expected and not other:
            return None
        missing, extra = expected - found, found - expected
        parts = []
        if not found and not other:
            parts.append("references no cell")
        elif missing:
            parts.append(f"misses {', '.join(cells_to_ranges(missing))}")
        if extra:
            parts.append(f"also reads {', '.join(cells_to_ranges(extra))}")
        if other:
            parts.append(f"reads {', '.join(other)}")
        if helpers:
            parts.append(f"through the partial sums {', '.join(cells_to_ranges(helpers))}")
        return "formula " + "; ".join(parts), cells_to_ranges(expected), cells_to_ranges(found) + other

    def references(self, text: str, seen: set, helpers: set):
        """Cells of the main sheet ``text`` reads, and its other references as text. A
        partial-sum cell is replaced by its own references (its formula as the file has it)."""
        from .formulagraph.references import references  # openpyxl's tokenizer: only when needed
        found: set = set()
        other: list[str] = []
        main = self.sheet.lower()
        for ref in references(text):
            if ref.name is not None:
                other.append(ref.name)
                continue
            local = ref.sheet is None or (isinstance(ref.sheet, str) and ref.sheet.lower() == main)
            whole = ref.r0 is None or ref.c0 is None
            where = "" if ref.sheet is None else (
                f"{xlref.quote_sheet(ref.sheet)}!" if isinstance(ref.sheet, str)
                else f"{xlref.quote_sheet(ref.sheet[0])}:{xlref.quote_sheet(ref.sheet[1])}!")
            if whole:
                rows = f"{ref.r0 + 1}:{ref.r1 + 1}" if ref.r0 is not None else None
                cols = f"{xlref.cell(0, ref.c0)[:-1]}:{xlref.cell(0, ref.c1)[:-1]}" if ref.c0 is not None else None
                other.append(where + (rows or cols or "?"))
            elif not local:
                other.append(where + xlref.rng(ref.r0, ref.c0, ref.r1, ref.c1))
            elif (ref.r1 - ref.r0 + 1) * (ref.c1 - ref.c0 + 1) > _AREA:
                other.append(xlref.rng(ref.r0, ref.c0, ref.r1, ref.c1))
            else:
                found.update((r, c) for r in range(ref.r0, ref.r1 + 1) for c in range(ref.c0, ref.c1 + 1))
        out = set()
        for rc in found:
            sub = self.partial_formula(rc)
            if sub is None:
                out.add(rc)
            elif rc not in seen:
                seen.add(rc)
                helpers.add(rc)
                more, more_other = self.references(sub, seen, helpers)
                out |= more
                other += more_other
        return out, other

    def partial_formula(self, rc) -> str | None:
        """The formula of a partial-sum cell at ``rc`` (None for any other cell, or one without a formula)."""
        cell = self.layout.locate(*rc)
        if cell is None or ":" not in cell[0]:
            return None
        if rc in self.done.odd_partials:
            return self.done.odd_partials[rc]
        layer, g, _ = self.layout.partial(cell[0])
        return self.done.lfs[layer].cell(cell[1], cell[2], cell[3], partial=g)


# ---------------------------------------------------------------- check

def _read(path: Path, recalc: bool, progress):
    """(net, layout, sheet, the pass over the main sheet, the pass over LibreOffice's recalculated copy)."""
    with open_zip(path) as zf:                       # refuses non-xlsx files and zip bombs before parsing
        sheets, _ = read_workbook_parts(zf, str(path))
        meta = read_meta_zip(zf, str(path), sheets)
        if meta is None:
            raise SheetconvError(f"{path}: not a sheetconv workbook (no embedded sheetconv metadata)")
        try:
            net, layout = load_model(meta)           # bounded before anything is allocated
        except SheetconvError as e:
            raise SheetconvError(f"{path}: {e}") from None
        sheet = meta["sheet"]
        info = next((s for s in sheets if s.name == sheet), None)
        if info is None or info.part is None:
            raise SheetconvError(f"{path}: workbook metadata names sheet {sheet!r}, which the workbook lacks as a "
                                 f"worksheet (sheets: {', '.join(s.name for s in sheets)})")
        total = sum(int(np.prod(net.grid(n))) for n in net.names[1:])
        bar = progress(total) if progress is not None else None
        if bar is None:
            done = _SheetPass(net, layout, str(path), sheet, True).run(zf, info.part)
        else:
            with bar as update:
                done = _SheetPass(net, layout, str(path), sheet, True, update).run(zf, info.part)
    again = _recalculated(path, net, layout, sheet) if recalc else None
    return net, layout, sheet, done, again


def _recalculated(path: Path, net, layout, sheet: str) -> _SheetPass:
    from .xlsx.recalc import recalc_libreoffice
    with tempfile.TemporaryDirectory(prefix="sheetconv-check-") as tmp:
        out = recalc_libreoffice([path], tmp)[0]
        with open_zip(out) as zf:
            sheets, _ = read_workbook_parts(zf, str(out))
            info = next((i for i in sheets if i.name == sheet), None)
            if info is None or info.part is None:
                raise SheetconvError(f"{path}: LibreOffice's recalculated copy has no sheet {sheet!r}")
            return _SheetPass(net, layout, str(out), sheet, False).run(zf, info.part)


def check_workbook(path, recalc: bool = False, tolerance: float = TOLERANCE, torch: bool = False,
                   progress=None) -> CheckReport:
    """Compare a sheetconv workbook's cells with the engine (and torch; see the module docstring).

    ``progress``: optional factory ``progress(total_cells)`` returning None or a context
    manager that yields ``update(n)``, called as computed cells are read.
    """
    path = Path(path)
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file (expected a sheetconv .xlsx workbook)")
    net, layout, sheet, done, again = _read(path, recalc, progress)

    def addr(rc) -> str:
        return f"{xlref.quote_sheet(sheet)}!{xlref.cell(*rc)}"

    report = CheckReport(str(path), [], recalculated=recalc)
    x = done.x.reshape(net.input_shape)
    net.load_state_dict(done.state)
    acts = net.activations(x)

    torch_layers = torch_report = None
    if torch:
        try:
            from .interop.verify import verify
            torch_report = verify(net, x)
            torch_layers = {t.name: t for t in torch_report.layers}
            report.torch_checked = True
        except SheetconvError as e:
            report.notes.append(f"torch not compared: {e}")

    for name in net.names[1:]:
        want = acts[name].reshape(net.grid(name))
        present = done.present[name]
        lc = LayerCheck(name, int(want.size), missing_values=int(want.size - np.count_nonzero(present)))
        _compare(lc, "stored", done.stored[name], present, want, tolerance, judged=not recalc, addr=addr,
                 where=lambda i, n=name, shape=want.shape: layout.cell_of((n, *np.unravel_index(i, shape))))
        if again is not None:
            _compare(lc, "recalc", again.stored[name], np.ones_like(present), want, tolerance, judged=True,
                     addr=addr, where=lambda i, n=name, shape=want.shape: layout.cell_of((n, *np.unravel_index(i, shape))))
        if torch_layers is not None:
            t = torch_layers[name]
            lc.torch_max_err = t.max_abs
            lc.torch_ok = type(torch_report)(torch_report.dtype, [t]).ok()     # verify's own tolerance
        report.layers.append(lc)
    report.formula_problems = _formula_problems(net, layout, sheet, done, addr)
    if report.missing_values:
        if recalc:
            report.notes.append(f"{report.missing_values:,} computed cells have no stored value (the file was saved "
                                f"by a program that does not calculate); their recalculated values were checked")
        else:
            report.notes.append(f"{report.missing_values:,} computed cells have no stored value (the file was saved "
                                f"by a program that does not calculate): their values were NOT verified; run "
                                f"with --recalc to recalculate the formulas and compare")
    return report


def _formula_problems(net, layout, sheet, done: _SheetPass, addr) -> list[FormulaProblem]:
    """Problems of the computed cells whose formula text (or a partial sum they read) differs."""
    refs = _References(net, layout, sheet, done)
    todo = dict(done.odd)
    for name, o, r, j in done.odd_totals:
        cell = (name, o, r, j)
        rc = layout.cell_of(cell)
        if rc not in todo:
            todo[rc] = (cell, done.lfs[name].cell(o, r, j), None)
    order = {n: i for i, n in enumerate(net.names)}
    out = []
    for rc, (cell, text, value) in sorted(todo.items(), key=lambda kv: (order[kv[1][0][0]], kv[1][0][1:])):
        problem = refs.problem(cell, rc, text, value)
        if problem:
            out.append(FormulaProblem(addr(rc), cell, *problem))
    return out


def _compare(lc: LayerCheck, kind: str, values: np.ndarray, present: np.ndarray, want: np.ndarray,
             tolerance: float, judged: bool, addr, where):
    """Fold one layer's values into its ``kind`` ('stored' or 'recalc') figures.

    Only ``present`` cells count; among them a value that is not a number (an error such
    as '#VALUE!', text, NaN; for recalculated values also a missing one) is a mismatch with
    an infinite error.
    """
    if not present.any():
        return
    err = np.abs(values - want)
    err[~np.isfinite(err)] = np.inf
    err[~present] = 0.0
    setattr(lc, f"{kind}_max_err", float(err[present].max()))
    if judged:
        bad = present & (err > tolerance * np.maximum(1.0, np.abs(want)))
        n = int(np.count_nonzero(bad))
        if n:
            setattr(lc, f"{kind}_bad", n)
            setattr(lc, f"{kind}_first_bad", addr(where(int(np.flatnonzero(bad)[0]))))
