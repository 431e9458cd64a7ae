"""ReLU as its own layer: max(0, x), cell by cell (a ReLU right after Conv2d or Linear is
usually fused into it instead). Reads its own channel's one cell: ``MAX(0,<cell>)``."""
from __future__ import annotations

from ..kernels import relu
from .base import Layer, Terms

__all__ = ["ReLU"]


class ReLU(Layer):
    kind = "relu"
    prefix = "relu"
    torch_class = "ReLU"
    fuses = True

    def _out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return relu(x)

    def formula(self, terms: Terms) -> str:
        return f"MAX(0,{terms.cell})"

    def describe(self):
        return "ReLU"

    def to_torch_module(self, torch):
        return torch.nn.ReLU()

    def _torch_forward(self, F, x):
        return F.relu(x)

    @classmethod
    def from_torch(cls, m, where, array):
        return cls()
