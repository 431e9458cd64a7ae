"""Layer kinds, one module each; defining a kind's class registers it in ``KINDS``.

A new kind is one new module here (subclass :class:`Layer`, see base.py for the rules it
defines) plus its import below, and tests.
"""
from ..window import AdaptiveWindow, Window
from .adaptiveavgpool2d import AdaptiveAvgPool2d
from .adaptivemaxpool2d import AdaptiveMaxPool2d
from .add import Add
from .avgpool2d import AvgPool2d
from .base import KINDS, MAX_PARAMS, Layer, Terms, layer_from_config
from .batchnorm2d import BatchNorm2d
from .concat import Concat
from .conv2d import Conv2d
from .flatten import Flatten
from .gelu import GELU
from .leakyrelu import LeakyReLU
from .linear import Linear
from .maxpool2d import MaxPool2d
from .relu import ReLU
from .sigmoid import Sigmoid
from .silu import SiLU
from .tanh import Tanh

__all__ = ["Window", "AdaptiveWindow", "Layer", "Terms", "KINDS", "MAX_PARAMS", "layer_from_config",
           "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Linear",
           "BatchNorm2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
           "LeakyReLU", "Sigmoid", "Tanh", "SiLU", "GELU", "Add", "Concat"]
