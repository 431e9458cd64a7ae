"""Architecture spec files (JSON and TOML): the built network and the one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sheetconv as sc
from sheetconv.nn.specfile import load_spec

SIMPLE_CNN_TOML = """
input_shape = [1, 28, 28]
seed = 0
""" + "".join(f"""
[[layers]]
type = "Conv2d"
out_channels = {nf}
kernel_size = 3
stride = 2
padding = 1
""" + ('\n[[layers]]\ntype = "ReLU"\n' if act else "") for nf, act in [(4, 1), (8, 1), (16, 1), (32, 1), (2, 0)]) + """
[[layers]]
type = "Flatten"
"""


def test_toml_simple_cnn_equals_preset(tmp_path):
    path = tmp_path / "simple.toml"
    path.write_text(SIMPLE_CNN_TOML)
    net = load_spec(path)
    ref = sc.preset("simple-cnn", seed=0)
    assert net.spec() == ref.spec()
    x = sc.digit(1)
    np.testing.assert_array_equal(net.forward(x), ref.forward(x))      # same seeded weights, same arithmetic


def test_json_spec_and_network_spec_roundtrip(tmp_path):
    net = sc.Network([sc.Conv2d(3, 4, (3, 5), padding=(1, 2), dilation=1), sc.ReLU(), sc.AvgPool2d(2, padding=1,
                      count_include_pad=False), sc.Flatten(), sc.Linear(4 * 9 * 9, 5, bias=False)], (3, 16, 16))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(net.spec()))
    assert load_spec(path).spec() == net.spec()
    (tmp_path / "noext").write_text(json.dumps(net.spec()))               # content sniffed
    assert load_spec(tmp_path / "noext").spec() == net.spec()


def test_ceil_mode_pools_in_a_toml_spec(tmp_path):
    path = tmp_path / "ceil.toml"
    path.write_text('input_shape = [1, 7, 7]\n[[layers]]\ntype = "MaxPool2d"\nkernel_size = 2\nceil_mode = true\n'
                    '[[layers]]\ntype = "AvgPool2d"\nkernel_size = 3\nstride = 2\npadding = 1\nceil_mode = true\n')
    net = load_spec(path)
    assert [l.ceil_mode for l in net.layers] == [True, True]
    assert net.shapes[net.layers[0].name] == (1, 4, 4) and net.shapes[net.layers[1].name] == (1, 3, 3)
    assert [l["ceil_mode"] for l in net.spec()["layers"]] == [True, True]
    assert "ceil_mode" not in sc.MaxPool2d(2).config()                      # floor mode, the default, unsaid
    path.write_text('input_shape = [1, 7, 7]\n[[layers]]\ntype = "MaxPool2d"\nkernel_size = 2\nceil_mode = 1\n')
    with pytest.raises(sc.SheetconvError, match="ceil_mode must be true or false"):
        load_spec(path)


def test_inferred_inputs_and_names(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('input_shape = [2, 8, 8]\nfuse_relu = false\n[[layers]]\ntype = "Conv2d"\nname = "edges"\n'
                    'out_channels = 3\nkernel_size = [3, 1]\n[[layers]]\ntype = "ReLU"\n[[layers]]\ntype = "Flatten"\n'
                    '[[layers]]\ntype = "Linear"\nout_features = 2\n')
    net = load_spec(path)
    assert net.names == ["input", "edges", "relu1", "flatten", "fc1"]
    assert net["edges"].in_channels == 2 and net["fc1"].in_features == 3 * 6 * 8


@pytest.mark.parametrize("text, words", [
    ('input_shape = [1, 28]\nlayers = []', "input_shape must be [C, H, W]"),
    ('input_shape = [1, 28, 28]\nlayers = []', "'layers' must be a non-empty list"),
    ('input_shape = [1, 28, 28]\nextra = 1\n[[layers]]\ntype = "ReLU"', "unknown top-level key 'extra'"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv3d"', "layer 1: unknown type 'Conv3d' (expected one of"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "conv2d"', "layer 1: unknown type 'conv2d' (did you mean 'Conv2d'?"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "relu "', "layer 1: unknown type 'relu ' (did you mean 'ReLU'?)"),
    ('input_shape = [1, 28, 28]\n[[layers]]\nkind = "Conv2d"', "layer 1: no 'type' key (every layer names its type: one of"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = 2', "layer 1: type must be the name of a layer type such as 'Conv2d', got 2"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 2\nkernal_size = 3',
     "layer 1 (Conv2d): unknown key 'kernal_size'"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 2', "layer 1 (Conv2d): missing key 'kernel_size'"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 2\nkernel_size = [3, 3, 3]',
     "kernel_size must be an int or an [h, w] pair"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 2\nkernel_size = 3\nstride = 0',
     "layer 1 (Conv2d): stride must be >= 1"),
    ('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 2\nkernel_size = 3\nbias = 1',
     "bias must be true or false"),
    ('input_shape = [1, 4, 4]\n[[layers]]\ntype = "Conv2d"\nout_channels = 2\nkernel_size = 9',
     "layer 1 (Conv2d): kernel 9"),
    ('input_shape = [1, 4, 4]\n[[layers]]\ntype = "Linear"\nout_features = 2', "layer 1 (Linear): needs a flat input"),
    ('input_shape = [1, 28, 28', "invalid TOML"),
])
def test_one_line_errors(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(sc.SheetconvError) as e:
        load_spec(path)
    assert words in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith(str(path))


def test_a_spec_of_another_format_is_named_as_such(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("input_shape: [1, 28, 28]\n")
    with pytest.raises(sc.SheetconvError, match=r"spec.yaml: expected a .toml or .json spec; read as TOML it is invalid"):
        load_spec(path)


def test_unreadable_files(tmp_path):
    (tmp_path / "bad.json").write_text('{"input_shape": [1, 2, 3],')
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    for path, words in [(tmp_path / "bad.json", "invalid JSON at line 1"), (tmp_path / "bin.toml", "not UTF-8"),
                        (tmp_path / "missing.toml", "no such spec file"), (tmp_path, "is a directory")]:
        with pytest.raises(sc.SheetconvError, match=words):
            load_spec(path)


# ---------------------------------------------------------------- a workbook's own spec (Network.from_spec)

def _spec():
    return sc.preset("simple-cnn").spec()


def _damaged(edit):
    spec = json.loads(json.dumps(_spec()))
    edit(spec)
    return spec


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.update(layers="conv"), "'layers' must be a non-empty list"),
    (lambda s: s["layers"].__setitem__(0, 7), "layer 1: expected a table"),
    (lambda s: s["layers"][1].update(kernel_size="3"), "layer 2 (Conv2d): kernel_size must be an int"),
    (lambda s: s["layers"][1].update(kernel_size={"h": 3}), "layer 2 (Conv2d): kernel_size"),
    (lambda s: s["layers"][0].update(in_channels=None), "layer 1 (Conv2d): in_channels must be an int"),
    (lambda s: s["layers"][0].update(colour=1), "layer 1 (Conv2d): unknown key 'colour'"),
    (lambda s: s["layers"][0].pop("out_channels"), "layer 1 (Conv2d): missing key 'out_channels'"),
    (lambda s: s["layers"][0].update(type=["Conv2d"]), "layer 1: type must be the name of a layer type"),
    (lambda s: s["layers"][0].update(name=5), "layer 1 (Conv2d): name must be"),
    (lambda s: s["layers"][1].update(name=s["layers"][0]["name"]), "layer names must be unique"),
    (lambda s: s["layers"][0].update(out_channels=10**6, in_channels=10**6), "past 50,000,000, the most"),
    (lambda s: [s["layers"][0].update(out_channels=2000)] + [s["layers"][i].update(in_channels=2000, out_channels=2000)
                                                             for i in (1, 2)],
     "layer 3 (Conv2d): 36,002,000 parameters take the network past 50,000,000"),
    (lambda s: s.update(input_shape=[1, 10**5, 10**5]), "more than 50,000,000 cells"),
    (lambda s: s.update(input_shape="28x28"), "input_shape must be [C, H, W]"),
    (lambda s: s.update(extra={}), "unknown top-level key 'extra'"),
])
def test_network_from_damaged_spec_is_one_line_error(edit, words):
    with pytest.raises(sc.SheetconvError) as e:
        sc.Network.from_spec(_damaged(edit))
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(sc.SheetconvError):
        sc.Network.from_spec([_spec()])


def test_network_from_spec_keeps_any_layer_name_and_no_fusion():
    net = sc.Network([sc.Conv2d(1, 2, 3), sc.ReLU(), sc.Flatten()], (1, 5, 5), fuse_relu=False)
    net["conv1"].name = "first conv"
    net = sc.Network(net.layers, (1, 5, 5), fuse_relu=False)
    again = sc.Network.from_spec(net.spec())
    assert again.names == ["input", "first conv", "relu1", "flatten"] and again.spec() == net.spec()


@pytest.mark.parametrize("cfg, words", [
    ({"type": "Linear", "in_features": 3, "out_features": "2"}, "layer 4 (Linear): out_features must be an int"),
    ({"type": "Linear", "in_features": 3, "out_features": 2, "bias": "yes"}, "layer 4 (Linear): bias must be"),
    ({"type": "MaxPool2d", "kernel_size": 2, "dilation": 2}, "layer 4 (MaxPool2d): unknown key 'dilation'"),
    ({"type": "Linear", "in_features": 3}, "layer 4 (Linear): missing key 'out_features'"),
    ("Linear", "layer 4: expected a table"),
])
def test_layer_from_config_names_index_and_key(cfg, words):
    with pytest.raises(sc.SheetconvError) as e:
        sc.Layer.from_config(cfg, index=4)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_spec_types_are_the_registered_kinds():
    # every registered kind is accepted by spec files under its type name; nothing else is
    from sheetconv.nn.layers import KINDS
    for kind, cls in KINDS.items():
        assert cls.__name__ == kind
        with pytest.raises(sc.SheetconvError) as e:
            sc.Layer.from_config({"type": kind, "no_such_key": 1})
        assert "unknown key 'no_such_key'" in str(e.value)
    with pytest.raises(sc.SheetconvError) as e:
        sc.Layer.from_config({"type": "Conv3d"})
    assert all(kind in str(e.value) for kind in KINDS)
