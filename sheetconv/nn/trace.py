"""The answer to a precedent or dependent query: levels of regions.

``levels[0]`` holds what Trace Precedents (or Dependents) shows after one press,
``levels[1]`` what a second press adds, and so on. Each level is a list of
:class:`~sheetconv.nn.regions.Region`: in the analytic model a layer's activations and the
weights and bias it uses; in a worksheet, one region per sheet.

``levels`` is a sequence, not necessarily a list: a workbook's formula trace keeps its
levels as arrays of rectangles and builds each level's Regions on access (a running total
down a million rows is a million levels). Renderers index it, never copy it: the text
shows the first and last few levels of a long trace and counts the rest; the JSON
(:meth:`Trace.iter_json`) is written one level at a time.
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import SheetconvError
from .regions import Region

__all__ = ["Trace", "describe_input", "render_text", "MAP_MAX"]

MAP_MAX = 64            # the character map shows at most this many rows and columns
FORMAT_VERSION = 2      # of the JSON document (Trace.to_dict)
CONVENTION = ("rows, cols, rect and rects are 0-based and inclusive ([first, last]; rect = [r0, c0, r1, c1]); "
              "boxes are half-open runs [start, stop) per axis; ranges are A1 text of rects")


@dataclass
class Trace:
    root: tuple                      # the queried cell: (layer, c, r, col) or (sheet, row, col)
    direction: str                   # "precedents" or "dependents"
    levels: list[list[Region]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    # fills in meta for rendering (sheet ranges, input field) when first needed
    lazy: object = field(default=None, repr=False, compare=False)

    def complete(self) -> Trace:
        """Run the deferred description (sheet ranges, receptive field) once; returns self."""
        hook, self.lazy = self.lazy, None
        if hook is not None:
            hook(self)
        return self

    @property
    def depth(self) -> int:
        return len(self.levels)

    def regions(self, name: str | None = None) -> list[Region]:
        """Regions of every level, optionally only those of grid ``name``."""
        return [r for level in self.levels for r in level if name is None or r.name == name]

    def region(self, name: str) -> Region | None:
        """All cells of grid ``name`` across the levels, as one region (None if untouched)."""
        found = self.regions(name)
        if not found:
            return None
        out = found[0]
        for r in found[1:]:
            out = out.union(r)
        return out

    def cells(self) -> set[tuple]:
        """Every traced cell, all levels together, as ``(grid, *index)`` tuples."""
        out: set[tuple] = set()
        for r in self.regions():
            out |= r.cells()
        return out

    def count(self) -> int:
        """How many distinct cells the trace holds (counted by box arithmetic, never listed)."""
        boxes: dict = {}
        for r in self.regions():
            boxes.setdefault((r.name, r.shape), []).extend(r.boxes)
        return sum(len(Region(name, shape, tuple(b))) for (name, shape), b in boxes.items())

    def ranges(self) -> list[str]:
        """Compact text per region and level: 'conv1[0:2, 1:4, 1:4]' for a network's grids
        (a trace of worksheet cells, see sheetconv.tracing.SheetTrace, gives A1 ranges)."""
        return [r.describe() for r in self.regions()]

    # How a trace names worksheet cells: the network's own traces have none; a trace of a
    # workbook's cells (sheetconv.tracing.SheetTrace) overrides these with A1 text.
    sheet_extent: tuple[int, int] | None = None      # (rows, cols) of a worksheet

    def quote_sheet(self, sheet: str) -> str:
        return sheet

    def range_size(self, text: str) -> tuple[int, int]:
        raise NotImplementedError("a network trace has no worksheet ranges")

    def _picture_html(self) -> str:
        """Inline pictures for Jupyter; a trace of a workbook's cells draws its level panels."""
        return ""

    def figure(self, **kwargs):
        """The level pictures: drawn from a workbook's stored values, so only a workbook's
        trace (sheetconv.tracing.SheetTrace) has them; a network's trace says so in one line."""
        raise SheetconvError("a network's trace has no pictures: they are drawn from a workbook's values; "
                             "write one and trace it there: sc.write_workbook(net, x, path), then "
                             "sc.open_workbook(path).precedents(cell).figure()")

    def to_png(self, path, force: bool = False, **kwargs):
        """See :meth:`figure`."""
        self.figure()

    def bbox(self, name: str | None = None):
        """Bounding box of the deepest activation region (the input, for a full precedent trace)."""
        if name is None:
            acts = [r for level in self.levels for r in level if "." not in r.name]
            if not acts:
                return None
            name = acts[-1].name
        region = self.region(name)
        return None if region is None else region.bbox()

    def to_dict(self) -> dict:
        self.complete()
        return {"format_version": FORMAT_VERSION, "convention": CONVENTION,
                "root": list(self.root), "direction": self.direction, "depth": self.depth,
                "levels": [[r.to_json() for r in level] for level in self.levels],
                **{k: list(v) if _lazy_list(v) else v for k, v in self.meta.items()}}

    def to_json(self, **kwargs) -> str:
        return "".join(self.iter_json(**kwargs))

    def iter_json(self, **kwargs):
        """The JSON document of :meth:`to_dict` in pieces, one level at a time (a trace of a
        million levels is never one dict). ``kwargs`` go to :func:`json.dumps` per piece;
        without ``indent`` the pieces join to ``json.dumps(trace.to_dict())``."""
        self.complete()
        head = {"format_version": FORMAT_VERSION, "convention": CONVENTION,
                "root": list(self.root), "direction": self.direction, "depth": self.depth}
        lists = {"levels": _Mapped(self.levels, lambda level: [r.to_json() for r in level])}
        for k, v in self.meta.items():
            lists[k] = v if _lazy_list(v) else None
            if not _lazy_list(v):
                head[k] = v
        sep = ", " if kwargs.get("indent") is None else ",\n"
        yield json.dumps(head, **kwargs)[:-1].rstrip()
        for k in ["levels"] + [k for k in self.meta]:
            v = lists.get(k)
            if v is None:
                continue
            yield f"{sep}{json.dumps(k)}: ["
            for i, item in enumerate(v):
                yield ("" if i == 0 else ", ") + json.dumps(item, **kwargs)
            yield "]"
        yield "}"

    def input_info(self) -> dict | None:
        """The receptive field on the input (see :func:`describe_input`), if the trace reaches it."""
        self.complete()
        if "input" in self.meta:
            return self.meta["input"]
        region = self.region("input")
        return describe_input(region, None, self.sheet_extent) \
            if region is not None and self.direction == "precedents" else None

    def text(self) -> str:
        return render_text(self)

    def __repr__(self) -> str:
        return f"<Trace {_title(self.complete())}, {self.count():,} cells>"

    def __str__(self) -> str:
        return render_text(self)

    def _repr_html_(self) -> str:
        """Jupyter: the title, the traced cell's value and formula, the level pictures (for a
        workbook's trace) and a compact table of levels; long lines wrap."""
        self.complete()
        return trace_html(self)


