"""fastbook chapter 13's CNN, written in PyTorch exactly as the book does."""
from torch import nn


def conv(ni, nf, ks=3, act=True):
    """The book's helper, verbatim: a stride-2 convolution, then a ReLU unless act=False."""
    layers = [nn.Conv2d(ni, nf, stride=2, kernel_size=ks, padding=ks // 2)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn():
    return nn.Sequential(conv(1, 4), conv(4, 8), conv(8, 16), conv(16, 32), conv(32, 2, act=False), nn.Flatten())
