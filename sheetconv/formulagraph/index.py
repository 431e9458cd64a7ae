"""Any xlsx -> a precedent index, read safely and in one streaming pass.

:func:`build_index` streams each worksheet's XML with expat (through defusedxml) and keeps,
per formula cell, only its shape id and digit runs (see :mod:`sheetconv.formulagraph.references`).
Shared formulas (``<f t="shared" si=.. ref=..>``) keep the master's shape and an offset;
array formulas (``<f t="array" ref=..>``) cover their whole range. Nothing is allocated per
a sheet's claimed dimensions: whole-row and whole-column references are bounded by the
cells actually present. :class:`Index` answers precedent and dependent queries level by
level (see :meth:`Index.precedents`), storing references as ranges, never cell lists.

Formulas are tokenized lazily (see :class:`ShapeCache`): a precedent trace tokenizes only the
formulas on its path. A dependent query reads each shape's text once, without the tokenizer,
for the column spans its references can reach (shapes holding names, whole rows or columns,
tables or 3-D references have unknown spans: always searched), then tokenizes and fills from
the digit runs only the shapes whose spans meet the cells asked about; no table of every
reference is built. Defined names resolve through chains of any length; a name that refers back to
itself is reported in :attr:`Index.warnings` and resolves to nothing more. Structured
references resolve against the sheets' Excel Tables (:mod:`.structured`).
"""
from __future__ import annotations

import os
import re
import zipfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import SheetconvError
from ..nn.regions import merge_runs
from ..sheet.a1 import COLNUM, MAX_COLS, MAX_ROWS, key_of, parse_range, quote_sheet
from ..sheet.a1 import cell as a1
from ..xlsx import package
from ..xlsx.cells import CellCursor
from ..xlsx.package import LIMITS, SheetInfo, open_zip, read_workbook_parts, tags
from .references import Ref, ShapeCache, references
from .structured import StructRef
from .structured import resolve as resolve_table

__all__ = ["build_index", "Index", "LevelRects", "key_of", "compact_rects", "rect_boxes"]

# ---------------------------------------------------------------- the index

GRID_CELLS = 4 << 20         # sheets up to this many cells (bounding box) get a dense formula grid
_EMPTY = np.zeros(0, np.int64)
_BUCKET = 64                 # dependents: references at most this tall are found by their first row
_CACHED = 2 << 20            # dependents: shapes' references remembered, at most this many (oldest dropped first)
_SHAPE_COST = 64             # ... each remembered shape counted as this many more (its arrays' overhead)
_REF_TYPES = (np.int16, np.int32, np.int32, np.int32, np.int32, np.int64)   # sheet, r0, c0, r1, c1, formula


@dataclass
class _Sheet:
    name: str
    fkeys: np.ndarray = None     # sorted keys of formula cells
    fids: np.ndarray = None      # their formula ids
    vkeys: np.ndarray = None     # sorted keys of value (constant) cells
    arrays: list = field(default_factory=list)   # (r0, c0, r1, c1, fid) of array formulas
    bounds: tuple | None = None  # (min_row, min_col, max_row, max_col) of present cells
    frange: tuple = (0, 0)       # its formula ids: range(*frange)
    grid: np.ndarray | None = None   # small sheets: formula id + 1 per cell (0: none)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.bounds[2] + 1, self.bounds[3] + 1) if self.bounds else (1, 1)


class _SheetParser:
    """expat handlers collecting one worksheet's formulas (the hot loop of build_index)."""

    def __init__(self, index: Index, sheet_idx: int):
        self.ix = index
        self.sheet_idx = sheet_idx
        self.first_fid = index._nf()
        self.vkeys = array("q")
        self.arrays = []
        self.masters = {}
        self.key = -1
        self.pos = CellCursor()
        self._C, self._F, self._ROW = tags(index.infos[sheet_idx].ns if index.infos else package.NS_MAIN,
                                           "c", "f", "row")
        self.has_value = False
        self.is_formula = False
        self.in_f = False
        self.fattrs = None
        self.buf = []

    def start(self, tag, attrs):
        if tag == self._C:
            self.key = self.pos.cell(attrs)
            self.has_value = self.is_formula = False
        elif tag == self._F:
            self.in_f = self.is_formula = True
            self.fattrs = attrs
            self.buf = []
        elif tag == self._ROW:
            self.pos.row(attrs)

    def end(self, tag):
        if tag == self._C:
            if self.has_value and not self.is_formula:
                self.vkeys.append(self.key)
            self.key = -1
        elif tag == self._ROW:
            self.pos.end_row()
        elif tag == self._F:
            self.in_f = False
            self._formula("".join(self.buf), self.fattrs)

    def data(self, text):
        if self.in_f:
            self.buf.append(text)
            if len(text) > 4096 and sum(map(len, self.buf)) > LIMITS.max_formula_chars:
                self._formula("".join(self.buf), self.fattrs)     # refuses it, before it grows further
        elif self.key >= 0:
            if not self.has_value and text.strip():
                self.has_value = True
        else:                                    # between cells: squeezed empty cells
            self.pos.skip(text)

    def _formula(self, text, attrs):
        key = self.key
        if key < 0:
            return
        if len(text) > LIMITS.max_formula_chars:
            raise SheetconvError(f"a formula of {len(text):,} characters in cell {self.ix.sheets[self.sheet_idx].name}!"
                                 f"{a1(key >> 14, key & 0x3FFF)} (Excel allows 8,192); the workbook is corrupt")
        ix = self.ix
        t = attrs.get("t")
        if t == "shared":
            si = attrs.get("si")
            if text:
                self.masters[si] = ix._add(text, key)
            else:
                master = self.masters.get(si)
                if master is None:               # a child before its master: corrupt, skip it
                    return
                ix._add_child(master, key)
        elif t == "dataTable":
            return                               # what-if tables: inputs, not references
        elif text:
            fid = ix._add(text, key)
            if t == "array":
                try:
                    self.arrays.append((*parse_range(attrs.get("ref") or ""), fid))
                except SheetconvError:
                    pass                         # no range: the formula fills its own cell


