"""PyTorch interop: ``from_torch``, ``to_torch`` and ``load_state_dict_file``.

``from_torch(module, input_shape)`` converts an ``nn.Sequential`` tree — nested
Sequentials, as fastai's ``conv()`` helper makes them — of the registered layer kinds
(Conv2d, BatchNorm2d, ReLU, the pools, Flatten, Linear, ...: ``torch_kinds()``), weights
and running statistics included, into a :class:`~sheetconv.Network`. Dropout in eval
mode and Identity are dropped (they compute nothing). An eval-mode BatchNorm2d becomes
its own layer of visible cells; with ``fold_batchnorm=True`` one right after a Conv2d is
folded into that convolution's weights and bias instead (as
``torch.nn.utils.fusion.fuse_conv_bn_eval`` does). Anything else — a BatchNorm in training
mode, other BatchNorms, Dropout in training mode, circular convolutions, a pool's
``return_indices`` — is refused with the module's type and its path in the tree (``features.3``).

A module whose tree holds a block that is not an ``nn.Sequential`` (fastbook's
``ResBlock``, torchvision's ``BasicBlock``: ``x + convs(x)``) is traced with
``torch.fx.symbolic_trace``: each call of a module converts as above, ``+``
(``operator.add``, ``torch.add``) becomes an Add, ``torch.cat(..., dim=1)`` a Concat,
``F.relu`` / ``torch.relu`` / ``x.relu()`` a ReLU, ``torch.flatten(x, 1)`` and
``x.view(x.size(0), -1)`` a Flatten. Any other operation is a SheetconvError naming it
and the module path it sits in. Plain Sequential trees keep the direct walk.

``to_torch(net)`` goes back: a flat ``nn.Sequential`` whose modules carry the network's
layer names, so its ``state_dict()`` keys are ``net.state_dict()``'s ('conv1.weight', ...);
a fused ReLU becomes its own module ``conv1_relu``. A graph network becomes a
``torch.fx.GraphModule`` with the same modules and keys whose forward follows the graph.

``load_state_dict_file(path, net)`` reads a file written by ``torch.save(model.state_dict())``
with ``torch.load(weights_only=True)`` — it never unpickles arbitrary objects — and maps
its tensors onto the network's parameters in order, checking every shape.

torch is imported only when one of these functions is called.
"""
from __future__ import annotations

import numbers
import operator
from collections import OrderedDict

import numpy as np

from ..errors import SheetconvError
from ..nn.layers import KINDS, Add, Concat, Flatten, Layer, ReLU
from ..nn.network import Network
from .verify import require_torch

__all__ = ["from_torch", "to_torch"]


# ---------------------------------------------------------------- torch -> sheetconv

def _where(path: str, module) -> str:
    return f"{path or '(root)'} ({type(module).__name__})"


def _array(param, where: str) -> np.ndarray:
    torch = require_torch()
    if isinstance(param, torch.nn.parameter.UninitializedParameter):
        raise SheetconvError(f"{where}: has uninitialized (lazy) parameters; run one forward pass first")
    if param.is_complex():
        raise SheetconvError(f"{where}: complex parameters are not supported")
    return param.detach().to("cpu", torch.float64).numpy().copy()


def torch_kinds() -> dict[str, type[Layer]]:
    """torch.nn class name -> the sheetconv layer kind that converts it (each kind names its class)."""
    return {cls.torch_class: cls for cls in KINDS.values() if cls.torch_class}


def _kind_of(m):
    """The kind converting module ``m``: its class or a base class of the registered name whose
    ``forward`` it does not override (a subclass computing something else is refused)."""
    nn = require_torch().nn
    kinds = torch_kinds()
    for base in type(m).__mro__:
        cls = kinds.get(base.__name__)
        if cls is None:
            continue
        if base is getattr(nn, base.__name__, None) or base.__module__.startswith("fastai"):
            return cls if type(m).forward is base.forward else None
    return None


def _convert_leaf(m, path: str) -> Layer | None:
    """One torch module -> one sheetconv layer, None for a no-op, or SheetconvError."""
    nn = require_torch().nn
    where = _where(path, m)
    t = type(m)
    cls = _kind_of(m)
    if cls is not None:
        return cls.from_torch(m, where, lambda p: _array(p, where))
    if t is nn.Identity:
        return None
    if t in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):
        if m.training:
            raise SheetconvError(f"{where}: dropout in training mode is random; call module.eval() first")
        return None
    hint = ""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        hint = "; of the batch norms only BatchNorm2d (eval mode) is supported"
    elif list(m.children()):
        hint = "; only nn.Sequential may contain other modules (no residual or custom blocks)"
    raise SheetconvError(f"{where}: module type {t.__name__} is not supported "
                         f"(supported: {', '.join(torch_kinds())}, eval-mode Dropout){hint}")


