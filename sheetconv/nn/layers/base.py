"""The Layer base class, its helpers and the registry of layer kinds.

Every layer kind is one module of this package defining one subclass of :class:`Layer`;
defining the class registers it (``KINDS``, keyed by its type name as spec files and
PyTorch spell it). A kind states, in its one file, every rule the rest of sheetconv asks
of it:

* hyperparameters, ``config()`` (JSON-ready, inverted by ``Layer.from_config``) and
  ``param_shapes()``;
* ``out_shape(in_shape)`` and the vectorised ``forward(x)`` (NCHW, batch first);
* what an output cell reads: ``windows`` (one :class:`~sheetconv.nn.window.Window` per
  axis; ``windows_for(in_shape)`` for a kind whose windows depend on the input size, such
  as the adaptive pools' :class:`~sheetconv.nn.window.AdaptiveWindow`) and ``channels`` —
  ``"all"`` (every input channel), ``"same"`` (its own channel) or ``"flatten"``
  (renumbers (c, h, w) as c*H*W + h*W + w); ``channel_back`` / ``channel_forward`` apply
  the rule to runs of channels (a grouped convolution reads its own group's channels);
* which parameter cells an output reads and the reverse (``param_regions``, ``param_feed``);
* its formula text from ready A1 reference texts (``formula_reads`` says which references
  the sheet layer must compute, ``formula(terms)`` writes the text without '=');
* its PyTorch module (``to_torch_module(torch)``), functional form (``torch_forward(F, x)``)
  and converter (``from_torch(module, where, array)``, for the torch class ``torch_class``);
* its words: ``describe()`` ('3x3 conv, stride 2, padding 1') and ``summary_type``.

Inputs. A layer reads the layer before it unless ``inputs`` names others (a tuple of layer
names, 'input' for the network's input): a chain is the special case where every layer
reads its predecessor. ``arity`` is how many inputs a kind takes: 1 for most, None for
"two or more" (Add, Concat), whose rules take the list of input shapes
(``out_shape_many``, ``forward_many``).

Invariants: a layer never changes what it is given; parameters are validated when they
are assigned (shape and finiteness); a parameter never set explicitly starts from
PyTorch's default initialisation, uniform in +-1/sqrt(fan_in), drawn from
``numpy.random.default_rng(0)`` for a stand-alone layer (a Network redraws such
parameters from its own seed, see network.py).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import numpy as np

from ...errors import SheetconvError
from ..regions import Region
from ..window import Window

__all__ = ["Layer", "Terms", "KINDS", "layer_from_config", "MAX_PARAMS", "pair", "count", "affine_formula",
           "number_text"]

MAX_PARAMS = 50_000_000          # weights and biases of the whole network

KINDS: dict[str, type[Layer]] = {}
"""Every layer kind by its type name ('Conv2d'), in definition order."""


def pair(value, what: str, layer: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each at least ``minimum`` -> (h, w)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        result = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        result = (int(value[0]), int(value[1]))
    else:
        raise SheetconvError(f"{layer}: {what} must be an int or an (h, w) pair of ints, got {value!r}")
    if min(result) < minimum:
        raise SheetconvError(f"{layer}: {what} must be >= {minimum}, got {value!r}")
    return result


def count(value, what: str, layer: str) -> int:
    """A positive int."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SheetconvError(f"{layer}: {what} must be a positive int, got {value!r}")
    return int(value)


def number_text(value: float) -> str:
    """A float as formula text that reads back to the same double: 1e-05 -> '1E-05', 0.01 -> '0.01'."""
    return repr(float(value)).upper()


def grid(shape: tuple) -> tuple[int, int, int]:
    """An activation shape as a (C, H, W) grid: (F,) -> (F, 1, 1)."""
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


