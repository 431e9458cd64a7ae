"""Tanh: the hyperbolic tangent, cell by cell. Formula ``TANH(<cell>)``."""
from __future__ import annotations

import numpy as np

from .base import Layer, Terms

__all__ = ["Tanh"]


class Tanh(Layer):
    kind = "tanh"
    prefix = "act"
    torch_class = "Tanh"

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return np.tanh(x)

    def formula(self, terms: Terms) -> str:
        return f"TANH({terms.cell})"

    def describe(self):
        return "tanh"

    def to_torch_module(self, torch):
        return torch.nn.Tanh()

    def _torch_forward(self, F, x):
        return x.tanh()

    @classmethod
    def from_torch(cls, m, where, array):
        return cls()