def _fold_batchnorm(bn, path: str, out: list):
    """Fold an eval-mode BatchNorm2d into the Conv2d converted just before it (last in ``out``)."""
    torch = require_torch()
    nn = torch.nn
    where = _where(path, bn)
    if type(bn) is not nn.BatchNorm2d:
        raise SheetconvError(f"{where}: only BatchNorm2d right after a Conv2d can be folded")
    prev = out[-1] if out else None
    if prev is None or not isinstance(prev[1], nn.Conv2d):
        after = "nothing" if prev is None else _where(prev[0], prev[1])
        raise SheetconvError(f"{where}: can be folded only into a Conv2d right before it, it follows {after}")
    if bn.training:
        raise SheetconvError(f"{where}: in training mode it normalizes by the batch's statistics; "
                             "call module.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise SheetconvError(f"{where}: has no running statistics (track_running_stats=False); cannot fold it")
    conv = prev[2]
    if bn.num_features != conv.out_channels:
        raise SheetconvError(f"{where}: {bn.num_features} features after a convolution of {conv.out_channels} "
                             "channels")
    from torch.nn.utils.fusion import fuse_conv_bn_weights
    f64 = lambda t: None if t is None else t.detach().to("cpu", torch.float64)   # noqa: E731
    weight, bias = fuse_conv_bn_weights(
        torch.from_numpy(conv.weight), None if conv.bias is None else torch.from_numpy(conv.bias),
        f64(bn.running_mean), f64(bn.running_var), bn.eps, f64(bn.weight), f64(bn.bias))
    folded = conv.copy(has_bias=True)
    folded.weight, folded.bias = _array(weight, where), _array(bias, where)
    out[-1] = (prev[0], prev[1], folded)


def _walk(m, path: str, out: list, fold: bool = False):
    nn = require_torch().nn
    if m._forward_hooks or m._forward_pre_hooks:
        raise SheetconvError(f"{_where(path, m)}: forward hooks change what the module computes; remove them first")
    if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
        for name, child in m.named_children():
            _walk(child, f"{path}.{name}" if path else name, out, fold)
    elif fold and isinstance(m, nn.modules.batchnorm._BatchNorm):
        _fold_batchnorm(m, path, out)
    else:
        layer = _convert_leaf(m, path)
        if layer is not None:
            out.append((path, m, layer))


def from_torch(module, input_shape, fuse_relu: bool = True, fold_batchnorm: bool = False) -> Network:
    """Convert an ``nn.Sequential`` tree with its weights into a Network.

    ``input_shape`` is (C, H, W) — the batch dimension left out — or (N, C, H, W), whose
    N is ignored. A ReLU right after a Conv2d or Linear becomes part of it (``conv1 (ReLU)``)
    unless ``fuse_relu`` is False. Layers are named conv1, conv2, ..., as the workbook shows
    them; ``load_state_dict_file`` maps the module's state-dict keys onto them in order.
    ``fold_batchnorm``: fold each eval-mode BatchNorm2d into the Conv2d right before it
    (the network then computes what the module computes in eval mode).
    """
    torch = require_torch()
    if not isinstance(module, torch.nn.Module):
        raise SheetconvError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) == 4:                         # (N, C, H, W): the batch size does not matter
        shape = shape[1:]
    if len(shape) != 3 or not all(isinstance(v, numbers.Integral) and v > 0 for v in shape):
        raise SheetconvError(f"input_shape must be (C, H, W) with positive ints, got {input_shape!r}")
    input_shape = shape = tuple(int(v) for v in shape)
    if _needs_fx(module):
        return _from_fx(module, input_shape, bool(fuse_relu), bool(fold_batchnorm))
    items: list = []
    _walk(module, "", items, bool(fold_batchnorm))
    if not items:
        raise SheetconvError(f"{type(module).__name__} contains no layer that computes anything")
    # Infer shapes module by module so that an error names the module's path, not a layer name.
    for path, m, layer in items:
        shape = layer.out_shape(shape, _where(path, m))       # shape errors name "features.3 (Linear)"
    return Network([layer for _, _, layer in items], tuple(input_shape), fuse_relu=fuse_relu)