@dataclass(frozen=True)
class Terms:
    """The A1 reference texts a formula is made of, computed by the sheet layer.

    ``window``: the range an output reads in its own channel (pools), ``cell``: the one
    input cell it copies or rectifies (ReLU, Flatten), ``covered``: how many cells of the
    window lie inside the grid; ``area``: how many lie inside the padded grid (0: the
    kernel's area; less only for a ceil-mode window hanging past the padding); ``pairs``:
    (input range, weight range) per SUMPRODUCT; ``products``: (input cell, weight cell) per
    product written out (a dilated window is not a range); ``sums``: partial-sum cells that
    replace the SUMPRODUCTs; ``bias``: the bias cell; ``total``: False for a partial sum (no
    bias, no ReLU); ``params``: (parameter name, cell) pairs of the per-channel parameters
    of the cell's own channel (BatchNorm2d).
    """
    window: str = ""
    cell: str = ""
    covered: int = 0
    area: int = 0
    pairs: tuple = ()
    products: tuple = ()
    sums: tuple = ()
    bias: str | None = None
    total: bool = True
    params: tuple = ()


def affine_formula(terms: Terms, relu: bool) -> str:
    """Sum of products plus bias, inside MAX(0, ...) for a fused ReLU (Conv2d and Linear)."""
    if terms.sums:
        body = "+".join(terms.sums)
    else:
        body = "+".join([f"SUMPRODUCT({a},{b})" for a, b in terms.pairs] + [f"{a}*{b}" for a, b in terms.products])
    if not terms.total:
        return body or "0"
    if terms.bias is not None:
        body = f"{body}+{terms.bias}" if body else terms.bias
    body = body or "0"
    return f"MAX(0,{body})" if relu else body


