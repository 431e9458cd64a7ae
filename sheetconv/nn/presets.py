"""Ready-made networks: fastai's conv-example spreadsheet, its course sheet, fastbook's simple_cnn,
its BatchNorm version (simple-cnn-bn) and a small ResNet in the book's style (resnet-mini).

Every preset's weights come from PyTorch's default initialisation seeded with ``seed``
(``Network.init_weights``); the edge detectors of the first layers are set by hand.
"""
from __future__ import annotations

import numpy as np

from ..errors import SheetconvError
from .inputs import digit
from .layers import AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from .network import Network

__all__ = ["preset", "PRESETS", "TOP_EDGE", "LEFT_EDGE"]

# fastbook chapter 13's edge detectors.
TOP_EDGE = np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], dtype=np.float64)
LEFT_EDGE = np.array([[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]], dtype=np.float64)


def conv_example(seed: int = 0) -> Network:
    """28x28 digit -> conv1 (2 filters: top edge, left edge; stride 2, ReLU) -> conv2 (2 filters, seeded)."""
    net = Network([
        Conv2d(1, 2, 3, stride=2, padding=1), ReLU(),
        Conv2d(2, 2, 3, stride=2, padding=1), ReLU(),
    ], input_shape=(1, 28, 28), seed=seed)
    net["conv1"].weight = np.stack([TOP_EDGE, LEFT_EDGE])[:, None]
    net["conv1"].bias = np.zeros(2)
    return net


def simple_cnn(seed: int = 0) -> Network:
    """fastbook's simple_cnn: four stride-2 conv+ReLU layers, conv(32, 2) with no activation, Flatten."""
    def conv(ni, nf, act=True):
        return [Conv2d(ni, nf, 3, stride=2, padding=1)] + ([ReLU()] if act else [])
    return Network(conv(1, 4) + conv(4, 8) + conv(8, 16) + conv(16, 32) + conv(32, 2, act=False) + [Flatten()],
                   input_shape=(1, 28, 28), seed=seed)


def conv_course(seed: int = 0) -> Network:
    """fastai's course sheet: 28x28 digit -> conv1 (3x3, stride 1, no padding: a horizontal- and a
    vertical-edge filter, ReLU) 2x26x26 -> conv2 (3x3 over both channels, 2 filters, seeded, ReLU)
    2x24x24 -> 2x2 max pool 2x12x12 -> dense: Flatten and Linear(288, 10), one output per digit.

    The course sheet's dense layer has one output; here it has ten so that the sheet ends in
    a softmax and a predicted digit. With seeded (untrained) weights the prediction is
    arbitrary: load trained weights with ``--state-dict`` for a meaningful one.
    """
    net = Network([
        Conv2d(1, 2, 3), ReLU(),
        Conv2d(2, 2, 3), ReLU(),
        MaxPool2d(2),
        Flatten(), Linear(2 * 12 * 12, 10),
    ], input_shape=(1, 28, 28))
    net.init_weights(seed)
    net["conv1"].weight = np.stack([TOP_EDGE, LEFT_EDGE])[:, None]
    net["conv1"].bias = np.zeros(2)
    return net


def _named(layer, name: str, inputs=None):
    """``layer`` with a name (and the layers it reads), for a graph's references."""
    layer.name, layer.inputs = name, None if inputs is None else tuple(inputs)
    return layer


def calibrate_batchnorm(net: Network, images: np.ndarray) -> Network:
    """Set every BatchNorm2d's running mean and variance to its input's per-channel statistics
    over ``images`` (N, C, H, W), layer by layer, as training would leave them roughly."""
    for layer in net.layers:
        if isinstance(layer, BatchNorm2d):
            x = net.activations(images)[layer.inputs[0]]
            layer.running_mean = x.mean(axis=(0, 2, 3))
            layer.running_var = x.var(axis=(0, 2, 3))
    return net


def _digits() -> np.ndarray:
    return np.stack([digit(i) for i in range(10)])


