"""The sheet ``prediction``: the softmax of a 1-D output and the predicted class.

For a network whose last layer is 1-D with n >= 2 features (a Linear layer, or
simple_cnn's two outputs after Flatten), row 3 + i holds for class i: the logit z_i (a
link to the conv sheet), ``e_i = EXP(z_i - MAX(z))`` (shifted by the maximum, as torch
does, so that nothing overflows) and ``p_i = e_i / SUM(e)``; below them the predicted
class ``MATCH(MAX(p), p, 0) - 1`` (0-based, the first maximum, as ``argmax``) and its
probability. Only EXP, MAX, SUM and MATCH: recalculated alike by Excel, LibreOffice and
Gnumeric without array entry.
"""
from __future__ import annotations

import numpy as np

from .a1 import cell as a1
from .a1 import quote_sheet, rng
from .explain import Cell

__all__ = ["PREDICTION_SHEET", "has_prediction", "softmax_values", "prediction", "class_cell", "prob_cells"]

PREDICTION_SHEET = "prediction"
_FIRST = 3                  # row of class 0


def has_prediction(net) -> bool:
    last = net.names[-1]
    return last != "input" and len(net.shapes[last]) == 1 and net.shapes[last][0] >= 2


def softmax_values(z) -> tuple[np.ndarray, np.ndarray, int]:
    """(exp(z - max z), softmax(z), argmax) of a 1-D array, as the formulas compute them."""
    z = np.asarray(z, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    p = e / e.sum()
    return e, p, int(np.argmax(p))


def prob_cells(net) -> list[tuple[int, int]]:
    """(row, col) of p_0 .. p_{n-1} on the prediction sheet."""
    return [(_FIRST + i, 3) for i in range(net.shapes[net.names[-1]][0])]


def class_cell(net) -> tuple[int, int]:
    """(row, col) of the predicted class."""
    return _FIRST + net.shapes[net.names[-1]][0] + 1, 3


def prediction(net, layout, acts) -> list[Cell]:
    """The prediction sheet's cells, row by row."""
    last = net.names[-1]
    n = net.shapes[last][0]
    e, p, k = softmax_values(acts[last])
    sheet = quote_sheet(layout.sheet)
    end = _FIRST + n - 1
    zr, er, pr = (rng(_FIRST, col, end, col, True) for col in (1, 2, 3))
    cells = [Cell(0, 0, "text", f"prediction: the softmax of {net[last].label} and the predicted class", None, "title"),
             Cell(1, 0, "text", "p_i = EXP(z_i - MAX(z)) / SUM of EXP(z_j - MAX(z)): subtracting the largest z "
                                "changes nothing but keeps EXP from overflowing.", None, "note")]
    for col, title in enumerate(("class", f"z ({last})", "EXP(z - MAX(z))", "probability")):
        cells.append(Cell(2, col, "text", title, None, "title"))
    for i in range(n):
        R = _FIRST + i
        z_ref = layout.cell_of((last, i, 0, 0))
        cells += [Cell(R, 0, "number", float(i), float(i), "class"),
                  Cell(R, 1, "formula", f"{sheet}!{a1(*z_ref)}", float(acts[last][i]), "num"),
                  Cell(R, 2, "formula", f"EXP({a1(R, 1)}-MAX({zr}))", float(e[i]), "num"),
                  Cell(R, 3, "formula", f"{a1(R, 2)}/SUM({er})", float(p[i]), "num")]
    R, _ = class_cell(net)
    cells += [Cell(R, 0, "text", "predicted class", None, "title"),
              Cell(R, 3, "formula", f"MATCH(MAX({pr}),{pr},0)-1", float(k), "class"),
              Cell(R + 1, 0, "text", "its probability", None, "title"),
              Cell(R + 1, 3, "formula", f"MAX({pr})", float(p[k]), "num")]
    return cells
