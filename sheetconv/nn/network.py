"""A Network: named layers over an input shape (C, H, W), in topological order.

A layer reads the layer listed before it unless its ``inputs`` name others ('input' for
the network's input): a chain is the special case, a residual block an ``Add`` reading
two layers, a U-Net join a ``Concat``. Every input must be listed before the layer that
reads it, so the list is a topological order; the last layer is the output.

It computes (``forward``, ``activations``) and answers dependency questions
(``precedents``, ``dependents``, ``receptive_field``) with the window arithmetic of deps.py.

A cell is ``(layer, channel, row, col)``; the input is the layer ``"input"``. After
Flatten, feature f is the cell ``(layer, f, 0, 0)``. Parameter cells are
``("conv1.weight", out, in, kh, kw)``, ``("fc1.weight", out, in)`` and ``("conv1.bias", out)``.

Invariants: a Network never changes the layers it is given — it works on its own copies
(fused and named), so the same layer objects can make two networks that share no weights,
and a construction that raises leaves them as they were. Parameters never set explicitly
are drawn from the network's ``seed`` (PyTorch's default initialisation), so no network is
all zeros by surprise.
"""
from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from typing import NamedTuple

import numpy as np

from ..errors import SheetconvError
from . import deps
from .html import summary_html
from .layers import Layer
from .layers.base import MAX_PARAMS, layer_from_config
from .regions import Region
from .summary import summary as _summary
from .trace import Trace

__all__ = ["Network", "IncompatibleKeys", "parse_grid_ref", "parse_depth", "network_from_spec_data",
           "MAX_PARAMS", "MAX_CELLS"]

MAX_CELLS = 50_000_000           # activations of one layer (a spreadsheet holds far fewer)
DEFAULT_DEPTH = 1                # one press of Trace Precedents / Trace Dependents
_SUM = np.add.reduce             # without ndarray.sum's Python wrapper (per-call cost at batch 1)


def _is_param(cell) -> bool:
    """('conv1.weight', ...) or ('conv1.bias', o): a parameter cell, not an activation."""
    return isinstance(cell, (tuple, list)) and bool(cell) and isinstance(cell[0], str) and "." in cell[0]

_GRID_REF = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.:]*)\s*\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\]\s*$")


