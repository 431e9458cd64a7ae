"""Brute-force walks of an explicit cell graph, shared by the dependency tests: the oracle
the analytic precedents, dependents and receptive fields are compared with."""
from __future__ import annotations

from collections import deque
from itertools import product

from hypothesis import strategies as st


def closure(graph, start):
    seen, todo = set(), deque([start])
    while todo:
        for nxt in graph.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def invert(preds):
    succ = {}
    for cell, ps in preds.items():
        for p in ps:
            succ.setdefault(p, set()).add(cell)
    return succ


def all_cells(net):
    for name in net.names:
        c, h, w = net.grid(name)
        yield from ((name, *i) for i in product(range(c), range(h), range(w)))


def pick(data, cells, n):
    cells = sorted(cells, key=repr)
    if len(cells) <= n:
        return cells
    return [cells[data.draw(st.integers(0, len(cells) - 1), label="cell")] for _ in range(n)]
