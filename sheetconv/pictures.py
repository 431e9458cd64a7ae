"""Pictures of a trace: one panel per level, drawn with matplotlib.

:func:`level_panels` turns a trace of a workbook's cells into plain data, a list of
:class:`Panel` (what is drawn, in numbers); :func:`figure` draws that data and nothing else,
so a test can compare the pictures' regions with the trace without reading pixels.

A trace deeper than ``MAX_LEVELS`` (a running total down a column has a level per row) is
drawn with its first ``MAX_LEVELS - 1`` levels and its last; the title of the last says
which levels are not drawn (the trace's text lists them all). Nothing is built for them.
A level of a graph network reaches several layers, a panel each: the first levels are
drawn only while the panels stay within ``MAX_PANELS`` (the last level's included), so a
ResNet's trace stays a picture one can look at.

For a sheetconv workbook, panel 0 is the traced cell on its layer's grid, panel k the cells
of level k on the grid of the layer they belong to (one tile per channel read, at most
``MAX_TILES`` drawn), down to the input; each tile shows that grid's stored values in grey
underneath, and the traced cells outlined with a light fill of the level's colour.
Weights and biases are listed in the trace text, not drawn. Cells of the sheets around the
network's (explain, prediction) that a dependents trace reaches are drawn as a foreign
sheet's are, in blocks.

For any other workbook, panel 0 is the traced cell in its neighbourhood and panel k the
cells of level k grouped into contiguous blocks, one tile per block, each shown inside the
block of filled cells around it (at most ``MAX_SIDE`` rows and columns: a reference to a far
corner of the sheet never makes a big picture, only the cells that exist are read).

Invariants: rectangles are numbers, (r0, c0, r1, c1), 0-based and inclusive, in the tile's
own coordinates (``Tile.origin`` is added back for sheet or grid coordinates); A1 text is
made only for labels. matplotlib is imported only when drawing.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import SheetconvError
from .formulagraph.index import compact_rects
from .nn.regions import Region
from .sheet.a1 import quote_sheet, rng
from .xlsx.files import atomic_output
from .xlsx.highlight import LEVEL_COLORS as HIGHLIGHT_COLORS
from .xlsx.highlight import check_outputs, level_color

__all__ = ["Tile", "Panel", "level_panels", "figure", "write_png", "panels_html", "touching_groups",
           "is_sheet_region", "LEVEL_COLORS", "MAX_TILES", "MAX_SIDE", "MAX_LEVELS", "MAX_PANELS"]

MAX_TILES = 8            # tiles drawn per panel; the rest are counted in the panel's title
MAX_LEVELS = 12          # levels drawn: the first MAX_LEVELS - 1 and the last; the rest are named in a title
MAX_PANELS = 16          # panels drawn (a panel per layer a level reaches), the traced cell's included
MAX_SIDE = 64            # rows or columns of a foreign sheet's window around a block
MAX_RECTS = 4096         # rectangles drawn per tile
MAX_GROUP_RECTS = 20_000  # rectangles grouped into blocks; past this, one block per rectangle
LEVEL_COLORS = [f"#{c.lower()}" for c in HIGHLIGHT_COLORS]    # as the highlighted copy's outlines


@dataclass(frozen=True)
class Tile:
    """One grid drawn in a panel: its label, where it sits (sheet or grid coordinates of its
    top-left cell), the values underneath (None: not drawn) and the traced rectangles on it."""
    label: str
    origin: tuple[int, int]
    shape: tuple[int, int]
    rects: tuple[tuple[int, int, int, int], ...]
    values: np.ndarray | None = field(default=None, compare=False, repr=False)
    channel: object = None

    def cells(self) -> set[tuple[int, int]]:
        """The traced cells, in the coordinates of ``origin`` (grid or sheet)."""
        r, c = self.origin
        return {(r + y, c + x) for y0, x0, y1, x1 in self.rects for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)}


@dataclass(frozen=True)
class Panel:
    """One level: 0 the traced cell, k the cells a k-th press of Trace Precedents adds."""
    level: int
    layer: str               # a layer's grid, or a sheet's name
    tiles: tuple[Tile, ...]
    size: tuple[int, int]    # rows x cols of the traced region's bounding box on its grid
    count: int               # traced cells of this panel (all tiles, drawn or not)
    hidden: int = 0          # tiles not drawn (past MAX_TILES)
    kind: str = "grid"       # "grid": a layer's channels; "sheet": blocks of a worksheet
    skipped: tuple[int, int] | None = None    # (first, last) levels not drawn before this one

    def title(self) -> str:
        what = "traced cell" if self.level == 0 else f"level {self.level:,}"
        if self.skipped:
            a, b = self.skipped
            what = (f"(levels {a:,} to {b:,} not drawn) " if b > a else f"(level {a:,} not drawn) ") + what
        n = len(self.tiles) + self.hidden
        more = f" ({self.hidden} more not drawn)" if self.hidden else ""
        if self.kind == "sheet":
            blocks = f"{n} block{'s' if n != 1 else ''}" + (f" ({', '.join(t.label.rsplit('(', 1)[1][:-1] for t in self.tiles)})"
                                                            if n > 1 else "")
            return f"{what}: sheet {self.layer}, {blocks}, {self.count} cell{'s' if self.count != 1 else ''}{more}"
        chans = f" on {n} channels" if n > 1 else ""
        return f"{what}: {self.layer}, {self.size[0]} x {self.size[1]}{chans}, {self.count} cell{'s' if self.count != 1 else ''}{more}"


# ---------------------------------------------------------------- data

def level_panels(workbook, trace) -> list[Panel]:
    """The panels of a trace made by ``workbook`` (a sheetconv.tracing Workbook)."""
    if workbook is None:
        raise SheetconvError("this trace has no workbook to draw from (use open_workbook(path).precedents(cell))")
    trace.complete()
    net = getattr(workbook, "net", None)
    if net is not None and trace.meta.get("engine") == "analytic":
        drawn = _drawn_levels(trace, lambda level: sum(_drawn_region(net, r) is not None for r in level))
        return _mark_skipped(_analytic_panels(workbook, trace, drawn), trace, drawn)
    drawn = _drawn_levels(trace, len)
    return _mark_skipped(_sheet_panels(workbook, trace, drawn), trace, drawn)


def _analytic_panels(wb, trace, drawn) -> list[Panel]:
    net = wb.net
    panels = []
    root = trace.root
    if root[0] in net.shapes:
        c, h, w = net.grid(root[0])
        one = Region(root[0], (c, h, w), ((((root[1], root[1] + 1),), ((root[2], root[2] + 1),),
                                           ((root[3], root[3] + 1),)),))
        panels.append(_grid_panel(wb, 0, one))
    for k, level in drawn:
        for region in level:
            kind = _drawn_region(net, region)
            if kind == "grid":
                panels.append(_grid_panel(wb, k, region))
            elif kind == "sheet":
                panels.append(_side_panel(wb, k, region))
    return panels


def is_sheet_region(region: Region) -> bool:
    """In an analytic trace, whether a region holds cells of a sheet around the network's
    (explain, prediction): a sheet's region is (rows, cols) and its name has no '.', while
    an activation grid is (C, H, W) (a layer may be called 'explain') and a parameter's
    name has a '.'."""
    return len(region.shape) == 2 and "." not in region.name


def _drawn_region(net, region: Region) -> str | None:
    """How an analytic trace's region is drawn: "grid" (an activation grid), "sheet" (see
    :func:`is_sheet_region`), or None (weights and biases are listed in the text, not drawn)."""
    if len(region.shape) == 3 and region.name in net.shapes:
        return "grid"
    return "sheet" if is_sheet_region(region) else None


def _side_panel(wb, level: int, region: Region) -> Panel:
    """Cells of a sheet around the network's, drawn as a foreign sheet's are: blocks of cells."""
    rects = compact_rects([(ra, ca, rb - 1, cb - 1) for rows, cols in region.boxes for ra, rb in rows for ca, cb in cols])
    groups = _groups(rects)
    return _block_panel(wb, level, region.name, rects, groups, _values_near(wb, region.name, [groups]))


def _drawn_levels(trace, panels_of) -> list[tuple[int, list]]:
    """(level number, level) of the levels drawn: the first ones (at most MAX_LEVELS - 1, and
    while their panels, counted by ``panels_of(level)``, fit in MAX_PANELS with the traced
    cell's and the last level's), then the last."""
    levels = trace.levels
    n = len(levels)
    if n == 0:
        return []
    budget = MAX_PANELS - 1 - panels_of(levels[-1])
    drawn = []
    for k in range(min(n - 1, MAX_LEVELS - 1)):
        budget -= panels_of(levels[k])
        if budget < 0 and drawn:
            break
        drawn.append((k + 1, levels[k]))
    return drawn + [(n, levels[-1])]


def _mark_skipped(panels: list[Panel], trace, drawn) -> list[Panel]:
    """The first panel of the last level names the levels not drawn before it."""
    n = len(trace.levels)
    if len(drawn) < 2 or drawn[-2][0] == n - 1:
        return panels
    at = next((i for i, p in enumerate(panels) if p.level == n), None)
    if at is not None:
        panels[at] = replace(panels[at], skipped=(drawn[-2][0] + 1, n - 1))
    return panels


def _grid_panel(wb, level: int, region: Region) -> Panel:
    """A layer's region as tiles: one per channel read (a vector layer: one strip)."""
    c, h, w = region.shape
    values = wb.values(wb.sheet)
    tiles = []
    if (h, w) == (1, 1):                                  # flatten, Linear: features in a row
        rects = tuple((0, a, 0, b - 1) for a, b in region.axis_runs(0))
        row = np.array([_number(values.get(wb.layout.cell_of((region.name, f, 0, 0)))) for f in range(c)])
        tiles.append(Tile(f"{region.name} (features 0-{c - 1})", (0, 0), (1, c), rects, row[None, :]))
        size, hidden = (1, sum(b - a for a, b in region.axis_runs(0))), 0
    else:
        chans = [ch for a, b in region.axis_runs(0) for ch in range(a, b)]
        for ch in chans[:MAX_TILES]:
            rects = tuple((ra, ca, rb - 1, cb - 1) for box in region.boxes
                          if any(a <= ch < b for a, b in box[0]) for ra, rb in box[1] for ca, cb in box[2])
            grid = np.array([[_number(values.get(wb.layout.cell_of((region.name, ch, y, x)))) for x in range(w)]
                             for y in range(h)])
            tiles.append(Tile(f"{region.name} ch {ch}", (0, 0), (h, w), rects[:MAX_RECTS], grid, ch))
        (_, _), (r0, r1), (c0, c1) = region.bbox()
        size, hidden = (r1 - r0 + 1, c1 - c0 + 1), max(0, len(chans) - MAX_TILES)
    return Panel(level, region.name, tuple(tiles), size, len(region), hidden)


