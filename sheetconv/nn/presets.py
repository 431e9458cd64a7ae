"""Ready-made networks: fastai's conv-example spreadsheet and fastbook's simple_cnn."""
from __future__ import annotations

import numpy as np

from ..errors import SheetconvError
from .layers import Conv2d, Flatten, ReLU
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


PRESETS = {"conv-example": conv_example, "simple-cnn": simple_cnn}


def preset(name: str, seed: int = 0) -> Network:
    """A preset network with reproducible weights from ``seed`` (PyTorch's default initialisation,
    drawn layer by layer; see Network). ``preset(name, seed=7)`` gives other weights."""
    try:
        return PRESETS[name](seed)
    except KeyError:
        raise SheetconvError(f"unknown preset {name!r} (expected one of {', '.join(PRESETS)})") from None
