"""GELU, cell by cell, exact or with PyTorch's tanh approximation.

``approximate="none"``: x/2 * (1 + erf(x/sqrt 2)). Excel documents ERF (and ERF.PRECISE)
as refusing a negative argument (#NUM!), so the formula uses erf's oddness,
erf(x) = sign(x) erf(|x|): ``0.5*<cell>*(1+SIGN(<cell>)*ERF(ABS(<cell>)/SQRT(2)))`` —
exact, and computed alike by Excel, LibreOffice and Gnumeric.
``approximate="tanh"``: x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), formula
``0.5*<cell>*(1+TANH(SQRT(2/PI())*(<cell>+0.044715*<cell>^3)))``.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import SheetconvError
from .base import Layer, Terms

__all__ = ["GELU"]


_APPROXIMATIONS = ("none", "tanh")


class GELU(Layer):
    kind = "gelu"
    prefix = "act"
    torch_class = "GELU"

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in _APPROXIMATIONS:
            raise SheetconvError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r:.40}")
        self.approximate = approximate

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        if self.approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype, copy=False)

    def config(self):
        return {"type": "GELU", "approximate": self.approximate}

    def formula(self, terms: Terms) -> str:
        x = terms.cell
        if self.approximate == "tanh":
            return f"0.5*{x}*(1+TANH(SQRT(2/PI())*({x}+0.044715*{x}^3)))"
        return f"0.5*{x}*(1+SIGN({x})*ERF(ABS({x})/SQRT(2)))"

    def describe(self):
        return "GELU" + (" (tanh approximation)" if self.approximate == "tanh" else "")

    def to_torch_module(self, torch):
        return torch.nn.GELU(approximate=self.approximate)

    def _torch_forward(self, F, x):
        return F.gelu(x, approximate=self.approximate)

    @classmethod
    def from_torch(cls, m, where, array):
        return cls(m.approximate)

    def torch_extra_repr(self):
        return f"approximate={self.approximate!r}"
