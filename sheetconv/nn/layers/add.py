"""Add: the element-wise sum of two or more inputs of the same shape (a residual connection),
optionally with a fused ReLU.

Output cell (c, h, w) = the sum of cell (c, h, w) of every input. It reads one cell of each
input, in its own channel (channel rule "same", one-tap windows); its formula adds them:
``conv3!X + pool1!Y``, inside ``MAX(0, ...)`` when a ReLU follows and fuses. In torch it is
``x + y`` (``operator.add``, ``torch.add``).
"""
from __future__ import annotations

from ...errors import SheetconvError
from .base import Layer, Terms

__all__ = ["Add"]


class Add(Layer):
    kind = "add"
    prefix = "add"
    formula_reads = "inputs"
    fusable = True
    arity = None

    def __init__(self, relu=False):
        super().__init__()
        self.relu = bool(relu)

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def _out_shape_many(self, in_shapes, where):
        first = tuple(in_shapes[0])
        for s in in_shapes[1:]:
            if tuple(s) != first:
                raise SheetconvError(f"{where or self.who}: adds inputs of the same shape, got "
                                     f"{', '.join(str(tuple(v)) for v in in_shapes)}")
        return first

    def forward(self, x):
        return x

    def forward_many(self, xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out if not self.relu else out.clip(min=0)

    def config(self):
        return {"type": "Add", "relu": self.relu}

    def formula(self, terms: Terms) -> str:
        body = "+".join(terms.sums)
        return f"MAX(0,{body})" if self.relu else body

    def describe(self):
        return " + ".join(self.inputs) if self.inputs else "sum of its inputs (residual add)"

    def to_torch_module(self, torch):
        raise SheetconvError(f"{self.who}: an Add is an operation of a graph, not a torch module; "
                             "to_torch(net) writes it as '+'")

    def torch_forward_many(self, F, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return F.relu(out) if self.relu else out

    def _torch_forward(self, F, x):
        return x

    @classmethod
    def from_torch(cls, m, where, array):
        raise SheetconvError(f"{where}: an Add comes from '+' in a traced forward, not from a module")

    def torch_extra_repr(self):
        return ""
