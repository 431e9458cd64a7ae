"""Layers: hyperparameters, parameters, shape inference and the vectorized forward pass.

Tensors are NCHW as in PyTorch. A layer's output shape leaves out the batch: (C, H, W)
for grids, (F,) after Flatten or Linear. For cells and dependencies a 1-D activation of
F features is seen as a (F, 1, 1) grid: feature f is the cell (layer, f, 0, 0).

Every spatial layer is described by one :class:`Window` per axis (kernel, stride,
padding, dilation) and a channel rule: ``"all"`` (Conv2d, Linear read every input
channel) or ``"same"`` (pools and ReLU read their own channel). The dependency model
(deps.py), the cell-by-cell path (network.py) and the formulas (formulas.py) all use
these two facts and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .kernels import conv2d, relu_
from ..errors import SheetconvError

__all__ = ["Window", "Layer", "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Linear"]


def _pair(value, what: str, layer: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise SheetconvError(f"{layer}: {what} must be an int or an (h, w) pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise SheetconvError(f"{layer}: {what} must be >= {minimum}, got {value!r}")
    return pair


def _count(value, what: str, layer: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SheetconvError(f"{layer}: {what} must be a positive int, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Window:
    """How one output index reads one input axis: input = out*stride - padding + tap*dilation."""
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    @property
    def span(self) -> int:
        """Extent of one window in input cells, holes included."""
        return (self.kernel - 1) * self.dilation + 1

    def out_size(self, n: int) -> int:
        """PyTorch's output-size formula: floor((n + 2p - d(k-1) - 1) / s) + 1."""
        return (n + 2 * self.padding - self.span) // self.stride + 1

    def taps(self, o: int, n: int) -> tuple[int, int]:
        """Half-open range of kernel taps of output index ``o`` that land inside [0, n)."""
        first = o * self.stride - self.padding
        lo = max(0, -(first // self.dilation))
        hi = min(self.kernel, (n - 1 - first) // self.dilation + 1)
        return lo, max(lo, hi)


class Layer:
    """Base class. ``name`` is set by the Network; ``kind`` names the operation."""
    kind = "layer"
    channels = "same"        # "all": reads every input channel; "same": its own channel
    relu = False             # a fused ReLU (Conv2d and Linear only)

    def __init__(self):
        self.name: str | None = None

    @property
    def label(self) -> str:
        """As the spreadsheet shows it: 'conv1 (ReLU)'."""
        return f"{self.name} (ReLU)" if self.relu else str(self.name)

    @property
    def windows(self) -> tuple[Window, Window]:
        return Window(), Window()

    def params(self) -> dict[str, np.ndarray]:
        return {}

    def param_count(self) -> int:
        return sum(int(p.size) for p in self.params().values())

    def out_shape(self, in_shape: tuple) -> tuple:
        raise NotImplementedError

    def macs(self, in_shape: tuple) -> int:
        return 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict:
        """The hyperparameters, JSON-ready; ``Layer.from_config`` inverts it."""
        return {"type": type(self).__name__}

    @staticmethod
    def from_config(cfg: dict, index: int | None = None) -> "Layer":
        """``config()``'s data -> a layer; a bad type, key or value is a one-line
        SheetconvError naming the layer (``index``, 1-based, when given) and the key."""
        from .specfile import layer_from_config
        return layer_from_config(cfg, "layer" if index is None else f"layer {index}", strict_names=False)

    def _spatial_in(self, in_shape: tuple) -> tuple[int, int, int]:
        if len(in_shape) != 3:
            raise SheetconvError(f"{self.name}: expects a (C, H, W) input, got shape {tuple(in_shape)}")
        return in_shape

    def _check_windows(self, in_shape: tuple) -> tuple[int, int]:
        _, h, w = in_shape
        out = []
        for axis, (win, n) in enumerate(zip(self.windows, (h, w))):
            if win.span > n + 2 * win.padding:
                raise SheetconvError(
                    f"{self.name}: kernel {win.kernel} (dilated extent {win.span}) is larger than the padded "
                    f"input {n}+2*{win.padding}={n + 2 * win.padding} along {'HW'[axis]}")
            out.append(win.out_size(n))
        return out[0], out[1]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Conv2d(Layer):
    kind = "conv"
    channels = "all"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, relu=False):
        super().__init__()
        who = "Conv2d"
        self.in_channels = _count(in_channels, "in_channels", who)
        self.out_channels = _count(out_channels, "out_channels", who)
        self.kernel_size = _pair(kernel_size, "kernel_size", who, 1)
        self.stride = _pair(stride, "stride", who, 1)
        self.padding = _pair(padding, "padding", who, 0)
        self.dilation = _pair(dilation, "dilation", who, 1)
        self.relu = bool(relu)
        kh, kw = self.kernel_size
        self.weight = np.zeros((self.out_channels, self.in_channels, kh, kw))
        self.bias = np.zeros(self.out_channels) if bias else None

    @property
    def windows(self):
        return tuple(Window(*a) for a in zip(self.kernel_size, self.stride, self.padding, self.dilation))

    def params(self):
        return {"weight": self.weight} if self.bias is None else {"weight": self.weight, "bias": self.bias}

    def out_shape(self, in_shape):
        c, h, w = self._spatial_in(in_shape)
        if c != self.in_channels:
            raise SheetconvError(f"{self.name}: expects {self.in_channels} input channels, got {c} (input shape {tuple(in_shape)})")
        return (self.out_channels, *self._check_windows(in_shape))

    def macs(self, in_shape):
        _, ho, wo = self.out_shape(in_shape)
        return self.out_channels * ho * wo * self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.relu)

    def config(self):
        return {"type": "Conv2d", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "dilation": list(self.dilation),
                "bias": self.bias is not None, "relu": self.relu}


class ReLU(Layer):
    kind = "relu"

    def out_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return np.maximum(x, 0)


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        who = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", who, 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", who, 1)
        self.padding = _pair(padding, "padding", who, 0)
        for k, p in zip(self.kernel_size, self.padding):
            if p > k // 2:
                raise SheetconvError(f"{who}: padding {self.padding} must be at most half the kernel size {self.kernel_size}")

    @property
    def windows(self):
        return tuple(Window(k, s, p, 1) for k, s, p in zip(self.kernel_size, self.stride, self.padding))

    def out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        return (c, *self._check_windows(in_shape))

    def macs(self, in_shape):
        return 0

    def _windows_view(self, x, fill):
        ph, pw = self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
        v = sliding_window_view(xp, self.kernel_size, axis=(2, 3))
        sh, sw = self.stride
        ho, wo = self.windows[0].out_size(x.shape[2]), self.windows[1].out_size(x.shape[3])
        return v[:, :, :sh * (ho - 1) + 1:sh, :sw * (wo - 1) + 1:sw]

    def config(self):
        return {"type": type(self).__name__, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding)}