class Index:
    """The precedent index of one workbook. Build it with :func:`build_index`.

    Per formula cell (in sheet order): its key (row << 14 | col), its shape id (or, for a
    shared formula's other cells, -(master id + 1)) and where its digit runs start in one
    byte buffer of space-separated ASCII numbers.
    """

    def __init__(self, path: str, sheets: list[SheetInfo]):
        self.path = path
        self.infos = sheets
        self.sheets: list[_Sheet] = [_Sheet(s.name) for s in sheets]
        self.by_name = {s.name.lower(): i for i, s in enumerate(sheets)}
        self.cache = ShapeCache()
        self.names: dict[tuple, list[Ref]] = {}
        self.tables = {t.name.lower(): (i, t) for i, s in enumerate(sheets) for t in s.tables}
        self.warnings: list[str] = []            # e.g. defined names that refer to themselves
        self._fkey, self._fsid, self._voff = array("q"), array("i"), array("q")
        self._blob = bytearray()
        self._refs_cache: dict[int, list] = {}
        self._reach_cache: dict[int, list] = {}     # refs(whole=True), for dependents
        self._rev: _Reverse | None = None       # dependents' search structure (on first use)
        self._shape_cache: dict[int, _ShapeRefs] = {}
        self._cached = 0

    # -------------------------------------------------------- building

    def _nf(self) -> int:
        return len(self._fkey)

    def _add(self, text: str, key: int) -> int:
        sid, digits = self.cache.digits(text)
        fid = len(self._fkey)
        self._fkey.append(key)
        self._fsid.append(sid)
        self._voff.append(len(self._blob))
        self._blob += digits
        return fid

    def _add_child(self, master: int, key: int) -> int:
        fid = len(self._fkey)
        self._fkey.append(key)
        self._fsid.append(-master - 1)
        self._voff.append(len(self._blob))
        return fid

    def _finish_sheet(self, idx: int, p: _SheetParser):
        sh = self.sheets[idx]
        f0, f1 = p.first_fid, len(self._fkey)
        sh.frange = (f0, f1)
        fkeys = np.array(self._fkey[f0:f1], dtype=np.int64)
        fids = np.arange(f0, f1, dtype=np.int64)
        if len(fkeys) > 1 and np.any(np.diff(fkeys) < 0):
            order = np.argsort(fkeys, kind="stable")
            fkeys, fids = fkeys[order], fids[order]
        sh.fkeys, sh.fids = fkeys, fids
        vkeys = np.frombuffer(p.vkeys, dtype=np.int64).copy() if len(p.vkeys) else np.zeros(0, np.int64)
        sh.vkeys = np.sort(vkeys) if len(vkeys) > 1 and np.any(np.diff(vkeys) < 0) else vkeys
        sh.arrays = p.arrays
        allkeys = [k for k in (fkeys, sh.vkeys) if len(k)]
        if allkeys:
            rows = [int(k[0] >> 14) for k in allkeys] + [int(k[-1] >> 14) for k in allkeys]
            cols = [int((k & 0x3FFF).max()) for k in allkeys] + [int((k & 0x3FFF).min()) for k in allkeys]
            sh.bounds = (min(rows), min(cols), max(rows), max(cols))
        for r0, c0, r1, c1, _ in p.arrays:
            b = sh.bounds or (r0, c0, r1, c1)
            sh.bounds = (min(b[0], r0), min(b[1], c0), max(b[2], r1), max(b[3], c1))
        if len(fkeys) and sh.bounds and (sh.bounds[2] + 1) * (sh.bounds[3] + 1) <= GRID_CELLS:
            grid = np.zeros((sh.bounds[2] + 1, sh.bounds[3] + 1), np.int32)
            grid[fkeys >> 14, fkeys & 0x3FFF] = fids + 1
            for r0, c0, r1, c1, fid in p.arrays:
                sub = grid[r0:r1 + 1, c0:c1 + 1]
                sub[sub == 0] = fid + 1
            sh.grid = grid

    def _finish(self):
        n = len(self._fkey)
        self.nformulas = n
        self.fkey = np.frombuffer(self._fkey, dtype=np.int64) if n else np.zeros(0, np.int64)
        self.fsheet = np.zeros(n, np.int16)
        for i, sh in enumerate(self.sheets):
            f0, f1 = getattr(sh, "frange", (0, 0))
            self.fsheet[f0:f1] = i

    # -------------------------------------------------------- cells and references

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays (formula table, digit runs, per-sheet keys, and
        what dependent queries have built: shapes' formulas and spans, remembered references)."""
        n = sum(a.itemsize * len(a) for a in (self._fkey, self._fsid, self._voff)) + len(self._blob)
        for sh in self.sheets:
            n += sum(a.nbytes for a in (sh.fkeys, sh.fids, sh.vkeys, sh.grid) if a is not None)
        if self._rev is not None:                # built by the first dependent query
            r = self._rev
            n += sum(a.nbytes for a in (r.order, r.bounds, r.iv_sid, r.iv_c0, r.iv_c1, r.special))
        for refs in self._shape_cache.values():
            n += sum(a.nbytes for part in (refs.short, refs.tall) for a in part)
        return n

    def sheet_index(self, name: str | None, default: int = 0) -> int:
        if name is None:
            return default
        i = self.by_name.get(name.lower())
        if i is None:
            raise SheetconvError(f"no sheet {name!r} in {self.path} (sheets: "
                                 f"{', '.join(s.name for s in self.infos)})")
        return i

    def formula_at(self, s: int, row: int, col: int) -> int | None:
        """Formula id of a cell (the anchor's for a cell inside an array formula), or None."""
        sh = self.sheets[s]
        if sh.grid is not None:                  # a small sheet: array formulas are in the grid
            g = sh.grid
            return int(g[row, col]) - 1 if row < g.shape[0] and col < g.shape[1] and g[row, col] else None
        k = key_of(row, col)
        i = np.searchsorted(sh.fkeys, k)
        if i < len(sh.fkeys) and sh.fkeys[i] == k:
            return int(sh.fids[i])
        for r0, c0, r1, c1, fid in sh.arrays:
            if r0 <= row <= r1 and c0 <= col <= c1:
                return fid
        return None

    def has_formulas(self, s: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Per cell (rows[i], cols[i]) of sheet ``s``: whether it holds a formula (array
        formulas' ranges included), for many cells at once."""
        sh = self.sheets[s]
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        if sh.grid is not None:
            g = sh.grid
            ok = (rows < g.shape[0]) & (cols < g.shape[1])
            out = np.zeros(len(rows), bool)
            out[ok] = g[rows[ok], cols[ok]] > 0
            return out
        keys = (rows << 14) | cols
        i = np.minimum(np.searchsorted(sh.fkeys, keys), max(len(sh.fkeys) - 1, 0))
        out = sh.fkeys[i] == keys if len(sh.fkeys) else np.zeros(len(keys), bool)
        for r0, c0, r1, c1, _ in sh.arrays:
            out |= (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)
        return out

    def is_value(self, s: int, row: int, col: int) -> bool:
        sh = self.sheets[s]
        k = key_of(row, col)
        i = np.searchsorted(sh.vkeys, k)
        return bool(i < len(sh.vkeys) and sh.vkeys[i] == k)

    def cell_text(self, s: int, row: int, col: int) -> str:
        return f"{quote_sheet(self.sheets[s].name)}!{a1(row, col)}"

    def _shape(self, fid: int) -> tuple[int, int, int, int]:
        """(shape id, formula whose digit runs it uses, drow, dcol) of formula ``fid``."""
        sid = self._fsid[fid]
        if sid >= 0:
            return sid, fid, 0, 0
        m = -sid - 1
        k, mk = self._fkey[fid], self._fkey[m]
        return self._fsid[m], m, (k >> 14) - (mk >> 14), (k & 0x3FFF) - (mk & 0x3FFF)

    def refs(self, fid: int, whole: bool = False) -> list[tuple]:
        """Resolved references of formula ``fid``: (sheet, r0, c0, r1, c1) inclusive. Whole
        rows and columns (A:A, 3:3) reach as far as the cells present on their sheet, or,
        with ``whole``, to the sheet's edge (an empty cell beyond the present ones is read too)."""
        cache = self._reach_cache if whole else self._refs_cache
        out = cache.get(fid)
        if out is not None:
            return out
        sid, vf, dr, dc = self._shape(fid)
        host = int(self.fsheet[fid])
        key = self._fkey[fid]
        out = []
        for ref in self.cache.refs(sid, self._runs(vf), dr, dc):
            if ref.sheet is None and ref.r0 is not None and ref.c0 is not None:
                out.append((host, ref.r0, ref.c0, ref.r1, ref.c1))    # the common case, inline
            else:
                out.extend(self._resolve(ref, host, key >> 14, key & 0x3FFF, whole=whole))
        if len(cache) < 50_000:                     # a bounded cache: long walks pass through
            cache[fid] = out
        return out

    def _runs(self, fid: int) -> list[bytes]:
        a = self._voff[fid]
        b = self._voff[fid + 1] if fid + 1 < len(self._voff) else len(self._blob)
        return bytes(self._blob[a:b]).split()

    def _resolve(self, ref: Ref, host: int, row: int, col: int, stack: tuple = (), whole: bool = False) -> list[tuple]:
        """A reference of a formula on sheet ``host`` at (row, col) -> rectangles. ``stack``:
        the defined names being resolved (a name met again is a cycle: reported, not looped).
        ``whole``: whole rows and columns to the sheet's edge (see :meth:`refs`)."""
        if ref.table is not None:
            return self._resolve_table(ref, host, row, col)
        if ref.parts is not None:
            return self._resolve_chain(ref, host, row, col, stack, whole)
        if ref.name is not None:
            return self._resolve_name(ref, host, row, col, stack, whole)
        if ref.sheet is None:
            targets = [host]
        elif isinstance(ref.sheet, tuple):
            a, b = (self.by_name.get(n.lower()) for n in ref.sheet)
            if a is None or b is None:
                return []
            targets = list(range(min(a, b), max(a, b) + 1))
        else:
            t = self.by_name.get(ref.sheet.lower())
            if t is None:
                return []                        # an unknown sheet: #REF!
            targets = [t]
        out = []
        for t in targets:
            r0, c0, r1, c1 = ref.r0, ref.c0, ref.r1, ref.c1
            if (r0 is None or c0 is None) and whole:     # whole rows / columns: the sheet
                r0, r1 = (0, MAX_ROWS - 1) if r0 is None else (r0, r1)
                c0, c1 = (0, MAX_COLS - 1) if c0 is None else (c0, c1)
            elif r0 is None or c0 is None:       # whole rows / columns: the used range
                b = self.sheets[t].bounds
                if b is None:
                    continue
                if r0 is None:
                    r0, r1 = b[0], b[2]
                if c0 is None:
                    c0, c1 = b[1], b[3]
                if r0 > r1 or c0 > c1:
                    continue
            out.append((t, r0, c0, r1, c1))
        return out

    def _resolve_name(self, ref: Ref, host: int, row: int, col: int, stack: tuple, whole: bool) -> list[tuple]:
        scope = self.by_name.get(ref.sheet.lower()) if isinstance(ref.sheet, str) else None
        lname = ref.name.lower()
        found = key = None
        for local in ([scope] if scope is not None else [host]) + [None]:
            found = self.names.get((local, lname))
            if found is not None:
                key = (local, lname)
                break
        if found is None:
            if ref.sheet is None and lname in self.tables:      # a table's name alone: its data
                return self._resolve_table(Ref(None, None, None, None, None, table=StructRef(ref.name, frozenset())),
                                           host, row, col)
            return []
        if key in stack:
            chain = " -> ".join(n for _, n in stack[stack.index(key):]) + f" -> {lname}"
            msg = f"defined name {ref.name!r} refers to itself ({chain}); its references end there"
            if msg not in self.warnings:
                self.warnings.append(msg)
            return []
        out = []
        for r in found:
            out.extend(self._resolve(r, host, row, col, stack + (key,), whole))
        return out

    def _resolve_chain(self, ref: Ref, host: int, row: int, col: int, stack: tuple, whole: bool) -> list[tuple]:
        """A1:B2:name -> the bounding range of every piece (all on one sheet, else nothing)."""
        rects = []
        for part in ref.parts:
            got = self._resolve(part, host, row, col, stack, whole)
            if not got:
                return []                        # a piece that is no range: #REF! / #NAME?
            rects.extend(got)
        if len({t for t, *_ in rects}) != 1:
            return []
        return [(rects[0][0], min(r[1] for r in rects), min(r[2] for r in rects),
                 max(r[3] for r in rects), max(r[4] for r in rects))]

    def _resolve_table(self, ref: Ref, host: int, row: int, col: int) -> list[tuple]:
        sref = ref.table
        if sref.table is None:                   # [Col] inside a table: the one holding the cell
            hit = next(((i, t) for i, t in self.tables.values()
                        if i == host and t.ref[0] <= row <= t.ref[2] and t.ref[1] <= col <= t.ref[3]), None)
        else:
            hit = self.tables.get(sref.table.lower())
        if hit is None:
            return []
        sheet, table = hit
        rect = resolve_table(sref, table, row)
        return [] if rect is None else [(sheet, *rect)]

    def formulas_in(self, s: int, r0: int, c0: int, r1: int, c1: int) -> np.ndarray:
        """Ids of the formula cells inside a rectangle (array formulas touching it included)."""
        sh = self.sheets[s]
        if sh.bounds is None or not len(sh.fkeys) and not sh.arrays:
            return _EMPTY
        if sh.grid is not None:                  # a small sheet: a dense grid of formula ids + 1
            g = sh.grid[max(r0, 0):r1 + 1, max(c0, 0):c1 + 1]
            hit = g[g > 0]
            if sh.arrays and len(hit) > 1:        # an array formula fills many cells with one id
                hit = np.unique(hit)
            return hit.astype(np.int64) - 1 if len(hit) else _EMPTY
        b = sh.bounds
        r0, r1 = max(r0, b[0]), min(r1, b[2])
        keys = sh.fkeys
        if r0 > r1 or not len(keys):
            out = _EMPTY
        elif r0 == r1:
            lo = keys.searchsorted((r0 << 14) | c0)
            hi = keys.searchsorted((r0 << 14) | c1, side="right")
            out = sh.fids[lo:hi]
        else:
            rows = np.arange(r0, r1 + 1, dtype=np.int64) << 14
            lo = keys.searchsorted(rows | c0)
            hi = keys.searchsorted(rows | c1, side="right")
            keep = hi > lo
            if not keep.any():
                out = _EMPTY
            else:
                lo, hi = lo[keep], hi[keep]
                lens = hi - lo
                idx = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
                out = sh.fids[idx]
        if sh.arrays:
            extra = [fid for a0, b0, a1, b1, fid in sh.arrays if a0 <= r1 and a1 >= r0 and b0 <= c1 and b1 >= c0]
            if extra:
                out = np.unique(np.concatenate([out, np.asarray(extra, np.int64)]))
        return out

    def host_rect(self, fid: int) -> tuple:
        """The cells a formula fills: its own cell, or an array formula's whole range."""
        s, k = int(self.fsheet[fid]), int(self._fkey[fid])
        for r0, c0, r1, c1, f in self.sheets[s].arrays:
            if f == fid:
                return s, r0, c0, r1, c1
        return s, k >> 14, k & 0x3FFF, k >> 14, k & 0x3FFF

    # -------------------------------------------------------- queries

    def precedents(self, s: int, row: int, col: int, depth: int | None = None, transparent=frozenset()):
        """Levels of precedent rectangles of one cell, breadth first.

        Level k holds the references of the formula cells first reached at level k-1
        (level 1: the cell's own references). Each formula cell is expanded once, so a
        circular reference ends the walk; the cycle is found and returned. A single-cell
        reference to a formula in ``transparent`` (formula ids: intermediate cells such as
        partial sums) is replaced by that formula's own references, at the same level.
        Returns (levels: :class:`LevelRects`, whose ``levels[k]`` is a dict sheet -> list of
        rects, cycle: list of fids or None).
        """
        root = self.formula_at(s, row, col)
        if root is None:
            return LevelRects.empty(), None
        seen = array("i", [0]) * self.nformulas   # per formula: 1 + the level it was reached at (0: not yet)
        seen[root] = 1
        frontier = [root]
        buf = array("i")                         # (level, sheet, r0, c0, r1, c1) per rectangle
        here, revisit = 0, False
        refs, cell_formula, inside = self.refs, self.formula_at, self.formulas_in
        while frontier and (depth is None or here < depth):
            nxt = []
            for f in frontier:
                pieces = self._expand(f, transparent) if transparent else \
                    ((t, (r0, c0, r1, c1), None) for t, r0, c0, r1, c1 in refs(f))
                for t, rect, found in pieces:
                    r0, c0, r1, c1 = rect
                    buf.extend((here, t, r0, c0, r1, c1))
                    if found is None:            # the plain walk: look the cells up here
                        if r0 == r1 and c0 == c1:
                            g = cell_formula(t, r0, c0)
                            found = () if g is None else (g,)
                        else:
                            found = inside(t, r0, c0, r1, c1).tolist()
                    for g in found:
                        lv = seen[g]
                        if not lv:
                            seen[g] = here + 2
                            nxt.append(g)
                        elif lv <= here + 1:         # an edge back up: maybe a cycle
                            revisit = True
            here += 1
            frontier = nxt
        levels = LevelRects.from_buffer(buf, here)
        if not revisit:
            return levels, None
        return levels, _find_cycle(root, lambda f: [g for _, _, found in self._expand(f, transparent) for g in found])

    def _expand(self, f: int, transparent):
        """(sheet, rect, formula ids inside it) for each reference of formula ``f``; single-cell
        references to ``transparent`` formulas are replaced by their own references."""
        todo = list(self.refs(f))
        passed = set()
        while todo:
            t, r0, c0, r1, c1 = todo.pop()
            if r0 == r1 and c0 == c1:
                g = self.formula_at(t, r0, c0)
                found = () if g is None else (g,)
            else:
                found = self.formulas_in(t, r0, c0, r1, c1).tolist()
            if transparent and len(found) == 1 and r0 == r1 and c0 == c1 and found[0] in transparent \
                    and found[0] not in passed and found[0] != f:
                passed.add(found[0])
                todo.extend(self.refs(found[0]))
                continue
            yield t, (r0, c0, r1, c1), found

    def dependents(self, s: int, row: int, col: int, depth: int | None = None, transparent=frozenset()):
        """Levels of dependent rectangles (formula cells reading the previous level).

        Readers in ``transparent`` are looked through: their own readers join the level.
        """
        frontier = {s: [(row, col, row, col)]}
        seen: set[int] = set()
        start = self.formula_at(s, row, col)
        if start is not None:
            seen.add(start)
        buf, nlevels, cycle = array("i"), 0, None
        while frontier and (depth is None or nlevels < depth):
            hits = set(self._readers(frontier))
            passed: set[int] = set()
            while transparent:
                through = [f for f in hits if f in transparent and f not in passed and f != start]
                if not through:
                    break
                passed.update(through)
                hits.update(self._readers(_rects_by_sheet(self.host_rect(f) for f in through)))
            hits -= passed
            new = [f for f in sorted(hits) if f not in seen]
            if start is not None and start in hits and cycle is None:
                cycle = [start]
            if not new:
                break
            seen.update(new)
            rects: dict[int, list] = {}
            for f in new:
                t, r0, c0, r1, c1 = self.host_rect(f)
                rects.setdefault(t, []).append((r0, c0, r1, c1))
                buf.extend((nlevels, t, r0, c0, r1, c1))
            nlevels += 1
            frontier = {t: compact_rects(v) for t, v in rects.items()}
        if cycle is not None and start is not None:
            _, cyc = self.precedents(s, row, col)
            cycle = cyc or cycle
        return LevelRects.from_buffer(buf, nlevels), cycle

    def _readers(self, frontier: dict[int, list]) -> list[int]:
        """Formula ids whose references touch any rectangle of ``frontier``.

        Only shapes whose column spans (see :meth:`_reverse`) meet the frontier's columns are
        looked at, and shapes that may hold names, whole rows or columns, tables or 3-D
        references (their spans are unknown without the tokenizer). Of each, only the
        references starting in rows the frontier can reach are tested (see
        :meth:`_shape_refs`)."""
        rev = self._reverse()
        out: set[int] = set()
        rows = [(r[0], r[2]) for rects in frontier.values() for r in rects]
        if not rows:
            return []
        top, bottom = min(r[0] for r in rows), max(r[1] for r in rows)
        near, special = [], []
        for sid in _meeting(rev, frontier):
            refs = self._shape_refs(sid)
            short = refs.short
            if len(short[1]) <= _BUCKET:                          # few: all tested, no search
                near.append(short)
            else:
                lo = short[1].searchsorted(top - _BUCKET)         # R0, sorted; short: R1 - R0 <= _BUCKET
                hi = short[1].searchsorted(bottom, side="right")
                if hi > lo:
                    near.append(tuple(a[lo:hi] for a in short))
            if len(refs.tall[0]):
                near.append(refs.tall)
            special.extend(refs.special)
        if near:
            T, R0, C0, R1, C1, F = (np.concatenate(a) for a in zip(*near))
            for t, rects in frontier.items():
                on = np.flatnonzero(T == t)
                if len(on):
                    hit = _touching(rects, R0[on], C0[on], R1[on], C1[on])
                    out.update(F[on[hit]].tolist())
        for f in special:
            if f not in out and any(a0 <= q1 and a1_ >= q0 and b0 <= p1 and b1 >= p0
                                    for t, a0, b0, a1_, b1 in self.refs(f, whole=True)
                                    for q0, p0, q1, p1 in frontier.get(t, ())):
                out.add(f)
        return sorted(out)

    def _shape_refs(self, sid: int) -> _ShapeRefs:
        """The plain references of every formula of shape ``sid``: 'short' ones (at most
        _BUCKET rows tall) sorted by first row, 'tall' ones, and the formulas with names,
        whole rows or columns or 3-D references ('special', looked at one by one).
        Remembered, within _CACHED references in all (a shape counting _SHAPE_COST more)."""
        got = self._shape_cache.get(sid)
        if got is not None:
            return got
        rev = self._rev
        fids = rev.order[rev.bounds[sid]:rev.bounds[sid + 1]].astype(np.int64)
        filled, special = [], []
        for tmpl, group in self._templates_of(sid, fids):
            filled.append(self._fill(tmpl, group))
            if not _all_simple(tmpl):
                special.extend(group.tolist())
        cols = [np.concatenate(a).astype(dt) for a, dt in zip(zip(*filled), _REF_TYPES)]
        tall = (cols[3] - cols[1]) > _BUCKET
        short = np.flatnonzero(~tall)
        short = short[np.argsort(cols[1][short], kind="stable")]
        got = _ShapeRefs(tuple(a[short] for a in cols), tuple(a[tall] for a in cols), tuple(special))
        size = _SHAPE_COST + len(cols[0])
        while self._shape_cache and self._cached + size > _CACHED:
            old_sid, old = next(iter(self._shape_cache.items()))
            del self._shape_cache[old_sid]
            self._cached -= _SHAPE_COST + len(old.short[0]) + len(old.tall[0])
        if size <= _CACHED:
            self._shape_cache[sid] = got
            self._cached += size
        return got

    def _reverse(self) -> _Reverse:
        """Per shape, its formulas and the column spans its references can reach (built on
        first use, from the shapes' text alone: no formula is tokenized here)."""
        if self._rev is not None:
            return self._rev
        n = self.nformulas
        raw = np.frombuffer(self._fsid, dtype=np.int32) if n else np.zeros(0, np.int32)
        sids = raw.astype(np.int64)
        child = np.flatnonzero(raw < 0)
        src = -sids[child] - 1
        sids[child] = raw[src]
        order = np.argsort(sids, kind="stable").astype(np.int32)
        bounds = np.searchsorted(sids[order], np.arange(len(self.cache) + 1))
        del sids
        moves: dict[int, tuple] = {}              # shape -> (min, max) column move of its shared cells
        if len(child):
            dc = (self.fkey[child] & 0x3FFF) - (self.fkey[src] & 0x3FFF)
            for sid, lo, hi in _min_max_by(raw[src].astype(np.int64), dc):
                moves[sid] = (min(lo, 0), max(hi, 0))
        ivs, special = [], []
        for sid, shape in enumerate(self.cache.shapes):
            if bounds[sid + 1] == bounds[sid]:
                continue
            spans = _column_spans(shape)
            if spans is None:
                special.append(sid)
                continue
            lo, hi = moves.get(sid, (0, 0))
            ivs.extend((sid, c0 + lo, c1 + hi) for c0, c1 in spans)
        iv = np.array(ivs, np.int64).reshape(-1, 3)
        self._rev = _Reverse(order, bounds, iv[:, 0].copy(), iv[:, 1].copy(), iv[:, 2].copy(),
                             np.asarray(special, np.int64))
        return self._rev

    def _templates_of(self, sid: int, fids: np.ndarray):
        """(template, formula ids) pairs covering ``fids`` (all of shape ``sid``): one pair,
        unless digits in names or sheet names differ between them."""
        src = self._sources(fids)
        first = self._runs(int(src[0]))
        tmpl = self.cache.template(sid, first)
        if not tmpl.fixed:
            return [(tmpl, fids)]
        groups: dict[tuple, list] = {}
        for f, s in zip(fids.tolist(), src.tolist()):
            runs = self._runs(s)
            groups.setdefault(tuple(runs[k] for k in tmpl.fixed), []).append(f)
        return [(self.cache.template(sid, self._runs(int(self._sources(np.asarray(g[:1]))[0]))), np.asarray(g, np.int64))
                for g in groups.values()]

    def _sources(self, fids: np.ndarray) -> np.ndarray:
        """Per formula, the formula holding its digit runs (a shared formula's master)."""
        raw = np.frombuffer(self._fsid, dtype=np.int32)[fids]
        return np.where(raw < 0, -raw.astype(np.int64) - 1, fids)

    def _values(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The digit runs of formulas ``src`` (none of them a shared formula's other cell) as
        one int64 array, and where each formula's start in it."""
        u, inv = np.unique(src, return_inverse=True)
        voff = np.frombuffer(self._voff, dtype=np.int64)
        starts = voff[u]
        ends = np.where(u + 1 < len(voff), voff[np.minimum(u + 1, len(voff) - 1)], len(self._blob))
        lens = ends - starts
        idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        vals = _parse_runs(np.frombuffer(self._blob, dtype=np.uint8)[idx].tobytes())
        nruns = np.array(self.cache.nruns or [0], dtype=np.int64)
        counts = nruns[np.frombuffer(self._fsid, dtype=np.int32)[u]]
        if len(vals) != counts.sum():
            raise SheetconvError(f"{self.path}: internal index mismatch ({len(vals)} vs {counts.sum()} numbers)")
        return vals, (np.cumsum(counts) - counts)[inv]

    def _fill(self, tmpl, fids: np.ndarray) -> tuple:
        """The plain references (``rect`` entries with rows and columns on one sheet) of
        formulas ``fids`` of one template, as arrays (sheet, r0, c0, r1, c1, formula id).

        All of the template's references are filled for a block of formulas at once: an
        (formulas x references x ends) array of rows and one of columns, reduced to each
        rectangle's min and max (a cell's one end is repeated, which changes neither).
        References moved off the sheet (a shared formula's cells) are left out, as in
        :func:`~.references.entry_refs`."""
        simple = [e for e in tmpl.refs if e[0] == "rect" and e[2] and e[3] and not isinstance(e[1], tuple)]
        if not simple or not len(fids):
            return (_EMPTY,) * 6
        m = max(max(len(e[2]), len(e[3])) for e in simple)
        pad = lambda items: list(items) + [items[0]] * (m - len(items))
        K = np.array([[k for k, _ in pad(e[2])] for e in simple], np.int64)          # (refs, ends): digit run
        RREL = np.array([[rel for _, rel in pad(e[2])] for e in simple], bool)
        CC = np.array([[c for c, _ in pad(e[3])] for e in simple], np.int64)        # (refs, ends): column
        CREL = np.array([[rel for _, rel in pad(e[3])] for e in simple], bool)
        own = np.array([e[1] is None for e in simple])                              # on the formula's sheet
        other = np.array([-2 if e[1] is None else self.by_name.get(e[1].lower(), -2) for e in simple], np.int64)
        src = self._sources(fids)
        keys, skeys = self.fkey[fids], self.fkey[src]
        dr, dc = (keys >> 14) - (skeys >> 14), (keys & 0x3FFF) - (skeys & 0x3FFF)
        vals, roff = self._values(src)
        rows = vals[roff[:, None, None] + K[None]] - 1 + dr[:, None, None] * RREL[None]
        cs = CC[None] + dc[:, None, None] * CREL[None]
        hosts = self.fsheet[fids].astype(np.int64)
        T = np.where(own[None], hosts[:, None], other[None]).ravel()
        ends = [rows[:, :, j] for j in range(m)]       # elementwise over the ends: no reduction axis
        R0, R1 = np.minimum.reduce(ends).ravel(), np.maximum.reduce(ends).ravel()
        ends = [cs[:, :, j] for j in range(m)]
        C0, C1 = np.minimum.reduce(ends).ravel(), np.maximum.reduce(ends).ravel()
        F = np.repeat(fids, len(simple))
        ok = (R0 >= 0) & (R1 < MAX_ROWS) & (C0 >= 0) & (C1 < MAX_COLS)
        if not ok.all():
            return T[ok], R0[ok], C0[ok], R1[ok], C1[ok], F[ok]
        return T, R0, C0, R1, C1, F


@dataclass
class _Reverse:
    """What dependent queries search: formula ids grouped by shape (``order[bounds[s]:
    bounds[s + 1]]``: the formulas of shape s, shared formulas' cells under their master's),
    the column spans (iv_c0..iv_c1, inclusive) that shape iv_sid's references can reach,
    and the shapes whose spans are unknown (always searched)."""
    order: np.ndarray
    bounds: np.ndarray
    iv_sid: np.ndarray
    iv_c0: np.ndarray
    iv_c1: np.ndarray
    special: np.ndarray


class _ShapeRefs(NamedTuple):
    """One shape's references, for dependent queries: (sheet, r0, c0, r1, c1, formula id)
    arrays, see :meth:`Index._shape_refs`."""
    short: tuple
    tall: tuple
    special: tuple


def _meeting(rev: _Reverse, frontier: dict[int, list]) -> list[int]:
    """Shapes with a column span meeting the columns of any frontier rectangle (sheets
    aside), and the shapes of unknown span."""
    hit = np.zeros(len(rev.iv_sid), bool)
    for rects in frontier.values():
        runs = merge_runs((p0, p1 + 1) for _, p0, _, p1 in rects)
        if not runs:
            continue
        S = np.array([a for a, _ in runs], np.int64)
        E = np.array([b for _, b in runs], np.int64)
        i = np.searchsorted(S, rev.iv_c1, side="right") - 1     # the last run starting at or before c1
        hit |= (i >= 0) & (E[np.maximum(i, 0)] > rev.iv_c0)
    return sorted(set(rev.iv_sid[hit].tolist()) | set(rev.special.tolist()))


def _touching(rects: list, R0, C0, R1, C1) -> np.ndarray:
    """Per rectangle (R0[i], C0[i], R1[i], C1[i]): whether it meets any of ``rects``."""
    if len(rects) <= 32:
        hit = np.zeros(len(R0), bool)
        for q0, p0, q1, p1 in rects:
            hit |= (R0 <= q1) & (R1 >= q0) & (C0 <= p1) & (C1 >= p0)
        return hit
    arr = np.asarray(rects, np.int64).reshape(-1, 4)
    b0, a0, b1, a1 = int(arr[:, 0].min()), int(arr[:, 1].min()), int(arr[:, 2].max()), int(arr[:, 3].max())
    h, w = b1 - b0 + 1, a1 - a0 + 1
    if h * w > 1 << 22:                          # a large box: a few rectangles at a time
        hit = np.zeros(len(R0), bool)
        for i in range(0, len(rects), 32):
            hit |= _touching(rects[i:i + 32], R0, C0, R1, C1)
        return hit
    covered = np.zeros((h + 1, w + 1), np.int32)   # covered[i, j]: frontier cells above-left of (i, j)
    covered[1:, 1:] = _paint(arr - [b0, a0, b0, a0], h, w)[:, 1:w + 1].cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    r0, r1 = np.maximum(R0, b0) - b0, np.minimum(R1, b1) - b0
    c0, c1 = np.maximum(C0, a0) - a0, np.minimum(C1, a1) - a0
    inside = (r0 <= r1) & (c0 <= c1)
    r0, r1, c0, c1 = (np.where(inside, v, 0) for v in (r0, r1, c0, c1))
    count = covered[r1 + 1, c1 + 1] - covered[r0, c1 + 1] - covered[r1 + 1, c0] + covered[r0, c0]
    return inside & (count > 0)


def _all_simple(tmpl) -> bool:
    return all(e[0] == "rect" and e[2] and e[3] and not isinstance(e[1], tuple) for e in tmpl.refs)


def _min_max_by(groups: np.ndarray, v: np.ndarray):
    """(group, min, max) of ``v`` per distinct value of ``groups``."""
    o = np.lexsort((v, groups))
    g, v = groups[o], v[o]
    first = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
    last = np.append(first[1:], len(g)) - 1
    return zip(g[first].tolist(), v[first].tolist(), v[last].tolist())


# A shape's text (digit runs as \x00) read without the tokenizer, to bound the columns its
# references can reach: every letter must be in a string, a logical, a function's name or a
# range of cells (A1, $B$2:C3, Sheet1!A1, 'My sheet'!A1:B2); anything else (names, whole
# rows or columns, tables, 3-D references, errors, numbers with exponents) leaves it unknown.
_NAMECH = r"A-Za-z0-9_.\\?\x00"
_SHEET = r"(?:(?:[A-Za-z_\\][A-Za-z0-9_.\\\x00]*|'(?:[^']|'')+')!)"
_CELLS = r"\$?[A-Za-z]{1,3}\$?\x00"
_SCAN = re.compile(r'"(?:[^"]|"")*"'
                   rf"|(?<![{_NAMECH}$!:])(?i:TRUE|FALSE)(?![{_NAMECH}(!:$'])"
                   rf"|(?P<range>(?<![{_NAMECH}$!:']){_SHEET}?{_CELLS}(?::{_SHEET}?{_CELLS})*(?![{_NAMECH}(!:$']))"
                   r"|[A-Za-z_\\][A-Za-z0-9_.\\\x00]*\(")
_COLUMN = re.compile(rf"(?:{_SHEET})?\$?([A-Za-z]{{1,3}})\$?\x00")
_PLAIN_REST = re.compile(r"[\x00.,+\-*/^&=<>()% ;{}\t\r\n]*")


def _column_spans(shape: str) -> list[tuple[int, int]] | None:
    """Inclusive column spans of a shape's ranges of cells (each range its own span), or
    None if the shape holds something that may be a reference of another kind."""
    spans, rest, pos = [], [], 0
    for m in _SCAN.finditer(shape):
        rest.append(shape[pos:m.start()])
        pos = m.end()
        if m.group("range"):
            cols = [COLNUM.get(x.upper(), MAX_COLS) for x in _COLUMN.findall(m.group("range"))]
            spans.append((min(cols), max(cols)))
    rest.append(shape[pos:])
    if not _PLAIN_REST.fullmatch("".join(rest)):
        return None
    return sorted(set(spans))


def _parse_runs(blob: bytes) -> np.ndarray:
    """Space-separated ASCII numbers -> int64 array (empty for an empty or blank buffer)."""
    if not blob or not blob.strip():
        return np.zeros(0, np.int64)
    return np.fromstring(blob.decode("ascii"), sep=" ", dtype=np.int64)


def _rects_by_sheet(host_rects) -> dict[int, list]:
    out: dict[int, list] = {}
    for t, r0, c0, r1, c1 in host_rects:
        out.setdefault(t, []).append((r0, c0, r1, c1))
    return out


def _find_cycle(root: int, kids) -> list[int] | None:
    """A cycle among the formula cells reachable from ``root`` (``kids(f)``: the formula
    ids ``f`` reads), by an iterative depth-first search; None if there is none."""
    color: dict[int, int] = {root: 1}
    stack = [(root, iter(kids(root)))]
    path = [root]
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            color[node] = 2
            stack.pop()
            path.pop()
            continue
        c = color.get(nxt, 0)
        if c == 1:
            return path[path.index(nxt):] + [nxt]
        if c == 0:
            color[nxt] = 1
            stack.append((nxt, iter(kids(nxt))))
            path.append(nxt)
    return None


def compact_rects(rects) -> list[tuple]:
    """The union of inclusive (r0, c0, r1, c1) rectangles as few disjoint rectangles.

    Sweeps the distinct row boundaries (each band's columns merged into runs), then joins
    vertically touching pieces with the same columns. Exact; no cell is ever listed.
    """
    if isinstance(rects, np.ndarray):            # an (n, 4) array: no tuples made
        arr = rects.reshape(-1, 4)
        if len(arr) and (arr[:, 0] == arr[:, 2]).all() and (arr[:, 1] == arr[:, 3]).all():   # cells: by keys
            key, r1, c1 = _compact_cells(np.zeros(len(arr), np.int64), arr[:, 0], arr[:, 1])
            out = np.stack([(key >> 14) & 0xFFFFF, key & 0x3FFF, r1, c1], axis=1)
            return [tuple(r) for r in out[np.lexsort(out.T[::-1])].tolist()]
        arr = np.unique(arr.astype(np.int64), axis=0)
        if len(arr) <= 1:
            return [tuple(r) for r in arr.tolist()]
    else:
        rects = list(set(rects))
        if len(rects) <= 1:
            return rects
        if len(rects) <= 8:                      # a few: plain Python, no arrays (one per trace level)
            return _join(_bands(rects))
        arr = np.asarray(rects, dtype=np.int64)
    R0, C0 = int(arr[:, 0].min()), int(arr[:, 1].min())
    h, w = int(arr[:, 2].max()) - R0 + 1, int(arr[:, 3].max()) - C0 + 1
    pieces = []
    if h * w <= 1 << 22:                         # paint the bounding box, read runs row by row
        g = _paint(arr - [R0, C0, R0, C0], h, w)
        d = np.diff(g, axis=1)
        new = np.flatnonzero(np.concatenate([[True], np.any(g[1:] != g[:-1], axis=1)]))
        ends = np.concatenate([new[1:], [h]]) - 1
        sub = d[new]
        ys, starts = np.nonzero(sub == 1)
        _, stops = np.nonzero(sub == -1)          # row-major: each start pairs with the next stop
        pieces = list(zip((starts + C0).tolist(), (stops + C0 - 1).tolist(), (new[ys] + R0).tolist(),
                          (ends[ys] + R0).tolist()))
    else:                                        # sweep the row boundaries, rectangles live in a set
        pieces = _sweep(arr)
    return _join(pieces)


def _paint(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, 4) inclusive rectangles inside an h x w box -> an int8 (h, w + 2) grid, 1 inside
    (one column of margin either side), by summing corner marks (no loop over rectangles)."""
    marks = np.zeros((h + 1, w + 3), np.int32)
    a, b, c, d = arr[:, 0], arr[:, 1] + 1, arr[:, 2] + 1, arr[:, 3] + 2
    for rr, cc, sign in ((a, b, 1), (a, d, -1), (c, b, -1), (c, d, 1)):
        np.add.at(marks, (rr, cc), sign)
    return (marks.cumsum(axis=0).cumsum(axis=1)[:h, :w + 2] > 0).astype(np.int8)


def _join(pieces: list[tuple]) -> list[tuple]:
    """(c0, c1, r0, r1) band pieces -> rectangles, vertically touching equal pieces joined."""
    pieces.sort()
    out = []
    for c0, c1, r0, r1 in pieces:
        if out and out[-1][1] == c0 and out[-1][3] == c1 and out[-1][2] + 1 == r0:
            out[-1] = (out[-1][0], c0, r1, c1)
        else:
            out.append((r0, c0, r1, c1))
    return sorted(out)


def _bands(rects: list[tuple]) -> list[tuple]:
    """The band pieces of a few rectangles, without numpy."""
    bounds = sorted({r[0] for r in rects} | {r[2] + 1 for r in rects})
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        live = [(c0, c1 + 1) for r0, c0, r1, c1 in rects if r0 <= a <= r1]
        for c0, c1 in (live if len(live) == 1 else merge_runs(live)):
            pieces.append((c0, c1 - 1, a, b - 1))
    return pieces


def _sweep(arr: np.ndarray) -> list[tuple]:
    """Bands between distinct row boundaries, each band's live columns merged into runs:
    (c0, c1, r0, r1) pieces. Each rectangle enters and leaves the live set once, so the work
    is the sum of live rectangles over bands (linear for scattered cells), never all x all."""
    r0s, ends = arr[:, 0], arr[:, 2] + 1
    by_start, by_end = np.argsort(r0s, kind="stable").tolist(), np.argsort(ends, kind="stable").tolist()
    r0s, ends = r0s.tolist(), ends.tolist()
    cols = list(zip(arr[:, 1].tolist(), (arr[:, 3] + 1).tolist()))
    bounds = np.unique(np.concatenate([arr[:, 0], arr[:, 2] + 1])).tolist()
    live: dict[int, tuple] = {}
    si = ei = 0
    n = len(cols)
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        while si < n and r0s[by_start[si]] <= a:
            live[by_start[si]] = cols[by_start[si]]
            si += 1
        while ei < n and ends[by_end[ei]] <= a:
            live.pop(by_end[ei], None)
            ei += 1
        if len(live) == 1:
            (c0, c1), = live.values()
            pieces.append((c0, c1 - 1, a, b - 1))
        elif live:
            for c0, c1 in merge_runs(live.values()):
                pieces.append((c0, c1 - 1, a, b - 1))
    return pieces


class LevelRects(Sequence):
    """Levels of rectangles held as one array, never as objects per level.

    ``data`` is an (n, 6) int32 array: per rectangle its level, sheet and inclusive
    (r0, c0, r1, c1), sorted by level (rectangles of one level keep their order). A level may
    be empty (a formula with no references). ``levels[k]`` is the dict {sheet: [rects]} of
    level k, built on access; iteration, ``len`` and ``==`` with a list behave as for the
    list of those dicts.
    """

    def __init__(self, data: np.ndarray, nlevels: int):
        self.data = data
        self.nlevels = nlevels
        self.starts = np.searchsorted(data[:, 0], np.arange(nlevels + 1)) if len(data) else \
            np.zeros(nlevels + 1, np.int64)

    @classmethod
    def empty(cls) -> LevelRects:
        return cls(np.zeros((0, 6), np.int32), 0)

    @classmethod
    def from_buffer(cls, buf: array, nlevels: int) -> LevelRects:
        data = np.frombuffer(buf, dtype=np.int32).reshape(-1, 6) if len(buf) else np.zeros((0, 6), np.int32)
        return cls(data, nlevels)

    def __len__(self) -> int:
        return self.nlevels

    def rows(self, k: int) -> np.ndarray:
        """The (level, sheet, r0, c0, r1, c1) rows of level ``k``."""
        return self.data[self.starts[k]:self.starts[k + 1]]

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self.nlevels))]
        if k < 0:
            k += self.nlevels
        if not 0 <= k < self.nlevels:
            raise IndexError(k)
        out: dict[int, list] = {}
        for _, t, r0, c0, r1, c1 in self.rows(k).tolist():
            out.setdefault(t, []).append((r0, c0, r1, c1))
        return out

    def __eq__(self, other) -> bool:
        if isinstance(other, LevelRects):
            return self.nlevels == other.nlevels and np.array_equal(self.data, other.data)
        if isinstance(other, (list, tuple)):
            return len(other) == self.nlevels and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"<LevelRects: {self.nlevels} levels, {len(self.data)} rectangles>"

    def compact(self) -> LevelRects:
        """Each level's rectangles, per sheet, as :func:`compact_rects` gives them (same
        rectangles, same order), computed for many levels at once (in chunks of about
        _CHUNK rectangles, whole levels each, so the scratch memory stays bounded)."""
        d, starts = self.data, self.starts
        out, n, more, k = np.empty_like(d), 0, [], 0     # compacting rarely adds rectangles: then `more`
        while k < self.nlevels:
            stop = max(int(np.searchsorted(starts, starts[k] + _CHUNK, side="right")) - 1, k + 1)
            stop = min(stop, self.nlevels)
            piece = _compact_rows(d[starts[k]:starts[stop]])
            if more or n + len(piece) > len(out):
                more.append(piece)
            else:
                out[n:n + len(piece)] = piece
                n += len(piece)
            k = stop
        return LevelRects(np.concatenate([out[:n]] + more) if more else out[:n], self.nlevels)


_CHUNK = 1 << 16


def _compact_rows(d: np.ndarray) -> np.ndarray:
    """:meth:`LevelRects.compact` on rows (level, sheet, r0, c0, r1, c1) sorted by level:
    all at once where every rectangle of a (level, sheet) group is one cell; other groups
    go through compact_rects one by one."""
    if not len(d):
        return d
    if d[:, 1].min() != d[:, 1].max():       # several sheets: group each level's by sheet
        d = d[np.lexsort((d[:, 1], d[:, 0]))]
    lv, t = d[:, 0], d[:, 1]
    first = np.flatnonzero(np.concatenate([[True], (lv[1:] != lv[:-1]) | (t[1:] != t[:-1])]))
    gid = np.repeat(np.arange(len(first)), np.diff(np.append(first, len(d))))
    size = np.diff(np.append(first, len(d)))[gid]
    single = (d[:, 2] == d[:, 4]) & (d[:, 3] == d[:, 5])
    multi = np.bincount(gid[~single], minlength=len(first))[gid] > 0
    cells = ~multi & (size > 1)
    alone = size == 1
    del single, size
    key = (gid[alone].astype(np.int64) << 34) | (d[alone, 2].astype(np.int64) << 14) | d[alone, 3]
    parts = [(key, d[alone, 4], d[alone, 5])]
    parts.append(_compact_cells(gid[cells].astype(np.int64), d[cells, 2], d[cells, 3]))
    rest = np.flatnonzero(multi & ~alone)
    if len(rest):
        bounds = np.flatnonzero(np.concatenate([[True], gid[rest][1:] != gid[rest][:-1], [True]]))
        for a, b in zip(bounds[:-1], bounds[1:]):
            g = int(gid[rest[a]])
            rr = np.array(compact_rects(d[rest[a:b], 2:]), np.int64).reshape(-1, 4)
            parts.append(((g << 34) | (rr[:, 0] << 14) | rr[:, 1], rr[:, 2], rr[:, 3]))
    key = np.concatenate([p[0] for p in parts])
    order = np.argsort(key, kind="stable")
    key = key[order]
    g = key >> 34
    out = np.empty((len(key), 6), d.dtype)
    out[:, 0], out[:, 1] = lv[first][g], t[first][g]
    out[:, 2], out[:, 3] = (key >> 14) & 0xFFFFF, key & 0x3FFF
    out[:, 4] = np.concatenate([p[1] for p in parts])[order]
    out[:, 5] = np.concatenate([p[2] for p in parts])[order]
    return out


def _compact_cells(gid: np.ndarray, r: np.ndarray, c: np.ndarray) -> tuple:
    """One-cell rectangles (group, row, col) -> per group, the maximal runs along rows
    joined down equal columns (what compact_rects gives for those cells), as
    (group << 34 | r0 << 14 | c0 keys, r1, c1)."""
    key = np.unique((gid << 34) | (r.astype(np.int64) << 14) | c)   # sorted by group, row, col
    if not len(key):
        return key, key, key
    new_run = np.concatenate([[True], np.diff(key) != 1])   # same group and row, next column
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(key)) - 1
    head, c1 = key[starts], key[ends] & 0x3FFF
    g, r, c0 = head >> 34, (head >> 14) & 0xFFFFF, head & 0x3FFF
    order = np.lexsort((r, c1, c0, g))              # runs of equal columns, top to bottom
    g, r, c0, c1 = g[order], r[order], c0[order], c1[order]
    join = np.concatenate([[False], (g[1:] == g[:-1]) & (c0[1:] == c0[:-1]) & (c1[1:] == c1[:-1])
                           & (r[1:] == r[:-1] + 1)])
    starts = np.flatnonzero(~join)
    ends = np.append(starts[1:], len(g)) - 1
    return (g[starts] << 34) | (r[starts] << 14) | c0[starts], r[ends], c1[starts]


def rect_boxes(rects) -> tuple:
    """Disjoint inclusive rectangles -> Region boxes (half-open runs)."""
    return tuple((((r0, r1 + 1),), ((c0, c1 + 1),)) for r0, c0, r1, c1 in rects)


def build_index(path, zf: zipfile.ZipFile | None = None, parts=None, progress=None) -> Index:
    """Read every worksheet of ``path`` once, streaming, into an :class:`Index`.

    ``zf`` (from :func:`open_zip`) and ``parts`` (from :func:`read_workbook_parts`) may be
    given by a caller that has already opened and read them; ``zf`` is then left open.
    ``progress``: optional factory ``progress(total)`` returning None or a context manager
    yielding ``update(n)``; ``total`` is the bytes of sheet XML (as the zip declares them),
    and ``update`` is called with the bytes read since its last call, adding up to ``total``.
    """
    path = os.fspath(path)
    if zf is None:
        with open_zip(path) as own:
            return build_index(path, own, progress=progress)
    sheets, names = parts if parts is not None else read_workbook_parts(zf, path)
    total = sum(zf.getinfo(s.part).file_size for s in sheets if s.part is not None)
    bar = progress(total) if progress is not None else None
    if bar is None:
        return _build(path, zf, sheets, names)
    with bar as update:
        return _build(path, _Reporting(zf, update), sheets, names)


def _build(path: str, zf, sheets, names) -> Index:
    ix = Index(path, sheets)
    for i, info in enumerate(sheets):
        if info.part is None:
            ix._finish_sheet(i, _SheetParser(ix, i))
            continue
        p = _SheetParser(ix, i)
        package.parse_part(zf, info.part, path, p, squeeze=True)
        ix._finish_sheet(i, p)
    for name, local, text in names:
        try:
            refs = references(text)
        except SheetconvError:
            refs = []
        ix.names[(local, name.lower())] = refs
    ix._finish()
    return ix


class _Reporting:
    """A zip file whose members, once opened, report the bytes read from them to ``update``."""

    def __init__(self, zf: zipfile.ZipFile, update):
        self._zf, self._update = zf, update

    def __getattr__(self, name):
        return getattr(self._zf, name)

    def open(self, *args, **kwargs):
        return _ReportingMember(self._zf.open(*args, **kwargs), self._update)


class _ReportingMember:
    def __init__(self, fh, update):
        self._fh, self._update = fh, update

    def read(self, n=-1):
        data = self._fh.read(n)
        if data:
            self._update(len(data))
        return data

    def close(self):
        self._fh.close()
