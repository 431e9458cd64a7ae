"""Cross-check the NumPy engine against PyTorch's functional ops on the same weights."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SheetconvError
from ..nn.network import Network

__all__ = ["verify", "torch_activations", "Report", "require_torch"]


def require_torch():
    """Import torch, or explain how to get it."""
    try:
        import torch
    except ImportError:
        raise SheetconvError("this needs PyTorch, which is not installed: pip install 'sheetconv[torch]' "
                             "(or pip install torch)") from None
    return torch


def torch_activations(net: Network, x, dtype=np.float64) -> dict[str, np.ndarray]:
    """Every layer's output computed by torch.nn.functional, as NumPy arrays."""
    torch = require_torch()
    F = torch.nn.functional
    x, single = net._check_input(x)
    tdt = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(tdt)

    out = {"input": t(x)}
    with torch.no_grad():
        for layer in net.layers:
            out[layer.name] = layer.torch_forward_many(F, [out[n] for n in layer.inputs])
    res = {k: v.numpy() for k, v in out.items()}
    return {k: v[0] for k, v in res.items()} if single else res


@dataclass
class LayerError:
    name: str
    max_abs: float
    max_rel: float


@dataclass
class Report:
    """Per-layer max absolute and relative error of the engine against torch."""
    dtype: str
    layers: list[LayerError]

    @property
    def max_abs(self) -> float:
        return max((l.max_abs for l in self.layers), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((l.max_rel for l in self.layers), default=0.0)

    def ok(self, rel: float | None = None) -> bool:
        tol = rel if rel is not None else (1e-10 if self.dtype == "float64" else 1e-5)
        return self.max_rel <= tol

    def __str__(self):
        lines = [f"{'layer':<16}{'max abs err':>14}{'max rel err':>14}   ({self.dtype}, against torch)"]
        lines += [f"{l.name:<16}{l.max_abs:>14.3e}{l.max_rel:>14.3e}" for l in self.layers]
        return "\n".join(lines)

    _repr_pretty_ = lambda self, p, cycle: p.text(str(self))  # noqa: E731


def verify(net: Network, x, dtype=np.float64) -> Report:
    """Run ``net`` on ``x`` with NumPy and with torch; report the error per layer.

    The relative error is |a - b| / max(|b|, scale) where scale is the layer's largest
    magnitude, so that values near zero do not inflate it. A layer whose weights are all
    zero checks nothing; it is named in a warning.
    """
    net.warn_zero_weights("verify")
    ours = net.activations(x, dtype)
    theirs = torch_activations(net, x, dtype)
    rows = []
    for layer in net.layers:
        a = ours[layer.name].astype(np.float64)
        b = theirs[layer.name].astype(np.float64)
        diff = np.abs(a - b)
        scale = max(float(np.abs(b).max(initial=0.0)), np.finfo(np.float64).tiny)
        rows.append(LayerError(layer.name, float(diff.max(initial=0.0)),
                               float((diff / np.maximum(np.abs(b), scale)).max(initial=0.0))))
    return Report(np.dtype(dtype).name, rows)
