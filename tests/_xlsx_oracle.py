"""Test helpers that read written workbooks independently of the writer.

Formulas are tokenized with openpyxl's Tokenizer (not sheetconv.sheet.formulas); the cells they
reference are mapped back through the layout. Networks for the property tests are built
here too.
"""
from __future__ import annotations

import itertools

import numpy as np
import openpyxl
from openpyxl.formula import Tokenizer
from openpyxl.utils.cell import range_boundaries

from sheetconv import (
    GELU,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    Network,
    ReLU,
    SheetconvError,
    Sigmoid,
    SiLU,
    Tanh,
)

ALLOWED_FUNCTIONS = {"SUMPRODUCT", "SUM", "AVERAGE", "MAX",
                     # BatchNorm2d and the activations: built-ins of Excel, LibreOffice and Gnumeric alike
                     "SQRT", "IF", "EXP", "TANH", "SIGN", "ERF", "ABS", "PI"}


def read_sheet(path, sheet="conv", data_only=False) -> dict[tuple[int, int], object]:
    """Every non-empty cell of ``sheet`` as {(row, col): value}, 0-based."""
    wb = openpyxl.load_workbook(path, data_only=data_only)
    ws = wb[sheet]
    out = {}
    for r, row in enumerate(ws.iter_rows(values_only=True)):
        for c, v in enumerate(row):
            if v is not None:
                out[(r, c)] = v
    wb.close()
    return out


def sheet_references(text: str, sheet: str) -> list[tuple[str, int, int]]:
    """Every cell a formula references, as (sheet, 0-based row, col), ranges expanded;
    a reference without a sheet name is on ``sheet``."""
    out = []
    for tok in Tokenizer(text).items:
        if tok.type == "OPERAND" and tok.subtype == "RANGE":
            where, _, ref = tok.value.replace("$", "").rpartition("!")
            c0, r0, c1, r1 = range_boundaries(ref if ":" in ref else f"{ref}:{ref}")
            name = where.strip("'") or sheet
            out += [(name, r - 1, c - 1) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    return out


def references(text: str) -> list[tuple[int, int]]:
    """Every cell a formula references, as 0-based (row, col), ranges expanded (one sheet only)."""
    refs = sheet_references(text, "")
    assert all(name == "" for name, _, _ in refs), f"unexpected sheet reference in {text!r}"
    return [(r, c) for _, r, c in refs]


def functions(text: str) -> set[str]:
    return {tok.value.rstrip("(") for tok in Tokenizer(text).items if tok.type == "FUNC" and tok.subtype == "OPEN"}


def sheet_precedents(pos, formulas, layout) -> set[tuple]:
    """Cells (as layout tuples) that the formula at ``pos`` reads; partial sums expanded."""
    out = set()
    for ref in references(formulas[pos]):
        cell = layout.locate(*ref)
        assert cell is not None, f"formula at {pos} reads {ref}, which is no cell of the layout"
        if layout.partial(cell[0]) is not None:
            out |= sheet_precedents(ref, formulas, layout)
        else:
            out.add(cell)
    return out


def computed_cells(net):
    for name in net.names[1:]:
        c, h, w = net.grid(name)
        for idx in itertools.product(range(c), range(h), range(w)):
            yield (name, *idx)


def param_cells(net):
    for key, arr in net.state_dict().items():
        for idx in np.ndindex(arr.shape):
            yield (key, *idx), float(arr[idx])


# ---------------------------------------------------------------- networks

def handmade_nets() -> dict[str, tuple[Network, np.ndarray]]:
    """Small networks covering padding, stride, dilation, non-square kernels, pools, 1-D layers."""
    rng = np.random.default_rng(7)
    nets = {
        "pad-stride-nonsquare+maxpool": Network(
            [Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 2)), ReLU(), MaxPool2d(2)], (2, 7, 8)),
        "dilated+avgpool-pad": Network(
            [Conv2d(1, 2, 3, dilation=2, padding=2), ReLU(), AvgPool2d(3, stride=2, padding=1)], (1, 9, 9)),
        "avgpool-exclude-pad+dilated-w": Network(
            [AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
             Conv2d(2, 2, (2, 3), stride=(1, 2), padding=(0, 2), dilation=(1, 2))], (2, 6, 7)),
        "flatten-linear": Network(
            [Conv2d(1, 2, 3, stride=2), ReLU(), Flatten(), Linear(18, 5), ReLU(), Linear(5, 3, bias=False)], (1, 7, 7)),
        "unfused-relu": Network(
            [Conv2d(1, 2, 3, padding=1), ReLU(), MaxPool2d(2, padding=1), Flatten(), Linear(24, 4), ReLU()],
            (1, 5, 6), fuse_relu=False),
        "pad-only-corners": Network([Conv2d(2, 2, 1, stride=2, padding=1), Conv2d(2, 1, 1, padding=1, bias=False)],
                                    (2, 3, 3)),
        "big-kernel-stride3": Network([Conv2d(1, 2, 5, stride=3, padding=2, bias=False), ReLU()], (1, 8, 10)),
        "batchnorm+groups+adaptive": Network(
            [Conv2d(2, 4, 3, padding=1), BatchNorm2d(4), ReLU(), Conv2d(4, 4, 3, groups=4, padding=1, bias=False),
             BatchNorm2d(4, affine=False), AdaptiveAvgPool2d((3, 2)), AdaptiveMaxPool2d(1), Flatten(), Linear(4, 3),
             Sigmoid()], (2, 7, 6)),
        "grouped-conv": Network([Conv2d(4, 6, (2, 3), groups=2, padding=(1, 0), dilation=(2, 1)), ReLU(),
                                 Conv2d(6, 6, 3, groups=3, stride=2)], (4, 7, 7)),
        "activations": Network([Conv2d(1, 2, 3), LeakyReLU(0.2), Tanh(), SiLU(), GELU(), GELU("tanh"),
                                Flatten(), Linear(18, 3), Tanh()], (1, 5, 5)),
    }
    out = {}
    for i, (key, net) in enumerate(nets.items()):
        net.init_weights(i)
        out[key] = (net, rng.normal(size=net.input_shape))
    return out


