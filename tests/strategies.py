"""Random small networks for property tests (hypothesis), shared by the engine's test modules."""
import numpy as np
from hypothesis import strategies as st

import sheetconv as sc


def out_len(n, k, s, p, d=1, ceil=False):
    """PyTorch's output-size formula (pooling_output_shape), written out independently of sheetconv."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:         # the last window must start inside the input or left padding
        out -= 1
    return out


ACTIVATIONS = st.one_of(st.floats(-2, 2).map(sc.LeakyReLU), st.just(sc.Sigmoid()), st.just(sc.Tanh()),
                        st.just(sc.SiLU()), st.sampled_from(["none", "tanh"]).map(sc.GELU))


@st.composite
def networks(draw, max_size=10, max_ch=3, max_layers=4, max_conv_kernel=4, max_features=5):
    """Random chains: Conv2d (non-square kernels, stride 1-3, padding 0-2, dilation 1-2, with or
    without bias and fused ReLU, grouped by any common divisor of its channel counts), ReLU, MaxPool2d / AvgPool2d
    (count_include_pad both ways, floor or ceil mode),
    BatchNorm2d (random running statistics, affine or not), the element-wise activations
    (LeakyReLU with any slope in [-2, 2], Sigmoid, Tanh, SiLU, GELU exact and tanh), AdaptiveAvgPool2d /
    AdaptiveMaxPool2d (output sizes 1 to one more than the input's), and optionally Flatten
    with 0-2 Linear layers; seeded weights."""
    c, h, w = draw(st.integers(1, max_ch)), draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    shape = (c, h, w)
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(["conv", "conv", "relu", "maxpool", "avgpool", "bn", "adaptive", "act"]))
        if kind == "relu":
            layers.append(sc.ReLU())
            continue
        if kind == "act":
            layers.append(draw(ACTIVATIONS))
            continue
        if kind == "bn":
            layers.append(sc.BatchNorm2d(c, eps=draw(st.sampled_from([1e-5, 1e-3, 0.5])), affine=draw(st.booleans()),
                                         bias=draw(st.booleans()), relu=draw(st.booleans())))
            continue
        if kind == "adaptive":
            ho, wo = draw(st.integers(1, h + 1)), draw(st.integers(1, w + 1))
            pool = draw(st.sampled_from([sc.AdaptiveAvgPool2d, sc.AdaptiveMaxPool2d]))
            layers.append(pool((ho, wo)))
            h, w = ho, wo
            continue
        kmax = max_conv_kernel if kind == "conv" else 4
        k = (draw(st.integers(1, kmax)), draw(st.integers(1, kmax)))
        s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if kind == "conv":
            p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
            d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        else:                                   # PyTorch: pool padding at most half the kernel
            p, d = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2))), (1, 1)
        ceil = kind != "conv" and draw(st.booleans())
        ho, wo = out_len(h, k[0], s[0], p[0], d[0], ceil), out_len(w, k[1], s[1], p[1], d[1], ceil)
        if ho < 1 or wo < 1:
            continue
        if kind == "conv":
            co = draw(st.integers(1, max_ch))
            groups = draw(st.sampled_from([g for g in range(1, min(c, co) + 1) if c % g == 0 and co % g == 0]))
            layers.append(sc.Conv2d(c, co, k, stride=s, padding=p, dilation=d, bias=draw(st.booleans()),
                                    relu=draw(st.booleans()), groups=groups))
            c = co
        elif kind == "maxpool":
            layers.append(sc.MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil))
        else:
            layers.append(sc.AvgPool2d(k, stride=s, padding=p, count_include_pad=draw(st.booleans()), ceil_mode=ceil))
        h, w = ho, wo
    if draw(st.booleans()):
        layers.append(sc.Flatten())
        feats = c * h * w
        for _ in range(draw(st.integers(0, 2))):
            out = draw(st.integers(1, max_features))
            layers.append(sc.Linear(feats, out, bias=draw(st.booleans()), relu=draw(st.booleans())))
            if draw(st.booleans()):
                layers.append(draw(st.one_of(st.just(sc.ReLU()), ACTIVATIONS)))
            feats = out
    if not layers:
        layers.append(sc.ReLU())
    net = sc.Network(layers, input_shape=shape, fuse_relu=draw(st.booleans()))
    seed = draw(st.integers(0, 2 ** 16))
    net.init_weights(seed)
    rng = np.random.default_rng(seed)
    for layer in net.layers:                    # BatchNorm starts as the identity: give it real statistics
        if isinstance(layer, sc.BatchNorm2d):
            for key, value in layer.params().items():
                low = 0.05 if key == "running_var" else -2.0
                setattr(layer, key, rng.uniform(low, 2.0, value.shape))
    return net
