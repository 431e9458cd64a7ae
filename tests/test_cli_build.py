"""`sheetconv build` and `sheetconv examples`: what they write, and one-line errors that leave no file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from _xlsx_oracle import computed_cells, read_sheet
from click.testing import CliRunner
from PIL import Image

from sheetconv import digit, preset
from sheetconv.cli import cli
from sheetconv.sheet.layout import Layout
from sheetconv.xlsx.metadata import read_meta

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
    assert "digit sample 0 (a 7)" in lines[0]                   # MNIST's first test label is 7
    values = read_sheet(out, data_only=True)
    layout = Layout.for_network(preset("conv-example"))
    x = digit(0)
    assert all(values[layout.cell_of(("input", 0, r, c))] == x[0, r, c] for r in range(28) for c in range(28))
    # Running again finds the identical workbook and says so; a different one is refused.
    again = run(["build"], tmp_path)
    assert again.exit_code == 0 and "up to date" in again.stdout
    before = out.read_bytes()
    refused = run(["build", "--digit", "4"], tmp_path)
    assert_one_line_error(refused, "already exists", "differs", "--force")
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


@pytest.mark.parametrize("args, words", [
    (["build", "--preset", "simplecnn"], ["--preset", "simplecnn", "simple-cnn", "build -h"]),
    (["build", "--digit", "10"], ["--digit", "0<=x<=9"]),
    (["summary", "--batch", "0"], ["--batch", "x>=1"]),
    (["check", "."], ["BOOK", "is a directory"]),
    (["trace", "book.xlsx"], ["Missing argument", "CELL"]),
    (["trace", "--format", "yaml", "book.xlsx", "A1"], ["--format", "yaml", "json"]),
    (["nosuch"], ["No such command", "nosuch"]),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, words):
    before = files(tmp_path)
    assert_one_line_error(run(args, tmp_path), *words)
    assert files(tmp_path) == before


def test_bare_command_shows_the_help():
    result = CliRunner().invoke(cli, [])
    assert "Usage:" in result.output and "Commands:" in result.output


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
    from sheetconv.nn.specfile import load_spec
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
    for name in ("conv-example", "simple-cnn", "conv-course"):
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
        assert read_sheet(fresh, "summary") == read_sheet(committed, "summary")
        assert read_sheet(fresh, "explain") == read_sheet(committed, "explain")
        a, b = openpyxl.load_workbook(fresh), openpyxl.load_workbook(committed)
        for sheet in a.sheetnames:                                  # the layout's look too: column widths
            widths = lambda ws: {k: d.width for k, d in ws.column_dimensions.items()}   # noqa: E731
            assert widths(a[sheet]) == widths(b[sheet]), (name, sheet)


def test_explain_option_chooses_the_worked_cell(tmp_path):
    r = run(["build", "--preset", "conv-course", "--explain", "pool1[1,5,5]", "--out", "a.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    texts = [v for v in read_sheet(tmp_path / "a.xlsx", "explain").values() if isinstance(v, str)]
    assert any(t.startswith("How pool1[1,5,5]") for t in texts)
    assert any("=MAX(" in t for t in texts)
    for bad, words in [("conv9[0,0,0]", ["--explain", "no layer 'conv9'"]), ("conv2[0,30,0]", ["lies outside"]),
                       ("input[0,3,3]", ["--explain input[0,3,3]: the input is a constant", "e.g. conv2[0,0,0]"]),
                       ("garbage", ["not a cell"]),
                       ("conv1.weight[0,0,1,1]", ["--explain conv1.weight[0,0,1,1]: conv1.weight is a parameter, a constant"]),
                       ("Conv2[0,1,1]", ["no layer 'Conv2' (did you mean 'conv2'?)"]),
                       ("CONV2.Weight[0,0,0,0]", ["no parameter 'CONV2.Weight' (did you mean 'conv2.weight'?)"]),
                       ("bogus[1]", ["--explain bogus[1]: no layer 'bogus' (layers: input, conv1, conv2)"])]:
        assert_one_line_error(run(["build", "--explain", bad, "--out", "b.xlsx"], tmp_path), *words)
        assert not (tmp_path / "b.xlsx").exists()
    for bad, words in [("fc1[10]", ["--explain fc1[10]: cell fc1[10] lies outside fc1, which has 10 features (fc1[0] to fc1[9])"]),
                       ("pool1[0,0,0]", [])]:
        r = run(["build", "--preset", "conv-course", "--explain", bad, "--out", "b.xlsx", "--force"], tmp_path)
        if words:
            assert_one_line_error(r, *words)
        else:
            assert r.exit_code == 0, r.output


# The labels the MNIST README gives for the first ten test digits.
README_LABELS = "7 2 1 0 4 1 4 9 5 9"


def test_digit_help_and_build_line_name_the_sample_and_its_label(tmp_path):
    help_text = " ".join(run(["build", "--help"], tmp_path).stdout.split())
    assert f"Bundled MNIST test sample 0-9 (their labels: {README_LABELS})" in help_text
    r = run(["build", "--digit", "3", "--out", "d.xlsx"], tmp_path)
    assert r.exit_code == 0 and "digit sample 3 (a 0)" in r.stdout


def test_state_dict_for_another_network_suggests_preset_or_spec(tmp_path):
    torch = pytest.importorskip("torch")
    other = preset("simple-cnn")
    torch.save({k: torch.from_numpy(v) for k, v in other.state_dict().items()}, tmp_path / "w.pt")
    r = run(["build", "--state-dict", "w.pt", "--out", "x.xlsx"], tmp_path)
    assert_one_line_error(r, "w.pt", "--preset simple-cnn", "--spec")
    assert files(tmp_path) == ["w.pt"]
    r = run(["build", "--preset", "simple-cnn", "--state-dict", "w.pt", "--out", "x.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output


def test_weights_npz_with_positional_keys(tmp_path):
    net = preset("conv-example", seed=5)
    own = net.state_dict()
    # fastai's nested Sequential names: block i, its conv at .0
    positional = {f"{i // 2}.0.{k.rsplit('.', 1)[1]}": v for i, (k, v) in enumerate(own.items())}
    assert list(positional) == ["0.0.weight", "0.0.bias", "1.0.weight", "1.0.bias"]
    np.savez(tmp_path / "w.npz", **positional)
    r = run(["build", "--weights", "w.npz", "--out", "w.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    values = read_sheet(tmp_path / "w.xlsx", data_only=True)
    layout = Layout.for_network(net)
    assert values[layout.cell_of(("conv2.weight", 1, 0, 2, 1))] == own["conv2.weight"][1, 0, 2, 1]
    assert values[layout.cell_of(("conv1.bias", 1))] == own["conv1.bias"][1]
    np.save(tmp_path / "single.npy", own["conv1.weight"])
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    assert_one_line_error(run(["build", "--weights", "single.npz", "--out", "s.xlsx"], tmp_path),
                          "single.npz: expected a .npz file of named arrays (numpy.savez), got a single array")


def test_dark_ink_warning_invert_and_stretch_note(tmp_path):
    paper = np.full((28, 28), 240, np.uint8)
    paper[4:24, 13:15] = 0
    Image.fromarray(paper, mode="L").save(tmp_path / "ink.png")
    r = run(["build", "--image", "ink.png", "--out", "a.xlsx"], tmp_path)
    assert r.exit_code == 0
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and "light on dark" in warning[0] and "--invert" in warning[0]
    r = run(["build", "--image", "ink.png", "--invert", "--out", "b.xlsx"], tmp_path)
    assert r.exit_code == 0 and r.stderr == ""
    values = read_sheet(tmp_path / "b.xlsx", data_only=True)
    layout = Layout.for_network(preset("conv-example"))
    assert values[layout.cell_of(("input", 0, 10, 13))] == 1.0
    assert abs(values[layout.cell_of(("input", 0, 0, 0))] - (1 - 240 / 255)) < 1e-15
    Image.new("L", (56, 28)).save(tmp_path / "wide.png")
    r = run(["build", "--image", "wide.png", "--resize", "--out", "c.xlsx"], tmp_path)
    assert r.exit_code == 0
    note = r.stderr.strip().splitlines()
    assert len(note) == 1 and "stretched" in note[0]


def test_overflowing_input_is_refused_naming_the_layer(tmp_path):
    np.save(tmp_path / "huge.npy", np.full((28, 28), 1.7e308))
    r = run(["build", "--npy", "huge.npy", "--out", "h.xlsx"], tmp_path)
    assert_one_line_error(r, "conv1", "not finite")
    assert files(tmp_path) == ["huge.npy"]


def test_up_to_date_check_cannot_make_its_temporary_folder(tmp_path, monkeypatch):
    import errno
    import tempfile
    assert run(["build"], tmp_path).exit_code == 0

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", full)
    assert_one_line_error(run(["build"], tmp_path), "No space left on device")
    assert files(tmp_path) == ["conv-example.xlsx"]


def test_examples_are_up_to_date_or_refused_without_force(tmp_path):
    r = run(["examples", "--out-dir", "wb"], tmp_path)
    assert r.exit_code == 0 and r.stdout.count("wrote") == 3
    fresh = {p: (tmp_path / "wb" / p).read_bytes() for p in files(tmp_path / "wb")}
    r = run(["examples", "--out-dir", "wb"], tmp_path)
    assert r.exit_code == 0 and r.stdout.count("up to date") == 3
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "simple-cnn.xlsx").write_bytes(fresh["simple-cnn.xlsx"])
    assert run(["build", "--digit", "2", "--force", "--out", "wb/simple-cnn.xlsx", "--preset", "simple-cnn"],
               tmp_path).exit_code == 0
    changed = (tmp_path / "wb" / "simple-cnn.xlsx").read_bytes()
    assert_one_line_error(run(["examples", "--out-dir", "wb"], tmp_path), "simple-cnn.xlsx", "differs", "--force")
    assert (tmp_path / "wb" / "simple-cnn.xlsx").read_bytes() == changed
    r = run(["examples", "--out-dir", "wb", "--force"], tmp_path)
    assert r.exit_code == 0 and "up to date" in r.stdout and "wrote" in r.stdout
    assert (tmp_path / "wb" / "simple-cnn.xlsx").read_bytes() == fresh["simple-cnn.xlsx"]   # builds are reproducible
    assert files(tmp_path / "wb") == ["conv-course.xlsx", "conv-example.xlsx", "simple-cnn.xlsx"]


def test_a_damaged_existing_file_is_refused_in_one_line(tmp_path):
    """The up-to-date check reads the existing file; a damaged one is simply not the same."""
    import zipfile
    assert run(["build", "--out", "a.xlsx"], tmp_path).exit_code == 0
    with zipfile.ZipFile(tmp_path / "a.xlsx") as src, zipfile.ZipFile(tmp_path / "bad.xlsx", "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"<styleSheet" if item.filename == "xl/styles.xml" else src.read(item))
    before = (tmp_path / "bad.xlsx").read_bytes()
    assert_one_line_error(run(["build", "--out", "bad.xlsx"], tmp_path), "bad.xlsx", "differs", "--force")
    assert (tmp_path / "bad.xlsx").read_bytes() == before


def test_a_workbook_past_the_sheet_part_limit_is_a_one_line_error(tmp_path, monkeypatch):
    from sheetconv.xlsx import writer
    monkeypatch.setattr(writer, "SHEET_PART_LIMIT", 1000)
    result = run(["build", "--out", "book.xlsx"], tmp_path)
    assert_one_line_error(result, "GiB", "ZIP64", "LibreOffice")
    assert files(tmp_path) == []