def parse_grid_ref(text: str):
    """'conv2[0,3,3]' -> ('conv2', 0, 3, 3); 'conv1.bias[2]' -> ('conv1.bias', 2); None otherwise."""
    m = _GRID_REF.match(text) if isinstance(text, str) else None
    if not m:
        return None
    return (m.group(1), *(int(v) for v in m.group(2).split(",")))


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns, as torch does: keys the state lacked and keys it had extra."""
    missing_keys: list[str]
    unexpected_keys: list[str]


def _own_layers(layers: list[Layer], fuse_relu: bool) -> list[Layer]:
    """Copies of ``layers``: a ReLU right after a fusable layer joins it (unless another layer
    reads that layer by name); unnamed ones named; every ``inputs`` resolved and checked."""
    own: list[Layer] = []
    given = [None if layer.default_inputs else layer.inputs for layer in layers]
    named_reads = {n for g in given if g for n in g}
    for layer, inputs in zip(layers, given):
        prev = own[-1] if own else None
        if fuse_relu and layer.fuses and layer.name is None and inputs is None and prev is not None \
                and prev.fusable and not prev.relu and prev.name not in named_reads:
            prev.relu = True                      # prev is already our copy
        else:
            own.append(layer.copy(inputs=inputs, default_inputs=False))
    counts: Counter = Counter()
    taken = {l.name for l in own if l.name}
    for layer in own:
        if layer.name:
            continue
        prefix = layer.prefix
        name = prefix if prefix == "flatten" else None
        while name is None or name in taken:
            counts[prefix] += 1
            name = f"{prefix}{counts[prefix]}"
        layer.name = name
        taken.add(name)
    names = [l.name for l in own]
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup or "input" in names:
        raise SheetconvError(f"layer names must be unique and not 'input', got {names}")
    before = ["input"]
    for layer in own:
        if layer.inputs is None:
            layer.inputs, layer.default_inputs = (before[-1],), True
        for src in layer.inputs:
            if src not in before:
                later = src in names
                raise SheetconvError(f"{layer.name}: reads {src!r}, which " + (
                    "comes after it; list every layer after the layers it reads" if later else
                    f"is not a layer (layers before it: {', '.join(before)})"))
        layer.inputs = tuple(layer.inputs)
        before.append(layer.name)
    return own


class Network:
    """Layers in topological order: a chain, or a graph of residual adds and concatenations.

    ``Network([Conv2d(1, 4, 3, stride=2, padding=1), ReLU(), ...], input_shape=(1, 28, 28))``.
    With ``fuse_relu`` (the default) a ReLU right after a Conv2d or Linear becomes part of
    it — one layer "conv1 (ReLU)", one spreadsheet cell ``=MAX(0, ...)`` per activation.
    Unnamed layers are named by kind and order: conv1, conv2, pool1, flatten, fc1, relu1.
    The given layers are not changed: the network holds copies.

    A graph: give a layer ``inputs`` (layer names; 'input' is the network's input), e.g.
    ``Add()`` with ``inputs = ("conv3", "pool1")``; every layer reads its predecessor
    otherwise. A ReLU after a layer that another layer also reads by name is not fused.

    ``seed`` (default 0): every parameter that was never set explicitly (by assignment,
    ``load_state_dict`` or ``from_torch``) is drawn, layer by layer in order, from
    ``numpy.random.default_rng(seed)`` with PyTorch's default initialisation (uniform in
    +-1/sqrt(fan_in), weight then bias). The draws are made for every parameter, set or
    not, so a layer's numbers depend only on the seed and the layers before it. Choose
    another seed for other weights: ``Network(layers, shape, seed=7)``, or redraw all of
    them with ``net.init_weights(7)``.
    """

    def __init__(self, layers: Iterable[Layer], input_shape, fuse_relu: bool = True, seed: int = 0):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise SheetconvError(f"layer {i}: expected a sheetconv layer (Conv2d, ReLU, ...), got {type(layer).__name__}")
        shape = tuple(int(v) for v in input_shape) if isinstance(input_shape, (tuple, list)) else None
        if shape is None or len(shape) != 3 or min(shape) < 1:
            raise SheetconvError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SheetconvError(f"seed must be a non-negative int, got {seed!r}")
        self.layers: list[Layer] = _own_layers(layers, fuse_relu)
        self.input_shape = shape
        self.shapes: dict[str, tuple] = {"input": shape}
        for layer in self.layers:
            shape = layer.out_shape_many([self.shapes[n] for n in layer.inputs])
            self.shapes[layer.name] = shape
        self._by_name = {layer.name: layer for layer in self.layers}
        self._readers: dict[str, list[tuple[str, int]]] = {n: [] for n in self.names}
        for layer in self.layers:
            for k, src in enumerate(layer.inputs):
                self._readers[src].append((layer.name, k))
        self._pos = {n: i for i, n in enumerate(self.names)}
        self._rf = deps.receptive_fields(self.layers, self.input_shape)
        for name, rf in self._rf.items():       # below a join: the exact field walks every path
            src = name if rf.flat_grid is None or name == "input" else self._flat_source(name)
            if src != "input" and not self._rf[src].chain and not rf.is_global:
                self._rf[name] = replace(rf, walk=partial(self._input_box, src),
                                         input_hw=tuple(self.input_shape[1:]))
        rng = np.random.default_rng(int(seed))
        for layer in self.layers:
            layer.initialise(rng, keep_explicit=True)
        self._param_keys = tuple((layer, key) for layer in self.layers for key in layer.param_shapes())

    # ------------------------------------------------------------ structure

    @property
    def names(self) -> list[str]:
        """'input' and every layer name, in order."""
        return ["input"] + [l.name for l in self.layers]

    def __getitem__(self, key: str | int) -> Layer:
        """``net["conv1"]`` by name, ``net[0]`` (or ``net[-1]``) by position, as in torch's Sequential."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -len(self.layers) <= key < len(self.layers):
                raise SheetconvError(f"layer index {key} is out of range: the network has {len(self.layers)} layers")
            return self.layers[key]
        try:
            return self._by_name[key]
        except (KeyError, TypeError):
            raise SheetconvError(f"no layer {key!r} (layers: {', '.join(self._by_name)})") from None

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        names = self.names
        body = "\n".join(f"  {l.label}: {l!r}" + ("" if l.inputs == (names[i],) else f" <- {', '.join(l.inputs)}")
                         + f" -> {self.shapes[l.name]}" for i, l in enumerate(self.layers))
        return f"Network(input {self.input_shape}\n{body}\n)"

    def grid(self, name: str) -> tuple[int, int, int]:
        """A layer's activations as a (C, H, W) grid; (F,) is (F, 1, 1)."""
        if name not in self.shapes:
            self[name]
        return deps._grid(self.shapes[name])

    def input_of(self, name: str) -> str:
        """Name of the layer that feeds ``name`` (a layer with one input)."""
        inputs = self[name].inputs
        if len(inputs) != 1:
            raise SheetconvError(f"{name} reads {len(inputs)} inputs ({', '.join(inputs)}); use inputs_of")
        return inputs[0]

    def inputs_of(self, name: str) -> tuple[str, ...]:
        """Names of the layers that ``name`` reads, in order ('input' for the network's input)."""
        return self[name].inputs

    def readers_of(self, name: str) -> list[str]:
        """Names of the layers that read ``name`` (once each, in order)."""
        if name not in self._readers:
            self[name]
        return list(dict.fromkeys(n for n, _ in self._readers[name]))

    @property
    def is_graph(self) -> bool:
        """True unless every layer reads the one listed before it (a chain)."""
        names = self.names
        return any(l.inputs != (names[i],) for i, l in enumerate(self.layers))

    def _span(self, layer: Layer, k: int) -> tuple[int, int] | None:
        """For a Concat, the output channels [a, b) that input k fills; None otherwise."""
        if layer.channels != "concat":
            return None
        a = sum(self.grid(n)[0] for n in layer.inputs[:k])
        return a, a + self.grid(layer.inputs[k])[0]

    def param_count(self) -> int:
        return sum(l.param_count() for l in self.layers)

    def macs(self, name: str | None = None) -> int:
        """Multiply-accumulates of one layer, or of the whole network for one image."""
        if name is None:
            return sum(self.macs(l.name) for l in self.layers)
        return self[name].macs(self.shapes[self.inputs_of(name)[0]])

    # ------------------------------------------------------------ parameters

    def state_dict(self) -> dict[str, np.ndarray]:
        """PyTorch-style keys: {'conv1.weight': array, 'conv1.bias': array, ...}."""
        return {f"{l.name}.{k}": v for l in self.layers for k, v in l.params().items()}

    def load_state_dict(self, state: dict, strict: bool = True) -> IncompatibleKeys:
        """Set parameters from arrays keyed like ``state_dict()``; every shape is checked.

        Returns ``(missing_keys, unexpected_keys)`` as torch does; with ``strict`` either
        being non-empty is a SheetconvError and nothing is set.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        if strict and (missing or extra):
            raise SheetconvError(f"weights do not match the network: missing {missing or 'none'}, unexpected {extra or 'none'}")
        checked = {}
        for key, value in state.items():
            if key not in own:
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != own[key].shape:
                raise SheetconvError(f"{key}: expected shape {own[key].shape}, got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise SheetconvError(f"{key}: contains NaN or Inf")
            checked[key] = arr
        for key, arr in checked.items():
            layer, attr = key.rsplit(".", 1)
            setattr(self[layer], attr, arr)
        return IncompatibleKeys(missing, extra)

    def init_weights(self, seed: int = 0) -> Network:
        """Redraw every parameter, set or not: PyTorch's default initialisation (uniform in
        +-1/sqrt(fan_in)), layer by layer from ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.initialise(rng, keep_explicit=False)
        return self

    def zero_weight_layers(self) -> list[str]:
        """Names of the layers whose weights are all zero (their outputs ignore their input)."""
        return [l.name for l in self.layers if "weight" in l.param_shapes() and not np.any(l.weight)]

    def warn_zero_weights(self, what: str):
        """``warnings.warn`` naming the layers whose weights are all zero (the CLI shows it as
        'sheetconv: warning: ...'): ``what`` (verify, write_workbook) would check or show nothing."""
        zero = self.zero_weight_layers()
        if zero:
            its = "its" if len(zero) == 1 else "their"
            warnings.warn(f"{what}: the weights of {', '.join(zero)} are all zero, so {its} outputs ignore {its} "
                          f"input; set weights, load a state dict or build the network with a seed",
                          stacklevel=3)

    # ------------------------------------------------------------ compute

    def _check_params(self):
        """Refuse NaN or Inf in any parameter (assignment checks too, but arrays can be
        changed in place). One sum per array: a finite sum proves every term finite
        (NaN and Inf propagate); only a non-finite sum, which finite terms can reach by
        overflowing, is looked at term by term."""
        for layer, key in self._param_keys:
            value = layer._get(key)
            if not math.isfinite(_SUM(value, axis=None)) and not np.isfinite(value).all():
                raise SheetconvError(f"{layer.name}.{key}: contains NaN or Inf")

    def _check_input(self, x) -> tuple[np.ndarray, bool]:
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise SheetconvError(f"input: not a rectangular numeric array ({e})") from None
        if x.dtype.kind not in "biuf":                 # bool, integers, floats
            raise SheetconvError(f"input: must be real numbers, got dtype {x.dtype}")
        if x.dtype == np.uint8:                        # image pixels: the command line scales them, so must the caller
            raise SheetconvError("input: uint8 pixels (0-255); give floats, e.g. x / 255 "
                                 "(as sheetconv.load_input and the command line scale them)")
        single = x.ndim == 3
        if x.ndim == 2 and self.input_shape[0] == 1:
            x, single = x[None], True
        if single:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise SheetconvError(f"input: expected shape {self.input_shape} or (N, {', '.join(map(str, self.input_shape))}), "
                                 f"got {tuple(np.shape(x))[1:] if single else tuple(np.shape(x))}")
        if x.shape[0] == 0:
            raise SheetconvError(f"input: the batch is empty (shape {tuple(x.shape)})")
        if x.dtype.kind == "f" and not math.isfinite(_SUM(x, axis=None)) and not np.isfinite(x).all():
            raise SheetconvError("input: contains NaN or Inf")    # (as in _check_params: the sum first)
        return x, single

    def activations(self, x, dtype=np.float64) -> dict[str, np.ndarray]:
        """Every layer's output by name, 'input' first; batched if ``x`` is (N, C, H, W).

        The arrays may be strided views (a convolution returns a view of its matrix
        product); ``np.ascontiguousarray`` them if raw memory order matters.
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise SheetconvError(f"dtype must be float32 or float64, got {dtype}")
        self._check_params()
        x, single = self._check_input(x)
        out = {"input": x.astype(dtype, copy=False)}
        for layer in self.layers:
            if layer.arity == 1:
                out[layer.name] = layer.forward(out[layer.inputs[0]])
            else:
                out[layer.name] = layer.forward_many([out[n] for n in layer.inputs])
        return {k: v[0] for k, v in out.items()} if single else out

    def forward(self, x, dtype=np.float64) -> np.ndarray:
        """The last layer's output for one image (C, H, W) or a batch (N, C, H, W)."""
        return self.activations(x, dtype)[self.layers[-1].name]

    __call__ = forward

    # ------------------------------------------------------------ dependencies

    def check_cell(self, cell) -> tuple[str, int, int, int]:
        """Validate ``(layer, channel, row, col)``; raise a one-line error if it lies outside."""
        if isinstance(cell, (tuple, list)) and cell and isinstance(cell[0], str) and cell[0] not in self.shapes:
            raise SheetconvError(f"no layer {cell[0]!r}{self.did_you_mean(cell[0])} (layers: {', '.join(self.names)})")
        if not (isinstance(cell, (tuple, list)) and len(cell) == 4 and isinstance(cell[0], str)):
            raise SheetconvError(f"a cell is (layer, channel, row, col), got {cell!r}")
        name = cell[0]
        idx = tuple(int(v) for v in cell[1:])
        grid = self.grid(name)
        if any(not 0 <= i < n for i, n in zip(idx, grid)):
            if len(self.shapes[name]) == 1 and idx[1:] == (0, 0):
                raise SheetconvError(f"cell {name}[{idx[0]}] lies outside {name}, which has {grid[0]} features "
                                     f"({name}[0] to {name}[{grid[0] - 1}])")
            raise SheetconvError(f"cell {name}[{idx[0]},{idx[1]},{idx[2]}] lies outside {name}, whose (C, H, W) is {grid}")
        return (name, *idx)

    def did_you_mean(self, name: str) -> str:
        """' (did you mean 'conv2'?)' when ``name`` differs from a layer's or parameter's only
        in case (names are case-sensitive, unlike a spreadsheet's), else ''."""
        lname, _, pname = name.partition(".")
        known = {n.lower(): n for n in self.names}
        if lname.lower() not in known:
            return ""
        layer = known[lname.lower()]
        if pname and layer != "input":
            params = {p.lower(): p for p in self[layer].params()}
            if pname.lower() not in params:
                return ""
            layer = f"{layer}.{params[pname.lower()]}"
        return f" (did you mean {layer!r}?)" if layer != name else ""

    def ref(self, cell) -> tuple:
        """A cell given as text ('conv2[0,3,3]', 'fc1[3]') or a tuple -> a cell tuple.

        On a 1-D layer (after Flatten or Linear) ``fc1[3]`` means ``fc1[3,0,0]``.
        """
        if isinstance(cell, str):
            parsed = parse_grid_ref(cell)
            if parsed is None:
                raise SheetconvError(f"not a cell of the network: {cell!r} (expected a tuple (layer, channel, row, col) "
                                     "or text such as conv2[0,3,3] or conv1.weight[0,0,1,1])")
            cell = parsed
        if isinstance(cell, (tuple, list)) and len(cell) == 2 and cell[0] in self.shapes \
                and len(self.shapes[cell[0]]) == 1:
            cell = (cell[0], cell[1], 0, 0)
        return tuple(cell) if isinstance(cell, list) else cell

    def check_param_cell(self, cell) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
        """Validate a parameter cell ('conv1.weight', o, i, kh, kw): its layer, index and tensor shape."""
        lname, pname = cell[0].rsplit(".", 1)
        params = self[lname].params()
        if pname not in params:
            raise SheetconvError(f"{lname} has no parameter {pname!r} (it has {', '.join(params) or 'none'})")
        idx = tuple(int(v) for v in cell[1:])
        shape = params[pname].shape
        if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape)):
            raise SheetconvError(f"{cell[0]}{list(idx)} lies outside its shape {shape}")
        return lname, idx, shape

    def precedents(self, cell, depth: int | str | None = DEFAULT_DEPTH) -> Trace:
        """Cells that ``cell`` is computed from, level by level toward the input.

        ``depth`` levels, 1 by default (one press of Trace Precedents). Level 1 is the previous layer's window (every input channel for a conv; clipped
        to the grid, since padding is not a cell) plus the weight and bias cells used.
        ``depth=None`` (or ``'all'``) goes down to the input. ``cell`` may be text, 'conv2[0,3,3]'.
        """
        depth = parse_depth(depth)
        cell = self.ref(cell)
        if _is_param(cell):                  # a weight or a bias is a constant
            lname, idx, _ = self.check_param_cell(cell)
            return Trace(root=(cell[0], *idx), direction="precedents", levels=[])
        name, *idx = self.check_cell(cell)
        frontier = {name: Region.point(name, self.grid(name), idx)}
        levels = []
        while any(n != "input" for n in frontier) and (depth is None or len(levels) < depth):
            acts: dict[str, Region] = {}
            params: list[Region] = []
            for grid_name, region in frontier.items():
                if grid_name == "input":
                    continue
                layer = self[grid_name]
                params += deps.param_regions(layer, region, self.shapes[layer.inputs[0]])
                for k, src in enumerate(layer.inputs):
                    read = deps.read_region(layer, region, src, self.shapes[src], self._span(layer, k))
                    if not read and layer.channels == "concat":
                        continue                  # channels that come from the other inputs
                    acts[src] = acts[src].union(read) if src in acts else read
            frontier = dict(sorted(acts.items(), key=lambda kv: -self._pos[kv[0]]))
            levels.append(list(frontier.values()) + params)
        return Trace(root=(name, *idx), direction="precedents", levels=levels)

    def trace(self, cell, depth: int | str | None = None) -> Trace:
        """All precedents of ``cell`` (``depth=None`` or ``'all'``: down to the input)."""
        return self.precedents(cell, depth)

    def dependents(self, cell, depth: int | str | None = DEFAULT_DEPTH) -> Trace:
        """Cells that read ``cell``, level by level toward the output: ``depth`` levels, 1 by
        default (one press of Trace Dependents); ``None`` or ``'all'`` to the last layer.

        ``cell`` is an activation ``(layer, c, r, col)`` or a parameter cell such as
        ``("conv1.weight", o, i, kh, kw)`` or ``("conv1.bias", o)``, or text ('conv1.bias[0]').
        """
        depth = parse_depth(depth)
        cell = self.ref(cell)
        if _is_param(cell):
            lname, idx, shape = self.check_param_cell(cell)
            layer, src = self[lname], self.inputs_of(lname)[0]
            region = deps.param_feed_region(layer, Region.point(cell[0], shape, idx), self.shapes[src],
                                            lname, self.shapes[lname])
            root, frontier, levels = (cell[0], *idx), {lname: region}, [[region]]
        else:
            name, *idx = self.check_cell(cell)
            root, frontier, levels = (name, *idx), {name: Region.point(name, self.grid(name), idx)}, []
        while any(frontier.values()) and (depth is None or len(levels) < depth):
            acts: dict[str, Region] = {}
            for grid_name, region in frontier.items():
                for dst, k in self._readers[grid_name]:
                    fed = deps.feed_region(self[dst], region, dst, self.shapes[dst], self._span(self[dst], k))
                    acts[dst] = acts[dst].union(fed) if dst in acts else fed
            if not acts:
                break
            frontier = dict(sorted(acts.items(), key=lambda kv: self._pos[kv[0]]))
            levels.append(list(frontier.values()))
        return Trace(root=root, direction="dependents", levels=levels)

    def _flat_source(self, name: str) -> str:
        """The spatial layer whose cells a flattened layer's features copy."""
        while len(self.shapes[name]) != 3:
            name = self[name].inputs[0]
        return name

    def _input_box(self, name: str, channel: int, row: int, col: int):
        """Inclusive (rows, cols) bounding box of a cell's input precedents; (0, -1) where empty."""
        region = self.precedents((name, channel, row, col), depth=None).region("input")
        if region is None or not region:
            return (0, -1), (0, -1)
        _, rows, cols = region.bbox()
        return tuple(rows), tuple(cols)

    def receptive_field(self, name: str) -> deps.ReceptiveField:
        """Size, jump and start (each an (h, w) pair) of ``name``'s cells on the input."""
        if name not in self._rf:
            self[name]
        return self._rf[name]

    # ------------------------------------------------------------ description

    def summary(self, batch: int = 1) -> str:
        """A per-layer table like fastai's ``learn.summary()`` (see summary.summary)."""
        return _summary(self, batch)

    def _repr_html_(self) -> str:
        """Jupyter: the summary as an HTML table (see nn.html)."""
        return summary_html(self)

    def spec(self) -> dict:
        """The architecture as JSON-ready data (no weights); ``Network.from_spec`` inverts it."""
        names = self.names
        return {"input_shape": list(self.input_shape),
                "layers": [{"name": l.name, **l.config(),
                            **({"inputs": list(l.inputs)} if l.inputs != (names[i],) else {})}
                           for i, l in enumerate(self.layers)]}

    @classmethod
    def from_spec(cls, spec: dict, seed: int = 0) -> Network:
        """Rebuild the architecture from ``spec()``'s data, weights drawn from ``seed``.

        Every key and value is checked as in a spec file (sheetconv.nn.specfile), so a damaged
        spec — from a workbook's metadata, say — is a one-line SheetconvError; networks past
        MAX_PARAMS parameters are refused before anything is allocated.
        """
        return network_from_spec_data(spec, "network spec", fuse_relu=False, strict_names=False, seed=seed)


