"""SiLU (swish): x / (1 + exp(-x)), cell by cell, as PyTorch computes it. Formula
``<cell>/(1+EXP(-<cell>))`` (EXP overflows in a spreadsheet below about -709)."""
from __future__ import annotations

import numpy as np

from .base import Layer, Terms

__all__ = ["SiLU"]


class SiLU(Layer):
    kind = "silu"
    prefix = "act"
    torch_class = "SiLU"

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        with np.errstate(over="ignore"):
            return x / (1 + np.exp(-x))

    def formula(self, terms: Terms) -> str:
        x = terms.cell
        return f"{x}/(1+EXP(-{x}))"

    def describe(self):
        return "SiLU"

    def to_torch_module(self, torch):
        return torch.nn.SiLU()

    def _torch_forward(self, F, x):
        return F.silu(x)

    @classmethod
    def from_torch(cls, m, where, array):
        return cls()
