"""`sheetconv build` and `sheetconv examples`: what they write, and one-line errors that leave no file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sheetconv import digit, preset
from sheetconv.cli import cli
from sheetconv.layout import Layout
from sheetconv.meta import read_meta

from _xlsx_oracle import computed_cells, read_sheet

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
REPO = Path(__file__).resolve().parents[1]


def run(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def assert_one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("sheetconv: error:"), err
    for w in words:
        assert w in err, err


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_no_arguments_writes_conv_example_from_digit_0(tmp_path):
    result = run(["build"], tmp_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "workbooks" / "conv-example.xlsx"
    assert files(tmp_path) == ["conv-example.xlsx"]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "workbooks/conv-example.xlsx" in lines[0]
    values = read_sheet(out, data_only=True)
    layout = Layout.for_network(preset("conv-example"))
    x = digit(0)
    assert all(values[layout.cell_of(("input", 0, r, c))] == x[0, r, c] for r in range(28) for c in range(28))
    # Running again finds the identical workbook and says so; a different one is refused.
    again = run(["build"], tmp_path)
    assert again.exit_code == 0 and "up to date" in again.stdout
    before = out.read_bytes()
    refused = run(["build", "--digit", "4"], tmp_path)
    assert_one_line_error(refused, "already exists", "--force")
    assert out.read_bytes() == before and files(tmp_path) == ["conv-example.xlsx"]
    forced = run(["build", "--digit", "4", "--force", "--quiet"], tmp_path)
    assert forced.exit_code == 0 and forced.stdout == "" and out.read_bytes() != before


def test_up_to_date_ignores_how_the_zip_was_compressed(tmp_path):
    import zipfile
    assert run(["build"], tmp_path).exit_code == 0
    out = tmp_path / "workbooks" / "conv-example.xlsx"
    with zipfile.ZipFile(out) as z:
        members = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for info, data in members:
            z.writestr(info.filename, data)
    again = run(["build"], tmp_path)
    assert again.exit_code == 0 and "up to date" in again.stdout


def test_inputs_weights_and_outputs(tmp_path):
    img = tmp_path / "d.png"
    Image.fromarray((digit(5)[0] * 255).round().astype(np.uint8)).save(img)
    np.save(tmp_path / "x.npy", digit(2)[0])
    net = preset("simple-cnn", seed=3)
    np.savez(tmp_path / "w.npz", **{k: v * 2 for k, v in net.state_dict().items()})
    r = run(["build", "--preset", "simple-cnn", "--image", "d.png", "--out", "a.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    r = run(["build", "--preset", "simple-cnn", "--npy", "x.npy", "--weights", "w.npz", "--out", "b.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    values = read_sheet(tmp_path / "b.xlsx", data_only=True)
    layout = Layout.for_network(net)
    assert values[layout.cell_of(("conv2.weight", 1, 2, 0, 1))] == 2 * net["conv2"].weight[1, 2, 0, 1]
    assert values[layout.cell_of(("input", 0, 9, 9))] == digit(2)[0, 9, 9]
    r = run(["build", "--seed", "7", "--out", "c.xlsx", "--quiet"], tmp_path)
    assert r.exit_code == 0 and r.stdout == ""
    meta = read_meta(tmp_path / "c.xlsx")
    assert [l["name"] for l in meta["spec"]["layers"]] == ["conv1", "conv2"]


@pytest.mark.parametrize("args, words", [
    (["--image", "big.png"], ["big.png", "28x28", "--resize"]),
    (["--image", "broken.png"], ["broken.png", "not a readable image"]),
    (["--image", "missing.png"], ["missing.png"]),
    (["--npy", "bad.npy"], ["bad.npy"]),
    (["--npy", "wrong.npy"], ["wrong.npy", "(1, 28, 28)"]),
    (["--weights", "wrong.npz"], ["conv1.weight", "(2, 1, 3, 3)", "(2, 1, 5, 5)"]),
    (["--weights", "broken.npz"], ["broken.npz"]),
    (["--out", "nowhere/x.xlsx"], ["nowhere", "does not exist"]),
    (["--out", "."], ["is a folder"]),
    (["--out", "book.xls"], ["book.xls", ".xlsx"]),
    (["--digit", "1", "--image", "big.png"], ["--digit", "--image"]),
    (["--preset", "simple-cnn", "--spec", "s.json"], ["--spec"]),
])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, args, words):
    Image.new("L", (40, 30)).save(tmp_path / "big.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "bad.npy").write_bytes(b"nope")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    w = preset("conv-example").state_dict()
    w["conv1.weight"] = np.zeros((2, 1, 5, 5))
    np.savez(tmp_path / "wrong.npz", **w)
    (tmp_path / "broken.npz").write_bytes(b"PK nope")
    before = files(tmp_path)
    result = run(["build", *args], tmp_path)
    assert_one_line_error(result, *words)
    assert files(tmp_path) == before


def test_resize_makes_a_wrong_sized_image_fit(tmp_path):
    Image.new("L", (40, 30), color=255).save(tmp_path / "big.png")
    r = run(["build", "--image", "big.png", "--resize", "--out", "r.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    values = read_sheet(tmp_path / "r.xlsx", data_only=True)
    assert values[Layout.for_network(preset("conv-example")).cell_of(("input", 0, 5, 5))] == 1.0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_one_line_error(run(["build", "--out", "ro/x.xlsx"], tmp_path), "not writable")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("tty, quiet, shown", [(True, False, True), (False, False, False), (True, True, False)])
def test_progress_bar_only_on_a_terminal_and_not_quiet(tmp_path, monkeypatch, tty, quiet, shown):
    import sheetconv.cli as cli_module
    monkeypatch.setattr(cli_module, "_PROGRESS_MIN_FORMULAS", 0)
    monkeypatch.setattr(cli_module, "_stderr_is_tty", lambda: tty)
    r = run(["build", "--out", "p.xlsx"] + (["--quiet"] if quiet else []), tmp_path)
    assert r.exit_code == 0
    assert ("writing p.xlsx" in r.stderr) == shown
    assert (tmp_path / "p.xlsx").is_file()


def test_unwritable_folder_message(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert_one_line_error(run(["build", "--out", "x.xlsx"], tmp_path), "not writable")
    assert files(tmp_path) == []


def test_examples_out_dir_must_be_a_folder(tmp_path):
    (tmp_path / "f").write_text("")
    assert_one_line_error(run(["examples", "--out-dir", "f"], tmp_path), "is a file")
    assert_one_line_error(run(["examples", "--out-dir", "no/such"], tmp_path), "does not exist")


def test_spec_and_state_dict_options(tmp_path):
    torch = pytest.importorskip("torch")
    spec = tmp_path / "net.json"
    spec.write_text('{"input_shape": [1, 28, 28], "layers": [{"type": "Conv2d", "out_channels": 3, '
                    '"kernel_size": 5, "stride": 3}, {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}]}')
    r = run(["build", "--spec", "net.json", "--digit", "1"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "workbooks" / "net.xlsx").is_file()
    from sheetconv.specfile import load_spec
    net = load_spec(spec)
    torch.save({k: torch.from_numpy(v + 1) for k, v in net.state_dict().items()}, tmp_path / "w.pt")
    r = run(["build", "--spec", "net.json", "--state-dict", "w.pt", "--out", "sd.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    values = read_sheet(tmp_path / "sd.xlsx", data_only=True)
    assert values[Layout.for_network(net).cell_of(("conv1.bias", 2))] == net["conv1"].bias[2] + 1
    bad = {k: torch.zeros(1) for k in net.state_dict()}
    torch.save(bad, tmp_path / "bad.pt")
    assert_one_line_error(run(["build", "--spec", "net.json", "--state-dict", "bad.pt", "--out", "z.xlsx"], tmp_path),
                          "bad.pt")
    assert not (tmp_path / "z.xlsx").exists()


def test_examples_regenerate_the_committed_workbooks(tmp_path):
    r = run(["examples", "--out-dir", str(tmp_path / "wb")], tmp_path)
    assert r.exit_code == 0, r.output
    for name in ("conv-example", "simple-cnn"):
        fresh, committed = tmp_path / "wb" / f"{name}.xlsx", REPO / "workbooks" / f"{name}.xlsx"
        assert committed.is_file(), f"{committed} is missing: run `sheetconv examples`"
        new_f, old_f = read_sheet(fresh), read_sheet(committed)
        assert new_f.keys() == old_f.keys()
        net = preset(name)
        layout = Layout.for_network(net)
        for cell in computed_cells(net):
            pos = layout.cell_of(cell)
            assert new_f[pos] == old_f[pos]
        new_v, old_v = read_sheet(fresh, data_only=True), read_sheet(committed, data_only=True)
        for pos, v in new_v.items():
            assert old_v[pos] == v or abs(old_v[pos] - v) <= 1e-12 * max(1, abs(v)), pos
        assert read_meta(fresh) == read_meta(committed)