class MaxPool2d(_Pool2d):
    kind = "maxpool"

    def forward(self, x):
        return self._windows_view(x, -np.inf).max(axis=(4, 5))


class AvgPool2d(_Pool2d):
    """Average pool. ``count_include_pad=True`` (PyTorch's default) divides by the full
    kernel area at a padded border; False divides by the cells actually covered."""
    kind = "avgpool"

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        total = self._windows_view(x, 0.0).sum(axis=(4, 5))
        if self.count_include_pad or self.padding == (0, 0):
            return total / (self.kernel_size[0] * self.kernel_size[1])
        ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
        return total / self._windows_view(ones, 0.0).sum(axis=(4, 5))

    def config(self):
        return {**super().config(), "count_include_pad": self.count_include_pad}


class Flatten(Layer):
    kind = "flatten"

    def out_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))


class Linear(Layer):
    """Fully connected. On the dependency side it is a 1x1 convolution over a (F, 1, 1) grid."""
    kind = "linear"
    channels = "all"

    def __init__(self, in_features, out_features, bias=True, relu=False):
        super().__init__()
        self.in_features = _count(in_features, "in_features", "Linear")
        self.out_features = _count(out_features, "out_features", "Linear")
        self.relu = bool(relu)
        self.weight = np.zeros((self.out_features, self.in_features))
        self.bias = np.zeros(self.out_features) if bias else None

    def params(self):
        return {"weight": self.weight} if self.bias is None else {"weight": self.weight, "bias": self.bias}

    def out_shape(self, in_shape):
        if len(in_shape) != 1:
            raise SheetconvError(f"{self.name}: expects {self.in_features} input features (a flat vector), "
                                 f"got shape {tuple(in_shape)}; put a Flatten before it")
        if in_shape[0] != self.in_features:
            raise SheetconvError(f"{self.name}: expects {self.in_features} input features, got {in_shape[0]}")
        return (self.out_features,)

    def macs(self, in_shape):
        return self.in_features * self.out_features

    def forward(self, x):
        out = x @ self.weight.astype(x.dtype, copy=False).T
        if self.bias is not None:
            out += self.bias.astype(x.dtype, copy=False)
        if self.relu:
            relu_(out)
        return out

    def config(self):
        return {"type": "Linear", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "relu": self.relu}


_TYPES = {cls.__name__: cls for cls in (Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Linear)}
