"""Each layer kind defines every rule in its own module, and the registry holds them all.

Oracles: PyTorch's modules and functional ops (forward, repr, converters), the kinds'
own files (inspected for where each rule is defined).
"""
import inspect
from pathlib import Path

import numpy as np
import pytest

import sheetconv as sc
from sheetconv.nn.layers import KINDS, Layer, Terms

torch = pytest.importorskip("torch")
F = torch.nn.functional

# One instance per kind with an input shape it takes. A new kind must add itself here.
EXAMPLES = {
    "Conv2d": (sc.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2), (4, 7, 6)),
    "ReLU": (sc.ReLU(), (2, 4, 5)),
    "MaxPool2d": (sc.MaxPool2d(3, 2, 1), (2, 7, 6)),
    "AvgPool2d": (sc.AvgPool2d((2, 3), (1, 2), (1, 1), count_include_pad=False), (2, 7, 6)),
    "Flatten": (sc.Flatten(), (2, 3, 4)),
    "Linear": (sc.Linear(6, 3, bias=False), (6,)),
    "BatchNorm2d": (sc.BatchNorm2d(3, eps=1e-3, momentum=None), (3, 4, 5)),
    "AdaptiveAvgPool2d": (sc.AdaptiveAvgPool2d((3, 2)), (2, 7, 5)),
    "AdaptiveMaxPool2d": (sc.AdaptiveMaxPool2d((4, 3)), (2, 7, 5)),
    "LeakyReLU": (sc.LeakyReLU(0.2), (2, 3, 4)),
    "Sigmoid": (sc.Sigmoid(), (2, 3, 4)),
    "Tanh": (sc.Tanh(), (5,)),
    "SiLU": (sc.SiLU(), (2, 3, 4)),
    "GELU": (sc.GELU(), (2, 3, 4)),
}

RULES = ["_out_shape", "forward", "formula", "describe", "to_torch_module", "_torch_forward", "from_torch"]


GRAPH_KINDS = {"Add", "Concat"}      # several inputs, no torch module: tests/test_graph.py


def test_every_kind_has_an_example():
    assert set(EXAMPLES) | GRAPH_KINDS == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_rule_is_defined_in_the_kinds_own_file(kind):
    cls = KINDS[kind]
    path = Path(inspect.getsourcefile(cls))
    assert path.parent.name == "layers" and path.name == f"{kind.lower()}.py"
    for rule in RULES:
        assert rule in vars(cls), f"{kind} does not define {rule}"
        fn = vars(cls)[rule]
        assert Path(inspect.getsourcefile(getattr(fn, "__func__", fn))) == path
    assert (cls.torch_class or kind in GRAPH_KINDS) and cls.kind != Layer.kind and cls.prefix != Layer.prefix
    assert cls.channels in ("all", "same", "flatten", "concat")
    assert cls.formula_reads in ("weighted", "dense", "window", "cell", "inputs")


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_each_kind_against_its_torch_module(kind):
    layer, shape = EXAMPLES[kind]
    layer = layer.copy()
    rng = np.random.default_rng(1)
    for key, value in layer.params().items():
        draw = rng.standard_normal(value.shape)
        setattr(layer, key, np.abs(draw) + 0.1 if key == "running_var" else draw)
    x = rng.standard_normal((2, *shape))
    module = layer.to_torch_module(torch)
    assert type(module) is getattr(torch.nn, layer.torch_class)
    assert repr(layer) == repr(module)                                   # torch's own repr
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
        functional = layer.torch_forward(F, torch.from_numpy(x)).numpy()
    assert layer.out_shape(shape) == want.shape[1:]
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(functional, want, rtol=1e-12, atol=1e-12)
    back = type(layer).from_torch(module, "m", lambda p: p.detach().numpy().copy())
    assert back.config() == layer.config()
    for key, value in layer.params().items():
        np.testing.assert_array_equal(getattr(back, key), value)
    assert isinstance(layer.describe(), str) and layer.describe()
    assert layer.summary_type == kind


