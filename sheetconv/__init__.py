"""sheetconv: a small convolutional network as a live spreadsheet.

>>> import sheetconv as sc
>>> net = sc.preset("conv-example")
>>> net.receptive_field("conv2").size
(7, 7)
"""
from .data import digit, digit_label, load_input
from .deps import ReceptiveField
from .errors import SheetconvError
from .layers import AvgPool2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, ReLU, Window
from .network import Network
from .presets import PRESETS, preset
from .regions import Region
from .torchio import from_torch, load_state_dict_file, to_torch   # torch itself is imported lazily
from .trace import Trace
from .verify import verify

__version__ = "0.1.0"


def open_workbook(path):
    """Open an xlsx for tracing: ``.precedents(ref, depth)`` / ``.dependents(ref, depth)`` -> Trace.

    A sheetconv workbook is answered by the engine's analytic model, any other xlsx from
    its formulas (see sheetconv.workbook).
    """
    from .workbook import open_workbook as _open
    return _open(path)


def write_workbook(net, x, path, *, force: bool = False, **kwargs):
    """Write ``net`` run on input ``x`` as a live workbook at ``path``; ``force=True`` overwrites
    an existing file (see sheetconv.export.write_workbook)."""
    from .export import write_workbook as _write
    return _write(net, x, path, force=force, **kwargs)


__all__ = [
    "AvgPool2d", "Conv2d", "Flatten", "Layer", "Linear", "MaxPool2d", "ReLU", "Window", "Network",
    "ReceptiveField", "Region", "Trace", "SheetconvError", "PRESETS", "preset", "digit", "digit_label",
    "load_input", "verify", "from_torch", "to_torch", "load_state_dict_file", "open_workbook", "write_workbook",
    "__version__",
]
