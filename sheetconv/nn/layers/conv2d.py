"""Conv2d: a 2-D convolution (cross-correlation, as PyTorch), optionally with a fused ReLU.

Output (o, r, c) = bias[o] + sum over input channels i and taps (t, u) inside the grid of
x[i, Window_h.index(r, t), Window_w.index(c, u)] * weight[o, i, t, u]. Reads every input
channel; its formula is one SUMPRODUCT(window, kernel) per input channel (or the products
written out for a dilated window), plus the bias.

Grouped (``groups=g``; depthwise when g = in_channels): the channels split into g groups;
output o belongs to group o // (out/g) and reads that group's in/g input channels only,
weight (out, in/g, kh, kw), its kernel j applied to input channel group*(in/g) + j
(``group_inputs(o)``). The formula has one SUMPRODUCT per channel of the group.
"""
from __future__ import annotations

from ...errors import SheetconvError
from ..kernels import conv2d
from ..regions import Region, Runs, merge_runs
from ..window import Window
from .base import Layer, Terms, affine_formula, count, grid, pair

__all__ = ["Conv2d"]


def _pair_text(a: int, b: int) -> str:
    return str(a) if a == b else f"({a}, {b})"


class Conv2d(Layer):
    kind = "conv"
    prefix = "conv"
    channels = "all"
    formula_reads = "weighted"
    torch_class = "Conv2d"
    fusable = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, relu=False, groups=1):
        super().__init__()
        who = "Conv2d"
        self.in_channels = count(in_channels, "in_channels", who)
        self.out_channels = count(out_channels, "out_channels", who)
        self.kernel_size = pair(kernel_size, "kernel_size", who, 1)
        self.stride = pair(stride, "stride", who, 1)
        self.padding = pair(padding, "padding", who, 0)
        self.dilation = pair(dilation, "dilation", who, 1)
        self.has_bias = bool(bias)
        self.relu = bool(relu)
        self.groups = count(groups, "groups", who)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SheetconvError(f"{who}: in_channels {self.in_channels} and out_channels {self.out_channels} must "
                                 f"both be divisible by groups {self.groups}")

    @classmethod
    def inferred_from_input(cls, current):
        return {"in_channels": current[0]}

    def param_shapes(self):
        shapes = {"weight": (self.out_channels, self.in_channels // self.groups, *self.kernel_size)}
        if self.has_bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    @property
    def windows(self):
        return tuple(Window(*a) for a in zip(self.kernel_size, self.stride, self.padding, self.dilation))

    def _out_shape(self, in_shape):
        c, h, w = self._spatial_in(in_shape)
        if c != self.in_channels:
            raise SheetconvError(f"expects {self.in_channels} input channels, got {c} "
                                 f"(input shape {tuple(in_shape)})")
        return (self.out_channels, *self._check_windows(in_shape))

    def macs(self, in_shape):
        _, ho, wo = self.out_shape(in_shape)
        return self.out_channels * ho * wo * (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.relu,
                      groups=self.groups)

    def partial_forward(self, x, a: int, b: int):
        """The sum over the kernels [a, b) of each output's group only (input channels
        [a, b) when ungrouped): no bias, no ReLU (a partial-sum block)."""
        per = self.in_channels // self.groups
        xs = x.reshape(x.shape[0], self.groups, per, *x.shape[2:])[:, :, a:b]
        return conv2d(xs.reshape(x.shape[0], self.groups * (b - a), *x.shape[2:]), self.weight[:, a:b], None,
                      self.stride, self.padding, self.dilation, False, groups=self.groups)

    # ---------------------------------------------------------------- channels

    def group_inputs(self, o: int) -> range:
        """The input channels output channel ``o`` reads (kernel j reads the j-th of them)."""
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        g = o // per_out
        return range(g * per_in, (g + 1) * per_in)

    def channel_back(self, runs: Runs, cin: int) -> Runs:
        if self.groups == 1:
            return ((0, cin),)
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        return merge_runs((a // per_out * per_in, ((b - 1) // per_out + 1) * per_in) for a, b in runs)

    def channel_forward(self, runs: Runs, cout: int) -> Runs:
        if self.groups == 1:
            return ((0, cout),)
        per_in, per_out = self.in_channels // self.groups, self.out_channels // self.groups
        return merge_runs((a // per_in * per_out, ((b - 1) // per_in + 1) * per_out) for a, b in runs)

    def config(self):
        return {"type": "Conv2d", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "dilation": list(self.dilation),
                "bias": self.has_bias, "relu": self.relu, **({"groups": self.groups} if self.groups > 1 else {})}

    # ---------------------------------------------------------------- cells

    def param_regions(self, out, in_shape):
        _, hin, win = grid(in_shape)
        wh, ww = self.windows
        w = self.param_shapes()["weight"]
        boxes = [(box[0], ((0, w[1]),), wh.used_taps(box[1], hin), ww.used_taps(box[2], win)) for box in out.boxes]
        regions = [Region.of(f"{self.name}.weight", w, boxes)]
        if self.has_bias:
            regions.append(Region.of(f"{self.name}.bias", (self.out_channels,), [(out.axis_runs(0),)]))
        return regions

    def param_feed(self, param, in_shape, out_name, out_shape):
        _, hout, wout = grid_out = grid(out_shape)
        _, hin, win = grid(in_shape)
        wh, ww = self.windows
        boxes = []
        for box in param.boxes:
            if len(box) == 4:          # weight (out, in, kh, kw): where the tap lands inside
                rows = merge_runs(wh.tap_outputs(t, hin, hout) for a, b in box[2] for t in range(a, b))
                cols = merge_runs(ww.tap_outputs(t, win, wout) for a, b in box[3] for t in range(a, b))
                boxes.append((box[0], rows, cols))
            else:                      # bias (out,): the whole channel
                boxes.append((box[0], ((0, hout),), ((0, wout),)))
        return Region.of(out_name, grid_out, [b for b in boxes if all(b)])

    def formula(self, terms: Terms) -> str:
        return affine_formula(terms, self.relu)

    def describe(self):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        text = f"{kh}x{kw} conv, stride {_pair_text(sh, sw)}, padding {_pair_text(ph, pw)}"
        text += f", dilation {_pair_text(dh, dw)}" if max(dh, dw) > 1 else ""
        if self.groups > 1:
            text += ", depthwise" if self.groups == self.in_channels else f", {self.groups} groups"
        return text

    # ---------------------------------------------------------------- torch

    def to_torch_module(self, torch):
        m = torch.nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                            padding=self.padding, dilation=self.dilation, bias=self.has_bias, groups=self.groups,
                            dtype=torch.float64)
        return self._params_into(m, torch)

    def _torch_forward(self, F, x):
        bias = None if self.bias is None else x.new_tensor(self.bias)
        return F.conv2d(x, x.new_tensor(self.weight), bias, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)

    @classmethod
    def from_torch(cls, m, where, array):
        if m.padding_mode != "zeros":
            raise SheetconvError(f"{where}: padding_mode={m.padding_mode!r} is not supported; only 'zeros'")
        if isinstance(m.padding, str):
            raise SheetconvError(f"{where}: string padding {m.padding!r} is not supported; give it as numbers")
        layer = cls(m.in_channels, m.out_channels, tuple(m.kernel_size), stride=tuple(m.stride),
                    padding=tuple(m.padding), dilation=tuple(m.dilation), bias=m.bias is not None, groups=m.groups)
        layer.weight = array(m.weight)
        if m.bias is not None:
            layer.bias = array(m.bias)
        return layer

    def torch_extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if not self.has_bias:
            s += ", bias=False"
        return s