def test_formula_texts_of_each_kind():
    # the texts a kind writes from references it is given (the sheet computes the references)
    conv, _ = EXAMPLES["Conv2d"]
    t = Terms(pairs=(("B2:D4", "$X$1:$Z$3"), ("F2:H4", "$X$5:$Z$7")), bias="$Y$9")
    assert conv.formula(t) == "SUMPRODUCT(B2:D4,$X$1:$Z$3)+SUMPRODUCT(F2:H4,$X$5:$Z$7)+$Y$9"
    assert conv.copy(relu=True).formula(Terms(products=(("B2", "$X$1"), ("D2", "$Y$1")))) == "MAX(0,B2*$X$1+D2*$Y$1)"
    assert conv.formula(Terms(sums=("C5", "K5"), bias="$A$1")) == "C5+K5+$A$1"
    assert conv.formula(Terms(pairs=(("B2:D4", "$X$1:$Z$3"),), bias="$A$1", total=False)) == "SUMPRODUCT(B2:D4,$X$1:$Z$3)"
    assert conv.formula(Terms(total=False)) == "0" and conv.formula(Terms(bias="$A$1")) == "$A$1"
    assert sc.MaxPool2d(2).formula(Terms(window="B2:C3", cell="B2", covered=4)) == "MAX(B2:C3)"
    avg = sc.AvgPool2d(3, 1, 1)
    assert avg.formula(Terms(window="B2:C3", covered=4)) == "SUM(B2:C3)/9"
    assert avg.formula(Terms(window="B2:D4", covered=9)) == "AVERAGE(B2:D4)"
    assert sc.AvgPool2d(3, 1, 1, count_include_pad=False).formula(Terms(window="B2:C3", covered=4)) == "AVERAGE(B2:C3)"
    assert sc.ReLU().formula(Terms(window="B2:B2", cell="B2")) == "MAX(0,B2)"
    assert sc.Flatten().formula(Terms(cell="C7")) == "C7"
    bn = sc.BatchNorm2d(2)
    refs = Terms(cell="C7", params=(("weight", "$K$2"), ("bias", "$L$2"), ("running_mean", "$M$2"),
                                    ("running_var", "$N$2")))
    assert bn.formula(refs) == "(C7-$M$2)/SQRT($N$2+1E-05)*$K$2+$L$2"
    assert bn.copy(relu=True, eps=0.001).formula(refs) == "MAX(0,(C7-$M$2)/SQRT($N$2+0.001)*$K$2+$L$2)"
    assert sc.BatchNorm2d(2, affine=False).formula(refs) == "(C7-$M$2)/SQRT($N$2+1E-05)"
    assert sc.AdaptiveAvgPool2d(1).formula(Terms(window="B2:H8", covered=49)) == "AVERAGE(B2:H8)"
    assert sc.AdaptiveMaxPool2d((2, 3)).formula(Terms(window="B2:D5", covered=12)) == "MAX(B2:D5)"
    cell = Terms(window="B2:B2", cell="B2", covered=1)
    assert sc.LeakyReLU().formula(cell) == "IF(B2>0,B2,B2*0.01)"
    assert sc.LeakyReLU(1e-20).formula(cell) == "IF(B2>0,B2,B2*1E-20)"
    assert sc.Sigmoid().formula(cell) == "1/(1+EXP(-B2))"
    assert sc.Tanh().formula(cell) == "TANH(B2)"
    assert sc.SiLU().formula(cell) == "B2/(1+EXP(-B2))"
    assert sc.GELU().formula(cell) == "0.5*B2*(1+SIGN(B2)*ERF(ABS(B2)/SQRT(2)))"
    assert sc.GELU("tanh").formula(cell) == "0.5*B2*(1+TANH(SQRT(2/PI())*(B2+0.044715*B2^3)))"
    assert sc.Linear(3, 2).formula(Terms(pairs=(("B1:B3", "$D$1:$D$3"),), bias="$F$1")) == "SUMPRODUCT(B1:B3,$D$1:$D$3)+$F$1"


def test_from_torch_uses_the_registry():
    from sheetconv.interop.torch_modules import torch_kinds
    assert {name: cls.__name__ for name, cls in torch_kinds().items()} == {k: k for k in KINDS if k not in GRAPH_KINDS}



@pytest.mark.parametrize("layer", [sc.LeakyReLU(0.3), sc.Sigmoid(), sc.Tanh(), sc.SiLU(), sc.GELU(), sc.GELU("tanh")])
def test_elementwise_kinds_at_extreme_inputs(layer):
    # large, tiny, negative and zero inputs against PyTorch (the tanh GELU on both sides of 0 too)
    x = np.array([-700.0, -30.0, -3.5, -1e-8, 0.0, 1e-8, 0.7, 3.5, 30.0, 700.0]).reshape(1, 1, 2, 5)
    with torch.no_grad():
        want = layer.to_torch_module(torch).double()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-12, atol=1e-300)
