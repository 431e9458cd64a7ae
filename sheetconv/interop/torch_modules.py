"""PyTorch interop: ``from_torch``, ``to_torch`` and ``load_state_dict_file``.

``from_torch(module, input_shape)`` converts an ``nn.Sequential`` tree — nested
Sequentials, as fastai's ``conv()`` helper makes them — of Conv2d, ReLU, MaxPool2d,
AvgPool2d, Flatten and Linear, weights included, into a :class:`~sheetconv.Network`.
Dropout in eval mode and Identity are dropped (they compute nothing). With
``fold_batchnorm=True`` an eval-mode BatchNorm2d right after a Conv2d is folded into that
convolution's weights and bias (as ``torch.nn.utils.fusion.fuse_conv_bn_eval`` does).
Anything else — other BatchNorm, Dropout in training mode, a residual or custom block,
grouped or circular convolutions, ``ceil_mode`` — is refused with the module's type and
its path in the tree (``features.3``).

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
from ..nn.layers import AvgPool2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, ReLU
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


def _int_pair(value, what: str, where: str):
    if isinstance(value, str):
        raise SheetconvError(f"{where}: string {what} {value!r} is not supported; give it as numbers")
    return tuple(value) if isinstance(value, (tuple, list)) else value


def _convert_leaf(m, path: str) -> Layer | None:
    """One torch module -> one sheetconv layer, None for a no-op, or SheetconvError."""
    nn = require_torch().nn
    where = _where(path, m)
    t = type(m)
    if isinstance(m, nn.Conv2d) and t.forward is nn.Conv2d.forward:
        if m.groups != 1:
            raise SheetconvError(f"{where}: grouped convolution (groups={m.groups}) is not supported; groups must be 1")
        if m.padding_mode != "zeros":
            raise SheetconvError(f"{where}: padding_mode={m.padding_mode!r} is not supported; only 'zeros'")
        layer = Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), stride=tuple(m.stride),
                       padding=_int_pair(m.padding, "padding", where), dilation=tuple(m.dilation),
                       bias=m.bias is not None)
        layer.weight = _array(m.weight, where)
        if m.bias is not None:
            layer.bias = _array(m.bias, where)
        return layer
    if isinstance(m, nn.Linear) and t.forward is nn.Linear.forward:
        layer = Linear(m.in_features, m.out_features, bias=m.bias is not None)
        layer.weight = _array(m.weight, where)
        if m.bias is not None:
            layer.bias = _array(m.bias, where)
        return layer
    if t is nn.ReLU:
        return ReLU()
    if t is nn.MaxPool2d:
        if m.ceil_mode or m.return_indices:
            flag = "ceil_mode" if m.ceil_mode else "return_indices"
            raise SheetconvError(f"{where}: {flag}=True is not supported")
        if m.dilation not in (1, (1, 1), [1, 1]):
            raise SheetconvError(f"{where}: dilation={m.dilation} is not supported for pools; must be 1")
        return MaxPool2d(m.kernel_size, m.stride, m.padding)
    if t is nn.AvgPool2d:
        if m.ceil_mode:
            raise SheetconvError(f"{where}: ceil_mode=True is not supported")
        if m.divisor_override is not None:
            raise SheetconvError(f"{where}: divisor_override={m.divisor_override} is not supported")
        return AvgPool2d(m.kernel_size, m.stride, m.padding, count_include_pad=m.count_include_pad)
    if t is nn.Flatten or (t.__name__ == "Flatten" and t.__module__.startswith("fastai")):
        start, end = getattr(m, "start_dim", 1), getattr(m, "end_dim", -1)
        if (start, end) != (1, -1) or getattr(m, "full", False):
            raise SheetconvError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is supported, "
                                 f"got start_dim={start}, end_dim={end}")
        return Flatten()
    if t is nn.Identity:
        return None
    if t in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):
        if m.training:
            raise SheetconvError(f"{where}: dropout in training mode is random; call module.eval() first")
        return None
    hint = ""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        hint = ("; call from_torch(..., fold_batchnorm=True) to fold an eval-mode BatchNorm2d into the Conv2d "
                "right before it (as torch.nn.utils.fusion.fuse_conv_bn_eval does)")
    elif list(m.children()):
        hint = "; only nn.Sequential may contain other modules (no residual or custom blocks)"
    raise SheetconvError(f"{where}: module type {t.__name__} is not supported "
                         f"(supported: Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Linear, "
                         f"eval-mode Dropout){hint}")


def _fold_batchnorm(bn, path: str, out: list):
    """Fold an eval-mode BatchNorm2d into the Conv2d converted just before it (last in ``out``)."""
    torch = require_torch()
    nn = torch.nn
    where = _where(path, bn)
    if type(bn) is not nn.BatchNorm2d:
        raise SheetconvError(f"{where}: only BatchNorm2d right after a Conv2d can be folded")
    prev = out[-1] if out else None
    if prev is None or prev[2].kind != "conv":
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
    conv.weight, conv.bias = _array(weight, where), _array(bias, where)


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
        layer.name = _where(path, m)           # shape errors name "features.3 (Linear)"
        try:
            shape = layer.out_shape(shape)
        finally:
            layer.name = None
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

    def param(a):
        return nn.Parameter(torch.as_tensor(np.ascontiguousarray(a), dtype=dtype))

    mods: OrderedDict = OrderedDict()
    for layer in net.layers:
        kind = layer.kind
        if kind == "conv":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None)
        elif kind == "linear":
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif kind == "maxpool":
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif kind == "avgpool":
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding,
                             count_include_pad=layer.count_include_pad)
        elif kind == "flatten":
            m = nn.Flatten()
        elif kind == "relu":
            m = nn.ReLU()
        else:
            raise SheetconvError(f"{layer.name}: no torch module for layer kind {kind!r}")
        if kind in ("conv", "linear"):
            m.weight = param(layer.weight)
            if layer.bias is not None:
                m.bias = param(layer.bias)
        mods[layer.name] = m
        if layer.relu and kind != "relu":
            relu_name = f"{layer.name}_relu"
            if relu_name in net.names:
                raise SheetconvError(f"{layer.name}: cannot name its ReLU module {relu_name!r}, a layer has that name")
            mods[relu_name] = nn.ReLU()
    return nn.Sequential(mods).to(dtype).eval()
