"""summary(): its figures against torchinfo's on the same torch models."""
from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")
torchinfo = pytest.importorskip("torchinfo")
from click.testing import CliRunner  # noqa: E402
from fastbook import simple_cnn  # noqa: E402
from torch import nn  # noqa: E402

import sheetconv as sc  # noqa: E402
from sheetconv.cli import cli  # noqa: E402
from sheetconv.nn.summary import summary, summary_rows  # noqa: E402


def pools_and_head():
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 6, (3, 5), padding=(1, 2)), nn.ReLU()), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(6, 8, 3, padding=2, dilation=2, bias=False), nn.ReLU()),
        nn.AvgPool2d(3, stride=2, padding=1), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 20), nn.ReLU(), nn.Linear(20, 10, bias=False))


def torchinfo_layers(model, input_size):
    """torchinfo's leaf rows, with a ReLU right after a Conv2d/Linear merged into it (as sheetconv fuses)."""
    info = torchinfo.summary(model, input_size=input_size, verbose=0, depth=20)
    leaves, prev = [], None
    for row in info.summary_list:
        if not row.is_leaf_layer:
            continue
        if row.class_name == "ReLU" and prev in ("Conv2d", "Linear"):
            leaves[-1]["type"] += " + ReLU"
        else:
            bias = getattr(row.module, "bias", None)
            leaves.append({"type": row.class_name, "shape": tuple(row.output_size), "params": row.num_params,
                           "trainable": row.trainable_params, "macs": row.macs,
                           "bias_adds": 0 if bias is None else _prod(row.output_size)})   # one per output
        prev = row.class_name
    return info, leaves


def _prod(v):
    n = 1
    for x in v:
        n *= x
    return n


@pytest.mark.parametrize("make, input_shape", [(simple_cnn, (1, 28, 28)), (pools_and_head, (3, 16, 16))])
@pytest.mark.parametrize("batch", [1, 64])
def test_rows_equal_torchinfo(make, input_shape, batch):
    torch.manual_seed(0)
    model = make().eval()
    net = sc.from_torch(model, input_shape)
    info, theirs = torchinfo_layers(model, (batch, *input_shape))
    rows = summary_rows(net, batch)
    assert rows[0].output_shape == (batch, *input_shape)
    assert len(rows) - 1 == len(theirs)
    for ours, ref in zip(rows[1:], theirs):
        assert ours.type == ref["type"]
        assert ours.output_shape == ref["shape"]
        assert ours.params == ref["params"]
        assert (ours.trainable is True) == (ref["trainable"] > 0)
        # torchinfo counts the bias additions as multiply-adds; sheetconv counts multiplications only
        assert ours.macs == ref["macs"] - ref["bias_adds"]
    assert sum(r.params for r in rows) == info.total_params == info.trainable_params


def test_text_table_shows_torchinfo_figures():
    torch.manual_seed(0)
    model = simple_cnn().eval()
    net = sc.from_torch(model, (1, 28, 28))
    info, theirs = torchinfo_layers(model, (64, 1, 28, 28))
    text = net.summary(batch=64)
    table = [line for line in text.splitlines() if re.match(r"^(conv|flatten)", line)]
    assert len(table) == len(theirs)
    for line, ref in zip(table, theirs):
        shape = re.search(r"\)\s+([\d x]+?)\s{2,}", line).group(1)
        assert tuple(int(v) for v in shape.split(" x ")) == ref["shape"]
        assert f" {ref['params']:,} " in line
    assert f"Total params: {info.total_params:,}" in text
    assert f"Trainable params: {info.trainable_params:,}" in text


def test_simple_cnn_halves_grid_doubles_channels_level_compute():
    rows = summary_rows(sc.preset("simple-cnn"), batch=1)[1:5]       # the four conv+ReLU layers
    # the grid halves (rounding up), the channels double, and the per-layer MACs stay within 3x
    for a, b in zip(rows, rows[1:]):
        assert b.output_shape[1] == 2 * a.output_shape[1]
        assert b.output_shape[2] == (a.output_shape[2] + 1) // 2
        assert b.rf_size[0] == a.rf_size[0] + 2 * a.jump[0] and b.jump[0] == 2 * a.jump[0]
    macs = [r.macs for r in rows]
    assert max(macs) <= 3 * min(macs)


def test_receptive_field_column_conv_example():
    text = summary(sc.preset("conv-example"))
    conv2 = next(line for line in text.splitlines() if line.startswith("conv2"))
    assert "7 x 7" in conv2 and conv2.rstrip().endswith("4")


def test_bad_batch():
    with pytest.raises(sc.SheetconvError, match="batch"):
        summary_rows(sc.preset("conv-example"), batch=0)


def test_cli_summary(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["summary", "--preset", "simple-cnn", "--batch", "64"])
    assert res.exit_code == 0, res.output
    assert "64 x 4 x 14 x 14" in res.output and "Total params: 6,722" in res.output   # 40+296+1168+4640+578
    spec = tmp_path / "net.toml"
    spec.write_text('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 4\nkernel_size = 3\n')
    res = runner.invoke(cli, ["summary", "--spec", str(spec)])
    assert res.exit_code == 0 and "1 x 4 x 26 x 26" in res.output
    res = runner.invoke(cli, ["summary", "--spec", str(spec), "--preset", "simple-cnn"])
    assert res.exit_code == 2 and "either --preset or --spec" in res.output
    spec.write_text('input_shape = [1, 28, 28]\n[[layers]]\ntype = "Conv2d"\nout_channels = 4\n')
    res = runner.invoke(cli, ["summary", "--spec", str(spec)])
    assert res.exit_code == 2 and "missing key 'kernel_size'" in res.output and "Traceback" not in res.output


from hypothesis import HealthCheck, given, settings  # noqa: E402
from test_torchio import random_sequential  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_sequential())
def test_random_nested_sequentials_equal_torchinfo(model_and_shape):
    model, input_shape = model_and_shape
    model.eval()
    net = sc.from_torch(model, input_shape)
    info, theirs = torchinfo_layers(model, (2, *input_shape))
    rows = summary_rows(net, 2)[1:]
    assert [(r.type, r.output_shape, r.params, r.macs) for r in rows] == \
        [(t["type"], t["shape"], t["params"], t["macs"] - t["bias_adds"]) for t in theirs]
    assert sum(r.params for r in rows) == info.total_params