def _lazy_list(v) -> bool:
    """A sequence made on access (e.g. a formula trace's levels), not a plain list."""
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes, list, tuple))


class _Mapped(Sequence):
    def __init__(self, items, fn):
        self.items, self.fn = items, fn

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        return self.fn(self.items[k])


def describe_input(region: Region, field: dict | None, extent: tuple[int, int] | None = None) -> dict:
    """The bounding box, size, clipping and character map of a region on the input grid.

    ``region``: the 'input' layer's region (C, H, W) or a worksheet region (rows, cols).
    ``field``: for a network cell, its receptive field (``clipped`` and ``unclipped`` boxes,
    inclusive rows and cols) to say how much the border cut off. ``extent``: a worksheet's
    (rows, cols), which bounds the map's margin.
    """
    *_, rows_ax, cols_ax = range(len(region.shape))
    bb = region.bbox()
    (r0, r1), (c0, c1) = bb[rows_ax], bb[cols_ax]
    info = {"name": region.name, "shape": list(region.shape), "rows": [r0, r1], "cols": [c0, c1],
            "size": [r1 - r0 + 1, c1 - c0 + 1], "count": len(region)}
    if len(region.shape) == 3:
        info["channels"] = [a for a, b in region.axis_runs(0) for a in range(a, b)]
    if field is not None:
        (u0, u1), (v0, v1) = field["unclipped"]
        info["field"] = field["size"]
        info["clipped"] = {"top": max(0, r0 - u0), "bottom": max(0, u1 - r1),
                           "left": max(0, c0 - v0), "right": max(0, v1 - c1)}
        info["global"] = field.get("global", False)
    # the map: the whole input for a network; for a worksheet, the box with a margin
    if len(region.shape) == 3:
        top, left, h, w = 0, 0, region.shape[1], region.shape[2]
    else:
        m = 2
        max_rows, max_cols = extent if extent is not None else region.shape[-2:]
        top, left = max(0, r0 - m), max(0, c0 - m)
        h, w = min(r1 + m + 1, max_rows) - top, min(c1 + m + 1, max_cols) - left
    scale = max(1, math.ceil(max(h, w) / MAP_MAX))
    info["map_origin"] = [top, left]
    info["map_size"] = [h, w]
    info["scale"] = scale
    info["map"] = _char_map(region, top, left, h, w, scale)
    return info


