"""Sets of cells as index arithmetic: runs along each axis, boxes, regions.

A *run* is a half-open index interval ``(start, stop)``; ``Runs`` is a sorted tuple of
disjoint, non-touching runs along one axis. A *box* is the product of one ``Runs`` per
axis; a :class:`Region` is a union of boxes on one named grid (a layer's (C, H, W)
activations, a weight tensor, or a worksheet's (rows, cols)). No region ever lists its
cells unless asked to (``cells()``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product

import numpy as np

Run = tuple[int, int]
Runs = tuple[Run, ...]
Box = tuple[Runs, ...]

__all__ = ["Runs", "Box", "Region", "merge_runs", "runs_from_indices", "runs_len", "clip_runs",
           "intersect_runs"]


def merge_runs(runs: Iterable[Run]) -> Runs:
    """Sort, drop empty runs and join overlapping or touching ones."""
    out: list[list[int]] = []
    for a, b in sorted(r for r in runs if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def runs_from_indices(idx) -> Runs:
    """Any collection of integers -> Runs."""
    idx = np.unique(np.asarray(idx, dtype=np.int64).ravel())
    if idx.size == 0:
        return ()
    breaks = np.nonzero(np.diff(idx) != 1)[0]
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    stops = np.concatenate((idx[breaks] + 1, [idx[-1] + 1]))
    return tuple(zip(starts.tolist(), stops.tolist()))


def runs_len(runs: Runs) -> int:
    return sum(b - a for a, b in runs)


def clip_runs(runs: Iterable[Run], n: int) -> Runs:
    return merge_runs((max(a, 0), min(b, n)) for a, b in runs)


def intersect_runs(x: Runs, y: Runs) -> Runs:
    return merge_runs((max(a, c), min(b, d)) for a, b in x for c, d in y)


def _indices(runs: Runs) -> list[int]:
    return [i for a, b in runs for i in range(a, b)]


def _merge_boxes(boxes: Iterable[Box]) -> tuple[Box, ...]:
    """Drop empty and duplicate boxes; join boxes that differ along one axis only."""
    todo = list(dict.fromkeys(b for b in boxes if all(b)))
    merged = True
    while merged and len(todo) > 1:
        merged = False
        for i in range(len(todo)):
            for j in range(i + 1, len(todo)):
                a, b = todo[i], todo[j]
                diff = [k for k in range(len(a)) if a[k] != b[k]]
                if len(diff) <= 1:
                    k = diff[0] if diff else 0
                    todo[i] = a[:k] + (merge_runs(a[k] + b[k]),) + a[k + 1:]
                    del todo[j]
                    merged = True
                    break
            if merged:
                break
    return tuple(todo)


def _box_size(box: Box) -> int:
    n = 1
    for runs in box:
        n *= runs_len(runs)
    return n


def _count(boxes) -> int:
    """Cells in the union of boxes, overlapping or not, never listing them: a sweep along
    the first axis; in each slab between consecutive run boundaries, the slab's width times
    the union of the active boxes' other axes (the same sweep, one axis fewer)."""
    boxes = list(boxes)
    if not boxes:
        return 0
    if len(boxes) == 1:
        return _box_size(boxes[0])
    if len(boxes[0]) == 1:
        return runs_len(merge_runs(r for box in boxes for r in box[0]))
    pieces = sorted((a, b, box[1:]) for box in boxes for a, b in box[0])
    bounds = sorted({p[0] for p in pieces} | {p[1] for p in pieces})
    total, active, k = 0, [], 0
    for lo, hi in zip(bounds, bounds[1:]):
        while k < len(pieces) and pieces[k][0] <= lo:
            active.append(pieces[k])
            k += 1
        active = [p for p in active if p[1] > lo]
        if active:
            total += (hi - lo) * _count([p[2] for p in active])
    return total


@dataclass(frozen=True)
class Region:
    """A set of cells of one grid named ``name`` with ``shape``: a union of boxes.

    For a layer the axes are (channel, row, col); for a weight tensor they are the
    tensor's own axes; for a worksheet, (row, col).
    """
    name: str
    shape: tuple[int, ...]
    boxes: tuple[Box, ...]

    @classmethod
    def of(cls, name: str, shape, boxes: Iterable[Box]) -> Region:
        return cls(name, tuple(shape), _merge_boxes(boxes))

    @classmethod
    def full(cls, name: str, shape) -> Region:
        return cls.of(name, shape, [tuple(((0, n),) for n in shape)])

    @classmethod
    def point(cls, name: str, shape, index) -> Region:
        return cls.of(name, shape, [tuple(((i, i + 1),) for i in index)])

    def __bool__(self):
        return bool(self.boxes)

    def __len__(self):
        return _count(self.boxes)

    def __contains__(self, index) -> bool:
        return any(all(any(a <= i < b for a, b in runs) for i, runs in zip(index, box)) for box in self.boxes)

    def indices(self) -> set[tuple[int, ...]]:
        """Every cell index, as a set of tuples (materialized: for tests and small regions)."""
        out = set()
        for box in self.boxes:
            out.update(product(*(_indices(r) for r in box)))
        return out

    def cells(self) -> set[tuple]:
        """Every cell as ``(name, *index)``."""
        return {(self.name, *i) for i in self.indices()}

    def bbox(self) -> tuple[tuple[int, int], ...]:
        """Inclusive (lo, hi) per axis of the smallest box holding the region; None if it is empty."""
        if not self.boxes:
            return None
        return tuple((min(box[k][0][0] for box in self.boxes), max(box[k][-1][1] for box in self.boxes) - 1)
                     for k in range(len(self.shape)))

    def rects(self) -> list[tuple[int, tuple[int, int, int, int]]]:
        """Exact rectangles per leading index (the channel): [(c, (r0, c0, r1, c1)), ...], inclusive.

        Needs at least two axes; the last two are rows and columns.
        """
        out = []
        for box in self.boxes:
            *lead, rows, cols = box
            for key in product(*(_indices(r) for r in lead)):
                for (ra, rb), (ca, cb) in product(rows, cols):
                    out.append((key[0] if len(key) == 1 else key, (ra, ca, rb - 1, cb - 1)))
        return sorted(set(out))

    def axis_runs(self, axis: int) -> Runs:
        """The union of the region's runs along one axis."""
        return merge_runs(r for box in self.boxes for r in box[axis])

    def union(self, other: Region) -> Region:
        assert other.name == self.name
        return Region.of(self.name, self.shape, self.boxes + other.boxes)

    def describe(self) -> str:
        """'conv1[0:2, 3:6, 4:7]' style text, one box after another."""
        def runs_text(runs):
            return ",".join(f"{a}" if b == a + 1 else f"{a}:{b}" for a, b in runs)
        return " + ".join(f"{self.name}[{', '.join(runs_text(r) for r in box)}]" for box in self.boxes)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "count": len(self),
                "boxes": [[[list(r) for r in runs] for runs in box] for box in self.boxes]}
