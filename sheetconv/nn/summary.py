"""A per-layer table like fastai's ``learn.summary()``, plus MACs and receptive fields.

``summary(net, batch=1)`` returns the table as text; ``summary_rows(net, batch)`` the
figures behind it. Per layer: name and type, output shape with the batch size, parameter
count, trainable, multiply-accumulates for the whole batch (bias additions not counted),
and the receptive field on the input and its jump (effective stride). For fastbook's
simple_cnn it shows each stride-2 layer halving the grid and doubling the channels while
the computation per layer stays level.

A graph network (residual adds, concatenations) gets a second table after the totals:
per layer with several inputs or several paths from the input, what it reads and the
receptive field of every path — the field shown in the main table is their union — and
whether the paths agree on the jump and the centre ("aligned").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SheetconvError

if TYPE_CHECKING:                       # network.py imports this module
    from .network import Network

__all__ = ["SummaryRow", "summary_rows", "summary"]


@dataclass(frozen=True)
class SummaryRow:
    name: str
    type: str                      # 'Conv2d + ReLU' for a fused layer
    output_shape: tuple            # with the batch size first
    params: int
    trainable: bool | None         # None for a layer without parameters
    macs: int                      # for the whole batch
    rf_size: tuple[int, int]
    jump: tuple[int, int] | None   # None once the field covers the whole input (after Flatten)
    is_global: bool
    inputs: tuple = ()             # the layers it reads
    paths: tuple = ()              # (size, jump, start) of each distinct path, when there are several
    aligned: bool = True

    @property
    def cells(self) -> int:
        """Activations per image: formula cells in the workbook."""
        n = 1
        for v in self.output_shape[1:]:
            n *= v
        return n


def summary_rows(net: Network, batch: int = 1) -> list[SummaryRow]:
    """The figures of the summary table: one row for the input, then one per layer."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SheetconvError(f"batch must be a positive int, got {batch!r}")
    rows = [SummaryRow("input", "Input", (batch, *net.input_shape), 0, None, 0, (1, 1), (1, 1), False)]
    for layer in net.layers:
        rf = net.receptive_field(layer.name)
        params = layer.param_count()
        rows.append(SummaryRow(
            name=layer.name, type=layer.summary_type,
            output_shape=(batch, *net.shapes[layer.name]), params=params,
            trainable=True if params else None, macs=batch * net.macs(layer.name),
            rf_size=tuple(rf.size), jump=None if rf.is_global else tuple(rf.jump), is_global=rf.is_global,
            inputs=tuple(layer.inputs), paths=tuple(rf.paths), aligned=rf.aligned))
    return rows


def _pair(p) -> str:
    return "-" if p is None else (str(p[0]) if p[0] == p[1] else f"{p[0]} x {p[1]}")


def summary(net: Network, batch: int = 1) -> str:
    """The table as text (see the module docstring)."""
    rows = summary_rows(net, batch)
    head = ("Layer (type)", "Output Shape", "Param #", "Trainable", "MACs", "Receptive field", "Jump")
    body = []
    for r in rows:
        rf = f"{r.rf_size[0]} x {r.rf_size[1]}" + (" (all)" if r.is_global else "")
        body.append((f"{r.name} ({r.type})", " x ".join(map(str, r.output_shape)), f"{r.params:,}",
                     "" if r.trainable is None else str(r.trainable), f"{r.macs:,}", rf, _pair(r.jump)))
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    left = (True, True, False, True, False, False, False)

    def line(cells):
        return "  ".join(c.ljust(w) if l else c.rjust(w) for c, w, l in zip(cells, widths, left)).rstrip()

    rule = "=" * len(line(head))
    total = sum(r.params for r in rows)
    trainable = sum(r.params for r in rows if r.trainable)
    out = [f"Network (input shape: {' x '.join(map(str, rows[0].output_shape))})", rule, line(head), rule]
    out += [line(b) for b in body]
    out += [rule,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            f"Total MACs: {sum(r.macs for r in rows):,} (batch of {batch})",
            f"Activation cells per image: {sum(r.cells for r in rows[1:]):,}"]
    if net.is_graph:
        out += _graph_lines(rows)
    return "\n".join(out)


def _graph_lines(rows: list[SummaryRow]) -> list[str]:
    """Per join (a layer reading several layers): its inputs and its paths' fields."""
    out = ["", "Joins (a layer's receptive field above is the union over its paths from the input):"]
    for r in rows[1:]:
        if len(r.inputs) < 2:
            continue
        line = f"  {r.name} = {' + '.join(r.inputs) if r.type.startswith('Add') else ' | '.join(r.inputs)}"
        if r.paths:
            sizes = sorted({p[0] for p in r.paths})
            jumps = sorted({p[1] for p in r.paths})
            line += (f": {len(r.paths)} paths, fields {_pair(sizes[0])} to {_pair(sizes[-1])}, "
                     f"jump {' or '.join(_pair(j) for j in jumps)}")
            if not r.aligned:
                line += ", not aligned (" + ("different jumps" if len(jumps) > 1 else "their centres differ") + ")"
        out.append(line)
    return out
