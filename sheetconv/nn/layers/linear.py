"""Linear: fully connected, optionally with a fused ReLU.

Output f = bias[f] + sum_i x[i] * weight[f, i]. On the dependency side it is a 1x1
convolution over a (F, 1, 1) grid: every output reads every input feature. Its formula is
``SUMPRODUCT(<input column>, <weight column>)`` plus the bias.
"""
from __future__ import annotations

from ...errors import SheetconvError
from ..kernels import linear
from ..regions import Region
from .base import Layer, Terms, affine_formula, count, grid

__all__ = ["Linear"]


class Linear(Layer):
    kind = "linear"
    prefix = "fc"
    channels = "all"
    formula_reads = "dense"
    torch_class = "Linear"
    fusable = True

    def __init__(self, in_features, out_features, bias=True, relu=False):
        super().__init__()
        self.in_features = count(in_features, "in_features", "Linear")
        self.out_features = count(out_features, "out_features", "Linear")
        self.has_bias = bool(bias)
        self.relu = bool(relu)

    @classmethod
    def inferred_from_input(cls, current):
        return {"in_features": current[0] if len(current) == 1 else None}

    def param_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.has_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def _out_shape(self, in_shape):
        if len(in_shape) != 1:
            raise SheetconvError(f"expects {self.in_features} input features (a flat vector), "
                                 f"got shape {tuple(in_shape)}; put a Flatten before it")
        if in_shape[0] != self.in_features:
            raise SheetconvError(f"expects {self.in_features} input features, got {in_shape[0]}")
        return (self.out_features,)

    def macs(self, in_shape):
        return self.in_features * self.out_features

    def forward(self, x):
        return linear(x, self.weight, self.bias, self.relu)

    def config(self):
        return {"type": "Linear", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.has_bias, "relu": self.relu}

    # ---------------------------------------------------------------- cells

    def param_regions(self, out, in_shape):
        regions = [Region.of(f"{self.name}.weight", (self.out_features, self.in_features),
                             [(box[0], ((0, self.in_features),)) for box in out.boxes])]
        if self.has_bias:
            regions.append(Region.of(f"{self.name}.bias", (self.out_features,), [(out.axis_runs(0),)]))
        return regions

    def param_feed(self, param, in_shape, out_name, out_shape):
        grid_out = grid(out_shape)
        return Region.of(out_name, grid_out, [(box[0], ((0, 1),), ((0, 1),)) for box in param.boxes])

    def formula(self, terms: Terms) -> str:
        return affine_formula(terms, self.relu)

    def describe(self):
        return f"linear {self.in_features} -> {self.out_features}"

    # ---------------------------------------------------------------- torch

    def to_torch_module(self, torch):
        m = torch.nn.Linear(self.in_features, self.out_features, bias=self.has_bias, dtype=torch.float64)
        return self._params_into(m, torch)

    def _torch_forward(self, F, x):
        return F.linear(x, x.new_tensor(self.weight), None if self.bias is None else x.new_tensor(self.bias))

    @classmethod
    def from_torch(cls, m, where, array):
        layer = cls(m.in_features, m.out_features, bias=m.bias is not None)
        layer.weight = array(m.weight)
        if m.bias is not None:
            layer.bias = array(m.bias)
        return layer

    def torch_extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}"
