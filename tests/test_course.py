"""The conv-course preset (fastai's course sheet) against a network written directly in PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from sheetconv import digit, preset
from sheetconv.nn.presets import LEFT_EDGE, TOP_EDGE

torch = pytest.importorskip("torch")
nn = torch.nn


def course_in_torch():
    """The course sheet's network as a PyTorch user would write it."""
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(288, 10)).double()


def test_shapes_28_26_24_12_dense():
    net = preset("conv-course")
    shapes = [net.shapes[n] for n in net.names]
    assert shapes == [(1, 28, 28), (2, 26, 26), (2, 24, 24), (2, 12, 12), (288,), (10,)]
    kinds = [net[n].kind for n in net.names[1:]]
    assert kinds == ["conv", "conv", "maxpool", "flatten", "linear"]
    for name in ("conv1", "conv2"):
        assert net[name].stride == (1, 1) and net[name].padding == (0, 0) and net[name].relu


def test_first_layer_is_a_horizontal_and_a_vertical_edge_detector():
    w = preset("conv-course")["conv1"].weight
    np.testing.assert_array_equal(w[0, 0], TOP_EDGE)
    np.testing.assert_array_equal(w[1, 0], LEFT_EDGE)
    assert (TOP_EDGE[0] == -1).all() and (TOP_EDGE[2] == 1).all()          # rows: a horizontal edge
    assert (LEFT_EDGE[:, 0] == -1).all() and (LEFT_EDGE[:, 1] == 1).all()  # columns: a vertical edge


@pytest.mark.parametrize("seed, sample", [(0, 0), (3, 7)])
def test_every_layer_equals_torch(seed, sample):
    net = preset("conv-course", seed=seed)
    model = course_in_torch()
    state = dict(zip(model.state_dict(), (torch.from_numpy(v) for v in net.state_dict().values())))
    model.load_state_dict(state)
    x = digit(sample)
    acts = net.activations(x, np.float64)
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))[None]
    torch_layers = {"conv1": 1, "conv2": 3, "pool1": 4, "flatten": 5, "fc1": 6}     # after which module
    outs, h = {}, t
    for i, m in enumerate(model):
        h = m(h)
        outs[i] = h[0].detach().numpy()
    for name, i in torch_layers.items():
        np.testing.assert_allclose(acts[name], outs[i], rtol=0, atol=1e-12, err_msg=name)
    assert np.abs(acts["fc1"]).max() > 0                                     # not an all-zero network
