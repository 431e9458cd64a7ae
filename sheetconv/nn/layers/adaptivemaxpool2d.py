"""AdaptiveMaxPool2d: the largest cell of each window of its own channel, the windows
chosen as AdaptiveAvgPool2d's (PyTorch's rule, window.AdaptiveWindow). Formula
``MAX(<window>)``.
"""
from __future__ import annotations

import numpy as np

from ...errors import SheetconvError
from .adaptiveavgpool2d import _AdaptivePool2d, adaptive_output_size, adaptive_pool, adaptive_text
from .base import Terms

__all__ = ["AdaptiveMaxPool2d"]


class AdaptiveMaxPool2d(_AdaptivePool2d):
    kind = "adaptivemaxpool"
    torch_class = "AdaptiveMaxPool2d"

    def _out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        return (c, *self.output_size)

    def forward(self, x):
        return adaptive_pool(self, x, np.max)

    def config(self):
        return {"type": "AdaptiveMaxPool2d", "output_size": list(self.output_size)}

    def formula(self, terms: Terms) -> str:
        return f"MAX({terms.window})"

    def describe(self):
        return adaptive_text(self, "max")

    def to_torch_module(self, torch):
        h, w = self.output_size
        return torch.nn.AdaptiveMaxPool2d(h if h == w else (h, w))

    def _torch_forward(self, F, x):
        return F.adaptive_max_pool2d(x, self.output_size)

    @classmethod
    def from_torch(cls, m, where, array):
        if m.return_indices:
            raise SheetconvError(f"{where}: return_indices=True is not supported")
        return cls(adaptive_output_size(m, where))

    def torch_extra_repr(self):
        h, w = self.output_size
        return f"output_size={h if h == w else (h, w)}"
