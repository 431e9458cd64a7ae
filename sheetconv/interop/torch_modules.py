"""PyTorch interop: ``from_torch``, ``to_torch`` and ``load_state_dict_file``.

``from_torch(module, input_shape)`` converts an ``nn.Sequential`` tree — nested
Sequentials, as fastai's ``conv()`` helper makes them — of the registered layer kinds
(Conv2d, BatchNorm2d, ReLU, the pools, Flatten, Linear, ...: ``torch_kinds()``), weights
and running statistics included, into a :class:`~sheetconv.Network`. Dropout in eval
mode and Identity are dropped (they compute nothing). An eval-mode BatchNorm2d becomes
its own layer of visible cells; with ``fold_batchnorm=True`` one right after a Conv2d is
folded into that convolution's weights and bias instead (as
``torch.nn.utils.fusion.fuse_conv_bn_eval`` does). Anything else — a BatchNorm in training
mode, other BatchNorms, Dropout in training mode, a residual or custom block, circular
convolutions, ``ceil_mode`` — is refused with the module's type and its path in the tree
(``features.3``).

``to_torch(net)`` goes back: a flat ``nn.Sequential`` whose modules carry the network's
layer names, so its ``state_dict()`` keys are ``net.state_dict()``'s ('conv1.weight', ...);
a fused ReLU becomes its own module ``conv1_relu``.

``load_state_dict_file(path, net)`` reads a file written by ``torch.save(model.state_dict())``
with ``torch.load(weights_only=True)`` — it never unpickles arbitrary objects — and maps
its tensors onto the network's parameters in order, checking every shape.

torch is imported only when one of these functions is called.
"""
from __future__ import annotations

import numbers
from collections import OrderedDict

import numpy as np

from ..errors import SheetconvError
from ..nn.layers import KINDS, Layer
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
    items: list = []
    _walk(module, "", items, bool(fold_batchnorm))
    if not items:
        raise SheetconvError(f"{type(module).__name__} contains no layer that computes anything")
    # Infer shapes module by module so that an error names the module's path, not a layer name.
    for path, m, layer in items:
        shape = layer.out_shape(shape, _where(path, m))       # shape errors name "features.3 (Linear)"
    return Network([layer for _, _, layer in items], tuple(input_shape), fuse_relu=fuse_relu)


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

    mods: OrderedDict = OrderedDict()
    for layer in net.layers:
        mods[layer.name] = layer.to_torch_module(torch)
        if layer.relu:
            relu_name = f"{layer.name}_relu"
            if relu_name in net.names:
                raise SheetconvError(f"{layer.name}: cannot name its ReLU module {relu_name!r}, a layer has that name")
            mods[relu_name] = nn.ReLU()
    return nn.Sequential(mods).to(dtype).eval()