def random_net(seed: int) -> tuple[Network, np.ndarray]:
    """A random valid chain of 1-4 spatial layers, sometimes ending in Flatten + Linear."""
    rng = np.random.default_rng(seed)
    while True:
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 12)), int(rng.integers(5, 12))
        layers, shape = [], (c, h, w)
        try:
            for _ in range(int(rng.integers(1, 5))):
                kind = rng.choice(["conv", "conv", "max", "avg", "relu"])
                if kind == "conv":
                    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
                    layer = Conv2d(shape[0], int(rng.integers(1, 4)), k, stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                                   padding=(int(rng.integers(0, 3)), int(rng.integers(0, 3))),
                                   dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                                   bias=bool(rng.integers(0, 2)), relu=bool(rng.integers(0, 2)))
                elif kind in ("max", "avg"):
                    k = int(rng.integers(1, 4))
                    cls = MaxPool2d if kind == "max" else AvgPool2d
                    extra = {"count_include_pad": bool(rng.integers(0, 2))} if kind == "avg" else {}
                    layer = cls(k, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, k // 2 + 1)), **extra)
                else:
                    layer = ReLU()
                layer.name = f"l{len(layers)}"
                shape = layer.out_shape(shape)
                layer.name = None
                layers.append(layer)
            if rng.integers(0, 2):
                f = int(np.prod(shape))
                layers += [Flatten(), Linear(f, int(rng.integers(1, 5)), relu=bool(rng.integers(0, 2)))]
            net = Network(layers, (c, h, w), fuse_relu=bool(rng.integers(0, 2)))
        except SheetconvError:
            continue
        net.init_weights(seed)
        return net, rng.normal(size=(c, h, w))
