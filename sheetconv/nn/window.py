"""How one output index of a spatial layer reads one input axis.

``Window(kernel, stride, padding, dilation, ceil_mode)``: output index ``o`` reads, for each
kernel tap ``t`` in [0, kernel), the input index ``index(o, t) = o*stride - padding + t*dilation``.
``ceil_mode`` (pools only, as PyTorch's) only adds a last output whose window hangs past
the padded input; every window still starts inside the input or its left padding.
This is the only place that formula is written: the dependency arithmetic (deps.py),
the formula text (sheet/formulas.py) and the receptive fields all ask a Window.
Indices outside [0, n) are padding, not cells.

``AdaptiveWindow(n_in, n_out)``: the adaptive pools' rule, PyTorch's: output ``o`` reads
the input indices [floor(o*n_in/n_out), ceil((o+1)*n_in/n_out)) — windows whose length and
step vary with ``o``, so it is bound to one input size. It answers the same questions
(``index``, ``taps``, ``inputs``, ``out_size``) plus ``back(runs)`` / ``forward(runs)``,
the run arithmetic deps.py asks of it. Its windows are contiguous and each starts no later
than the previous one ends, so a run of outputs reads one run of inputs.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from .regions import Runs, merge_runs

__all__ = ["Window", "AdaptiveWindow"]


@dataclass(frozen=True)
class Window:
    """How one output index reads one input axis: input = out*stride - padding + tap*dilation."""
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    ceil_mode: bool = False

    def index(self, out: int, tap: int) -> int:
        """The input index that kernel tap ``tap`` of output ``out`` reads (may lie in the padding)."""
        return out * self.stride - self.padding + tap * self.dilation

    @property
    def span(self) -> int:
        """Extent of one window in input cells, holes included."""
        return (self.kernel - 1) * self.dilation + 1

    def out_size(self, n: int) -> int:
        """PyTorch's output-size formula: floor((n + 2p - d(k-1) - 1) / s) + 1; in ceil
        mode the division rounds up, but a last window starting past the input and its
        left padding (index(o, 0) >= n) is dropped, as torch drops it."""
        if not self.ceil_mode:
            return (n + 2 * self.padding - self.span) // self.stride + 1
        out = -((n + 2 * self.padding - self.span) // -self.stride) + 1
        return out - 1 if self.index(out - 1, 0) >= n else out

    def padded_taps(self, o: int, n: int) -> int:
        """How many kernel taps of output ``o`` land inside the padded input [-p, n + p):
        the kernel size, except for a ceil-mode window hanging past the padding (an
        average pool's divisor when padding counts)."""
        return min(self.kernel, (n + self.padding - 1 - self.index(o, 0)) // self.dilation + 1)

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


@dataclass(frozen=True)
class AdaptiveWindow:
    """PyTorch's adaptive-pool rule along one axis of ``n_in`` inputs and ``n_out`` outputs.

    ``index(o, t)`` = start(o) + t. ``kernel`` (the longest window) and ``stride`` (the
    step from output 0 to output 1) feed the closed-form receptive field of the summary:
    exact when n_out divides n_in (every window alike), otherwise the largest window and
    the first step. Precedents, dependents and ``ReceptiveField.region`` use ``back`` /
    ``forward`` and are exact always.
    """
    n_in: int
    n_out: int

    def start(self, o: int) -> int:
        return (o * self.n_in) // self.n_out

    def end(self, o: int) -> int:
        return -((-(o + 1) * self.n_in) // self.n_out)

    @property
    def kernel(self) -> int:
        return max(self.end(o) - self.start(o) for o in range(self.n_out))

    @property
    def stride(self) -> int:
        return self.start(1) - self.start(0)

    padding = 0
    dilation = 1
    ceil_mode = False

    @property
    def span(self) -> int:
        return self.kernel

    def index(self, out: int, tap: int) -> int:
        return self.start(out) + tap

    def out_size(self, n: int) -> int:
        return self.n_out

    def taps(self, o: int, n: int) -> tuple[int, int]:
        return 0, self.end(o) - self.start(o)


    def inputs(self, o: int, n: int) -> list[int]:
        return list(range(self.start(o), self.end(o)))

    def back(self, runs: Runs) -> Runs:
        """Input indices read by the output indices ``runs``."""
        return merge_runs([(self.start(a), self.end(b - 1)) for a, b in runs if b > a])

    def forward(self, runs: Runs) -> Runs:
        """Output indices that read any input index in ``runs``."""
        outs = range(self.n_out)
        pieces = []
        for a, b in runs:
            lo = bisect_right(outs, a, key=self.end)          # first o with end(o) > a
            hi = bisect_left(outs, b, key=self.start)         # first o with start(o) >= b
            if lo < hi:
                pieces.append((lo, hi))
        return merge_runs(pieces)
