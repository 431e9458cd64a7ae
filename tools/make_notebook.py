"""Write docs/chapter13.ipynb (unexecuted) from the cells below: `python tools/make_notebook.py`.

The notebook is executed by the test suite (tests/test_notebook.py), so it never goes stale.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# Chapter 13, cell by cell

fastbook's chapter 13 ("Convolutions") teaches receptive fields with a spreadsheet,
`conv-example.xlsx`: click a cell of the second convolution, press *Trace Precedents*
twice, and the highlighted region of the input is 7 x 7. This notebook builds that
workbook with sheetconv, traces the cell level by level, looks at how the field grows in
fastbook's `simple_cnn`, and checks a PyTorch `simple_cnn` against the workbook's engine."""),
    ("code", """%matplotlib inline
import tempfile
from pathlib import Path

import numpy as np
import sheetconv as sc

work = Path(tempfile.mkdtemp())          # every file this notebook writes goes here"""),
    ("md", """## The conv-example workbook

Two 3 x 3 convolutions with stride 2 and padding 1 on a 28 x 28 MNIST digit. In Jupyter a
network shows its summary table: output shapes, parameters, and the receptive field of each layer."""),
    ("code", """net = sc.preset("conv-example")
net"""),
    ("code", """book_path = sc.write_workbook(net, sc.digit(0), work / "conv-example.xlsx").path
book = sc.open_workbook(book_path)
book"""),
    ("md", """## Trace Precedents, one press at a time

One press on `conv2[0,3,3]` (cell BM6): a 3 x 3 window of each of conv1's two channels,
plus the kernels and the bias. The panels show the traced cell on conv2's grid, then the
cells it reads on conv1's grid."""),
    ("code", """one = book.precedents("conv2[0,3,3]", depth=1)
one"""),
    ("md", """A second press adds what those conv1 cells read: a 7 x 7 square of the input (3 + 2 x 2,
since conv1 moves 2 pixels per cell)."""),
    ("code", """two = book.precedents("conv2[0,3,3]", depth=2)
panels = two.panels()
[(p.layer, p.size) for p in panels]"""),
    ("code", """assert [p.size for p in panels] == [(1, 1), (3, 3), (7, 7)]
two.figure()"""),
    ("md", """The same trace as text, with the cell's stored value and formula first:"""),
    ("code", """print(two)"""),
    ("md", """## simple_cnn's receptive fields

fastbook's `simple_cnn` has five stride-2 convolutions: 28 -> 14 -> 7 -> 4 -> 2 -> 1. Each
layer's field is the previous one plus (kernel - 1) x (the previous layer's jump)."""),
    ("code", """simple = sc.preset("simple-cnn")
fields = [simple.receptive_field(name).size[0] for name in ["conv1", "conv2", "conv3", "conv4", "conv5"]]
assert fields == [3, 7, 15, 31, 63]
fields"""),
    ("code", """simple"""),
    ("md", """## A PyTorch simple_cnn, imported and checked

The chapter's model, written in PyTorch as the book does, converted with `from_torch`,
run by sheetconv's engine and compared with torch's own forward pass."""),
    ("code", """import torch
from torch import nn

def conv(ni, nf, ks=3, act=True):
    res = nn.Conv2d(ni, nf, stride=2, kernel_size=ks, padding=ks // 2)
    if act:
        res = nn.Sequential(res, nn.ReLU())
    return res

torch.manual_seed(0)
simple_cnn = nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), nn.Flatten())
imported = sc.from_torch(simple_cnn, (1, 28, 28))
x = sc.digit(0)
with torch.no_grad():
    expected = simple_cnn.double()(torch.tensor(x[None])).numpy()[0]
ours = imported.forward(x).reshape(-1)
np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)
ours, expected"""),
    ("code", """print(sc.verify(imported, x))"""),
    ("md", """Its workbook, and the last convolution's cell traced to the input: the 63 x 63 field is
clipped by the 28 x 28 image's border."""),
    ("code", """cnn_book = sc.open_workbook(sc.write_workbook(imported, x, work / "simple-cnn.xlsx").path)
last = cnn_book.precedents(("conv5", 0, 0, 0))
print(last.text().split("map (")[0])
last"""),
]


def main():
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"           # stable ids: regenerating changes only what the cells say
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = Path(__file__).resolve().parent.parent / "docs" / "chapter13.ipynb"
    nbformat.write(nb, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
