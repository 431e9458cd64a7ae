"""BatchNorm2d in eval mode, as visible cells: per channel c,
y = (x - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c].

The four per-channel numbers are parameter cells (state-dict keys as PyTorch's:
``weight`` (gamma), ``bias`` (beta), ``running_mean``, ``running_var``; ``affine=False``
has the last two only, ``bias=False`` (torch >= 2.13) no beta). Each activation reads its own input cell and its channel's
cells: ``(x-mean)/SQRT(var+eps)*gamma+beta``, eps written as a number. A ReLU right after
it may fuse (``MAX(0, ...)``), as after a convolution. Only inference is modelled: a
module in training mode normalises by the batch's statistics and is refused by
``from_torch``; ``from_torch(fold_batchnorm=True)`` folds it into the Conv2d before instead.

Unset parameters start as PyTorch's do: weight 1, bias 0, running_mean 0, running_var 1
(nothing is drawn). ``param_count`` counts the trainable weight and bias only, as
``sum(p.numel() for p in module.parameters())`` and torchinfo do; the running statistics
are buffers (they are in ``state_dict`` all the same; ``num_batches_tracked`` is not kept).
"""
from __future__ import annotations

import numpy as np

from ...errors import SheetconvError
from ..regions import Region
from .base import Layer, Terms, count, grid, number_text

__all__ = ["BatchNorm2d"]


class BatchNorm2d(Layer):
    kind = "batchnorm"
    prefix = "bn"
    torch_class = "BatchNorm2d"
    fusable = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, bias=True, relu=False):
        super().__init__()
        self.num_features = count(num_features, "num_features", "BatchNorm2d")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not 0 < eps < np.inf:
            raise SheetconvError(f"BatchNorm2d: eps must be a positive number, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating))
                                     or not np.isfinite(momentum)):
            raise SheetconvError(f"BatchNorm2d: momentum must be a number or None, got {momentum!r}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.has_bias = self.affine and bool(bias)
        self.relu = bool(relu)

    @classmethod
    def inferred_from_input(cls, current):
        return {"num_features": current[0]}

    def param_shapes(self):
        c = (self.num_features,)
        names = ("weight",) * self.affine + ("bias",) * self.has_bias + ("running_mean", "running_var")
        return {k: c for k in names}

    def param_count(self):
        return (self.affine + self.has_bias) * self.num_features

    def draw_parameters(self, rng):
        start = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
        return {k: np.full(s, start[k]) for k, s in self.param_shapes().items()}

    def _set(self, key, value):
        super()._set(key, value)
        if key == "running_var" and (self._values[key] < 0).any():
            del self._values[key]
            self._explicit.discard(key)
            raise SheetconvError(f"{self.who}.running_var: must not be negative")

    def _get(self, key):
        if key in ("weight", "bias") and not self.affine:
            return None
        return super()._get(key)

    running_mean = property(lambda self: self._get("running_mean"), lambda self, v: self._set("running_mean", v))
    running_var = property(lambda self: self._get("running_var"), lambda self, v: self._set("running_var", v))

    def _out_shape(self, in_shape):
        c, _, _ = self._spatial_in(in_shape)
        if c != self.num_features:
            raise SheetconvError(f"expects {self.num_features} channels, got {c}")
        return tuple(in_shape)

    def macs(self, in_shape):
        return int(np.prod(in_shape))

    def forward(self, x):
        def per_channel(v):
            return np.asarray(v, dtype=x.dtype)[:, None, None]
        y = (x - per_channel(self.running_mean)) / np.sqrt(per_channel(self.running_var) + x.dtype.type(self.eps))
        if self.affine:
            y = y * per_channel(self.weight)
        if self.has_bias:
            y = y + per_channel(self.bias)
        return np.maximum(y, 0) if self.relu else y

    def config(self):
        return {"type": "BatchNorm2d", "num_features": self.num_features, "eps": self.eps,
                "momentum": self.momentum, "affine": self.affine, "bias": self.has_bias or not self.affine,
                "relu": self.relu}

    # ---------------------------------------------------------------- cells

    def param_regions(self, out, in_shape):
        chans = out.axis_runs(0)
        return [Region.of(f"{self.name}.{k}", s, [(chans,)]) for k, s in self.param_shapes().items()]

    def param_feed(self, param, in_shape, out_name, out_shape):
        _, h, w = g = grid(out_shape)
        return Region.of(out_name, g, [(box[0], ((0, h),), ((0, w),)) for box in param.boxes])

    def formula(self, terms: Terms) -> str:
        p = dict(terms.params)
        body = f"({terms.cell}-{p['running_mean']})/SQRT({p['running_var']}+{number_text(self.eps)})"
        if self.affine:
            body = f"{body}*{p['weight']}"
        if self.has_bias:
            body = f"{body}+{p['bias']}"
        return f"MAX(0,{body})" if self.relu else body

    def describe(self):
        return f"batch norm (eval), eps {self.eps:g}" + ("" if self.affine else ", no affine") + \
            ("" if self.has_bias or not self.affine else ", no bias")

    # ---------------------------------------------------------------- torch

    def to_torch_module(self, torch):
        extra = {} if self.has_bias or not self.affine else {"bias": False}     # torch >= 2.13 has bias=
        m = torch.nn.BatchNorm2d(self.num_features, eps=self.eps, momentum=self.momentum, affine=self.affine,
                                 dtype=torch.float64, **extra)
        return self._params_into(m, torch).eval()

    def _torch_forward(self, F, x):
        t = x.new_tensor
        return F.batch_norm(x, t(self.running_mean), t(self.running_var),
                            None if not self.affine else t(self.weight), None if not self.has_bias else t(self.bias),
                            training=False, eps=self.eps)

    @classmethod
    def from_torch(cls, m, where, array):
        if m.training:
            raise SheetconvError(f"{where}: in training mode it normalizes by the batch's statistics; "
                                 "call module.eval() first (or fold it with fold_batchnorm=True)")
        if m.running_mean is None or m.running_var is None:
            raise SheetconvError(f"{where}: has no running statistics (track_running_stats=False); "
                                 "only eval-mode BatchNorm2d with running statistics is supported")
        layer = cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                    bias=not m.affine or m.bias is not None)
        for key in layer.param_shapes():
            setattr(layer, key, array(getattr(m, key)))
        return layer

    def torch_extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.has_bias}, track_running_stats=True")