def _sheet_panels(wb, trace, levels) -> list[Panel]:
    sheet, row, col = trace.root
    drawn = [(0, sheet, [(row, col, row, col)])]
    for k, level in levels:
        for region in level:
            drawn.append((k, region.name, compact_rects([(ra, ca, rb - 1, cb - 1) for rows, cols in region.boxes
                                                         for ra, rb in rows for ca, cb in cols])))
    groups = [(k, name, _groups(rects)) for k, name, rects in drawn]
    values = {name: _values_near(wb, name, [gs for _, n, gs in groups if n == name])
              for name in dict.fromkeys(name for _, name, _ in groups)}
    return [_block_panel(wb, k, name, [r for g in gs for r in g], gs, values[name]) for k, name, gs in groups]


def _values_near(wb, sheet: str, panels_groups: list[list]) -> dict:
    """The stored values of ``sheet`` that the drawn tiles' windows can reach (the first
    MAX_TILES blocks of each panel's ``groups``); the whole sheet's without values_near."""
    if not hasattr(wb, "values_near"):
        return wb.values(sheet)
    boxes = [(r0 - MAX_SIDE, c0 - MAX_SIDE, r0 + MAX_SIDE, c0 + MAX_SIDE)
             for gs in panels_groups for r0, c0, _, _ in (_bbox(g) for g in gs[:MAX_TILES])]
    return wb.values_near(sheet, boxes)


