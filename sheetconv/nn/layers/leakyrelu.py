"""LeakyReLU: x where x > 0, else negative_slope * x (PyTorch's rule), cell by cell.
Formula ``IF(<cell>>0,<cell>,<cell>*<slope>)``, the slope written as a number."""
from __future__ import annotations

import numpy as np

from ...errors import SheetconvError
from .base import Layer, Terms, number_text

__all__ = ["LeakyReLU"]


class LeakyReLU(Layer):
    kind = "leakyrelu"
    prefix = "act"
    torch_class = "LeakyReLU"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.floating)) \
                or not np.isfinite(negative_slope):
            raise SheetconvError(f"LeakyReLU: negative_slope must be a finite number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.negative_slope))

    def config(self):
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}

    def formula(self, terms: Terms) -> str:
        x = terms.cell
        return f"IF({x}>0,{x},{x}*{number_text(self.negative_slope)})"

    def describe(self):
        return f"leaky ReLU, slope {self.negative_slope:g}"

    def to_torch_module(self, torch):
        return torch.nn.LeakyReLU(self.negative_slope)

    def _torch_forward(self, F, x):
        return F.leaky_relu(x, self.negative_slope)

    @classmethod
    def from_torch(cls, m, where, array):
        return cls(m.negative_slope)

    def torch_extra_repr(self):
        return f"negative_slope={self.negative_slope}"
