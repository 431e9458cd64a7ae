"""Sigmoid: 1 / (1 + exp(-x)), cell by cell. Formula ``1/(1+EXP(-<cell>))`` (a cell below
about -709 overflows EXP in a spreadsheet, where PyTorch gives 0)."""
from __future__ import annotations

import numpy as np

from .base import Layer, Terms

__all__ = ["Sigmoid"]


class Sigmoid(Layer):
    kind = "sigmoid"
    prefix = "act"
    torch_class = "Sigmoid"

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        with np.errstate(over="ignore"):
            return 1 / (1 + np.exp(-x))

    def formula(self, terms: Terms) -> str:
        return f"1/(1+EXP(-{terms.cell}))"

    def describe(self):
        return "sigmoid"

    def to_torch_module(self, torch):
        return torch.nn.Sigmoid()

    def _torch_forward(self, F, x):
        return x.sigmoid()

    @classmethod
    def from_torch(cls, m, where, array):
        return cls()
