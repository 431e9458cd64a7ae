"""The answer to a precedent or dependent query: levels of regions.

``levels[0]`` holds what Trace Precedents (or Dependents) shows after one press,
``levels[1]`` what a second press adds, and so on. Each level is a list of
:class:`~sheetconv.regions.Region`: in the analytic model a layer's activations and the
weights and bias it uses; in a worksheet, one region per sheet.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field

from .regions import Region

__all__ = ["Trace", "describe_input", "render_text", "MAP_MAX"]

MAP_MAX = 64            # the character map shows at most this many rows and columns


@dataclass
class Trace:
    root: tuple                      # the queried cell: (layer, c, r, col) or (sheet, row, col)
    direction: str                   # "precedents" or "dependents"
    levels: list[list[Region]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    # fills in meta for rendering (sheet ranges, input field) when first needed
    lazy: object = field(default=None, repr=False, compare=False)

    def complete(self) -> "Trace":
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
        return len(self.cells())

    def ranges(self) -> list[str]:
        """Compact text per region and level: 'conv1[0:2, 1:4, 1:4]'."""
        return [r.describe() for r in self.regions()]

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
        return {"root": list(self.root), "direction": self.direction, "depth": self.depth,
                "levels": [[r.to_json() for r in level] for level in self.levels], **self.meta}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def input_info(self) -> dict | None:
        """The receptive field on the input (see :func:`describe_input`), if the trace reaches it."""
        self.complete()
        if "input" in self.meta:
            return self.meta["input"]
        region = self.region("input")
        return describe_input(region, None) if region is not None and self.direction == "precedents" else None

    def text(self) -> str:
        return render_text(self)

    def __str__(self) -> str:
        return render_text(self)

    def _repr_html_(self) -> str:
        """Jupyter: the input grid as an HTML table with the traced region highlighted."""
        info = self.input_info()
        head = html.escape(_title(self.complete()))
        if info is None:
            return f"<div><b>{head}</b><pre>{html.escape(render_text(self))}</pre></div>"
        colors = {"#": "#4a90d9", "+": "#a8c8ee", ".": "#ffffff"}
        rows = []
        for line in info["map"]:
            cells = "".join(f'<td style="width:9px;height:9px;padding:0;border:1px solid #ddd;'
                            f'background:{colors.get(ch, "#ffffff")}"></td>' for ch in line)
            rows.append(f"<tr>{cells}</tr>")
        size = "x".join(str(v) for v in info["size"])
        caption = html.escape(f"{info['name']}: field {info['size'][0]} x {info['size'][1]} "
                              f"at rows {info['rows'][0]}-{info['rows'][1]}, cols {info['cols'][0]}-{info['cols'][1]}"
                              + (f" (map scaled 1:{info['scale']})" if info.get("scale", 1) > 1 else ""))
        lines = render_text(self).splitlines()[1:]
        lines = lines[:next((i for i, l in enumerate(lines) if l.startswith("map (")), len(lines))]
        return (f'<div><b>{head}</b><pre style="font-size:90%">{html.escape(chr(10).join(lines))}</pre>'
                f'<div>{caption}</div>'
                f'<table style="border-collapse:collapse" title="{size}">{"".join(rows)}</table></div>')


def describe_input(region: Region, field: dict | None) -> dict:
    """The bounding box, size, clipping and character map of a region on the input grid.

    ``region``: the 'input' layer's region (C, H, W) or a worksheet region (rows, cols).
    ``field``: for a network cell, its receptive field (``clipped`` and ``unclipped`` boxes,
    inclusive rows and cols) to say how much the border cut off.
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
        top, left = max(0, r0 - m), max(0, c0 - m)
        h, w = r1 + m + 1 - top, c1 + m + 1 - left
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


def _title(trace: Trace) -> str:
    m = trace.meta
    where = m.get("cell") or f"{trace.root[0]}{list(trace.root[1:])}"
    if m.get("grid_cell"):
        where += f" = {m['grid_cell']}"
    kind = f" ({m['kind']})" if m.get("kind") else ""
    engine = f", {m['engine']}" if m.get("engine") else ""
    levels = f"{trace.depth} level{'s' if trace.depth != 1 else ''}"
    return f"{where}{kind}: {trace.direction}, {levels}{engine}"


def _entries(trace: Trace, level: list[Region]) -> list[dict]:
    k = trace.levels.index(level)
    if "sheet_levels" in trace.meta:
        return trace.meta["sheet_levels"][k]
    return [{"sheet": None, "grid": None, "channel": None, "ranges": [r.describe()], "count": len(r)}
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
    if m.get("unreadable_formulas"):
        out.append("  note: the tokenizer could not read some formulas of this workbook, whose references are "
                   "not followed, e.g. =" + m["unreadable_formulas"][0][:60])
    if m.get("cycle"):
        out.append("  circular reference: " + " -> ".join(m["cycle"]))
    for k, level in enumerate(trace.levels):
        entries = _entries(trace, level)
        total = sum(e["count"] for e in entries)
        out.append(f"level {k + 1}: {total} cell{'s' if total != 1 else ''}")
        for e in entries:
            label = ""
            if e.get("grid"):
                ch = e.get("channel")
                if ch is None:
                    label = e["grid"]
                elif isinstance(ch, list):
                    label = f"{e['grid']} [{', '.join(map(str, ch))}]"
                else:
                    label = f"{e['grid']} ch {ch}"
            prefix = f"{_quote(e['sheet'])}!" if e.get("sheet") else ""
            ranges = ", ".join(prefix + r for r in e["ranges"])
            out.append(f"  {label + '  ' if label else ''}{ranges}  ({e['count']})")
    info = trace.input_info() if trace.direction == "precedents" else None
    if info is not None:
        (r0, r1), (c0, c1) = info["rows"], info["cols"]
        where = "the input" if len(info["shape"]) == 3 else f"sheet {info['name']} (deepest level)"
        if info.get("reached") is False:
            where += " (below the traced levels)"
        out.append(f"receptive field on {where}: rows {r0}-{r1}, cols {c0}-{c1} (0-based), "
                   f"size {info['size'][0]} x {info['size'][1]}, {info['count']} cells"
                   + (f" over channel{'s' if len(info['channels']) > 1 else ''} "
                      f"{', '.join(map(str, info['channels']))}" if info.get("channels") else ""))
        if "clipped" in info:
            cut = info["clipped"]
            if info.get("global"):
                out.append("  the whole input (after flattening, every cell sees every pixel)")
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


def _quote(sheet: str) -> str:
    from .xlref import quote_sheet
    return quote_sheet(sheet)
