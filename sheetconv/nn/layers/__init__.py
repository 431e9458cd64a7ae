"""Layer kinds, one module each; defining a kind's class registers it in ``KINDS``.

A new kind is one new module here (subclass :class:`Layer`, see base.py for the rules it
defines) plus its import below, and tests.
"""
from ..window import Window
from .base import KINDS, MAX_PARAMS, Layer, Terms, layer_from_config
from .conv2d import Conv2d
from .relu import ReLU
from .maxpool2d import MaxPool2d
from .avgpool2d import AvgPool2d
from .flatten import Flatten
from .linear import Linear
from .add import Add
from .concat import Concat

__all__ = ["Window", "Layer", "Terms", "KINDS", "MAX_PARAMS", "layer_from_config",
           "Conv2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Linear", "Add", "Concat"]
