"""Flatten: (C, H, W) -> (C*H*W,), feature c*H*W + h*W + w copies cell (c, h, w).

Its channel rule is "flatten" (deps.py renumbers cells); its formula is the one cell it copies.
"""
from __future__ import annotations

import numpy as np

from ...errors import SheetconvError
from .base import Layer, Terms

__all__ = ["Flatten"]


class Flatten(Layer):
    kind = "flatten"
    prefix = "flatten"
    channels = "flatten"
    formula_reads = "cell"
    torch_class = "Flatten"

    def _out_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        return x.reshape(x.shape[0], -1)

    def formula(self, terms: Terms) -> str:
        return terms.cell

    def describe(self):
        return "flatten"

    def to_torch_module(self, torch):
        return torch.nn.Flatten()

    def _torch_forward(self, F, x):
        return x.flatten(1)

    @classmethod
    def from_torch(cls, m, where, array):
        start, end = getattr(m, "start_dim", 1), getattr(m, "end_dim", -1)
        if (start, end) != (1, -1) or getattr(m, "full", False):
            raise SheetconvError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is supported, "
                                 f"got start_dim={start}, end_dim={end}")
        return cls()

    def torch_extra_repr(self):
        return "start_dim=1, end_dim=-1"