def _char_map(region: Region, top: int, left: int, h: int, w: int, scale: int) -> list[str]:
    """'#' for a (scaled) cell in the region, '.' outside: rows of text."""
    nh, nw = math.ceil(h / scale), math.ceil(w / scale)
    grid = [["."] * nw for _ in range(nh)]
    for box in region.boxes:
        for ra, rb in box[-2]:
            for ca, cb in box[-1]:
                a0, a1 = max(ra, top), min(rb, top + h)
                b0, b1 = max(ca, left), min(cb, left + w)
                for y in range((a0 - top) // scale, (a1 - 1 - top) // scale + 1 if a1 > a0 else 0):
                    row = grid[y]
                    for x in range((b0 - left) // scale, (b1 - 1 - left) // scale + 1 if b1 > b0 else 0):
                        row[x] = "#"
    return ["".join(r) for r in grid]


def _cell_lines(trace: Trace) -> list[str]:
    """The traced cell's stored value and formula, and notes about the answer."""
    m, out = trace.meta, []
    if "value" in m or "formula" in m:
        value = m.get("value")
        shown = "(no stored value)" if value is None else (f"{value:.6g}" if isinstance(value, float) else repr(value))
        out.append(f"  value: {shown}")
        bare = "none (an empty cell)" if m.get("kind") == "empty" else "none (a constant)"
        out.append(f"  formula: {m['formula'] if m.get('formula') else bare}")
    for note in m.get("notes", []):
        out.append(f"  note: {note}")
    return out


def _level_rows(trace: Trace) -> list[tuple[int, str, int, str]]:
    """(level, label, cells, ranges text) per line of the text table."""
    rows = []
    for k in shown_levels(trace.depth):
        if k < 0:
            rows.append(("...", "", -k, "more levels" if -k != 1 else "more level"))
            continue
        for group in _runs_of_channels(trace, _entries(trace, k, trace.levels[k])):
            line = _entry_line(trace, group).strip()
            label = _label(group) or group[0].get("name", "")        # a network's grid: its name
            total = sum(e["count"] for e in group)
            line = line.removesuffix(f"({total:,})").strip()
            rows.append((k + 1, label, total, line[len(label):].strip() if label else line))
    return rows


def trace_html(trace: Trace) -> str:
    """HTML of a trace: title, cell lines, pictures (if any), a table of levels, the field."""
    esc = html.escape
    wrap = "white-space:pre-wrap;word-break:break-all;font-family:monospace;font-size:90%"
    head = [f"<b>{esc(_title(trace))}</b>"]
    head += [f'<div style="{wrap}">{esc(line.strip())}</div>' for line in _cell_lines(trace)]
    rows = "".join(f'<tr><td>{k}</td><td>{esc(label)}</td><td style="text-align:right">{n}</td>'
                   f'<td style="{wrap};text-align:left">{esc(text)}</td></tr>' for k, label, n, text in _level_rows(trace))
    table = ('<table><thead><tr><th>level</th><th>what</th><th>cells</th><th style="text-align:left">where</th>'
             f'</tr></thead><tbody>{rows}</tbody></table>') if rows else ""
    tail = [line for line in render_text(trace).splitlines() if line.startswith(("receptive", "leaf", "  full", "  the whole"))
            or line.startswith("    ") and "!" in line and "x" in line]
    field = "".join(f'<div style="{wrap}">{esc(line.strip())}</div>' for line in tail)
    return f'<div>{"".join(head)}{trace._picture_html()}{table}{field}</div>'


def _title(trace: Trace) -> str:
    m = trace.meta
    where = m.get("cell") or f"{trace.root[0]}{list(trace.root[1:])}"
    if m.get("grid_cell"):
        where += f" = {m['grid_cell']}"
    kind = f" ({m['kind']})" if m.get("kind") else ""
    engine = f", {m['engine']}" if m.get("engine") else ""
    levels = f"{trace.depth} level{'s' if trace.depth != 1 else ''}"
    return f"{where}{kind}: {trace.direction}, {levels}{engine}"


def _entries(trace: Trace, k: int, level: list[Region]) -> list[dict]:
    if "sheet_levels" in trace.meta:
        return trace.meta["sheet_levels"][k]
    return [{"sheet": None, "grid": None, "channel": None, "ranges": [r.describe()], "count": len(r), "name": r.name}
            for r in level]


def render_text(trace: Trace) -> str:
    """Per level: compact ranges per sheet (with layer and channel in a sheetconv workbook)
    and their count; then the receptive field on the input and its character map."""
    trace.complete()
    out = [_title(trace)]
    m = trace.meta
    if m.get("kind") in ("constant", "empty") and trace.direction == "precedents":
        what = "a constant" if m["kind"] == "constant" else "an empty cell"
        out.append(f"  {what}: no precedents")
    elif not trace.levels:
        out.append(f"  no {trace.direction}")
    out.extend(_cell_lines(trace))
    if m.get("unreadable_formulas"):
        out.append("  note: the tokenizer could not read some formulas of this workbook, whose references are "
                   "not followed, e.g. =" + m["unreadable_formulas"][0][:60])
    if m.get("cycle"):
        out.append("  circular reference: " + " -> ".join(m["cycle"]))
    for k in shown_levels(trace.depth):
        if k < 0:
            out.append(f"... {-k:,} more level{'s' if -k != 1 else ''} (--format json lists them all)")
            continue
        entries = _entries(trace, k, trace.levels[k])
        total = sum(e["count"] for e in entries)
        out.append(f"level {k + 1}: {total:,} cell{'s' if total != 1 else ''}")
        for group in _runs_of_channels(trace, entries):
            out.append(_entry_line(trace, group))
    if trace.depth > SHOW_LEVELS[0] + SHOW_LEVELS[1]:
        out.append(f"{trace.depth:,} levels, {trace.count():,} cells in all")
    blocks = m.get("blocks") if trace.direction == "precedents" else None
    if blocks:
        n = len(blocks)
        out.append(f"leaf cells (constants or empty cells, no formula) in {n} contiguous block{'s' if n != 1 else ''}:")
        for b in blocks[:SHOW_BLOCKS]:
            out.append(f"    {trace.quote_sheet(b['sheet'])}!{b['range']}  {b['size'][0]} x {b['size'][1]}"
                       + (f", {b['count']} cells" if b["count"] != b["size"][0] * b["size"][1] else ""))
        if n > SHOW_BLOCKS:
            out.append(f"    ... {n - SHOW_BLOCKS} more (--format json lists them all)")
    info = trace.input_info() if trace.direction == "precedents" else None
    if info is not None:
        (r0, r1), (c0, c1) = info["rows"], info["cols"]
        where = "the input" if len(info["shape"]) == 3 else \
            f"sheet {info['name']} ({'largest block' if info.get('block') else 'deepest level'})"
        if info.get("reached") is False:
            where += " (below the traced levels)"
        out.append(f"receptive field on {where}: rows {r0}-{r1}, cols {c0}-{c1} (0-based), "
                   f"size {info['size'][0]} x {info['size'][1]}, {info['count']} cells"
                   + (f" over channel{'s' if len(info['channels']) > 1 else ''} "
                      f"{', '.join(map(str, info['channels']))}" if info.get("channels") else ""))
        if "clipped" in info:
            cut = info["clipped"]
            if info.get("global"):
                out.append("  the whole input (a Linear layer reads every feature, so every pixel)")
            elif any(cut.values()):
                parts = [f"{v} {'row' if side in ('top', 'bottom') else 'column'}{'s' if v != 1 else ''} "
                         f"at the {side}" for side, v in cut.items() if v]
                out.append(f"  full field {info['field'][0]} x {info['field'][1]}; the border clipped "
                           + ", ".join(parts))
            else:
                out.append(f"  full field {info['field'][0]} x {info['field'][1]}, not clipped by the border")
        shape = info.get("map_size", info["shape"][-2:])
        scale = f", 1 char = {info['scale']} x {info['scale']} cells" if info["scale"] > 1 else ""
        origin = info["map_origin"]
        frame = "" if len(info["shape"]) == 3 else f" from row {origin[0]}, col {origin[1]}"
        out.append(f"map ({shape[0]} x {shape[1]}{frame}{scale}; # = in the field):")
        out.extend("  " + line for line in info["map"])
    return "\n".join(out)


SHOW_BLOCKS = 12        # blocks listed in the text
SHOW_LEVELS = (12, 4)   # a longer trace's text shows this many first and last levels


def shown_levels(depth: int) -> list[int]:
    """The level indices the text shows: all, or the first and last few with, between
    them, minus the number left out."""
    first, last = SHOW_LEVELS
    if depth <= first + last:
        return list(range(depth))
    return list(range(first)) + [-(depth - first - last)] + list(range(depth - last, depth))
MERGE_MIN = 4           # this many like channels in a row print as one line
SHOW_RANGES = 8         # at most this many ranges per line; the JSON output lists them all


def _shape_of(trace: Trace, e: dict) -> tuple:
    """The ranges' sizes: entries alike in it are the same footprint in different places."""
    if "rects" in e:
        return tuple((r[2] - r[0], r[3] - r[1]) for r in e["rects"])
    return tuple(trace.range_size(r) for r in e["ranges"])


def _step(a, b):
    """The axis along which channel key ``b`` follows ``a`` by one (0 for int keys; for lists,
    the one place they differ), or None."""
    if isinstance(a, int) and isinstance(b, int):
        return 0 if b == a + 1 else None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a:
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        if len(diff) == 1 and b[diff[0]] == a[diff[0]] + 1:
            return diff[0]
    return None


def _runs_of_channels(trace: Trace, entries: list[dict]) -> list[list[dict]]:
    """Consecutive channels of one grid with same-shaped ranges, grouped (order kept): a run
    along one index, then runs along the last index stacked along the one before it."""
    groups: list[list[dict]] = []
    axes: list = []                        # the index each group runs along (None: one entry)
    for e in entries:
        g = groups[-1] if groups else None
        step = _step(g[-1].get("channel"), e.get("channel")) if g else None
        if g and step is not None and (len(g) == 1 or axes[-1] == step) and e.get("grid") \
                and e.get("grid") == g[-1].get("grid") and e.get("sheet") == g[-1].get("sheet") \
                and _shape_of(trace, e) == _shape_of(trace, g[0]):
            g.append(e)
            axes[-1] = step
        else:
            groups.append([e])
            axes.append(None)
    stacked: list[list[dict]] = []         # kernels [o, 0-15], [o+1, 0-15], ... -> [o-o+k, 0-15]
    stack_axes: list = []
    for g, axis in zip(groups, axes):
        h = stacked[-1] if stacked else None
        a, b = (h[0].get("channel"), g[0].get("channel")) if h else (None, None)
        if h and isinstance(a, list) and isinstance(b, list) and len(a) == len(b) >= 2 \
                and axis == stack_axes[-1] == len(a) - 1 \
                and g[0].get("grid") == h[0].get("grid") and len(g) == _width(h) \
                and a[:-2] == b[:-2] and b[-2] == h[-1]["channel"][-2] + 1 \
                and (a[-1], h[-1]["channel"][-1]) == (b[-1], g[-1]["channel"][-1]) and _shape_of(trace, g[0]) == _shape_of(trace, h[0]):
            h.extend(g)
        else:
            stacked.append(list(g))
            stack_axes.append(axis)
    out = []
    for g in stacked:                      # short runs read better one channel a line
        out.extend([g] if len(g) >= MERGE_MIN else [[e] for e in g])
    return out


def _width(group: list[dict]) -> int:
    """Entries per first-index value of a group of list-keyed entries."""
    first = group[0]["channel"][-2]
    return sum(1 for e in group if e["channel"][-2] == first)


def _label(group: list[dict]) -> str:
    e = group[0]
    if not e.get("grid"):
        return ""
    ch = e.get("channel")
    if ch is None:
        return e["grid"]

    def span(values):
        lo, hi = min(values), max(values)
        return f"{lo}-{hi}" if hi > lo else f"{lo}"
    if isinstance(ch, list):
        return f"{e['grid']} [{', '.join(span([g['channel'][k] for g in group]) for k in range(len(ch)))}]"
    return f"{e['grid']} ch {span([g['channel'] for g in group])}"


def _entry_line(trace: Trace, group: list[dict]) -> str:
    """One text line for one entry, or for a run of like channels (with their ranges shortened)."""
    first = group[0]
    prefix = f"{trace.quote_sheet(first['sheet'])}!" if first.get("sheet") else ""
    ranges = [prefix + r for e in group for r in e["ranges"]]
    if len(ranges) > SHOW_RANGES:
        ranges = ranges[:SHOW_RANGES - 2] + [f"... {len(ranges) - SHOW_RANGES + 1} more", ranges[-1]]
    label = _label(group)
    total = sum(e["count"] for e in group)
    each = f"{len(group)} x {first['count']:,} cells: " if len(group) > 1 else ""
    return f"  {label + '  ' if label else ''}{each}{', '.join(ranges)}  ({total:,})"
