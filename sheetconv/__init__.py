"""sheetconv: a small convolutional network as a live spreadsheet.

>>> import sheetconv as sc
>>> net = sc.preset("conv-example")
>>> net.receptive_field("conv2").size
(7, 7)
"""
from .errors import SheetconvError
from .interop.state_dict import load_state_dict_file
from .interop.torch_modules import from_torch, to_torch  # torch itself is imported lazily
from .interop.verify import verify
from .nn.deps import ReceptiveField
from .nn.inputs import digit, digit_label, load_input
from .nn.layers import (
    GELU,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    SiLU,
    Tanh,
    Window,
)
from .nn.network import Network
from .nn.presets import PRESETS, preset
from .nn.regions import Region
from .nn.trace import Trace
from .version import __version__


def open_workbook(path):
    """Open an xlsx for tracing: ``.precedents(ref, depth)`` / ``.dependents(ref, depth)`` -> Trace.

    A sheetconv workbook is answered by the engine's analytic model, any other xlsx from
    its formulas (see sheetconv.tracing).
    """
    from .tracing import open_workbook as _open
    return _open(path)


def write_workbook(net, x, path, *, force: bool = False, **kwargs):
    """Write ``net`` run on input ``x`` as a live workbook at ``path``; ``force=True`` overwrites
    an existing file (see sheetconv.xlsx.writer.write_workbook)."""
    from .xlsx.writer import write_workbook as _write
    return _write(net, x, path, force=force, **kwargs)


__all__ = [
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "BatchNorm2d", "LeakyReLU", "Sigmoid", "Tanh", "SiLU", "GELU", "Add", "Concat",
    "AvgPool2d", "Conv2d", "Flatten", "Layer", "Linear", "MaxPool2d", "ReLU", "Window", "Network",
    "ReceptiveField", "Region", "Trace", "SheetconvError", "PRESETS", "preset", "digit", "digit_label",
    "load_input", "verify", "from_torch", "to_torch", "load_state_dict_file", "open_workbook", "write_workbook",
    "__version__",
]
