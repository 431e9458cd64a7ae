"""AvgPool2d: the mean of each window of its own channel.

``count_include_pad=True`` (PyTorch's default) divides by the full kernel area at a
padded border; False divides by the cells actually covered. Formula ``AVERAGE(<window>)``,
or ``SUM(<window>)/(kh*kw)`` where padding counts and the window hits it.
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

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def _out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        return (c, *self._check_windows(in_shape))

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def config(self):
        return {"type": "AvgPool2d", "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "count_include_pad": self.count_include_pad}

    def formula(self, terms: Terms) -> str:
        area = self.kernel_size[0] * self.kernel_size[1]
        if self.count_include_pad and terms.covered < area:
            return f"SUM({terms.window})/{area}"
        return f"AVERAGE({terms.window})"

    def describe(self):
        return pool_text(self, "average")

    def to_torch_module(self, torch):
        return torch.nn.AvgPool2d(self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad)

    def _torch_forward(self, F, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad)

    @classmethod
    def from_torch(cls, m, where, array):
        if m.ceil_mode:
            raise SheetconvError(f"{where}: ceil_mode=True is not supported")
        if m.divisor_override is not None:
            raise SheetconvError(f"{where}: divisor_override={m.divisor_override} is not supported")
        return cls(m.kernel_size, m.stride, m.padding, count_include_pad=m.count_include_pad)

    def torch_extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