_TOP = {"input_shape", "layers", "seed", "fuse_relu"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def network_from_spec_data(data: dict, source: str = "spec", *, fuse_relu: bool | None = None,
                           strict_names: bool = True, seed: int | None = None) -> Network:
    """Validate already-parsed spec data (format: sheetconv.nn.specfile) and build the Network.

    Weights are drawn from ``seed`` (default: the spec's ``seed`` key, else 0).
    ``fuse_relu``: overrides the spec's ``fuse_relu`` key. ``strict_names``: layer names must
    be identifiers (spec files); otherwise any non-empty text (a workbook's own spec).
    """
    if not isinstance(data, dict):
        raise SheetconvError(f"{source}: the spec must be a table/object with 'input_shape' and 'layers', "
                             f"got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP, key=str)
    if unknown:
        raise SheetconvError(f"{source}: unknown top-level key {unknown[0]!r:.40} (expected {', '.join(sorted(_TOP))})")
    shape = data.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        raise SheetconvError(f"{source}: input_shape must be [C, H, W] with positive ints, got {shape!r:.80}")
    spec_seed = data.get("seed", 0)
    if not _is_int(spec_seed) or spec_seed < 0:
        raise SheetconvError(f"{source}: seed must be a non-negative int, got {spec_seed!r:.40}")
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
    known = {"input": current}
    for i, cfg in enumerate(specs, 1):
        where = f"{source}: layer {i}"
        srcs = cfg.get("inputs") if isinstance(cfg, dict) else None
        in_shapes = [current]
        if isinstance(srcs, (list, tuple)) and srcs and all(isinstance(v, str) for v in srcs):
            missing = [v for v in srcs if v not in known]
            if missing:
                raise SheetconvError(f"{where}: inputs names {missing[0]!r:.60}, which is not a named layer before it "
                                     f"(named so far: {', '.join(known)})")
            in_shapes = [known[v] for v in srcs]
        layer = layer_from_config(cfg, where, in_shapes[0], strict_names, MAX_PARAMS - total)
        where = f"{where} ({cfg['type']})"
        total += layer.param_count()
        current = layer.out_shape_many(in_shapes, where if layer.name is None else f"{where} {layer.name!r}")
        cells = 1
        for v in current:
            cells *= v
        if cells > MAX_CELLS:
            raise SheetconvError(f"{where}: output shape {current} has more than {MAX_CELLS:,} cells")
        if layer.name is not None:
            known[layer.name] = current
        layers.append(layer)
    try:
        return Network(layers, tuple(shape), fuse_relu=fuse, seed=spec_seed if seed is None else seed)
    except SheetconvError as e:
        raise SheetconvError(f"{source}: {e}") from None


def parse_depth(depth):
    """None or 'all' -> None (every level); a positive whole number as is."""
    if depth is None or (isinstance(depth, str) and depth.strip().lower() == "all"):
        return None
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise SheetconvError(f"depth must be a positive whole number, 'all' or None, got {depth!r}")
    return int(depth)