def simple_cnn_bn(seed: int = 0) -> Network:
    """fastbook's simple_cnn with BatchNorm2d after every conv but the last: four stride-2
    conv + BatchNorm + ReLU blocks, conv(32, 2), Flatten. The BatchNorms' running statistics
    are those of the bundled digits."""
    def conv(ni, nf, act=True):
        return [Conv2d(ni, nf, 3, stride=2, padding=1)] + ([BatchNorm2d(nf), ReLU()] if act else [])
    net = Network(conv(1, 4) + conv(4, 8) + conv(8, 16) + conv(16, 32) + conv(32, 2, act=False) + [Flatten()],
                  input_shape=(1, 28, 28), seed=seed)
    return calibrate_batchnorm(net, _digits())


def _res_block(name: str, src: str, ni: int, nf: int, stride: int) -> list:
    """fastbook's ResBlock: relu(convs(x) + idconv(pool(x))), convs = conv-BN-ReLU, conv-BN
    (the ReLUs fused: 'res1_bn1 (ReLU)', 'res1 (ReLU)');
    on the shortcut a 2x2 average pool in ceil mode (fastbook's AvgPool2d(2, ceil_mode=True):
    an odd grid halves like the strided conv) when the stride is 2 and a 1x1 conv + BN when
    the channels change (else nothing)."""
    layers = [_named(Conv2d(ni, nf, 3, stride=stride, padding=1, bias=False), f"{name}_conv1", [src]),
              _named(BatchNorm2d(nf), f"{name}_bn1"), ReLU(),
              _named(Conv2d(nf, nf, 3, padding=1, bias=False), f"{name}_conv2"),
              _named(BatchNorm2d(nf), f"{name}_bn2")]
    short = src
    if stride != 1:
        layers.append(_named(AvgPool2d(2, ceil_mode=True), f"{name}_pool", [short]))
        short = f"{name}_pool"
    if ni != nf:
        layers += [_named(Conv2d(ni, nf, 1, bias=False), f"{name}_idconv", [short]),
                   _named(BatchNorm2d(nf), f"{name}_idbn")]
        short = f"{name}_idbn"
    return layers + [_named(Add(relu=True), name, [f"{name}_bn2", short])]


def resnet_mini(seed: int = 0) -> Network:
    """A small ResNet in fastbook's style for 28x28 digits: a stem (3x3 conv 1->8, BatchNorm,
    ReLU), three residual stages (8 -> 8 at 28x28; 8 -> 16 and 16 -> 32, each halving the
    grid with a stride-2 conv and an average pool + 1x1 conv on the shortcut), global
    average pool, Flatten, Linear to 10. The BatchNorms' running statistics are those of
    the bundled digits."""
    layers = [_named(Conv2d(1, 8, 3, padding=1, bias=False), "stem"), _named(BatchNorm2d(8, relu=True), "stem_bn")]
    layers += _res_block("res1", "stem_bn", 8, 8, 1)
    layers += _res_block("res2", "res1", 8, 16, 2)
    layers += _res_block("res3", "res2", 16, 32, 2)
    layers += [_named(AdaptiveAvgPool2d(1), "pool", ["res3"]), Flatten(), _named(Linear(32, 10), "fc")]
    net = Network(layers, input_shape=(1, 28, 28), seed=seed)
    return calibrate_batchnorm(net, _digits())


PRESETS = {"conv-example": conv_example, "simple-cnn": simple_cnn, "conv-course": conv_course,
           "simple-cnn-bn": simple_cnn_bn, "resnet-mini": resnet_mini}


def preset(name: str, seed: int = 0) -> Network:
    """A preset network with reproducible weights from ``seed`` (PyTorch's default initialisation,
    drawn layer by layer; see Network). ``preset(name, seed=7)`` gives other weights."""
    try:
        return PRESETS[name](seed)
    except KeyError:
        raise SheetconvError(f"unknown preset {name!r} (expected one of {', '.join(PRESETS)})") from None
