"""AdaptiveAvgPool2d: the mean of each window of its own channel, the windows chosen so
that the output has ``output_size`` (h, w) cells whatever the input size.

PyTorch's rule per axis (window.AdaptiveWindow): output o reads inputs
[floor(o*n/out), ceil((o+1)*n/out)); windows may differ in length and overlap. Output
size 1 is the global average pool of fastai's and ResNet's heads. Formula
``AVERAGE(<window>)`` (no padding, so every window is cells only).
"""
from __future__ import annotations

import numpy as np

from ...errors import SheetconvError
from ..window import AdaptiveWindow
from .base import Layer, Terms, pair

__all__ = ["AdaptiveAvgPool2d", "adaptive_pool", "adaptive_text", "adaptive_output_size"]


def adaptive_output_size(m, where: str) -> tuple[int, int]:
    """A torch module's ``output_size`` (int, pair, None entries) -> (h, w), None refused."""
    size = m.output_size
    if size is None or (isinstance(size, (tuple, list)) and None in size):
        raise SheetconvError(f"{where}: output_size None (keep the input size) is not supported; give numbers")
    return pair(tuple(size) if isinstance(size, (tuple, list)) else size, "output_size", where, 1)


def adaptive_pool(layer, x: np.ndarray, reduce) -> np.ndarray:
    """``reduce(block, axis=(2, 3))`` over every window of ``x`` (N, C, H, W)."""
    wh, ww = layer.windows_for(x.shape[1:])
    out = np.empty(x.shape[:2] + layer.output_size, dtype=x.dtype)
    for i in range(layer.output_size[0]):
        rows = x[:, :, wh.start(i):wh.end(i)]
        for j in range(layer.output_size[1]):
            out[:, :, i, j] = reduce(rows[:, :, :, ww.start(j):ww.end(j)], axis=(2, 3))
    return out


def adaptive_text(layer, what: str) -> str:
    h, w = layer.output_size
    return f"global {what} pool" if (h, w) == (1, 1) else f"adaptive {what} pool to {h}x{w}"


def _size_repr(size: tuple[int, int]):
    return size[0] if size[0] == size[1] else size


class _AdaptivePool2d(Layer):
    """What the adaptive pools share: ``output_size`` and PyTorch's per-axis window rule,
    which depends on the input size (so there is no fixed ``windows``). Not a kind itself."""
    prefix = "pool"

    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair(output_size, "output_size", type(self).__name__, 1)

    @property
    def windows(self):
        raise SheetconvError(f"{type(self).__name__}: its windows depend on the input size; use windows_for(in_shape)")

    def windows_for(self, in_shape):
        _, h, w = in_shape
        return AdaptiveWindow(h, self.output_size[0]), AdaptiveWindow(w, self.output_size[1])


class AdaptiveAvgPool2d(_AdaptivePool2d):
    kind = "adaptiveavgpool"
    torch_class = "AdaptiveAvgPool2d"

    def _out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        return (c, *self.output_size)

    def forward(self, x):
        return adaptive_pool(self, x, np.mean)

    def config(self):
        return {"type": "AdaptiveAvgPool2d", "output_size": list(self.output_size)}

    def formula(self, terms: Terms) -> str:
        return f"AVERAGE({terms.window})"

    def describe(self):
        return adaptive_text(self, "average")

    def to_torch_module(self, torch):
        return torch.nn.AdaptiveAvgPool2d(_size_repr(self.output_size))

    def _torch_forward(self, F, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    @classmethod
    def from_torch(cls, m, where, array):
        return cls(adaptive_output_size(m, where))

    def torch_extra_repr(self):
        return f"output_size={_size_repr(self.output_size)}"
