"""Architecture spec files: a network described in a small JSON or TOML file.

TOML (``.toml``)::

    input_shape = [1, 28, 28]          # (C, H, W)
    seed = 0                           # optional: seeds the weights (PyTorch's default init)
    fuse_relu = true                   # optional: a ReLU right after Conv2d/Linear joins it

    [[layers]]
    type = "Conv2d"
    in_channels = 1                    # optional: taken from the previous layer's output
    out_channels = 4
    kernel_size = 3                    # int or [h, w]
    stride = 2
    padding = 1

    [[layers]]
    type = "ReLU"

JSON (``.json``): the same keys, ``{"input_shape": [1, 28, 28], "layers": [{"type":
"Conv2d", ...}, ...]}``. ``Network.spec()``'s output is a valid spec.

Layer types and their keys (PyTorch's names and defaults; ``name`` is optional everywhere):

- ``Conv2d``: in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=true, relu=false,
  groups=1
- ``Linear``: in_features, out_features, bias=true, relu=false
- ``MaxPool2d``: kernel_size, stride=kernel_size, padding=0
- ``AvgPool2d``: kernel_size, stride=kernel_size, padding=0, count_include_pad=true
- ``BatchNorm2d``: num_features, eps=1e-5, momentum=0.1, affine=true, bias=true, relu=false (eval mode)
- ``AdaptiveAvgPool2d``, ``AdaptiveMaxPool2d``: output_size (int or [h, w]; 1 is the global pool)
- ``LeakyReLU``: negative_slope=0.01; ``GELU``: approximate="none" (or "tanh")
- ``ReLU``, ``Sigmoid``, ``Tanh``, ``SiLU``, ``Flatten``: no keys
- ``Add``: relu=false (the element-wise sum of its inputs, all of one shape; a residual connection)
- ``Concat``: no keys (its inputs stacked along channels; they share H and W)

Graphs: a layer reads the layer before it unless it names its ``inputs`` — a list of
names of layers before it (``"input"`` is the network's input)::

    [[layers]]
    type = "Add"
    name = "res1"
    inputs = ["conv3", "conv1"]

Every input must come before the layer that reads it (the list is a topological order);
``Add`` and ``Concat`` take two or more. An unknown or later name is a one-line error.

The layer types are the registered kinds (sheetconv.nn.layers.KINDS). Any other key, a
missing one, or a value of the wrong kind is a one-line SheetconvError
naming the file, the layer and the key. The same validation rebuilds a network from the
spec a workbook carries (``Network.from_spec``, ``Layer.from_config``); a network of more
than ``MAX_PARAMS`` parameters or a grid of more than ``MAX_CELLS`` activations is refused
before anything is allocated.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import SheetconvError
from .layers.base import MAX_PARAMS, layer_from_config
from .nesting import nesting
from .network import MAX_CELLS, Network, network_from_spec_data
from .paths import check_name, os_reason

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover - Python 3.10
    tomllib = None

__all__ = ["load_spec", "network_from_spec_data", "layer_from_config", "MAX_PARAMS", "MAX_CELLS"]

_MAX_BYTES = 1 << 20
_MAX_NESTING = 8                 # {layers: [{kernel_size: [h, w]}]} is 4 deep


def _read_capped(path: Path) -> bytes:
    """At most ``_MAX_BYTES + 1`` bytes of ``path`` (never the whole of /dev/zero or a sparse file)."""
    check_name(path, "spec")
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise SheetconvError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SheetconvError(f"{path}: is a directory, expected a .json or .toml spec file") from None
    except OSError as e:
        raise SheetconvError(f"{path}: cannot read spec file ({os_reason(e)})") from None


def _parse(path: Path) -> dict:
    """The spec file's data: bounded in bytes, nesting and number size, or a one-line error."""
    raw = _read_capped(path)
    if len(raw) > _MAX_BYTES:
        raise SheetconvError(f"{path}: a spec file is a few lines; this one exceeds {_MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SheetconvError(f"{path}: not UTF-8 text; expected a .json or .toml spec file") from None
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{"))
    try:
        if as_json:
            data = json.loads(text)
        elif tomllib is None:
            raise SheetconvError(f"{path}: TOML specs need Python >= 3.11; use a .json spec")
        else:
            data = tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise SheetconvError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise SheetconvError(f"{path}: nested too deeply to read; a spec nests at most {_MAX_NESTING} "
                             f"levels") from None
    except ValueError as e:        # tomllib.TOMLDecodeError, or an integer of thousands of digits
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "integer string conversion" in first:
            raise SheetconvError(f"{path}: holds an integer of more than 4300 digits; a spec holds small "
                                 f"numbers") from None
        if suffix not in (".toml", ".json"):
            raise SheetconvError(f"{path}: expected a .toml or .json spec; read as TOML it is invalid: {first[:200]}") from None
        raise SheetconvError(f"{path}: invalid {'JSON' if as_json else 'TOML'}: {first[:200]}") from None
    if nesting(data, _MAX_NESTING) > _MAX_NESTING:
        raise SheetconvError(f"{path}: nested more than {_MAX_NESTING} levels deep; a spec nests at most "
                             f"{_MAX_NESTING} levels")
    if not isinstance(data, dict):
        raise SheetconvError(f"{path}: the spec must be a table/object with 'input_shape' and 'layers'")
    return data


def load_spec(path) -> Network:
    """Read a JSON or TOML architecture spec (format: see the module docstring)."""
    path = Path(path)
    return network_from_spec_data(_parse(path), str(path))
