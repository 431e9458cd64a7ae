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

- ``Conv2d``: in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=true, relu=false
- ``Linear``: in_features, out_features, bias=true, relu=false
- ``MaxPool2d``: kernel_size, stride=kernel_size, padding=0
- ``AvgPool2d``: kernel_size, stride=kernel_size, padding=0, count_include_pad=true
- ``ReLU``, ``Flatten``: no keys

Any other key, a missing one, or a value of the wrong kind is a one-line SheetconvError
naming the file, the layer and the key. The same validation rebuilds a network from the
spec a workbook carries (``Network.from_spec``, ``Layer.from_config``); a network of more
than ``MAX_PARAMS`` parameters or a grid of more than ``MAX_CELLS`` activations is refused
before anything is allocated.
"""
from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SheetconvError
from .layers import _TYPES, Layer
from .nesting import nesting
from .paths import check_name, os_reason

if TYPE_CHECKING:                       # network.py imports this module lazily (Network.from_spec)
    from .network import Network

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover - Python 3.10
    tomllib = None

__all__ = ["load_spec", "network_from_spec_data", "layer_from_config", "MAX_PARAMS", "MAX_CELLS"]

MAX_PARAMS = 50_000_000          # weights and biases of the whole network
MAX_CELLS = 50_000_000           # activations of one layer (a spreadsheet holds far fewer)
_TOP = {"input_shape", "layers", "seed", "fuse_relu"}
_INFERRED = {"Conv2d": "in_channels", "Linear": "in_features"}
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
        raise SheetconvError(f"{path}: invalid {'JSON' if as_json else 'TOML'}: {first[:200]}") from None
    if nesting(data, _MAX_NESTING) > _MAX_NESTING:
        raise SheetconvError(f"{path}: nested more than {_MAX_NESTING} levels deep; a spec nests at most "
                             f"{_MAX_NESTING} levels")
    if not isinstance(data, dict):
        raise SheetconvError(f"{path}: the spec must be a table/object with 'input_shape' and 'layers'")
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_value(key: str, value, where: str, strict_names: bool = True):
    if key in ("bias", "relu", "count_include_pad"):
        if not isinstance(value, bool):
            raise SheetconvError(f"{where}: {key} must be true or false, got {value!r}")
    elif key in ("kernel_size", "stride", "padding", "dilation"):
        if value is None and key == "stride":
            return
        ok = _is_int(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_int, value)))
        if not ok:
            raise SheetconvError(f"{where}: {key} must be an int or an [h, w] pair of ints, got {value!r}")
    elif key == "name":
        if value is None and not strict_names:
            return
        if not isinstance(value, str) or not value or len(value) > 200 \
                or (strict_names and not value.replace("_", "").isalnum()):
            raise SheetconvError(f"{where}: name must be a non-empty identifier, got {value!r:.60}")
    elif not _is_int(value):
        raise SheetconvError(f"{where}: {key} must be an int, got {value!r}")


def _param_count(kind: str, kwargs: dict) -> int:
    if kind == "Conv2d":
        k = kwargs["kernel_size"]
        kh, kw = (k, k) if _is_int(k) else k
        return kwargs["out_channels"] * (kwargs["in_channels"] * kh * kw + 1)
    if kind == "Linear":
        return kwargs["out_features"] * (kwargs["in_features"] + 1)
    return 0


def layer_from_config(cfg, where: str, current: tuple | None = None, strict_names: bool = True,
                      max_params: int = MAX_PARAMS) -> Layer:
    """One layer table -> a Layer, every key and value checked (errors start with ``where``).

    ``current``: the input shape, from which a missing in_channels / in_features is
    taken; without it they are required.
    """
    if not isinstance(cfg, dict):
        raise SheetconvError(f"{where}: expected a table like {{type = \"Conv2d\", ...}}, got {cfg!r:.80}")
    kind = cfg.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SheetconvError(f"{where}: unknown type {kind!r:.40} (expected one of {', '.join(_TYPES)})")
    where = f"{where} ({kind})"
    sig = inspect.signature(cls.__init__)
    allowed = [p for p in sig.parameters if p != "self"]
    for key, value in cfg.items():
        if key == "type":
            continue
        if key != "name" and key not in allowed:
            raise SheetconvError(f"{where}: unknown key {key!r:.40} (expected {', '.join(allowed + ['name'])})")
        _check_value(key, value, where, strict_names)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k not in ("type", "name")}
    inferred = _INFERRED.get(kind)
    if inferred and inferred not in kwargs and current is not None:
        kwargs[inferred] = current[0] if kind == "Conv2d" or len(current) == 1 else None
        if kwargs[inferred] is None:
            raise SheetconvError(f"{where}: needs a flat input; put a Flatten before it (input shape {current})")
    missing = [p for p, v in sig.parameters.items()
               if p != "self" and v.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise SheetconvError(f"{where}: missing key {missing[0]!r}")
    params = _param_count(kind, kwargs)
    if params > max_params:
        raise SheetconvError(f"{where}: {params:,} parameters take the network past {MAX_PARAMS:,}, "
                             f"the most supported")
    try:
        layer = cls(**kwargs)
    except SheetconvError as e:
        raise SheetconvError(f"{where}: {e}") from None
    except (TypeError, ValueError, AttributeError) as e:   # not expected after the checks above
        raise SheetconvError(f"{where}: bad value ({type(e).__name__}: {e})") from None
    if cfg.get("name") is not None:
        layer.name = cfg["name"]
    return layer


def network_from_spec_data(data: dict, source: str = "spec", *, init: bool = True, fuse_relu: bool | None = None,
                           strict_names: bool = True):
    """Validate already-parsed spec data and build the Network.

    ``init``: seed the weights (``seed`` key, default 0); otherwise they are zeros.
    ``fuse_relu``: overrides the spec's ``fuse_relu`` key. ``strict_names``: layer names must
    be identifiers (spec files); otherwise any non-empty text (a workbook's own spec).
    """
    from .network import Network
    if not isinstance(data, dict):
        raise SheetconvError(f"{source}: the spec must be a table/object with 'input_shape' and 'layers', "
                             f"got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP, key=str)
    if unknown:
        raise SheetconvError(f"{source}: unknown top-level key {unknown[0]!r:.40} (expected {', '.join(sorted(_TOP))})")
    shape = data.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        raise SheetconvError(f"{source}: input_shape must be [C, H, W] with positive ints, got {shape!r:.80}")
    seed = data.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise SheetconvError(f"{source}: seed must be a non-negative int, got {seed!r:.40}")
    fuse = data.get("fuse_relu", True)
    if not isinstance(fuse, bool):
        raise SheetconvError(f"{source}: fuse_relu must be true or false, got {fuse!r:.40}")
    if fuse_relu is not None:
        fuse = fuse_relu
    specs = data.get("layers")
    if not isinstance(specs, list) or not specs:
        raise SheetconvError(f"{source}: 'layers' must be a non-empty list of layer tables")
    current = tuple(shape)
    if current[0] * current[1] * current[2] > MAX_CELLS:
        raise SheetconvError(f"{source}: input_shape {list(shape)} has more than {MAX_CELLS:,} cells")
    layers, total = [], 0
    for i, cfg in enumerate(specs, 1):
        where = f"{source}: layer {i}"
        layer = layer_from_config(cfg, where, current, strict_names, MAX_PARAMS - total)
        where = f"{where} ({cfg['type']})"
        total += layer.param_count()
        name = layer.name
        layer.name = where if name is None else f"{where} {name!r}"
        try:
            current = layer.out_shape(current)           # shape errors name the layer this way
        finally:
            layer.name = name
        cells = 1
        for v in current:
            cells *= v
        if cells > MAX_CELLS:
            raise SheetconvError(f"{where}: output shape {current} has more than {MAX_CELLS:,} cells")
        layers.append(layer)
    try:
        net = Network(layers, tuple(shape), fuse_relu=fuse)
    except SheetconvError as e:
        raise SheetconvError(f"{source}: {e}") from None
    return net.init_weights(seed) if init else net


def load_spec(path) -> "Network":
    """Read a JSON or TOML architecture spec (format: see the module docstring)."""
    path = Path(path)
    return network_from_spec_data(_parse(path), str(path))
