"""Bad input gets one SheetconvError line naming the layer and the sizes, never a NumPy traceback."""
import numpy as np
import pytest

import sheetconv as sc


def raises(fn, *patterns):
    """Run ``fn``; it must raise SheetconvError with a one-line message matching every pattern."""
    with pytest.raises(sc.SheetconvError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for p in patterns:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


@pytest.fixture
def net():
    return sc.preset("conv-example")


# ---------------------------------------------------------------- inputs

def test_wrong_input_shape(net):
    raises(lambda: net.forward(np.zeros((1, 27, 28))), "input", "(1, 28, 28)", "(1, 27, 28)")
    raises(lambda: net.forward(np.zeros((2, 1, 28, 29))), "input", "(2, 1, 28, 29)")
    raises(lambda: net.forward(np.zeros(28)), "input", "(1, 28, 28)")
    raises(lambda: net.forward(np.zeros((1, 1, 1, 28, 28))), "input")
    raises(lambda: net.forward(np.zeros((0, 1, 28, 28))), "input", "empty", "(0, 1, 28, 28)")


def test_wrong_channel_count(net):
    raises(lambda: net.forward(np.zeros((3, 28, 28))), "input", "(1, 28, 28)", "(3, 28, 28)")
    raises(lambda: net.activations(np.zeros((5, 3, 28, 28))), "(5, 3, 28, 28)")


def test_layers_that_do_not_fit_together():
    raises(lambda: sc.Network([sc.Conv2d(1, 4, 3), sc.Conv2d(2, 4, 3)], input_shape=(1, 10, 10)),
           "conv2", "expects 2 input channels, got 4", "(4, 8, 8)")
    raises(lambda: sc.Network([sc.Conv2d(3, 4, 3)], input_shape=(1, 10, 10)), "conv1", "3 input channels, got 1")
    raises(lambda: sc.Network([sc.Conv2d(1, 4, 3), sc.Linear(10, 2)], input_shape=(1, 10, 10)),
           "fc1", "Flatten", "(4, 8, 8)")
    raises(lambda: sc.Network([sc.Flatten(), sc.Linear(10, 2)], input_shape=(1, 10, 10)), "fc1", "10", "100")
    raises(lambda: sc.Network([sc.Flatten(), sc.Conv2d(1, 1, 1)], input_shape=(1, 4, 4)), "conv1", "(16,)")


def test_nan_and_inf_in_inputs(net):
    for bad in (np.nan, np.inf, -np.inf):
        x = sc.digit(0).copy()
        x[0, 3, 4] = bad
        raises(lambda x=x: net.forward(x), "input", "NaN or Inf")


def test_nan_and_inf_in_weights(net):
    net["conv2"].weight[1, 0, 2, 2] = np.nan
    raises(lambda: net.forward(sc.digit(0)), "conv2.weight", "NaN or Inf")
    net = sc.preset("conv-example")
    raises(lambda: setattr(net["conv1"], "bias", np.array([0.0, np.inf])), "conv1.bias", "NaN or Inf")
    state = sc.preset("simple-cnn").state_dict()
    state["conv3.weight"] = np.full_like(state["conv3.weight"], -np.inf)
    raises(lambda: sc.preset("simple-cnn").load_state_dict(state), "conv3.weight", "NaN or Inf")


def test_finite_values_whose_sum_overflows_are_not_refused_and_one_inf_among_them_is():
    net = sc.preset("conv-example")
    big = np.full(net["conv2"].weight.shape, 1e308)          # finite; their sum is inf
    net["conv2"].weight = big
    x = np.full((1, 1, 28, 28), 3e38, np.float32)            # finite; a float32 sum is inf
    with np.errstate(over="ignore", invalid="ignore"):
        net.forward(x, np.float32)
        for bad, where in ((np.inf, "weight"), (-np.inf, "weight"), (np.nan, "weight"), (np.inf, "input"),
                           (np.nan, "input")):
            w, xx = big.copy(), x.copy()
            (w if where == "weight" else xx).flat[7] = bad
            net["conv2"].weight[...] = w                     # in place: assignment's own check is bypassed
            raises(lambda xx=xx: net.forward(xx, np.float32), "conv2.weight" if where == "weight" else "input",
                   "NaN or Inf")


def test_non_numeric_inputs(net):
    raises(lambda: net.forward([[1, 2], [3]]), "input")
    raises(lambda: net.forward(np.zeros((1, 28, 28), complex)), "input", "complex")
    raises(lambda: net.forward(np.full((1, 28, 28), "a")), "input")
    raises(lambda: net.forward(sc.digit(0), dtype=np.float16), "float32 or float64", "float16")


def test_uint8_pixels_are_refused_not_taken_as_0_to_255(net, tmp_path):
    """The command line scales uint8 pixels by 1/255; the API refuses them rather than compute on 0-255."""
    pixels = (sc.digit(0) * 255).round().astype(np.uint8)
    raises(lambda: net.forward(pixels), "input", "uint8", "/ 255")
    raises(lambda: sc.write_workbook(net, pixels, tmp_path / "u8.xlsx"), "uint8")
    assert not (tmp_path / "u8.xlsx").exists()
    np.testing.assert_allclose(net.forward(pixels / 255), net.forward(sc.digit(0)), atol=1e-12)
    assert net.forward(pixels.astype(np.int64)).shape == net.forward(sc.digit(0)).shape   # other integers: as given


# ---------------------------------------------------------------- hyperparameters

def test_kernel_larger_than_padded_input():
    raises(lambda: sc.Network([sc.Conv2d(1, 1, 5)], input_shape=(1, 3, 8)), "conv1", "kernel 5", "3+2*0=3", "H")
    raises(lambda: sc.Network([sc.Conv2d(1, 1, 3, dilation=3)], input_shape=(1, 8, 6)),
           "conv1", "dilated extent 7", "6+2*0=6", "W")
    raises(lambda: sc.Network([sc.Conv2d(1, 1, 3), sc.MaxPool2d(4)], input_shape=(1, 5, 5)), "pool1", "kernel 4", "3")


@pytest.mark.parametrize("make, what", [
    (lambda: sc.Conv2d(1, 1, 3, stride=0), "stride"),
    (lambda: sc.Conv2d(1, 1, 3, stride=(1, -2)), "stride"),
    (lambda: sc.Conv2d(1, 1, 0), "kernel_size"),
    (lambda: sc.Conv2d(1, 1, (3, -1)), "kernel_size"),
    (lambda: sc.Conv2d(1, 1, 3, padding=-1), "padding"),
    (lambda: sc.Conv2d(1, 1, 3, dilation=0), "dilation"),
    (lambda: sc.Conv2d(0, 1, 3), "in_channels"),
    (lambda: sc.Conv2d(1, -4, 3), "out_channels"),
    (lambda: sc.Conv2d(1, 1, 2.5), "kernel_size"),
    (lambda: sc.Conv2d(1, 1, (1, 2, 3)), "kernel_size"),
    (lambda: sc.MaxPool2d(0), "kernel_size"),
    (lambda: sc.MaxPool2d(2, stride=0), "stride"),
    (lambda: sc.AvgPool2d(3, padding=2), "padding"),
    (lambda: sc.Linear(0, 3), "in_features"),
    (lambda: sc.Linear(3, -1), "out_features"),
])
def test_bad_hyperparameters(make, what):
    raises(make, what)


def test_bad_network_definitions():
    raises(lambda: sc.Network([sc.Conv2d(1, 1, 3), "relu"], input_shape=(1, 5, 5)), "layer 1", "str")
    raises(lambda: sc.Network([sc.Conv2d(1, 1, 3)], input_shape=(1, 0, 5)), "input_shape", "(1, 0, 5)")
    raises(lambda: sc.Network([sc.Conv2d(1, 1, 3)], input_shape=(5, 5)), "input_shape")
    a, b = sc.Conv2d(1, 1, 1), sc.Conv2d(1, 1, 1)
    a.name = b.name = "same"
    raises(lambda: sc.Network([a, b], input_shape=(1, 3, 3)), "unique")
    raises(lambda: sc.Layer.from_config({"type": "Conv3d"}), "Conv3d", "Conv2d")
    raises(lambda: sc.Network.from_spec({"layers": []}), "input_shape")
    raises(lambda: sc.preset("resnet"), "resnet", "conv-example")


def test_bad_weights():
    net = sc.preset("simple-cnn")
    state = net.state_dict()
    state["conv1.weight"] = np.zeros((4, 1, 5, 5))
    raises(lambda: net.load_state_dict(state), "conv1.weight", "(4, 1, 3, 3)", "(4, 1, 5, 5)")
    raises(lambda: net.load_state_dict({"conv1.weight": np.zeros((4, 1, 3, 3))}), "missing", "conv2.weight")
    raises(lambda: net.load_state_dict({**net.state_dict(), "fc9.bias": np.zeros(2)}), "unexpected", "fc9.bias")


# ---------------------------------------------------------------- cells

def test_cell_outside_its_layer(net):
    raises(lambda: net.precedents(("conv1", 0, 14, 0)), "conv1", "(2, 14, 14)")
    raises(lambda: net.precedents(("conv2", 2, 0, 0)), "conv2", "(2, 7, 7)")
    raises(lambda: net.dependents(("input", 0, -1, 3)), "input", "(1, 28, 28)")
    raises(lambda: net.check_cell(("conv2", 0, 7, 7)), "conv2", "(2, 7, 7)")
    raises(lambda: net.dependents(("conv1.weight", 0, 0, 3, 0)), "conv1.weight", "(2, 1, 3, 3)")
    raises(lambda: net.dependents(("conv1.bias", 5)), "conv1.bias", "(2,)")


def test_unknown_layer_or_parameter(net):
    raises(lambda: net.precedents(("conv9", 0, 0, 0)), "conv9", "conv1", "conv2")
    raises(lambda: net["fc1"], "fc1", "conv1")
    raises(lambda: net.receptive_field("pool1"), "pool1")
    raises(lambda: net.dependents(("conv1.gamma", 0)), "gamma", "weight", "bias")
    raises(lambda: net.dependents(("conv7.weight", 0, 0, 0, 0)), "conv7")
    raises(lambda: net.precedents("conv1"), "(layer, channel, row, col)")
    raises(lambda: net.precedents(("conv1", 0, 0)), "(layer, channel, row, col)")