# ---------------------------------------------------------------- torch.fx graphs -> sheetconv

def _needs_fx(m) -> bool:
    """True if the tree holds a module with children that is not a plain nn.Sequential."""
    nn = require_torch().nn
    if not list(m.children()):
        return False
    if not (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward):
        return True
    return any(_needs_fx(c) for c in m.children())


def _node_where(node, root) -> str:
    """The module path (and type) a traced node sits in: 'layer1.0 (BasicBlock)'."""
    if node.op == "call_module":
        return _where(node.target, root.get_submodule(node.target))
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, (_, cls) = list(stack.items())[-1]
        return f"{path} ({getattr(cls, '__name__', cls)})"
    return _where("", root)


def _op_name(node) -> str:
    if node.op == "call_method":
        return f"tensor.{node.target}()"
    if node.op == "call_function":
        t = node.target
        mod = getattr(t, "__module__", None) or "torch"
        mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
               "torch._C._VariableFunctions": "torch"}.get(mod, mod)
        return f"{mod}.{getattr(t, '__name__', repr(t))}"
    return f"{node.op} {node.target}"


_SUPPORTED_OPS = ("supported: calls of the modules " + "{kinds}" + ", '+' (operator.add, torch.add), "
                  "torch.cat(..., dim=1), relu (F.relu, torch.relu, x.relu()), torch.flatten(x, 1), "
                  "x.view(x.size(0), -1)")


def _fx_op(node) -> str | None:
    """The kind a traced function or method call maps to: 'add', 'cat', 'relu', 'flatten',
    'view', 'size', 'getattr', 'getitem' (the batch size for a view), or None."""
    torch = require_torch()
    F = torch.nn.functional
    t = node.target
    if node.op == "call_method":
        return {"add": "add", "relu": "relu", "flatten": "flatten", "view": "view", "reshape": "view",
                "size": "size"}.get(t)
    if t in (operator.add, operator.iadd, torch.add):
        return "add"
    if t is torch.cat or t is getattr(torch, "concat", None) or t is getattr(torch, "concatenate", None):
        return "cat"
    if t in (F.relu, torch.relu):
        return "relu"
    if t is torch.flatten:
        return "flatten"
    if t is getattr and len(node.args) > 1 and node.args[1] == "shape":
        return "getattr"
    if t is operator.getitem:
        return "getitem"
    return None


def _flatten_dims(node, op: str) -> bool:
    """torch.flatten(x, 1) / x.flatten(1) (end_dim -1), or x.view(batch, -1)."""
    args = list(node.args[1:])
    if op == "flatten":
        start = node.kwargs.get("start_dim", args[0] if args else 0)
        end = node.kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
        return start == 1 and end == -1
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    return len(args) == 2 and args[1] == -1 and not isinstance(args[0], (int, float))


class _FxState:
    """Layers converted so far (each with the keys of the layers it reads), by fx node."""

    def __init__(self, root):
        self.root = root
        self.value: dict = {}          # node -> layer key ('input' or an int), or a marker
        self.layers: dict = {}         # key -> [layer, input keys]
        self.users: dict = {}          # key -> how many nodes read it

    def key(self, arg, where, op):
        fx = require_torch().fx
        if not isinstance(arg, fx.Node) or arg not in self.value or not isinstance(self.value[arg], (int, str)) \
                or self.value[arg] in ("batch", "shape"):
            raise SheetconvError(f"{where}: {op} of {arg!r:.40} is not supported; it must read tensors "
                                 f"computed by the model")
        return self.value[arg]

    def add(self, node, layer, inputs):
        k = len(self.layers)
        self.layers[k] = [layer, list(inputs)]
        self.value[node] = k
        return k


