"""Runs, boxes and regions against plain Python sets of integers."""
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sheetconv.nn.regions import Region, clip_runs, intersect_runs, merge_runs, runs_from_indices, runs_len

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)

runs_lists = st.lists(st.tuples(st.integers(-5, 30), st.integers(-5, 30)), max_size=8)
index_sets = st.sets(st.integers(0, 40), max_size=25)


def as_set(runs):
    return {i for a, b in runs for i in range(a, b)}


def is_canonical(runs):
    return all(a < b for a, b in runs) and all(b1 < a2 for (_, b1), (a2, _) in zip(runs, runs[1:]))


@SETTINGS
@given(runs_lists)
def test_merge_runs(raw):
    merged = merge_runs(raw)
    assert as_set(merged) == as_set(raw)
    assert is_canonical(merged)
    assert runs_len(merged) == len(as_set(raw))


@SETTINGS
@given(index_sets)
def test_runs_from_indices(idx):
    runs = runs_from_indices(sorted(idx))
    assert as_set(runs) == idx and is_canonical(runs)


@SETTINGS
@given(runs_lists, runs_lists, st.integers(0, 30))
def test_intersect_and_clip(x, y, n):
    x, y = merge_runs(x), merge_runs(y)
    assert as_set(intersect_runs(x, y)) == as_set(x) & as_set(y)
    assert as_set(clip_runs(x, n)) == {i for i in as_set(x) if 0 <= i < n}


@st.composite
def regions(draw, shape=(3, 6, 7)):
    boxes = []
    for _ in range(draw(st.integers(0, 4))):
        box = []
        for n in shape:
            lo = draw(st.integers(0, n - 1))
            box.append(((lo, draw(st.integers(lo + 1, n))),))
        boxes.append(tuple(box))
    return Region.of("conv1", shape, boxes)


def brute(region):
    out = set()
    for box in region.boxes:
        out |= set(product(*(sorted(as_set(r)) for r in box)))
    return out


@SETTINGS
@given(regions(), regions())
def test_region_set_semantics(r, s):
    cells = brute(r)
    assert r.indices() == cells
    assert r.cells() == {("conv1", *i) for i in cells}
    assert len(r) == len(cells)
    assert bool(r) == bool(cells)
    for idx in product(range(3), range(6), range(7)):
        assert (idx in r) == (idx in cells)
    assert r.union(s).indices() == cells | brute(s)
    if cells:
        assert r.bbox() == tuple((min(c[k] for c in cells), max(c[k] for c in cells)) for k in range(3))
    else:
        assert r.bbox() is None
    # exact rectangles per channel cover the region
    covered = set()
    for ch, (r0, c0, r1, c1) in r.rects():
        covered |= {(ch, y, x) for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)}
    assert covered == cells
    for axis in range(3):
        assert as_set(r.axis_runs(axis)) == {c[axis] for c in cells}


def test_region_text_and_json():
    r = Region.of("conv1", (2, 5, 5), [(((0, 2),), ((1, 4),), ((3, 4),))])
    assert r.describe() == "conv1[0:2, 1:4, 3]"
    assert r.to_json() == {"name": "conv1", "shape": [2, 5, 5], "count": 6,
                           "boxes": [[[[0, 2]], [[1, 4]], [[3, 4]]]]}
    assert Region.full("w", (2, 3)).indices() == set(product(range(2), range(3)))
    assert Region.point("b", (4,), (2,)).cells() == {("b", 2)}
    assert not Region.of("x", (3, 3), []) and len(Region.of("x", (3, 3), [])) == 0


@pytest.mark.parametrize("boxes", [
    [(((0, 1),), ((0, 2),), ((0, 3),)), (((1, 2),), ((0, 2),), ((0, 3),))],     # two channels -> one box
    [(((0, 1),), ((0, 2),), ((0, 3),)), (((0, 1),), ((2, 4),), ((0, 3),))],     # stacked rows -> one box
])
def test_adjacent_boxes_merge(boxes):
    assert len(Region.of("a", (2, 4, 3), boxes).boxes) == 1


box_runs = st.lists(st.tuples(st.integers(0, 9), st.integers(1, 5)), min_size=1, max_size=3).map(
    lambda v: merge_runs((a, a + n) for a, n in v))


@SETTINGS
@given(st.lists(st.tuples(box_runs, box_runs, box_runs), max_size=6))
def test_len_of_overlapping_boxes_against_brute_force(boxes):
    """Boxes as given, overlapping freely (Region(...) keeps them unmerged): len() counts each cell once."""
    r = Region("g", (15, 15, 15), tuple(boxes))
    cells = set()
    for box in boxes:
        cells |= set(product(*(sorted(as_set(runs)) for runs in box)))
    assert len(r) == len(cells)


def test_len_never_lists_cells(monkeypatch):
    """Three whole columns of a full-height sheet: counted by arithmetic, not by listing 3 million cells."""
    monkeypatch.setattr(Region, "indices", lambda self: pytest.fail("len() listed the cells"))
    col = lambda c: (((0, 1_048_576),), ((c, c + 1),))
    r = Region.of("Sheet", (1_048_576, 5), [col(0), col(2), col(4)])
    # boxes that differ along one axis only are joined: one box, three runs of columns
    assert r.boxes == ((((0, 1_048_576),), ((0, 1), (2, 3), (4, 5))),)
    assert len(r) == 3 * 1_048_576
    overlapping = Region("Sheet", (1_048_576, 5), (col(0), (((0, 1_048_576),), ((0, 3),))))
    assert len(overlapping) == 3 * 1_048_576