class Layer:
    """Base class of every layer kind (see the module docstring for the rules a kind defines).

    ``name`` is None until given; a Network names its own copies. ``kind`` is the short
    word the workbook shows ('conv'), ``prefix`` the stem of default names ('conv' ->
    conv1, conv2).
    """
    kind = "layer"
    prefix = "layer"
    channels = "same"          # "all", "same" or "flatten" (see the module docstring)
    formula_reads = "window"   # "weighted" (Conv2d), "dense" (Linear), "window" (pools, ReLU), "cell" (Flatten)
    torch_class = ""           # the torch.nn class this kind converts from and to
    fusable = False            # a ReLU right after it may join it (Conv2d, Linear)
    fuses = False              # joins a fusable layer right before it (ReLU)
    relu = False               # a fused ReLU
    arity: int | None = 1      # inputs it takes; None: two or more (Add, Concat)
    default_inputs = False     # a Network's copy whose inputs it filled in (the previous layer)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            KINDS[cls.__name__] = cls

    def __init__(self):
        self.name: str | None = None
        self.inputs: tuple[str, ...] | None = None      # None: the previous layer
        self._values: dict[str, np.ndarray] = {}
        self._explicit: set[str] = set()

    # ------------------------------------------------------------ names and copies

    @property
    def who(self) -> str:
        """The layer's name in messages: its name, else its type."""
        return self.name or type(self).__name__

    @property
    def label(self) -> str:
        """As the spreadsheet shows it: 'conv1 (ReLU)'."""
        return f"{self.name} (ReLU)" if self.relu else str(self.name)

    def copy(self, **changes) -> Layer:
        """An independent copy (parameters copied), with attributes ``changes`` set (name=, relu=)."""
        new = copy.copy(self)
        new._values = {k: v.copy() for k, v in self._values.items()}
        new._explicit = set(self._explicit)
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    # ------------------------------------------------------------ parameters

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in PyTorch's state-dict order ('weight', then 'bias')."""
        return {}

    def params(self) -> dict[str, np.ndarray]:
        return {k: self._get(k) for k in self.param_shapes()}

    def _params_into(self, module, torch):
        """``module`` (the kind's torch module, float64) with this layer's parameters copied in."""
        with torch.no_grad():
            for key, value in self.params().items():
                getattr(module, key).copy_(torch.from_numpy(value))
        return module

    def param_count(self) -> int:
        return sum(int(np.prod(s)) for s in self.param_shapes().values())

    def fan_in(self) -> int:
        """Inputs per output: PyTorch's fan_in of the weight, which bounds its default init."""
        shape = self.param_shapes()["weight"]
        return int(np.prod(shape[1:]))

    def draw_parameters(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default init: every parameter uniform in +-1/sqrt(fan_in), weight first."""
        shapes = self.param_shapes()
        if not shapes:
            return {}
        bound = 1.0 / np.sqrt(self.fan_in())
        return {k: rng.uniform(-bound, bound, size=s) for k, s in shapes.items()}

    def initialise(self, rng: np.random.Generator, keep_explicit: bool = True):
        """Draw every parameter from ``rng`` (the draws happen even for explicit ones, so a
        layer's numbers do not depend on which others were set); keep explicit ones."""
        for key, value in self.draw_parameters(rng).items():
            if not (keep_explicit and key in self._explicit):
                self._values[key] = value
                self._explicit.discard(key)

    def is_explicit(self, key: str) -> bool:
        return key in self._explicit

    def _get(self, key: str):
        value = self._values.get(key)
        if value is not None:              # the common case, without building param_shapes()
            return value
        shapes = self.param_shapes()
        if key not in shapes:
            if key == "bias" and "weight" in shapes:
                return None
            raise AttributeError(f"{type(self).__name__} has no parameter {key!r}")
        if key not in self._values:
            self.initialise(np.random.default_rng(0))
        return self._values[key]

    def _set(self, key: str, value):
        shapes = self.param_shapes()
        if key not in shapes:
            raise SheetconvError(f"{self.who}: has no {key} (its parameters: {', '.join(shapes) or 'none'})")
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise SheetconvError(f"{self.who}.{key}: must be an array of real numbers ({e})") from None
        if arr.shape != tuple(shapes[key]):
            raise SheetconvError(f"{self.who}.{key}: expected shape {tuple(shapes[key])}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise SheetconvError(f"{self.who}.{key}: contains NaN or Inf")
        self._values[key] = arr
        self._explicit.add(key)

    weight = property(lambda self: self._get("weight"), lambda self, v: self._set("weight", v),
                      doc="The weight array; assigning checks its shape and finiteness.")
    bias = property(lambda self: self._get("bias"), lambda self, v: self._set("bias", v),
                    doc="The bias array (None for a layer made with bias=False).")

    # ------------------------------------------------------------ rules every kind defines

    @property
    def windows(self) -> tuple[Window, Window]:
        return Window(), Window()

    def windows_for(self, in_shape: tuple) -> tuple:
        """The (h, w) index rules for input shape ``in_shape``: ``windows`` unless a kind's
        windows depend on the input size (adaptive pools)."""
        return self.windows

    def channel_back(self, runs, cin: int):
        """Input channels read by the output channels ``runs`` (the ``channels`` rule)."""
        return ((0, cin),) if self.channels == "all" else runs

    def channel_forward(self, runs, cout: int):
        """Output channels that read any of the input channels ``runs``."""
        return ((0, cout),) if self.channels == "all" else runs

    def out_shape(self, in_shape: tuple, where: str | None = None) -> tuple:
        """The output shape (batch left out) for input shape ``in_shape``; a shape the layer
        cannot take is a SheetconvError starting with ``where`` (default: the layer's name)."""
        try:
            return self._out_shape(tuple(in_shape))
        except SheetconvError as e:
            raise SheetconvError(f"{where or self.who}: {e}") from None

    def _out_shape(self, in_shape: tuple) -> tuple:
        raise NotImplementedError

    def out_shape_many(self, in_shapes: list[tuple], where: str | None = None) -> tuple:
        """The output shape for the shapes of all its inputs (one for a single-input kind)."""
        if self.arity is not None and len(in_shapes) != self.arity:
            raise SheetconvError(f"{where or self.who}: takes {self.arity} input{'s' if self.arity != 1 else ''}, "
                                 f"got {len(in_shapes)}")
        if self.arity is None and len(in_shapes) < 2:
            raise SheetconvError(f"{where or self.who}: takes two or more inputs, got {len(in_shapes)}")
        return self.out_shape(in_shapes[0], where) if self.arity == 1 else self._out_shape_many(in_shapes, where)

    def _out_shape_many(self, in_shapes: list[tuple], where: str | None) -> tuple:
        raise NotImplementedError

    def forward_many(self, xs: list) -> np.ndarray:
        """The output for all its inputs (each batched NCHW)."""
        return self.forward(xs[0])

    def macs(self, in_shape: tuple) -> int:
        return 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict:
        """The hyperparameters, JSON-ready; ``Layer.from_config`` inverts it."""
        return {"type": type(self).__name__}

    def param_regions(self, out: Region, in_shape: tuple) -> list[Region]:
        """The weight and bias cells the output cells ``out`` use."""
        return []

    def param_feed(self, param: Region, in_shape: tuple, out_name: str, out_shape: tuple) -> Region:
        """The output cells that use any of the parameter cells ``param``."""
        return Region.of(out_name, grid(out_shape), [])

    def formula(self, terms: Terms) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """The operation in words, as the workbook's titles show it."""
        raise NotImplementedError

    @property
    def summary_type(self) -> str:
        """The type column of the summary table: 'Conv2d + ReLU' for a fused layer."""
        return f"{type(self).__name__} + ReLU" if self.relu else type(self).__name__

    def to_torch_module(self, torch):
        """The equivalent torch.nn module (float64 parameters); a fused ReLU is not included."""
        raise NotImplementedError

    def torch_forward(self, F, x):
        """The output computed with torch.nn.functional ``F`` on tensor ``x``, fused ReLU included."""
        y = self._torch_forward(F, x)
        return F.relu(y) if self.relu else y

    def _torch_forward(self, F, x):
        raise NotImplementedError

    def torch_forward_many(self, F, xs):
        """The output computed by torch for all its inputs (one for a single-input kind)."""
        return self.torch_forward(F, xs[0])

    @classmethod
    def from_torch(cls, module, where: str, array) -> Layer:
        """A torch module of class ``torch_class`` -> this kind; ``array(param)`` gives a float64
        array; anything it cannot represent is a SheetconvError starting with ``where``."""
        raise NotImplementedError

    def torch_extra_repr(self) -> str:
        """What torch's own module shows between the parentheses."""
        return ""

    @classmethod
    def inferred_from_input(cls, current: tuple) -> dict:
        """Constructor arguments a spec may leave out, taken from the input shape (None: impossible)."""
        return {}

    # ------------------------------------------------------------ shared helpers

    @staticmethod
    def from_config(cfg: dict, index: int | None = None) -> Layer:
        """``config()``'s data -> a layer; a bad type, key or value is a one-line
        SheetconvError naming the layer (``index``, 1-based, when given) and the key."""
        return layer_from_config(cfg, "layer" if index is None else f"layer {index}", strict_names=False)

    def _spatial_in(self, in_shape: tuple) -> tuple[int, int, int]:
        if len(in_shape) != 3:
            raise SheetconvError(f"expects a (C, H, W) input, got shape {tuple(in_shape)}")
        return in_shape

    def _check_windows(self, in_shape: tuple) -> tuple[int, int]:
        _, h, w = in_shape
        out = []
        for axis, (win, n) in enumerate(zip(self.windows, (h, w))):
            if win.out_size(n) < 1:                     # the kernel outgrows the padded input (ceil mode: by a stride)
                raise SheetconvError(
                    f"kernel {win.kernel} (dilated extent {win.span}) is larger than the padded "
                    f"input {n}+2*{win.padding}={n + 2 * win.padding} along {'HW'[axis]}")
            out.append(win.out_size(n))
        return out[0], out[1]

    def __repr__(self):
        extra = self.torch_extra_repr()
        if self.relu:
            extra = f"{extra}, relu=True" if extra else "relu=True"
        return f"{type(self).__name__}({extra})"


# ---------------------------------------------------------------- configs

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_BOOL_KEYS = ("bias", "relu", "count_include_pad", "affine", "ceil_mode")
_PAIR_KEYS = ("kernel_size", "stride", "padding", "dilation", "output_size")
_FLOAT_KEYS = ("eps", "momentum", "negative_slope")
_TEXT_KEYS = ("approximate",)


def check_value(key: str, value, where: str, strict_names: bool = True):
    """One config value: booleans, ints, (h, w) pairs and names, each by its key."""
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise SheetconvError(f"{where}: {key} must be true or false, got {value!r}")
    elif key in _PAIR_KEYS:
        if value is None and key == "stride":
            return
        ok = _is_int(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_int, value)))
        if not ok:
            raise SheetconvError(f"{where}: {key} must be an int or an [h, w] pair of ints, got {value!r}")
    elif key in _FLOAT_KEYS:
        if value is None and key == "momentum":
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise SheetconvError(f"{where}: {key} must be a finite number, got {value!r:.40}")
    elif key in _TEXT_KEYS:
        if not isinstance(value, str):
            raise SheetconvError(f"{where}: {key} must be a string, got {value!r:.40}")
    elif key == "name":
        if value is None and not strict_names:
            return
        if not isinstance(value, str) or not value or len(value) > 200 \
                or (strict_names and not value.replace("_", "").isalnum()):
            raise SheetconvError(f"{where}: name must be a non-empty identifier, got {value!r:.60}")
    elif not _is_int(value):
        raise SheetconvError(f"{where}: {key} must be an int, got {value!r}")


def layer_from_config(cfg, where: str, current: tuple | None = None, strict_names: bool = True,
                      max_params: int = MAX_PARAMS) -> Layer:
    """One layer table -> a Layer, every key and value checked (errors start with ``where``).

    ``current``: the input shape, from which a missing first argument (in_channels,
    in_features) is taken; without it they are required. Parameters are not allocated
    here (they are drawn when first used), so a too-large layer is refused cheaply.
    """
    if not isinstance(cfg, dict):
        raise SheetconvError(f"{where}: expected a table like {{type = \"Conv2d\", ...}}, got {cfg!r:.80}")
    kind = cfg.get("type")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        kinds = ", ".join(KINDS)
        if "type" not in cfg:
            raise SheetconvError(f"{where}: no 'type' key (every layer names its type: one of {kinds})")
        if not isinstance(kind, str):
            raise SheetconvError(f"{where}: type must be the name of a layer type such as 'Conv2d', got {kind!r:.40}")
        cased = {k.lower(): k for k in KINDS}.get(kind.strip().lower())
        hint = f" (did you mean {cased!r}?)" if cased else f" (expected one of {kinds})"
        raise SheetconvError(f"{where}: unknown type {kind!r:.40}{hint}")
    where = f"{where} ({kind})"
    sig = inspect.signature(cls.__init__)
    allowed = [p for p in sig.parameters if p != "self"]
    for key, value in cfg.items():
        if key == "type":
            continue
        if key == "inputs":
            check_inputs(value, where, strict_names)
            continue
        if key != "name" and key not in allowed:
            raise SheetconvError(f"{where}: unknown key {key!r:.40} (expected {', '.join(allowed + ['name', 'inputs'])})")
        check_value(key, value, where, strict_names)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k not in ("type", "name", "inputs")}
    inferred = cls.inferred_from_input(current) if current is not None else {}
    for key, value in inferred.items():
        if key not in kwargs:
            if value is None:
                raise SheetconvError(f"{where}: needs a flat input; put a Flatten before it (input shape {current})")
            kwargs[key] = value
    missing = [p for p, v in sig.parameters.items()
               if p != "self" and v.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise SheetconvError(f"{where}: missing key {missing[0]!r}")
    try:
        layer = cls(**kwargs)
    except SheetconvError as e:                  # "Conv2d: stride ..." -> "layer 1 (Conv2d): stride ..."
        raise SheetconvError(f"{where}: {str(e).removeprefix(f'{cls.__name__}: ')}") from None
    except (TypeError, ValueError, AttributeError) as e:   # not expected after the checks above
        raise SheetconvError(f"{where}: bad value ({type(e).__name__}: {e})") from None
    params = layer.param_count()
    if params > max_params:
        raise SheetconvError(f"{where}: {params:,} parameters take the network past {MAX_PARAMS:,}, "
                             f"the most supported")
    if cfg.get("name") is not None:
        layer.name = cfg["name"]
    if cfg.get("inputs") is not None:
        layer.inputs = tuple(cfg["inputs"])
    return layer


def check_inputs(value, where: str, strict_names: bool = True):
    """A layer's ``inputs``: a non-empty list of layer names ('input' for the network's input)."""
    if value is None and not strict_names:
        return
    if not isinstance(value, (list, tuple)) or not value or len(value) > 64:
        raise SheetconvError(f"{where}: inputs must be a non-empty list of layer names, got {value!r:.60}")
    for v in value:
        if not isinstance(v, str) or not v or len(v) > 200:
            raise SheetconvError(f"{where}: inputs must be a non-empty list of layer names, got {value!r:.60}")