def _from_fx(module, input_shape: tuple, fuse_relu: bool, fold: bool) -> Network:
    torch = require_torch()
    nn = torch.nn
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:               # a forward fx cannot trace (data-dependent control flow, ...)
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise SheetconvError(f"{_where('', module)}: torch.fx cannot trace its forward ({type(e).__name__}: "
                             f"{first}); only forwards made of module calls, +, torch.cat, relu and flatten "
                             "are supported") from None
    st = _FxState(gm)
    out_key = None
    kinds = ", ".join(torch_kinds())
    readers: dict = {}
    for node in gm.graph.nodes:
        for a in node.all_input_nodes:
            readers[a] = readers.get(a, 0) + 1
    for node in gm.graph.nodes:
        where = _node_where(node, module)
        if node.op == "placeholder":
            if "input" in st.value.values():
                raise SheetconvError(f"{where}: forward takes more than one input ({node.target}); "
                                     "only one image input is supported")
            st.value[node] = "input"
        elif node.op == "output":
            out_key = st.key(node.args[0], where, "the output")
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            if m._forward_hooks or m._forward_pre_hooks:
                raise SheetconvError(f"{where}: forward hooks change what the module computes; remove them first")
            src = st.key(node.args[0] if node.args else None, where, type(m).__name__)
            if len(node.args) != 1 or node.kwargs:
                raise SheetconvError(f"{where}: called with {len(node.args)} arguments; modules take one tensor")
            if fold and isinstance(m, nn.modules.batchnorm._BatchNorm) and isinstance(src, int):
                conv_layer = st.layers[src][0]
                prev_node = node.args[0]
                conv_m = gm.get_submodule(prev_node.target) if prev_node.op == "call_module" else None
                if readers.get(prev_node, 0) != 1:
                    raise SheetconvError(f"{where}: cannot fold it: the convolution before it is also read elsewhere")
                items = [(prev_node.target, conv_m, conv_layer)] if conv_m is not None else []
                _fold_batchnorm(m, node.target, items)
                st.layers[src][0] = items[-1][2]
                st.value[node] = src
                continue
            layer = _convert_leaf(m, node.target)
            if layer is None:
                st.value[node] = src
            elif isinstance(layer, ReLU):
                _relu(st, node, src, fuse_relu, readers)
            else:
                st.add(node, layer, [src])
        elif node.op in ("call_function", "call_method"):
            op = _fx_op(node)
            if op is None:
                raise SheetconvError(f"{where}: operation {_op_name(node)} is not supported "
                                     f"({_SUPPORTED_OPS.format(kinds=kinds)})")
            if op in ("size", "getattr"):
                st.value[node] = "batch" if op == "size" and node.args[1:] == (0,) else "shape"
                continue
            if op == "getitem":
                base = st.value.get(node.args[0])
                if base == "shape" and node.args[1] == 0:
                    st.value[node] = "batch"
                    continue
                raise SheetconvError(f"{where}: operation {_op_name(node)} (indexing) is not supported "
                                     f"({_SUPPORTED_OPS.format(kinds=kinds)})")
            if op == "add":
                if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
                    raise SheetconvError(f"{where}: operation {_op_name(node)} with alpha or scalars is not supported")
                a, b = (st.key(x, where, "'+'") for x in node.args)
                parts = []
                for k in (a, b):        # (x + y) + z: one Add of three, when the inner sum has no other reader
                    inner = st.layers.get(k) if isinstance(k, int) else None
                    if inner is not None and isinstance(inner[0], Add) and not inner[0].relu \
                            and readers.get(_node_of(st, k), 0) == 1:
                        parts += inner[1]
                        del st.layers[k]
                    else:
                        parts.append(k)
                st.add(node, Add(), parts)
            elif op == "cat":
                tensors = node.args[0] if node.args else node.kwargs.get("tensors")
                dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
                if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
                    raise SheetconvError(f"{where}: {_op_name(node)} along dim={dim} is not supported; only along "
                                         "channels (dim=1)")
                st.add(node, Concat(), [st.key(x, where, "torch.cat") for x in tensors])
            elif op == "relu":
                _relu(st, node, st.key(node.args[0], where, "relu"), fuse_relu, readers)
            else:                                    # flatten, view
                if not _flatten_dims(node, op):
                    raise SheetconvError(f"{where}: operation {_op_name(node)} with these sizes is not supported; "
                                         "only torch.flatten(x, 1) or x.view(x.size(0), -1)")
                st.add(node, Flatten(), [st.key(node.args[0], where, _op_name(node))])
        else:
            raise SheetconvError(f"{where}: operation {_op_name(node)} is not supported "
                                 f"({_SUPPORTED_OPS.format(kinds=kinds)})")
    if not isinstance(out_key, int):
        raise SheetconvError(f"{type(module).__name__} contains no layer that computes anything")
    return _network_of(st, out_key, input_shape, fuse_relu, module)


