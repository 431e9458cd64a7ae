"""Ready-made networks: fastai's conv-example spreadsheet, its course sheet, and fastbook's simple_cnn.

Every preset's weights come from PyTorch's default initialisation seeded with ``seed``
(``Network.init_weights``); the edge detectors of the first layers are set by hand.
"""
from __future__ import annotations

import numpy as np

from ..errors import SheetconvError
from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
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


PRESETS = {"conv-example": conv_example, "simple-cnn": simple_cnn, "conv-course": conv_course}


def preset(name: str, seed: int = 0) -> Network:
    """A preset network with reproducible weights from ``seed`` (PyTorch's default initialisation,
    drawn layer by layer; see Network). ``preset(name, seed=7)`` gives other weights."""
    try:
        return PRESETS[name](seed)
    except KeyError:
        raise SheetconvError(f"unknown preset {name!r} (expected one of {', '.join(PRESETS)})") from None
