"""AvgPool2d: the mean of each window of its own channel.

``count_include_pad=True`` (PyTorch's default) divides by the full kernel area at a
padded border; False divides by the cells actually covered. In ``ceil_mode`` a last window
may hang past the padded input, and that part never counts (as in PyTorch). Formula
``AVERAGE(<window>)``, or ``SUM(<window>)/<area>`` where padding counts and the window hits it.
"""
from __future__ import annotations

from ...errors import SheetconvError
from ..kernels import avg_pool2d
from .base import Terms
from .maxpool2d import _Pool2d, pool_text

__all__ = ["AvgPool2d"]


class AvgPool2d(_Pool2d):
    kind = "avgpool"
    torch_class = "AvgPool2d"

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True, *, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        return (c, *self._check_windows(in_shape))

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad, self.ceil_mode)

    def config(self):
        return self._config("AvgPool2d", count_include_pad=self.count_include_pad)

    def formula(self, terms: Terms) -> str:
        area = terms.area or self.kernel_size[0] * self.kernel_size[1]
        if self.count_include_pad and terms.covered < area:
            return f"SUM({terms.window})/{area}"
        return f"AVERAGE({terms.window})"

    def describe(self):
        return pool_text(self, "average")

    def to_torch_module(self, torch):
        return torch.nn.AvgPool2d(self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                                  count_include_pad=self.count_include_pad)

    def _torch_forward(self, F, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad)

    @classmethod
    def from_torch(cls, m, where, array):
        if m.divisor_override is not None:
            raise SheetconvError(f"{where}: divisor_override={m.divisor_override} is not supported")
        return cls(m.kernel_size, m.stride, m.padding, count_include_pad=m.count_include_pad, ceil_mode=m.ceil_mode)

    def torch_extra_repr(self):
        extra = ", ceil_mode=True" if self.ceil_mode else ""
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}{extra}"
