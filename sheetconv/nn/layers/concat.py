"""Concat: the inputs stacked along channels (``torch.cat([a, b], dim=1)``), as U-Net and
DenseNet join paths.

Output channel c is channel c - offset_k of input k, where input k's channels start at
offset_k (the channel counts of the inputs before it); the rows and columns are the same,
so all inputs must share (H, W). A cell copies one cell: channel rule "concat", formula
the cell it copies.
"""
from __future__ import annotations

from ...errors import SheetconvError
from .base import Layer, Terms

__all__ = ["Concat", "channel_offsets"]


def channel_offsets(in_shapes) -> list[int]:
    """Where each input's channels start in the output: [0, C0, C0 + C1, ...] (one extra at the end)."""
    out = [0]
    for s in in_shapes:
        out.append(out[-1] + int(s[0]))
    return out


class Concat(Layer):
    kind = "concat"
    prefix = "cat"
    channels = "concat"
    formula_reads = "inputs"
    arity = None

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def _out_shape_many(self, in_shapes, where):
        if any(len(s) != 3 for s in in_shapes) or len({tuple(s[1:]) for s in in_shapes}) != 1:
            raise SheetconvError(f"{where or self.who}: stacks (C, H, W) inputs of the same H and W along channels, "
                                 f"got {', '.join(str(tuple(v)) for v in in_shapes)}")
        return (channel_offsets(in_shapes)[-1], *in_shapes[0][1:])

    def forward(self, x):
        return x

    def forward_many(self, xs):
        import numpy as np
        return np.concatenate(xs, axis=1)

    def config(self):
        return {"type": "Concat"}

    def formula(self, terms: Terms) -> str:
        return terms.cell

    def describe(self):
        return (" | ".join(self.inputs) if self.inputs else "its inputs") + " stacked along channels"

    def to_torch_module(self, torch):
        raise SheetconvError(f"{self.who}: a Concat is an operation of a graph, not a torch module; "
                             "to_torch(net) writes it as torch.cat")

    def torch_forward_many(self, F, xs):
        import torch
        return torch.cat(list(xs), dim=1)

    def _torch_forward(self, F, x):
        return x

    @classmethod
    def from_torch(cls, m, where, array):
        raise SheetconvError(f"{where}: a Concat comes from torch.cat in a traced forward, not from a module")
