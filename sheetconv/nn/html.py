"""HTML views for Jupyter: a network as its summary table.

``summary_html(net)`` gives the figures of :func:`sheetconv.nn.summary.summary_rows` as an
HTML table (``Network._repr_html_`` shows it). Text is escaped; nothing is computed here
that the summary does not compute.
"""
from __future__ import annotations

import html

from .summary import summary_rows

__all__ = ["summary_html"]


def _pair(p) -> str:
    return "-" if p is None else (str(p[0]) if p[0] == p[1] else f"{p[0]} x {p[1]}")


def summary_html(net, batch: int = 1) -> str:
    """The per-layer summary (output shape, parameters, MACs, receptive field, jump) as a table."""
    rows = summary_rows(net, batch)
    head = ("Layer", "Type", "Output shape", "Params", "MACs", "Receptive field", "Jump")
    cells = []
    for r in rows:
        rf = f"{r.rf_size[0]} x {r.rf_size[1]}" + (" (all)" if r.is_global else "")
        values = (r.name, r.type, " x ".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}", rf,
                  _pair(r.jump))
        cells.append("<tr>" + "".join(f'<td style="text-align:{"left" if i < 3 else "right"}">{html.escape(v)}</td>'
                                      for i, v in enumerate(values)) + "</tr>")
    total = sum(r.params for r in rows)
    caption = (f"Network, input {' x '.join(map(str, net.input_shape))}: {total:,} parameters, "
               f"{sum(r.macs for r in rows):,} MACs (batch of {batch})")
    return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>" + "".join(cells) + "</tbody></table>")
