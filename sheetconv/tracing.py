"""Precedent and dependent queries on a workbook file: ``open_workbook(path)``.

A sheetconv workbook (one carrying the hidden ``_sheetconv`` metadata sheet) is answered
with the engine's analytic dependency model (``Network.precedents`` / ``dependents``),
mapped through the layout to sheet cells; dependents go on to the formulas of the sheets
written around it (explain, prediction), read from a formula index of those sheets alone
(:class:`_SideSheets`). Any other xlsx is answered from its formulas,
through the precedent index of :mod:`sheetconv.xlsx.package`. Both return a
:class:`~sheetconv.nn.trace.Trace`; ``trace.meta`` carries what the renderers need (sheet
ranges per level, the layer and channel of each, the receptive field on the input).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from itertools import product

import numpy as np

from .errors import SheetconvError
from .formulagraph.index import Index, LevelRects, build_index, compact_rects, rect_boxes
from .nn.network import parse_depth, parse_grid_ref
from .nn.regions import Region
from .nn.trace import Trace, describe_input
from .pictures import is_sheet_region, touching_groups
from .sheet import meta as _meta
from .sheet.a1 import MAX_COLS, MAX_ROWS, parse_cell, parse_range, quote_sheet, rng, split_sheet
from .sheet.a1 import cell as cell_a1
from .sheet.explain import EXPLAIN_SHEET
from .sheet.formulas import LayerFormulas
from .sheet.formulas import formula as spec_formula
from .sheet.prediction import PREDICTION_SHEET
from .xlsx.cells import read_shared_strings, read_values
from .xlsx.metadata import read_meta_zip
from .xlsx.package import active_sheet, open_zip, read_workbook_parts
from .xlsx.stream import SharedFormulas, iter_rows
from .xlsx.stream import cell_value as stream_value

__all__ = ["open_workbook", "Workbook", "FormulaWorkbook", "SheetconvWorkbook", "parse_grid_ref"]


class SheetTrace(Trace):
    """A trace whose regions are worksheet cells (or an analytic trace mapped onto them):
    its ranges and text name cells in A1 form."""
    sheet_extent = (MAX_ROWS, MAX_COLS)

    def ranges(self) -> list[str]:
        if self.meta.get("engine") != "formulas":
            return super().ranges()
        return [f"{quote_sheet(r.name)}!{rng(ra, ca, rb - 1, cb - 1)}" for r in self.regions()
                for rows, cols in r.boxes for ra, rb in rows for ca, cb in cols]

    def quote_sheet(self, sheet: str) -> str:
        return quote_sheet(sheet)

    def range_size(self, text: str) -> tuple[int, int]:
        r0, c0, r1, c1 = parse_range(text)
        return r1 - r0, c1 - c0

    workbook = None                  # the Workbook that answered (set by it; pictures read its values)

    def count(self) -> int:
        if isinstance(self.levels, SheetLevels):
            return self.levels.count_cells()
        return super().count()

    def panels(self):
        """The data of the level pictures (see :func:`sheetconv.pictures.level_panels`)."""
        from .pictures import level_panels
        return level_panels(self.workbook, self)

    def figure(self, **kwargs):
        """A matplotlib Figure: one panel per level (see :mod:`sheetconv.pictures`)."""
        from .pictures import figure, trace_title
        return figure(self.panels(), title=trace_title(self), **kwargs)

    def to_png(self, path, force: bool = False, **kwargs):
        """Write the level pictures to a .png file (refused if it exists, unless ``force``)."""
        from .pictures import write_png
        return write_png(self, path, force=force, **kwargs)

    def _picture_html(self) -> str:
        from .pictures import panels_html
        return panels_html(self)


def open_workbook(path, progress=None) -> Workbook:
    """Open an xlsx for tracing: analytic for sheetconv workbooks, formula index otherwise.

    The zip is opened (and checked) once; each part is parsed once. ``progress``: a
    progress-bar factory for building the formula index (see :func:`build_index`).
    """
    path = os.fspath(path)
    with open_zip(path) as zf:
        parts = read_workbook_parts(zf, path)
        meta = read_meta_zip(zf, path, parts[0])
        if meta is None:
            tab = active_sheet(zf, path)
            sheets = parts[0]
            active = sheets[tab].name if tab is not None and tab < len(sheets) and sheets[tab].part is not None \
                and sheets[tab].state == "visible" else None
            return FormulaWorkbook(path, build_index(path, zf, parts, progress=progress), default_sheet=active)
    return SheetconvWorkbook(path, meta, [s.name for s in parts[0]], progress=progress)


# ---------------------------------------------------------------- shared helpers

def _boxes_to_rects(boxes) -> list[tuple[int, int, int, int]]:
    return [(ra, ca, rb - 1, cb - 1) for rows, cols in boxes for ra, rb in rows for ca, cb in cols]


def _sheet_region(name: str, boxes, extent=(1, 1)) -> Region:
    rows = max([extent[0]] + [r[-1][1] for r, _ in boxes])
    cols = max([extent[1]] + [c[-1][1] for _, c in boxes])
    return Region(name, (rows, cols), tuple(boxes))


class Workbook:
    """Common part: reference parsing and stored cells. Subclasses answer ``precedents`` and
    ``dependents``; every trace they return carries the stored value and formula text of the
    traced cell (``meta['value']``, ``meta['formula']``) and a link back (``trace.workbook``)."""

    path: str
    sheet_names: list[str]
    default_sheet: str
    _value_cache: dict | None = None

    def _sheet_info(self, zf, sheet: str):
        """The workbook's entry for sheet ``sheet`` (any case), or a one-line error."""
        info = next((i for i in read_workbook_parts(zf, self.path)[0] if i.name.lower() == sheet.lower()), None)
        if info is None:
            raise SheetconvError(f"no sheet {sheet!r} in {self.path}")
        return info

    def values(self, sheet: str) -> dict[tuple[int, int], object]:
        """Stored values of one sheet, {(row, col): value} (read once, then kept)."""
        if self._value_cache is None:
            self._value_cache = {}
        key = sheet.lower()
        if key not in self._value_cache:
            with open_zip(self.path) as zf:
                self._value_cache[key] = read_values(zf, self.path, self._sheet_info(zf, sheet))
        return self._value_cache[key]

    def values_near(self, sheet: str, boxes: list[tuple[int, int, int, int]]) -> dict[tuple[int, int], object]:
        """Stored values of one sheet inside ``boxes`` ((top, left, bottom, right), inclusive)
        only, {(row, col): value}: one streamed read that keeps nothing else and stops past
        the last box (a picture's windows on a sheet of any size)."""
        spans: dict[int, list] = {}
        for top, left, bottom, right in boxes:
            for r in range(max(0, top), bottom + 1):
                spans.setdefault(r, []).append((left, right))
        out: dict[tuple[int, int], object] = {}
        if not spans:
            return out
        last = max(spans)
        with open_zip(self.path) as zf:
            info = self._sheet_info(zf, sheet)
            if info.part is None:
                return out
            strings = None
            for r, cells in iter_rows(zf, info.part, self.path, SharedFormulas(move=False)):
                if r > last:
                    break
                here = spans.get(r)
                if here is None:
                    continue
                for cell in cells:
                    if cell[2] is not None and any(a <= cell[0] <= b for a, b in here):
                        if cell[1] == "s" and strings is None:
                            strings = read_shared_strings(zf, self.path, info.ns)
                        out[(r, cell[0])] = stream_value(cell, strings,
                                                         f"{self.path}: cell {quote_sheet(sheet)}!{cell_a1(r, cell[0])}")
        return out

    def stored_cell(self, sheet: str, row: int, col: int) -> tuple[object, str | None]:
        """(stored value or None, formula text with '=' or None) of one cell, read from the file
        by the row stream (shared formulas translated to the cell; a cell inside an array
        formula's range shows it as ``{=...}``), which stops past the cell's row."""
        with open_zip(self.path) as zf:
            try:
                info = self._sheet_info(zf, sheet)
            except SheetconvError:
                return None, None
            if info.part is None:
                return None, None
            found, arrays = None, []
            shared_formulas = SharedFormulas(move=False)        # only the traced cell's text is moved
            for r, cells in iter_rows(zf, info.part, self.path, shared_formulas):
                if r > row:
                    break
                for cell in cells:
                    fattrs = cell[4] or {}
                    if cell[3] and fattrs.get("t") == "array" and fattrs.get("ref"):
                        try:
                            arrays.append((parse_range(fattrs["ref"]), cell[3]))
                        except SheetconvError:
                            pass
                    if r == row and cell[0] == col:
                        found = cell
            value = None
            if found is not None and found[2] is not None:
                shared = read_shared_strings(zf, self.path, info.ns) if found[1] == "s" else None
                value = stream_value(found, shared, f"{self.path}: cell {quote_sheet(sheet)}!{cell_a1(row, col)}")
        text = found[3] if found is not None else None
        if found is not None and text is None and (found[4] or {}).get("t") == "shared":
            text = shared_formulas.moved(found[4].get("si"), row, col)
        if text:
            array = (found[4] or {}).get("t") == "array"
            return value, "{=" + text + "}" if array else "=" + text
        for (r0, c0, r1, c1), text in arrays:
            if r0 <= row <= r1 and c0 <= col <= c1:
                return value, "{=" + text + "}"
        return value, None

    def _stamp(self, trace: Trace, sheet: str, row: int, col: int, spec: str | None = None) -> Trace:
        """Link the trace to this workbook; its description (on first rendering) adds the
        stored value and formula of the traced cell, and a note if ``spec`` (the formula the
        network's spec gives) differs from the stored one."""
        trace.workbook = self
        describe = trace.lazy

        def hook(t):
            value, text = self.stored_cell(sheet, row, col)
            t.meta["value"] = value
            t.meta["formula"] = text
            if spec is not None and text is not None and _normal(text) != _normal(spec):
                t.meta["spec_formula"] = spec
                t.meta.setdefault("notes", []).insert(0, f"the formula of {t.meta['cell']} is not the one the "
                                                         f"network's spec gives ({spec})")
            if describe is not None:
                describe(t)
        trace.lazy = hook
        return trace

    def _a1(self, ref: str) -> tuple[str, int, int]:
        sheet, addr = split_sheet(ref)
        if sheet is None:
            sheet = self.default_sheet
        match = next((s for s in self.sheet_names if s.lower() == sheet.lower()), None)
        if match is None:
            raise SheetconvError(f"no sheet {sheet!r} in {self.path} (sheets: {', '.join(self.sheet_names)})")
        if ":" in addr:
            raise SheetconvError(f"trace one cell, not a range: {ref!r} (e.g. C4)")
        row, col = parse_cell(addr)
        return match, row, col

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}: {self._summary()}>"

    def _summary(self) -> str:
        raise NotImplementedError

    def precedents(self, ref, depth: int | None = None) -> Trace:
        raise NotImplementedError

    def dependents(self, ref, depth: int | None = None) -> Trace:
        raise NotImplementedError

    def trace(self, ref, depth: int | None = None, dependents: bool = False) -> Trace:
        return self.dependents(ref, depth) if dependents else self.precedents(ref, depth)

    def highlight(self, ref, out, depth: int | None = None, dependents: bool = False, force: bool = False):
        """Write a copy of the workbook to ``out`` (.xlsx) with ``ref`` outlined green and its
        precedents (or dependents) outlined level by level, in the colours of the level
        pictures; returns the path."""
        from .xlsx.highlight import write_highlight
        return write_highlight(self.path, self.trace(ref, depth, dependents), out, force=force)

    def _repr_html_(self) -> str:
        import html
        sheets = ", ".join(html.escape(s) for s in self.sheet_names if s != _meta.META_SHEET)   # hidden metadata
        return (f"<div><b>{html.escape(os.path.basename(self.path))}</b>: {html.escape(self._summary())}"
                f"<br/>sheets: {sheets} (default {html.escape(self.default_sheet)})</div>")