def _groups(rects: list[tuple]) -> list[list[tuple]]:
    """The rectangles' contiguous blocks, top-left first."""
    return sorted(touching_groups(rects), key=lambda g: (min(r[0] for r in g), min(r[1] for r in g)))


def _bbox(group: list[tuple]) -> tuple[int, int, int, int]:
    return (min(r[0] for r in group), min(r[1] for r in group), max(r[2] for r in group), max(r[3] for r in group))


def _block_panel(wb, level: int, sheet: str, rects: list[tuple], groups: list, values: dict) -> Panel:
    """Traced rectangles of one sheet, one tile per contiguous block (``groups``), each in a
    window of the filled cells around it (at most MAX_SIDE a side, within MAX_SIDE of the
    block's top-left cell; ``values`` holds the sheet's stored values there)."""
    formula_at = getattr(wb, "has_formula", None)
    filled = (lambda y, x: (y, x) in values or formula_at(sheet, y, x)) if formula_at else \
        (lambda y, x: (y, x) in values)
    tiles = []
    for group in groups[:MAX_TILES]:
        r0, c0, r1, c1 = _bbox(group)
        top, left, bottom, right = _window(filled, r0, c0, r1, c1)
        grid = np.zeros((bottom - top + 1, right - left + 1))
        for (y, x), v in _cells_in(values, top, left, bottom, right):
            grid[y - top, x - left] = _number(v)
        local = tuple((max(a, top) - top, max(b, left) - left, min(c, bottom) - top, min(d, right) - left)
                      for a, b, c, d in group[:MAX_RECTS] if a <= bottom and b <= right and c >= top and d >= left)
        label = f"{quote_sheet(sheet)}!{rng(r0, c0, r1, c1)} ({r1 - r0 + 1} x {c1 - c0 + 1})"
        tiles.append(Tile(label, (top, left), grid.shape, local, grid))
    r0, c0 = min(r[0] for r in rects), min(r[1] for r in rects)
    r1, c1 = max(r[2] for r in rects), max(r[3] for r in rects)
    count = sum((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in rects)
    return Panel(level, sheet, tuple(tiles), (r1 - r0 + 1, c1 - c0 + 1), count, max(0, len(groups) - MAX_TILES),
                 kind="sheet")


def _cells_in(values: dict, top: int, left: int, bottom: int, right: int):
    """Stored cells inside a window: by lookup when the window is small, else by a scan."""
    if (bottom - top + 1) * (right - left + 1) <= len(values):
        for y in range(top, bottom + 1):
            for x in range(left, right + 1):
                if (y, x) in values:
                    yield (y, x), values[(y, x)]
    else:
        for (y, x), v in values.items():
            if top <= y <= bottom and left <= x <= right:
                yield (y, x), v


def _window(cell_filled, r0: int, c0: int, r1: int, c1: int) -> tuple[int, int, int, int]:
    """Grow (r0, c0, r1, c1) over neighbouring rows and columns that hold cells (a value or a
    formula) next to the first MAX_SIDE rows or columns of the window, then by a margin of
    one, to at most MAX_SIDE a side (the traced block in view). Every cell looked at lies
    within MAX_SIDE rows and columns of the block's top-left cell."""
    def filled(ys, xs):
        return any(cell_filled(y, x) for y in ys for x in xs)
    grew = True
    while grew:
        grew = False
        cols = range(c0, min(c1, c0 + MAX_SIDE - 1) + 1)
        if r1 - r0 + 1 < MAX_SIDE:
            if r0 > 0 and filled([r0 - 1], cols):
                r0, grew = r0 - 1, True
            if r1 - r0 + 1 < MAX_SIDE and filled([r1 + 1], cols):
                r1, grew = r1 + 1, True
        rows = range(r0, min(r1, r0 + MAX_SIDE - 1) + 1)
        if c1 - c0 + 1 < MAX_SIDE:
            if c0 > 0 and filled(rows, [c0 - 1]):
                c0, grew = c0 - 1, True
            if c1 - c0 + 1 < MAX_SIDE and filled(rows, [c1 + 1]):
                c1, grew = c1 + 1, True
    top, left = max(0, r0 - 1), max(0, c0 - 1)
    return top, left, min(r1 + 1, top + MAX_SIDE - 1), min(c1 + 1, left + MAX_SIDE - 1)


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def touching_groups(rects: list[tuple]) -> list[list[tuple]]:
    """Rectangles (r0, c0, r1, c1, inclusive) grouped when they touch or overlap (corners
    included): union-find over a sweep by first row, so only rectangles whose rows meet are
    compared. Past MAX_GROUP_RECTS rectangles each is its own group (bounded time)."""
    rects = list(rects)
    if len(rects) > MAX_GROUP_RECTS:
        return [[r] for r in rects]
    parent = list(range(len(rects)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    active: list[int] = []
    for i in sorted(range(len(rects)), key=lambda i: rects[i][0]):
        r0, c0, r1, c1 = rects[i]
        active = [j for j in active if rects[j][2] >= r0 - 1]
        for j in active:
            if rects[j][1] <= c1 + 1 and c0 <= rects[j][3] + 1:
                parent[find(i)] = find(j)
        active.append(i)
    groups: dict[int, list] = {}
    for i, r in enumerate(rects):
        groups.setdefault(find(i), []).append(r)
    return list(groups.values())


# ---------------------------------------------------------------- drawing

def trace_title(trace) -> str:
    """'conv!BM6 = conv2[0,3,3], value 0: precedents' for a figure's title."""
    m = trace.meta
    where = m.get("cell") or str(trace.root)
    if m.get("grid_cell"):
        where += f" = {m['grid_cell']}"
    v = m.get("value")
    if v is not None:
        where += f", value {v:.4g}" if isinstance(v, float) else f", value {v!r}"
    return f"{where}: {trace.direction}, level by level"


def figure(panels: list[Panel], title: str | None = None, tile_inches: float = 2.4):
    """A matplotlib Figure of the panels: one row per panel (network order, the traced cell
    first), its tiles left to right; values in grey, traced cells outlined in the level's
    colour with a light fill."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not panels:
        raise SheetconvError("nothing to draw: the trace has no levels")
    ncols = max(len(p.tiles) for p in panels)
    text = max([len(p.title()) for p in panels] + [len(title or "")])       # wide enough for every title
    fig = Figure(figsize=(max(4.0, tile_inches * ncols, 0.09 * text), tile_inches * 1.1 * len(panels) + 0.8),
                 layout="constrained")
    subs = fig.subfigures(len(panels), 1) if len(panels) > 1 else [fig.subfigures(1, 1)]
    for sub, panel in zip(subs, panels):
        color = f"#{level_color(panel.level).lower()}"
        sub.suptitle(panel.title(), color=color, fontsize=10, fontweight="bold", x=0.01, ha="left")
        axes = sub.subplots(1, ncols, squeeze=False)[0]
        for ax, tile in zip(axes, panel.tiles):
            _draw_tile(ax, tile, color)
        for ax in axes[len(panel.tiles):]:
            ax.set_axis_off()
    handles = [Patch(facecolor="none", edgecolor=f"#{level_color(p.level).lower()}", linewidth=2,
                     label=("traced cell" if p.level == 0 else f"level {p.level:,}") + f" ({p.layer})")
               for p in panels]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.sheetconv_panels = panels                     # the data drawn, for tests and callers
    return fig


def _draw_tile(ax, tile: Tile, color: str):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    h, w = tile.shape
    if tile.values is not None and tile.values.size:
        v = tile.values
        lo, hi = float(v.min()), float(v.max())
        ax.imshow(v, cmap="Greys", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", alpha=0.75)
    else:
        ax.imshow(np.zeros((h, w)), cmap="Greys", vmin=0, vmax=1)
    boxes = [Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1) for r0, c0, r1, c1 in tile.rects]
    ax.add_collection(PatchCollection(boxes, facecolor=color, alpha=0.12, edgecolor="none"))
    ax.add_collection(PatchCollection([Rectangle(b.get_xy(), b.get_width(), b.get_height()) for b in boxes],
                                      facecolor="none", edgecolor=color, linewidth=1.8))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(tile.label, fontsize=8)
    step_y, step_x = max(1, h // 4), max(1, w // 4)
    ax.set_yticks(range(0, h, step_y), [str(tile.origin[0] + y) for y in range(0, h, step_y)], fontsize=6)
    ax.set_xticks(range(0, w, step_x), [str(tile.origin[1] + x) for x in range(0, w, step_x)], fontsize=6)
    ax.tick_params(length=2, pad=1)


def write_png(trace, out, force: bool = False, dpi: int = 110, book=None) -> object:
    """Draw the trace's panels into a .png file (checked first, written all at once)."""
    from pathlib import Path
    check_outputs(book or "", png=out, force=force)
    fig = trace.figure()
    with atomic_output(out, force=force, what="PNG") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(out)


def panels_html(trace, dpi: int = 80) -> str:
    """The panels as an inline PNG for Jupyter ('' when the trace cannot be drawn)."""
    try:
        fig = trace.figure()
    except SheetconvError:
        return ""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%"/>'
