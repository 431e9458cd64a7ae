"""The answer to a precedent or dependent query: levels of regions.

``levels[0]`` holds what Trace Precedents (or Dependents) shows after one press,
``levels[1]`` what a second press adds, and so on. Each level is a list of
:class:`~sheetconv.regions.Region`: in the analytic model a layer's activations and the
weights and bias it uses; in a worksheet, one region per sheet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .regions import Region

__all__ = ["Trace"]


@dataclass
class Trace:
    root: tuple                      # the queried cell: (layer, c, r, col) or (sheet, row, col)
    direction: str                   # "precedents" or "dependents"
    levels: list[list[Region]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

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
        return {"root": list(self.root), "direction": self.direction, "depth": self.depth,
                "levels": [[r.to_json() for r in level] for level in self.levels], **self.meta}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)