class SheetLevels(Sequence):
    """A formula trace's levels: ``levels[k]`` is the list of Regions (one per sheet, in
    sheet order) of level k, built on access from the compact rectangle arrays
    (:class:`~sheetconv.formulagraph.index.LevelRects`), so a million levels cost arrays,
    not a million lists of objects. Compares equal to the list of those levels."""

    def __init__(self, index: Index, rects: LevelRects):
        self.index = index
        self.rects = rects

    def __len__(self) -> int:
        return len(self.rects)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        level = self.rects[k]
        out = []
        for t in sorted(level):
            sh = self.index.sheets[t]
            out.append(_sheet_region(sh.name, rect_boxes(level[t]), sh.shape))
        return out

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, SheetLevels)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"<SheetLevels: {len(self)} levels>"

    def by_sheet(self) -> dict[int, np.ndarray]:
        """Every level's rectangles together: sheet -> (n, 4) array of (r0, c0, r1, c1)."""
        d = self.rects.data
        return {int(t): d[d[:, 1] == t, 2:] for t in np.unique(d[:, 1])}

    def count_cells(self) -> int:
        """Distinct cells over all levels (one-cell rectangles counted as keys, others merged)."""
        total = 0
        for arr in self.by_sheet().values():
            one = (arr[:, 0] == arr[:, 2]) & (arr[:, 1] == arr[:, 3])
            if one.all():
                total += len(np.unique((arr[:, 0].astype(np.int64) << 14) | arr[:, 1]))
            else:
                total += sum((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in compact_rects(arr))
        return total


class _EntryLevels(Sequence):
    """The text-ready entries of each level (``meta['sheet_levels']``), made on access."""

    def __init__(self, levels):
        self.levels = levels

    def __len__(self) -> int:
        return len(self.levels)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return [_plain_entry(r) for r in self.levels[k]]


# ---------------------------------------------------------------- any xlsx: formulas

class FormulaWorkbook(Workbook):
    """Answers from the workbook's formulas (the precedent index)."""

    engine = "formulas"

    def __init__(self, path: str, index: Index, default_sheet: str | None = None, skip_sheets=(),
                 transparent=frozenset(), input_region=None):
        self.path = path
        self.index = index
        self.transparent = transparent
        self.input_region = input_region         # (sheet, rects) -> the network input's Region, or None
        self.sheet_names = [s.name for s in index.sheets]
        visible = [s.name for s in index.infos if s.state == "visible" and s.part is not None]
        self.default_sheet = default_sheet or (visible or self.sheet_names)[0]
        self.skip = {index.by_name[s.lower()] for s in skip_sheets if s.lower() in index.by_name}

    def _summary(self) -> str:
        n = len(self.sheet_names)
        return (f"generic workbook, {n} sheet{'s' if n != 1 else ''}, {self.index.nformulas:,} formulas, "
                "answered from its formulas")

    def _cell(self, ref) -> tuple[int, int, int]:
        if isinstance(ref, tuple) and len(ref) == 3:
            sheet, row, col = ref
            if not (0 <= row < MAX_ROWS and 0 <= col < MAX_COLS):
                raise SheetconvError(f"cell ({row}, {col}) lies outside the sheet")
        else:
            if parse_grid_ref(str(ref)) is not None:
                raise SheetconvError(f"{ref!r} is a layer coordinate, which needs a workbook written by sheetconv; "
                                     f"{os.path.basename(self.path)} is not one (give an A1 reference, e.g. C4)")
            sheet, row, col = self._a1(str(ref))
        return self.index.sheet_index(sheet), row, col

    def has_formula(self, sheet: str, row: int, col: int) -> bool:
        """Whether a cell of ``sheet`` holds a formula (an array formula's range included)."""
        s = self.index.by_name.get(sheet.lower())
        return s is not None and self.index.formula_at(s, row, col) is not None

    def kind(self, s: int, row: int, col: int) -> str:
        if self.index.formula_at(s, row, col) is not None:
            return "formula"
        return "constant" if self.index.is_value(s, row, col) else "empty"

    def _levels(self, raw: LevelRects, root_sheet: int) -> SheetLevels:
        """The index's levels, compacted per sheet, without skipped sheets other than the
        root's own (and without trailing levels reached only on them), as a lazy sequence
        of Region lists."""
        rects = raw.compact()
        d, n = rects.data, rects.nlevels
        skip = self.skip - {root_sheet}
        if skip and len(d):
            keep = ~np.isin(d[:, 1], sorted(skip))
            reached = np.bincount(d[:, 0], minlength=n) > 0
            kept = np.bincount(d[keep, 0], minlength=n) > 0
            good = np.flatnonzero(~(reached & ~kept))      # levels not reached only on skipped sheets
            n = int(good[-1]) + 1 if len(good) else 0
            d = d[keep & (d[:, 0] < n)]
        return SheetLevels(self.index, LevelRects(d, n))

    def _trace(self, direction, ref, depth) -> Trace:
        depth = parse_depth(depth)
        s, row, col = self._cell(ref)
        ix = self.index
        if direction == "precedents":
            raw, cycle = ix.precedents(s, row, col, depth, self.transparent)
        else:
            raw, cycle = ix.dependents(s, row, col, depth, self.transparent)
        name = ix.sheets[s].name
        meta = {"engine": self.engine, "workbook": os.path.basename(self.path),
                "cell": f"{quote_sheet(name)}!{rng(row, col, row, col)}", "kind": self.kind(s, row, col)}
        if cycle:
            meta["cycle"] = [ix.cell_text(*_fid_cell(ix, f)) for f in cycle]
        if ix.cache.unreadable:
            meta["unreadable_formulas"] = ix.cache.unreadable[:5]
        levels = self._levels(raw, s)
        trace = SheetTrace(root=(name, row, col), direction=direction, levels=levels, meta=meta,
                           lazy=self._describe)
        return self._stamp(trace, name, row, col)

    def _describe(self, trace: Trace):
        """Per level its entries; for precedents, the leaf cells (constants and empty cells)
        grouped into contiguous blocks, the largest one described as the input field."""
        levels = trace.levels
        trace.meta["sheet_levels"] = _EntryLevels(levels)
        if trace.direction != "precedents" or not levels:
            return
        blocks = leaf_blocks(self.index, levels)
        trace.meta["blocks"] = blocks
        inputs = [] if self.input_region is None else \
            [r for r in (self.input_region(b["sheet"], b["cell_rects"]) for b in blocks) if r is not None]
        if inputs:                               # a sheetconv workbook's input cells: the field on its grid
            region = inputs[0]
            for r in inputs[1:]:
                region = region.union(r)
            trace.meta["input"] = describe_input(region, None)
        elif blocks:
            big = max(blocks, key=lambda b: b["count"])
            region = _sheet_region(big["sheet"], rect_boxes(big["cell_rects"]), SheetTrace.sheet_extent)
            trace.meta["input"] = describe_input(region, None, SheetTrace.sheet_extent)
            trace.meta["input"]["block"] = True
        for b in blocks:
            del b["cell_rects"]

    def precedents(self, ref, depth: int | None = None) -> Trace:
        return self._trace("precedents", ref, depth)

    def dependents(self, ref, depth: int | None = None) -> Trace:
        return self._trace("dependents", ref, depth)


def leaf_blocks(index: Index, levels) -> list[dict]:
    """The traced cells that hold no formula (constants, or empty cells a formula names),
    grouped per sheet into contiguous blocks (rectangles that touch or overlap, corners
    included). Each block: sheet, ``rect`` (r0, c0, r1, c1; 0-based, inclusive) of its
    bounding box, ``range`` (A1 text), ``size`` (rows, cols), ``count`` (cells), and
    ``cell_rects`` (its disjoint rectangles). Rectangles holding a formula are left out."""
    by_sheet: dict[str, object] = {}
    if isinstance(levels, SheetLevels):          # arrays: one-cell rectangles looked up at once
        for s, arr in levels.by_sheet().items():
            one = (arr[:, 0] == arr[:, 2]) & (arr[:, 1] == arr[:, 3])
            leaf = np.zeros(len(arr), bool)
            leaf[one] = ~index.has_formulas(s, arr[one, 0], arr[one, 1])
            for i in np.flatnonzero(~one).tolist():
                leaf[i] = not len(index.formulas_in(s, *arr[i].tolist()))
            if leaf.any():
                by_sheet[index.sheets[s].name] = arr[leaf]
    else:
        for level in levels:
            for region in level:
                s = index.by_name.get(region.name.lower())
                for rect in _boxes_to_rects(region.boxes):
                    if s is not None and len(index.formulas_in(s, *rect)):
                        continue
                    by_sheet.setdefault(region.name, []).append(rect)
    out = []
    for sheet, rects in by_sheet.items():
        rects = compact_rects(rects)
        for group in touching_groups(rects):
            r0, c0 = min(r[0] for r in group), min(r[1] for r in group)
            r1, c1 = max(r[2] for r in group), max(r[3] for r in group)
            out.append({"sheet": sheet, "rect": [r0, c0, r1, c1], "range": rng(r0, c0, r1, c1),
                        "size": [r1 - r0 + 1, c1 - c0 + 1],
                        "count": sum((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in group),
                        "cell_rects": group})
    out.sort(key=lambda b: (b["sheet"], b["rect"]))
    return out


def _fid_cell(ix: Index, fid: int) -> tuple[int, int, int]:
    k = int(ix.fkey[fid])
    return int(ix.fsheet[fid]), k >> 14, k & 0x3FFF


def _entry(sheet: str, grid, channel, rects: list[tuple], count: int) -> dict:
    """One text-ready entry: numeric ``rects`` (r0, c0, r1, c1; 0-based, inclusive) and their
    A1 ``ranges``, made from them for display only."""
    return {"sheet": sheet, "grid": grid, "channel": channel, "rects": [list(r) for r in rects],
            "ranges": [rng(*r) for r in rects], "count": count}


def _plain_entry(region: Region) -> dict:
    return _entry(region.name, None, None, _boxes_to_rects(region.boxes), len(region))


# ---------------------------------------------------------------- sheetconv workbooks: analytic

_SPEC_CHECK_CELLS = 200_000      # formula cells on a trace's path compared by text; beyond, the index decides


def _normal(text: str) -> str:
    """Formula text compared without whitespace, '=' or case."""
    return "".join(text.split()).lstrip("=").upper()


class SheetconvWorkbook(Workbook):
    """A workbook written by sheetconv: the embedded spec and layout answer analytically."""

    engine = "analytic"

    def __init__(self, path: str, meta: dict, sheet_names: list[str], progress=None):
        self.path = path
        self._progress = progress            # for the formula index, if it is ever built
        self.meta = meta
        self.sheet_names = sheet_names
        try:
            self.net, self.layout = _meta.load_model(meta)
        except SheetconvError as e:
            raise SheetconvError(f"{path}: {e}") from None
        self.sheet = meta["sheet"]
        if self.sheet not in sheet_names:
            raise SheetconvError(f"{path}: workbook metadata names sheet {self.sheet!r}, which the workbook lacks "
                                 f"(sheets: {', '.join(sheet_names)})")
        self.default_sheet = self.sheet
        self._formulas: FormulaWorkbook | None = None
        self._side: _SideSheets | None = None

    def _summary(self) -> str:
        return (f"sheetconv workbook, layers {', '.join(self.net.names)} on sheet {self.sheet!r}, "
                "answered analytically")

    @property
    def formulas(self) -> FormulaWorkbook:
        """The same workbook answered from its formulas (built on first use)."""
        if self._formulas is None:
            ix = build_index(self.path, progress=self._progress)
            s = ix.sheet_index(self.sheet)
            partial = set()                  # partial-sum cells: looked through, as the engine does
            for b in self.layout.iter_blocks():
                if ":" in b.grid:
                    partial.update(ix.formulas_in(s, b.top, b.left, b.bottom, b.right).tolist())
            self._formulas = FormulaWorkbook(self.path, ix, self.sheet, skip_sheets=(_meta.META_SHEET,),
                                             transparent=frozenset(partial), input_region=self._input_region)
        return self._formulas

    def cell(self, ref):
        """A reference -> the engine's cell tuple, or (sheet, row, col) for a cell the layout does not hold."""
        if isinstance(ref, (tuple, list)) and ref and isinstance(ref[0], str) and len(ref) >= 2 \
                and (ref[0] in self.net.shapes or "." in ref[0] or ":" in ref[0]):
            return self.net.ref(tuple(ref))
        text = str(ref)
        grid = parse_grid_ref(text)
        if grid is not None:
            return self.net.ref(grid)
        sheet, row, col = self._a1(text)
        if sheet.lower() == self.sheet.lower():
            found = self.layout.locate(row, col)
            if found is not None:
                return found
        return (sheet, row, col)

    def _analytic_cell(self, cell) -> bool:
        name = cell[0]
        if ":" in name:                     # a partial-sum cell: only its formula knows
            return False
        if name in self.net.shapes:
            return len(cell) == 4               # (sheet, row, col) on a sheet named like a layer is a sheet cell
        if "." in name:
            layer, param = name.rsplit(".", 1)
            return layer in self.net.shapes and param in self.net[layer].params()
        return False

    def precedents(self, ref, depth: int | None = None) -> Trace:
        depth = parse_depth(depth)
        cell = self.cell(ref)
        if not self._analytic_cell(cell):
            return self.formulas.precedents(self._sheet_ref(cell), depth)
        if "." in cell[0]:                  # a weight or bias: a constant
            row, col = self.layout.cell_of(cell)
            return self._decorate(SheetTrace(root=tuple(cell), direction="precedents", levels=[]), row, col, "constant")
        cell = self.net.check_cell(cell)
        trace = self.net.precedents(cell, depth)
        row, col = self.layout.cell_of(cell)
        out = self._decorate(trace, row, col, "formula" if cell[0] != "input" else "constant")
        if cell[0] == "input":
            return out
        return self._if_edited(out, cell, row, col, depth)

    def _if_edited(self, trace: Trace, cell, row: int, col: int, depth) -> Trace:
        """The workbook's formulas against the spec, level by level (the traced cell's formula,
        then those on the way). Where their precedents differ, the formulas answer, with a note;
        a formula whose text differs from the spec's gets a note when the trace is described."""
        spec = spec_formula(self.net, self.layout, cell)
        if self._formulas_read_as_spec(trace, row, col, spec, depth):
            return self._stamp(trace, self.sheet, row, col, spec)
        answer = self.formulas.precedents((self.sheet, row, col), depth)
        ours = self.sheet_levels(trace)
        theirs = [compact_rects([r for region in level if region.name == self.sheet
                                 for r in _boxes_to_rects(region.boxes)]) for level in answer.levels]
        if ours == theirs and not any(r.name != self.sheet for level in answer.levels for r in level):
            return self._stamp(trace, self.sheet, row, col, spec)
        k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        answer.meta.update({"grid_cell": trace.meta["grid_cell"], "edited_level": k + 1, "notes": [
            f"the workbook's formulas differ from the network's spec from level {k + 1} on (an edited "
            "workbook): answered from the formulas, not the spec"]})
        return self.formulas._stamp(answer, self.sheet, row, col, spec)

    def _formulas_read_as_spec(self, trace: Trace, row: int, col: int, spec: str, depth) -> bool:
        """True when the traced cell's formula and every formula on the way read, apart from
        whitespace and case, as the network's spec writes them; then the analytic answer is
        the formulas' own, and one streaming read of the sheet (stopping past the last row
        needed) replaces building the whole sheet's formula index. False where any differs,
        a cell holds no formula, or the path is too long to list (the index decides then)."""
        follow = trace.levels if depth is None else trace.levels[:max(0, depth - 1)]
        want = {(row, col): spec}
        lay, net, per_layer, rows = self.layout, self.net, {}, {}

        def expected(cell) -> str:
            info = lay.partial(cell[0])
            layer, partial = (info[0], info[1]) if info is not None else (cell[0], None)
            lf = per_layer.get(layer) or per_layer.setdefault(layer, LayerFormulas(net, lay, layer))
            o, r, c = int(cell[1]), int(cell[2]), int(cell[3])
            if lf.vector:
                return "=" + lf.cell(o, r, c)
            key = (cell[0], o, r)                       # a grid row's texts come together: made once
            if key not in rows:
                if len(rows) > 4096:
                    rows.clear()
                rows[key] = lf.row(o, r) if partial is None else lf.partial_row(partial, o, r)
            return "=" + rows[key][c]

        for level in follow:
            for region in level:
                if region.name == "input" or (region.name not in net.shapes and lay.partial(region.name) is None):
                    continue                            # the input and the parameters are constants
                for _, (r0, c0, r1, c1) in self.sheet_rects(region):
                    if len(want) + (r1 - r0 + 1) * (c1 - c0 + 1) > _SPEC_CHECK_CELLS:
                        return False
                    for r in range(r0, r1 + 1):
                        for c in range(c0, c1 + 1):
                            want.setdefault((r, c), None)
        last = max(r for r, _ in want)
        try:
            with open_zip(self.path) as zf:
                sheets, _ = read_workbook_parts(zf, self.path)
                info = next((sh for sh in sheets if sh.name == self.sheet and sh.part), None)
                if info is None:
                    return False
                for r, cells in iter_rows(zf, info.part, self.path):
                    if r > last:
                        break
                    for cell in cells:
                        key = (r, cell[0])
                        if key not in want:
                            continue
                        text = cell[3]
                        wanted = want.pop(key)
                        if text is None:
                            return False
                        if wanted is None:
                            wanted = expected(lay.locate(*key))
                        if _normal(text) != _normal(wanted):
                            return False
        except SheetconvError:
            return False                                # the index reads the file and says what is wrong
        return not want

    def dependents(self, ref, depth: int | None = None) -> Trace:
        depth = parse_depth(depth)
        cell = self.cell(ref)
        if not self._analytic_cell(cell):
            return self.formulas.dependents(self._sheet_ref(cell), depth)
        if cell[0] in self.net.shapes:
            cell = self.net.check_cell(cell)
        row, col = self.layout.cell_of(cell)
        trace = self.net.dependents(cell, depth)
        side = self.side_sheets
        if side.readers:
            trace = replace(trace, levels=side.join(cell, trace.levels, depth))
        kind = "formula" if cell[0] in self.net.shapes and cell[0] != "input" else "constant"
        out = self._decorate(trace, row, col, kind)
        if side.note:
            out.meta.setdefault("notes", []).append(side.note)
        return out

    @property
    def side_sheets(self) -> _SideSheets:
        """The formulas of the sheets written around the network's (explain, prediction),
        which dependents reach as Trace Dependents does (read on first use)."""
        if self._side is None:
            self._side = _SideSheets(self)
        return self._side

    def _sheet_ref(self, cell) -> tuple:
        if ":" in cell[0]:                  # partial-sum grid: find its sheet cell
            row, col = self.layout.cell_of(cell)
            return (self.sheet, row, col)
        if len(cell) == 3 and isinstance(cell[1], int) and cell[0] in self.sheet_names:
            return cell
        params = [p for p in self.net.state_dict()]
        raise SheetconvError(f"no layer or parameter {cell[0]!r} in this workbook{self.net.did_you_mean(cell[0])} "
                             f"(layers: {', '.join(self.net.names)}; "
                             f"parameters: {', '.join(params) or 'none'})")

    def _decorate(self, trace: Trace, row: int, col: int, kind: str) -> Trace:
        levels = [[r for r in level if r] for level in trace.levels]
        while levels and not levels[-1]:
            levels.pop()                     # a weight tap that only ever meets padding
        trace = SheetTrace(root=trace.root, direction=trace.direction, levels=levels, meta=dict(trace.meta))
        trace.meta.update({"engine": self.engine, "workbook": os.path.basename(self.path),
                           "cell": f"{quote_sheet(self.sheet)}!{rng(row, col, row, col)}", "kind": kind,
                           "grid_cell": f"{trace.root[0]}[{','.join(str(v) for v in trace.root[1:])}]"})
        trace.lazy = self._describe
        return self._stamp(trace, self.sheet, row, col) if kind != "formula" or trace.direction != "precedents" \
            else trace

    def _describe(self, trace: Trace):
        trace.meta["sheet_levels"] = [[e for r in level for e in (self.sheet_entries(r) if not is_sheet_region(r)
                                                                 else [_plain_entry(r)])]
                                      for level in trace.levels]
        if trace.direction == "precedents" and trace.root[0] in self.net.shapes and trace.root[0] != "input":
            inp = trace.region("input")
            reached = inp is not None
            if inp is None:                  # --depth stopped short: the field is still the spec's
                inp = self.net.precedents(trace.root, None).region("input")
            if inp is not None:
                trace.meta["input"] = describe_input(inp, self._field(trace.root))
                trace.meta["input"]["reached"] = reached

    def _field(self, root) -> dict | None:
        """The root cell's receptive field on the input: clipped and unclipped boxes."""
        name, ch, r, c = root
        rf = self.net.receptive_field(name)
        _, h, w = self.net.grid("input")
        (a0, a1), (b0, b1) = rf.region(r, c, (h, w), channel=ch)
        (u0, u1), (v0, v1) = rf.unclipped(r, c, channel=ch)
        return {"size": list(rf.size), "jump": list(rf.jump), "global": rf.is_global,
                "clipped": [[a0, a1], [b0, b1]], "unclipped": [[u0, u1], [v0, v1]]}

    def sheet_rects(self, region: Region) -> list[tuple[object, tuple[int, int, int, int]]]:
        """(channel or other key, sheet rect) pairs covering an analytic region."""
        out = []
        lay = self.layout
        nd = len(region.shape)
        for box in region.boxes:
            if nd >= 3:                      # (..., rows, cols): map each lead index's rectangles
                lead = box[:-2]
                for key in product(*([i for a, b in runs for i in range(a, b)] for runs in lead)):
                    for (ra, rb), (ca, cb) in product(box[-2], box[-1]):
                        p = lay.cell_of((region.name, *key, ra, ca))
                        q = lay.cell_of((region.name, *key, rb - 1, cb - 1))
                        if (q[0] - p[0], q[1] - p[1]) == (rb - 1 - ra, cb - 1 - ca):
                            out.append((key[0] if len(key) == 1 else key, (p[0], p[1], q[0], q[1])))
                        else:
                            out.extend((key[0] if len(key) == 1 else key, (y, x, y, x)) for y, x in
                                       (lay.cell_of((region.name, *key, i, j))
                                        for i in range(ra, rb) for j in range(ca, cb)))
            else:                            # biases, Linear weights: cell by cell, then merged
                cells = [lay.cell_of((region.name, *idx)) for idx in
                         product(*([i for a, b in runs for i in range(a, b)] for runs in box))]
                out.extend((None, (y, x, y, x)) for y, x in cells)
        return out

    def sheet_entries(self, region: Region) -> list[dict]:
        """Text-ready entries of a region: per channel, its compact sheet ranges and count."""
        vector = len(region.shape) == 3 and tuple(region.shape[1:]) == (1, 1)   # flatten, Linear: one run
        by_key: dict = {}
        for key, rect in self.sheet_rects(region):
            by_key.setdefault(None if vector else key, []).append(rect)
        out = []
        for key, rects in by_key.items():
            rr = compact_rects(rects)
            out.append(_entry(self.sheet, region.name, key if not isinstance(key, tuple) else list(key), rr,
                              sum((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in rr)))
        return out

    def sheet_levels(self, trace: Trace) -> list[list[tuple[int, int, int, int]]]:
        """Per level, the main sheet's cells of an analytic trace as canonical disjoint
        rectangles (row by row maximal runs, joined downward; see reader.compact_rects)."""
        return [compact_rects([rect for region in level if not is_sheet_region(region) for _, rect in self.sheet_rects(region)])
                for level in trace.levels]

    def _input_region(self, sheet: str, rects) -> Region | None:
        """A block of sheet cells as a region of the network's input, if every cell of it is one."""
        if sheet != self.sheet:
            return None
        shape = self.net.grid("input")
        boxes = []
        for r0, c0, r1, c1 in rects:
            p, q = self.layout.locate(r0, c0), self.layout.locate(r1, c1)
            if p is None or q is None or p[0] != "input" or q[0] != "input" or p[1] != q[1] \
                    or (q[2] - p[2], q[3] - p[3]) != (r1 - r0, c1 - c0):
                return None
            boxes.append((((p[1], p[1] + 1),), ((p[2], q[2] + 1),), ((p[3], q[3] + 1),)))
        return Region.of("input", shape, boxes)


_SIDE_CELLS = 200_000     # main-sheet cells the side sheets may read and still be followed


class _SideSheets:
    """The formulas of a sheetconv workbook's side sheets (explain, prediction): which of
    them read which activation or parameter cell, and which read one another. They come from
    the formula index of those sheets alone (the main sheet's part left unread), so a
    dependents query joins them to the analytic levels without indexing the main sheet.

    ``readers[engine cell]``: the side formula cells (sheet index, row, col) that read it
    (``by_grid[layer]``: the same as (index in the grid, readers) pairs);
    ``inner[(t, r, c)]``: the side formula cells that read that side cell. A side sheet
    that reads more than ``_SIDE_CELLS`` main-sheet cells (an edited workbook) is left out,
    with a ``note``.
    """

    def __init__(self, wb: SheetconvWorkbook):
        self.readers: dict[tuple, list] = {}
        self.by_grid: dict[str, list] = {}
        self.inner: dict[tuple, list] = {}
        self.note = None
        with open_zip(wb.path) as zf:
            sheets, defined = read_workbook_parts(zf, wb.path)
            side = {EXPLAIN_SHEET, PREDICTION_SHEET}
            if not any(sh.name in side and sh.part for sh in sheets):
                return
            ix = build_index(wb.path, zf, ([sh if sh.name in side else replace(sh, part=None) for sh in sheets], defined))
        self.sheet_names = [sh.name for sh in sheets]
        main = ix.sheet_index(wb.sheet)
        budget = _SIDE_CELLS
        for fid in range(ix.nformulas):
            reader = _fid_cell(ix, fid)
            raw, _ = ix.precedents(*reader, 1)
            for _, t, r0, c0, r1, c1 in raw.rows(0).tolist() if len(raw) else ():
                budget -= (r1 - r0 + 1) * (c1 - c0 + 1)
                if budget < 0:
                    self.readers, self.inner = {}, {}
                    names = sorted(n for n in side if n in self.sheet_names)
                    which = f"sheet {names[0]} reads" if len(names) == 1 else f"sheets {' and '.join(names)} read"
                    self.note = (f"{which} more than {_SIDE_CELLS:,} cells of sheet {wb.sheet} (an edited "
                                 "workbook): left out of the dependents")
                    return
                for r in range(r0, r1 + 1):
                    for c in range(c0, c1 + 1):
                        if t != main:
                            self.inner.setdefault((t, r, c), []).append(reader)
                            continue
                        cell = wb.layout.locate(r, c)
                        if cell is not None and ":" not in cell[0]:     # partial sums: not in the analytic levels
                            self.readers.setdefault(cell, []).append(reader)
        for cell, fs in self.readers.items():
            self.by_grid.setdefault(cell[0], []).append((tuple(cell[1:]), fs))

    def join(self, root: tuple, levels: list, depth: int | None) -> list[list[Region]]:
        """The analytic dependents' ``levels`` with the side cells each level adds: those that
        read a cell of the level before (the root, for level 1), as Trace Dependents adds
        them, each side cell once, at its first level; then on while side cells read side cells."""
        out, seen, k = [], set(), 0
        hits = set(self.readers.get(tuple(root), ()))
        while depth is None or k < depth:
            new = sorted(hits - seen)
            seen.update(new)
            main = list(levels[k]) if k < len(levels) else []
            if not main and not new:
                break
            by_sheet: dict[int, list] = {}
            for t, r, c in new:
                by_sheet.setdefault(t, []).append((r, c, r, c))
            out.append(main + [_sheet_region(self.sheet_names[t], rect_boxes(compact_rects(rects)))
                               for t, rects in sorted(by_sheet.items())])
            hits = {f for region in main for index, fs in self.by_grid.get(region.name, ()) if index in region for f in fs}
            hits |= {f for cell in new for f in self.inner.get(cell, ())}
            k += 1
        return out