def _relu(st: _FxState, node, src, fuse_relu: bool, readers: dict):
    """A ReLU joins the layer it reads when that layer is fusable and read by nothing else."""
    prev = st.layers.get(src) if isinstance(src, int) else None
    if fuse_relu and prev is not None and prev[0].fusable and not prev[0].relu \
            and _read_once(st, src, readers):
        prev[0].relu = True
        st.value[node] = src
    else:
        st.add(node, ReLU(), [src])


def _read_once(st: _FxState, key: int, readers: dict) -> bool:
    """Every node standing for layer ``key`` (the layer and the no-ops or folds after it) is
    read by one node only, so a ReLU after them may join the layer."""
    nodes = [n for n, v in st.value.items() if v == key]
    return sum(readers.get(n, 0) for n in nodes) == len(nodes)


def _node_of(st: _FxState, key: int):
    for node, k in st.value.items():
        if k == key:
            return node
    return None


def _network_of(st: _FxState, out_key: int, input_shape: tuple, fuse_relu: bool, module) -> Network:
    """The layers the output depends on, named by kind and order, reading each other by name."""
    needed, todo = set(), [out_key]
    while todo:
        k = todo.pop()
        if isinstance(k, int) and k not in needed:
            needed.add(k)
            todo += st.layers[k][1]
    keys = sorted(needed)
    names: dict = {"input": "input"}
    counts: dict = {}
    for k in keys:
        prefix = st.layers[k][0].prefix
        counts[prefix] = counts.get(prefix, 0) + 1
        names[k] = prefix if prefix == "flatten" and counts[prefix] == 1 else f"{prefix}{counts[prefix]}"
    layers, shapes = [], {"input": input_shape}
    for k in keys:
        layer, inputs = st.layers[k]
        layer = layer.copy(name=names[k], inputs=tuple(names[i] for i in inputs))
        node = _node_of(st, k)
        shapes[layer.name] = layer.out_shape_many([shapes[n] for n in layer.inputs],
                                                  _node_where(node, module) if node is not None else layer.name)
        layers.append(layer)
    return Network(layers, input_shape, fuse_relu=fuse_relu)


# ---------------------------------------------------------------- sheetconv -> torch

def to_torch(net: Network, dtype=None):
    """The network as a flat ``nn.Sequential`` (eval mode) with the same weights.

    Modules are named after the layers (``conv1``, ``pool1``, ``fc1``; a fused ReLU is
    ``conv1_relu``), so ``to_torch(net).state_dict()`` has ``net.state_dict()``'s keys.
    ``dtype`` defaults to torch's default dtype (float32).
    """
    torch = require_torch()
    nn = torch.nn
    dtype = dtype or torch.get_default_dtype()

    if net.is_graph:
        return _graph_module(net, torch).to(dtype).eval()
    mods: OrderedDict = OrderedDict()
    for layer in net.layers:
        mods[layer.name] = layer.to_torch_module(torch)
        if layer.relu:
            relu_name = f"{layer.name}_relu"
            if relu_name in net.names:
                raise SheetconvError(f"{layer.name}: cannot name its ReLU module {relu_name!r}, a layer has that name")
            mods[relu_name] = nn.ReLU()
    return nn.Sequential(mods).to(dtype).eval()


def _graph_module(net: Network, torch):
    """A torch.fx.GraphModule whose modules carry the layer names and whose forward follows
    the network's graph: Add as '+', Concat as torch.cat(dim=1), a fused ReLU as ``<name>_relu``."""
    nn, fx = torch.nn, torch.fx
    root = nn.Module()
    graph = fx.Graph()
    env = {"input": graph.placeholder("x")}
    for layer in net.layers:
        args = [env[n] for n in layer.inputs]
        if isinstance(layer, Add):
            v = args[0]
            for a in args[1:]:
                v = graph.call_function(operator.add, (v, a))
        elif isinstance(layer, Concat):
            v = graph.call_function(torch.cat, (list(args),), {"dim": 1})
        else:
            root.add_module(layer.name, layer.to_torch_module(torch))
            v = graph.call_module(layer.name, (args[0],))
        if layer.relu:
            relu_name = f"{layer.name}_relu"
            if relu_name in net.names:
                raise SheetconvError(f"{layer.name}: cannot name its ReLU module {relu_name!r}, a layer has that name")
            root.add_module(relu_name, nn.ReLU())
            v = graph.call_module(relu_name, (v,))
        env[layer.name] = v
    graph.output(env[net.layers[-1].name])
    return fx.GraphModule(root, graph, class_name="SheetconvGraph")
