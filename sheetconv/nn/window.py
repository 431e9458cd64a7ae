"""How one output index of a spatial layer reads one input axis.

``Window(kernel, stride, padding, dilation)``: output index ``o`` reads, for each kernel
tap ``t`` in [0, kernel), the input index ``index(o, t) = o*stride - padding + t*dilation``.
This is the only place that formula is written: the dependency arithmetic (deps.py),
the formula text (sheet/formulas.py) and the receptive fields all ask a Window.
Indices outside [0, n) are padding, not cells.
"""
from __future__ import annotations

from dataclasses import dataclass

from .regions import Runs, merge_runs

__all__ = ["Window"]


@dataclass(frozen=True)
class Window:
    """How one output index reads one input axis: input = out*stride - padding + tap*dilation."""
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def index(self, out: int, tap: int) -> int:
        """The input index that kernel tap ``tap`` of output ``out`` reads (may lie in the padding)."""
        return out * self.stride - self.padding + tap * self.dilation

    @property
    def span(self) -> int:
        """Extent of one window in input cells, holes included."""
        return (self.kernel - 1) * self.dilation + 1

    def out_size(self, n: int) -> int:
        """PyTorch's output-size formula: floor((n + 2p - d(k-1) - 1) / s) + 1."""
        return (n + 2 * self.padding - self.span) // self.stride + 1

    def taps(self, o: int, n: int) -> tuple[int, int]:
        """Half-open range of kernel taps of output index ``o`` that land inside [0, n)."""
        first = self.index(o, 0)
        lo = max(0, -(first // self.dilation))
        hi = min(self.kernel, (n - 1 - first) // self.dilation + 1)
        return lo, max(lo, hi)

    def inputs(self, o: int, n: int) -> list[int]:
        """The input indices in [0, n) that output ``o`` reads, in tap order."""
        lo, hi = self.taps(o, n)
        return [self.index(o, t) for t in range(lo, hi)]

    def outputs_reading(self, tap: int, a: int, b: int) -> tuple[int, int]:
        """Half-open range of outputs (unclipped) whose tap ``tap`` reads an input index in [a, b)."""
        lo = -((self.padding - tap * self.dilation + a) // -self.stride)          # ceil
        hi = (b - 1 + self.padding - tap * self.dilation) // self.stride + 1
        return lo, hi

    def tap_outputs(self, tap: int, n_in: int, n_out: int) -> tuple[int, int]:
        """Half-open range of outputs in [0, n_out) whose tap ``tap`` lands inside [0, n_in)."""
        lo, hi = self.outputs_reading(tap, 0, n_in)
        return max(lo, 0), min(hi, n_out)

    def used_taps(self, runs: Runs, n_in: int) -> Runs:
        """Kernel taps used by the output indices ``runs`` (taps that land in padding are not)."""
        used = []
        for t in range(self.kernel):
            lo, hi = self.outputs_reading(t, 0, n_in)
            if any(max(a, lo) < min(b, hi) for a, b in runs):
                used.append((t, t + 1))
        return merge_runs(used)
