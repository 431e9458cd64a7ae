"""The softmax block and the predicted class that end a network whose output is 1-D.

Beside the last layer's column (``z``, n features) the layout's ``softmax`` panel holds,
for feature i, ``e_i = EXP(z_i - MAX(z))`` (shifted by the maximum, as torch does, so
nothing overflows) and ``p_i = e_i / SUM(e)``; two rows below them the predicted class,
``MATCH(MAX(p), p, 0) - 1`` (0-based, the first maximum, as ``argmax``). Only EXP, MAX,
SUM and MATCH: recalculated alike by Excel, LibreOffice and Gnumeric without array entry.
"""
from __future__ import annotations

import numpy as np

from .a1 import column_names

__all__ = ["softmax_cells", "softmax_values", "predicted_class_cell"]

_COLS = column_names()


def _a1(r: int, c: int, absolute: bool = False) -> str:
    return f"${_COLS[c]}${r + 1}" if absolute else f"{_COLS[c]}{r + 1}"


def softmax_values(z) -> tuple[np.ndarray, np.ndarray, int]:
    """(exp(z - max z), softmax(z), argmax) of a 1-D array, as the formulas compute them."""
    z = np.asarray(z, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    p = e / e.sum()
    return e, p, int(np.argmax(p))


def predicted_class_cell(layout) -> tuple[int, int]:
    """Sheet (row, col) of the predicted-class cell."""
    p = layout.softmax
    y, x = p.block_origin(None)
    return y + p.bh - 1, x


def softmax_cells(net, layout, acts):
    """[(row, col, formula or text, value)] of the softmax panel's cells (formulas without '=')."""
    p = layout.softmax
    last = net.names[-1]
    n = p.bh - 3
    z = [layout.cell_of((last, i, 0, 0)) for i in range(n)]
    zr = f"{_a1(*z[0], True)}:{_a1(*z[-1], True)}"
    e, prob, k = softmax_values(acts[last])
    y, x = p.block_origin(None)
    er = f"{_a1(y, x, True)}:{_a1(y + n - 1, x, True)}"
    pr = f"{_a1(y, x + 1, True)}:{_a1(y + n - 1, x + 1, True)}"
    out = []
    for i in range(n):
        out.append((y + i, x, f"EXP({_a1(*z[i])}-MAX({zr}))", float(e[i])))
        out.append((y + i, x + 1, f"{_a1(y + i, x)}/SUM({er})", float(prob[i])))
    out.append((y + n + 1, x, "predicted class", None))
    out.append((y + n + 2, x, f"MATCH(MAX({pr}),{pr},0)-1", float(k)))
    return out
