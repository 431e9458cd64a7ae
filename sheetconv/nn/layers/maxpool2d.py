"""MaxPool2d: the largest cell of each window of its own channel; padding counts as -inf.

Formula ``MAX(<window>)``, the window clipped to the grid (padding is not a cell). In
``ceil_mode`` (PyTorch's) a last window may hang past the input; it is clipped the same way.
"""
from __future__ import annotations

from ...errors import SheetconvError
from ..kernels import max_pool2d
from ..window import Window
from .base import Layer, Terms, pair

__all__ = ["MaxPool2d"]


class _Pool2d(Layer):
    """What MaxPool2d and AvgPool2d share: their hyperparameters (stride defaults to the
    kernel size, as PyTorch's) and one Window per axis (no dilation). Not a kind itself."""
    prefix = "pool"

    def __init__(self, kernel_size, stride=None, padding=0, *, ceil_mode=False):
        super().__init__()
        self.ceil_mode = bool(ceil_mode)
        who = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", who, 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", who, 1)
        self.padding = pair(padding, "padding", who, 0)
        for k, p in zip(self.kernel_size, self.padding):
            if p > k // 2:
                raise SheetconvError(f"{who}: padding {self.padding} must be at most half the kernel size {self.kernel_size}")

    @property
    def windows(self):
        return tuple(Window(k, s, p, 1, self.ceil_mode) for k, s, p in zip(self.kernel_size, self.stride, self.padding))

    def _config(self, kind: str, **extra) -> dict:
        cfg = {"type": kind, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
               "padding": list(self.padding), **extra}
        return {**cfg, "ceil_mode": True} if self.ceil_mode else cfg         # floor mode, the default, unsaid


def pool_text(layer, what: str) -> str:
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    text = f"{kh}x{kw} {what} pool, stride {sh if sh == sw else (sh, sw)}"
    text += f", padding {ph if ph == pw else (ph, pw)}" if max(ph, pw) else ""
    return text + (", ceil mode" if layer.ceil_mode else "")


class MaxPool2d(_Pool2d):
    kind = "maxpool"
    torch_class = "MaxPool2d"

    def _out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        return (c, *self._check_windows(in_shape))

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def config(self):
        return self._config("MaxPool2d")

    def formula(self, terms: Terms) -> str:
        return f"MAX({terms.window})"

    def describe(self):
        return pool_text(self, "max")

    def to_torch_module(self, torch):
        return torch.nn.MaxPool2d(self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)

    def _torch_forward(self, F, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)

    @classmethod
    def from_torch(cls, m, where, array):
        if m.return_indices:
            raise SheetconvError(f"{where}: return_indices=True is not supported")
        if m.dilation not in (1, (1, 1), [1, 1]):
            raise SheetconvError(f"{where}: dilation={m.dilation} is not supported for pools; must be 1")
        return cls(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)

    def torch_extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation=1, ceil_mode={self.ceil_mode}")
