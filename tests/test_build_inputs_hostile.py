"""Hostile inputs to `build` and hostile metadata: exact values for what is readable, one-line
errors (exit 2, no traceback) for the rest, and bounded memory for bombs (peak measured in a
subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from PIL import Image
from test_cli_build import assert_one_line_error, files, run

import sheetconv as sc
from sheetconv.nn.inputs import load_input
from sheetconv.nn.specfile import load_spec
from sheetconv.sheet.layout import Layout
from sheetconv.sheet.meta import MAX_SHEET_CELLS, build_meta, load_model, parse_chunks, to_chunks

REPO = Path(__file__).resolve().parents[1]
PEAK_MB = 300
# VmHWM (this process's own peak RSS): getrusage's ru_maxrss would include the pytest process's
# peak, which Linux carries over fork and exec.
_PEAK = ("import atexit, sys\n"
         "hwm = lambda: next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
         "atexit.register(lambda: sys.stderr.write(f'PEAK_KB {hwm()}\\n'))\n"
         "from sheetconv.cli import main\n"
         "main(sys.argv[1:])\n")


def cli_peak(args, cwd) -> tuple[int, str, float]:
    """Run the CLI in a fresh process: (exit status, stderr without the peak line, peak RSS in MB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", _PEAK, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    lines = p.stderr.strip().splitlines()
    peak = [ln for ln in lines if ln.startswith("PEAK_KB ")]
    assert peak, p.stderr
    rest = "\n".join(ln for ln in lines if not ln.startswith("PEAK_KB "))
    return p.returncode, rest, int(peak[-1].split()[1]) / 1024


def assert_refused(code: int, err: str, *words):
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err and err.startswith("sheetconv: error:"), err
    for w in words:
        assert w in err, err


def grey_digit(index: int = 0) -> np.ndarray:
    """The bundled digit as 8-bit grey (what an 8-bit PNG of it holds), shape (28, 28)."""
    return np.round(sc.digit(index)[0] * 255).astype(np.uint8)


# ---------------------------------------------------------------- images

@pytest.fixture
def reference(tmp_path):
    """The digit saved as an 8-bit grey PNG and read back: the value every other encoding must give."""
    Image.fromarray(grey_digit(), mode="L").save(tmp_path / "grey.png")
    return load_input(tmp_path / "grey.png", shape=(1, 28, 28), warn=lambda m: None)


def test_rgba_black_ink_on_transparent_reads_as_the_digit(tmp_path, reference):
    g = grey_digit()
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = g                                   # black ink; the digit is in the alpha channel
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "ink.png")
    notes = []
    x = load_input(tmp_path / "ink.png", shape=(1, 28, 28), warn=notes.append)
    assert x.sum() > 0
    np.testing.assert_allclose(x, 1.0 - reference, atol=1e-12)      # black on white, as a viewer shows it
    assert any("--invert" in n for n in notes)
    np.testing.assert_allclose(load_input(tmp_path / "ink.png", shape=(1, 28, 28), invert=True), reference,
                               atol=1e-12)


def test_white_ink_on_transparent_and_la_and_palette_transparency(tmp_path, reference):
    g = grey_digit()
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = g
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "white.png")
    np.testing.assert_allclose(load_input(tmp_path / "white.png", shape=(1, 28, 28)), reference, atol=1e-12)
    la = np.stack([np.zeros_like(g), g], axis=2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(load_input(tmp_path / "la.png", shape=(1, 28, 28), invert=True), reference,
                               atol=1e-12)
    p = Image.fromarray(g, mode="L").convert("P")          # a grey palette, index = grey level
    p.putpalette([v for i in range(256) for v in (i, i, i)])
    p.info["transparency"] = 0                             # the black background is transparent
    p.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_allclose(load_input(tmp_path / "p.png", shape=(1, 28, 28)), reference, atol=1e-12)


def test_float_and_16_bit_images_keep_their_scale(tmp_path, reference):
    f = (grey_digit() / 255.0).astype(np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    x = load_input(tmp_path / "f.tif", shape=(1, 28, 28))
    assert x.max() == pytest.approx(reference.max(), abs=1e-6)            # not divided by 255 again
    np.testing.assert_allclose(x, reference, atol=1e-7)
    sixteen = grey_digit().astype(np.uint16) * 257                          # 0..255 -> 0..65535 exactly
    Image.fromarray(sixteen).save(tmp_path / "i16.png")
    np.testing.assert_allclose(load_input(tmp_path / "i16.png", shape=(1, 28, 28)), reference, atol=1e-12)
    Image.fromarray(sixteen.astype(np.int32)).save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    np.testing.assert_allclose(load_input(tmp_path / "i32.tif", shape=(1, 28, 28)), reference, atol=1e-12)


def test_images_that_cannot_be_read_as_grey_are_refused(tmp_path):
    Image.fromarray(np.full((28, 28), 200.0, np.float32), mode="F").save(tmp_path / "f255.tif")
    Image.fromarray(np.full((28, 28), -5, np.int32)).save(tmp_path / "neg.tif")
    Image.new("LAB", (28, 28)).save(tmp_path / "lab.tif")
    for name, words in (("f255.tif", ["floating-point image with values 200..200", "expected 0..1"]),
                        ("neg.tif", ["values -5..-5", "expected 0..65535"]),
                        ("lab.tif", ["image mode LAB is not supported", "expected grey, RGB"])):
        (tmp_path / f"img-{name}").write_bytes((tmp_path / name).read_bytes())
        assert_one_line_error(run(["build", "--image", name, "--out", "x.xlsx"], tmp_path), name, *words)
    assert not (tmp_path / "x.xlsx").exists()


def test_cli_builds_an_rgba_digit_like_the_grey_one(tmp_path):
    g = grey_digit(3)
    Image.fromarray(g, mode="L").save(tmp_path / "grey.png")
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = g
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "ink.png")
    assert run(["build", "--image", "grey.png", "--out", "a.xlsx"], tmp_path).exit_code == 0
    r = run(["build", "--image", "ink.png", "--invert", "--out", "b.xlsx"], tmp_path)
    assert r.exit_code == 0, r.output
    from _xlsx_oracle import read_sheet
    a, b = read_sheet(tmp_path / "a.xlsx", data_only=True), read_sheet(tmp_path / "b.xlsx", data_only=True)
    cells = [k for k, v in a.items() if isinstance(v, (int, float))]
    assert len(cells) > 28 * 28 and all(a[k] == pytest.approx(b[k], abs=1e-12) for k in cells)


# ---------------------------------------------------------------- .npy / .npz

def _npy_header(shape, dtype="<f8") -> bytes:
    import io
    f = io.BytesIO()
    np.lib.format.write_array_header_2_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue()


def test_npy_given_an_npz_and_a_huge_npy_header(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros((28, 28)))
    assert_one_line_error(run(["build", "--npy", "x.npz", "--out", "o.xlsx"], tmp_path), "x.npz", "expected a .npy")
    (tmp_path / "disguised.npy").write_bytes((tmp_path / "x.npz").read_bytes())
    assert_one_line_error(run(["build", "--npy", "disguised.npy", "--out", "o.xlsx"], tmp_path),
                          "disguised.npy: is a .npz archive", "expected a single .npy array")
    (tmp_path / "huge.npy").write_bytes(_npy_header((1 << 40,)) + b"\0" * 64)    # claims 8 TiB
    assert_one_line_error(run(["build", "--npy", "huge.npy", "--out", "o.xlsx"], tmp_path),
                          "huge.npy: header claims a 1099511627776 float64 array", "at most 784")
    assert files(tmp_path) == ["disguised.npy", "huge.npy", "x.npz"]


def _npz_bomb(path: Path, shape, data_bytes: int):
    """An .npz whose one member's header claims ``shape`` and whose deflated data expands to ``data_bytes``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("conv1.weight.npy", "w", force_zip64=True) as f:
            f.write(_npy_header(shape))
            chunk = b"\0" * (1 << 24)
            for _ in range(data_bytes // len(chunk)):
                f.write(chunk)


def test_npz_bomb_is_refused_from_its_headers_in_bounded_memory(tmp_path):
    _npz_bomb(tmp_path / "bomb.npz", (3 << 27,), 3 << 30)                  # 3 GiB of float64 zeros
    assert (tmp_path / "bomb.npz").stat().st_size < 10 << 20
    code, err, peak = cli_peak(["build", "--weights", "bomb.npz", "--out", "o.xlsx"], tmp_path)
    assert_refused(code, err, "bomb.npz: array 'conv1.weight'", "402,653,184 values", "50,000,000")
    assert peak < PEAK_MB, peak
    # A header within the file-wide bound but not the network's shape: refused before any data is read.
    _npz_bomb(tmp_path / "shaped.npz", (40_000_000,), 3 << 30)
    code, err, peak = cli_peak(["build", "--weights", "shaped.npz", "--out", "o.xlsx"], tmp_path)
    assert_refused(code, err, "shaped.npz", "1 tensor (conv1.weight)", "4 parameters")
    assert peak < PEAK_MB, peak
    (tmp_path / "tib.npz").unlink(missing_ok=True)
    with zipfile.ZipFile(tmp_path / "tib.npz", "w") as z:
        z.writestr("w.npy", _npy_header((7 << 40,)))                           # claims 7 Ti values
    assert_one_line_error(run(["build", "--weights", "tib.npz", "--out", "o.xlsx"], tmp_path),
                          "tib.npz: array 'w'", "7,696,581,394,432 values")
    assert not (tmp_path / "o.xlsx").exists()


def test_npz_shapes_and_dtypes_are_checked_before_values(tmp_path, monkeypatch):
    import sheetconv.nn.arrayfiles as af
    net = sc.preset("conv-example")
    w = {k: v.astype(np.float32) for k, v in net.state_dict().items()}
    w["conv2.weight"] = np.zeros((2, 2, 5, 5), np.float32)
    np.savez(tmp_path / "w.npz", **w)
    read = []
    monkeypatch.setattr(af, "_data", lambda *a: read.append(a) or (_ for _ in ()).throw(AssertionError))
    from sheetconv.build import read_weights
    with pytest.raises(sc.SheetconvError, match=r"conv2.*\(2, 2, 5, 5\).*\(2, 2, 3, 3\)"):
        read_weights(net, str(tmp_path / "w.npz"), None)
    assert read == []
    np.savez(tmp_path / "s.npz", **{k: v.astype("U3") if k == "conv1.bias" else v
                                    for k, v in net.state_dict().items()})
    with pytest.raises(sc.SheetconvError, match="holds <U3 values; expected real numbers"):
        read_weights(net, str(tmp_path / "s.npz"), None)


def test_npz_weights_still_load_exactly(tmp_path):
    net = sc.preset("conv-example", seed=5)
    np.savez(tmp_path / "w.npz", **net.state_dict())
    np.savez(tmp_path / "f.npz", **{k: np.asfortranarray(v) for k, v in net.state_dict().items()})
    from sheetconv.build import read_weights
    for name in ("w.npz", "f.npz"):
        got = read_weights(sc.preset("conv-example"), str(tmp_path / name), None)
        assert all(np.array_equal(got[k], v) for k, v in net.state_dict().items())


# ---------------------------------------------------------------- .pt

torch = pytest.importorskip("torch")


def _storage_bomb(path: Path, size: int):
    """torch.save's archive with its one storage replaced by ``size`` zero bytes, deflated."""
    small = path.with_suffix(".small")
    torch.save({"conv1.weight": torch.zeros(2, 1, 3, 3)}, small)
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("/data/0"):
                zi = zipfile.ZipInfo(info.filename)
                zi.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(zi, "w", force_zip64=True) as f:
                    chunk = b"\0" * (1 << 24)
                    for _ in range(size // len(chunk)):
                        f.write(chunk)
            else:
                dst.writestr(info, src.read(info))
    small.unlink()


def test_pt_storage_bomb_is_refused_before_loading(tmp_path):
    _storage_bomb(tmp_path / "bomb.pt", 1 << 30)
    assert (tmp_path / "bomb.pt").stat().st_size < 5 << 20
    code, err, peak = cli_peak(["build", "--state-dict", "bomb.pt", "--out", "o.xlsx"], tmp_path)
    assert_refused(code, err, "bomb.pt: storage", "is compressed", "torch.save stores storages uncompressed")
    assert peak < PEAK_MB, peak
    from sheetconv.interop.state_dict import read_state_dict_file
    torch.save({"w": torch.zeros(100)}, tmp_path / "big.pt")
    with pytest.raises(sc.SheetconvError, match="storages take 400 bytes, more than the 80 bytes of 10 float64"):
        read_state_dict_file(tmp_path / "big.pt", max_elements=10)


@pytest.mark.parametrize("kind, make, words", [
    ("sparse", lambda: torch.zeros(2, 1, 3, 3).to_sparse(), "a sparse tensor (sparse_coo)"),
    ("csr", lambda: torch.eye(3).to_sparse_csr(), "a sparse tensor (sparse_csr)"),
    ("meta", lambda: torch.empty(2, 1, 3, 3, device="meta"), "a meta tensor"),
    ("quantized", lambda: torch.quantize_per_tensor(torch.rand(2, 1, 3, 3), 0.1, 0, torch.qint8),
     "a quantized tensor"),
    ("nested", lambda: torch.nested.nested_tensor([torch.rand(2), torch.rand(3)]), "a nested tensor"),
    ("complex", lambda: torch.zeros(2, 1, 3, 3, dtype=torch.complex64), "is complex"),
])
def test_unusual_tensors_are_refused_by_kind(tmp_path, kind, make, words):
    state = {k: torch.from_numpy(v) for k, v in sc.preset("conv-example").state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # nested tensors are a prototype
        state["conv1.weight"] = make()
    torch.save(state, tmp_path / f"{kind}.pt")
    assert_one_line_error(run(["build", "--state-dict", f"{kind}.pt", "--out", "o.xlsx"], tmp_path),
                          f"{kind}.pt: tensor 'conv1.weight' is {words}" if kind != "complex"
                          else f"{kind}.pt: tensor 'conv1.weight' {words}", "expected dense real tensors")
    assert not (tmp_path / "o.xlsx").exists()


# ---------------------------------------------------------------- spec files

@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom", "sparse"])
def test_endless_or_sparse_spec_is_read_only_up_to_the_cap(tmp_path, source):
    if source == "sparse":
        with open(tmp_path / "s.json", "wb") as f:
            f.truncate(2 << 30)                               # 2 GiB, no blocks on disk
        source = "s.json"
    code, err, peak = cli_peak(["build", "--spec", source, "--out", "o.xlsx"], tmp_path)
    assert_refused(code, err, "exceeds 1048576 bytes")
    assert peak < PEAK_MB, peak


def _deep_json(n):
    return '{"input_shape": [1, 4, 4], "layers": ' + "[" * n + "]" * n + "}"


@pytest.mark.parametrize("name, text, words", [
    ("deep5k.json", _deep_json(5_000), "nested"),
    ("deep100k.json", _deep_json(100_000), "nested"),
    ("deep.toml", "layers = " + "[" * 5_000 + "]" * 5_000, "nested"),
    ("tables.toml", "a = " + "{b = " * 5_000 + "1" + "}" * 5_000, "nested"),
    ("dotted.toml", ".".join(["a"] * 5_000) + " = 1", "nested more than 8 levels deep"),
    ("int.json", '{"input_shape": [1, 4, 4], "seed": ' + "7" * 5_000 + "}", "an integer of more than 4300 digits"),
    ("int.toml", "seed = " + "7" * 5_000, "an integer of more than 4300 digits"),
])
def test_deep_or_huge_spec_values_are_one_line_errors(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(sc.SheetconvError) as e:
        load_spec(tmp_path / name)
    assert "\n" not in str(e.value) and name in str(e.value) and words in str(e.value), str(e.value)
    assert_one_line_error(run(["build", "--spec", name, "--out", "o.xlsx"], tmp_path), name, words)


# ---------------------------------------------------------------- workbook metadata

def _meta(net=None):
    net = net or sc.preset("conv-example")
    return build_meta(net, Layout.for_network(net))


def test_metadata_nested_deep_or_with_huge_integers(tmp_path):
    for text in ('{"format": "sheetconv", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                 '{"format": "sheetconv", "x": ' + "[" * 50 + "]" * 50 + "}"):
        with pytest.raises(sc.SheetconvError, match="workbook metadata: nested"):
            parse_chunks([text[i:i + 30000] for i in range(0, len(text), 30000)])
    with pytest.raises(sc.SheetconvError, match="not valid JSON.*4300 digits"):
        parse_chunks(['{"format": "sheetconv", "format_version": ' + "1" * 5000 + "}"])


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["layout"]["panels"][1].__setitem__(10, 0), "layout panel 1 'per_row' must be an int >= 1, got 0"),
    (lambda m: m["layout"]["panels"][0].__setitem__(4, -3), "layout panel 0 'top' must be an int >= 0, got -3"),
    (lambda m: m["layout"]["panels"][2].__setitem__(6, -7), "layout panel 2 'bh' must be an int >= 1, got -7"),
    (lambda m: m["layout"]["panels"][1].__setitem__(11, True), "'n' must be an int >= 1, got true"),
    (lambda m: m["layout"]["panels"][0].__setitem__(5, 20000), "a sheet has 1,048,576 rows and 16,384 columns"),
    (lambda m: m["layout"]["panels"].__setitem__(0, [1, 2]), "layout panel 0 must be a list of 15 items"),
    (lambda m: m["spec"].update(input_shape=[1, 7000, 7000]), "input_shape [1, 7000, 7000] has 49,000,000 cells"),
    (lambda m: m["spec"]["layers"][1].update(in_channels=5000, out_channels=5000),
     "the network has 225,005,020 parameters"),
    (lambda m: m["layout"]["panels"][1].__setitem__(11, 10 ** 9), "the layout claims more than 20,000,000 cells"),
])
def test_forged_metadata_is_refused_before_anything_is_built(edit, words):
    meta = _meta()
    edit(meta)
    with pytest.raises(sc.SheetconvError) as e:
        load_model(json.loads(json.dumps(meta)))
    assert "\n" not in str(e.value) and words in str(e.value), str(e.value)


def test_metadata_bound_leaves_real_workbooks_alone():
    net = sc.Network([sc.Conv2d(3, 16, 3, stride=2, padding=1), sc.ReLU()], input_shape=(3, 512, 512))
    loaded, layout = load_model(json.loads(json.dumps(_meta(net))))
    assert loaded.input_shape == (3, 512, 512) and MAX_SHEET_CELLS > 3 * 512 * 512


def _forged_workbook(path: Path, meta: dict):
    chunks = to_chunks(meta)
    rows = {i + 1: [cell_xml(f"A{i + 1}", c)] for i, c in enumerate(chunks)}
    write_xlsx(path, [("conv", sheet_xml({1: [cell_xml("B2", 0.5)]})), ("_sheetconv", sheet_xml(rows))])


@pytest.mark.parametrize("command", ["check", "trace"])
def test_small_workbook_claiming_a_huge_input_is_refused_quickly(tmp_path, command):
    meta = _meta()
    meta["spec"]["input_shape"] = [1, 7000, 7000]
    panel = meta["layout"]["panels"][0]
    panel[6] = panel[7] = 7000
    _forged_workbook(tmp_path / "forged.xlsx", meta)
    assert (tmp_path / "forged.xlsx").stat().st_size < 4096
    args = ["check", "forged.xlsx"] if command == "check" else ["trace", "forged.xlsx", "conv1[0,0,0]"]
    code, err, peak = cli_peak(args, tmp_path)
    assert_refused(code, err, "workbook metadata", "input_shape [1, 7000, 7000] has 49,000,000 cells")
    assert peak < PEAK_MB, peak


# ---------------------------------------------------------------- arguments and file names

def test_depth_with_a_unicode_digit(tmp_path):
    assert run(["build", "--out", "b.xlsx"], tmp_path).exit_code == 0
    for depth in ("²", "٣", "1" * 30):
        r = run(["trace", "b.xlsx", "conv1[0,0,0]", "--depth", depth], tmp_path)
        assert_one_line_error(r, "--depth", repr(depth)[:20], "expected a positive whole number or 'all'")


LONG = "n" * 300


@pytest.mark.parametrize("args, words", [
    (["build", "--out", LONG + ".xlsx"], ["a name in this output path is 305 bytes long", "at most 255 bytes"]),
    (["build", "--image", LONG + ".png"], ["a name in this input path is 304 bytes long"]),
    (["build", "--npy", LONG + ".npy"], ["a name in this input path is 304 bytes long"]),
    (["build", "--spec", LONG + ".json"], ["a name in this spec path is 305 bytes long"]),
    (["build", "--weights", LONG + ".npz"], ["a name in this .npz path is 304 bytes long"]),
    (["build", "--state-dict", LONG + ".pt"], ["a name in this state-dict path is 303 bytes long"]),
    (["trace", "b.xlsx", "conv1[0,0,0]", "--png", LONG + ".png"], ["file name too long", "at most 255 bytes"]),
    (["trace", "b.xlsx", "conv1[0,0,0]", "--highlight", LONG + ".xlsx"], ["file name too long"]),
    (["check", LONG + ".xlsx"], ["file name too long"]),
    (["examples", "--out-dir", LONG], ["a name in this output folder path is 300 bytes long"]),
])
def test_names_longer_than_255_bytes(tmp_path, args, words):
    assert run(["build", "--out", "b.xlsx"], tmp_path).exit_code == 0
    assert_one_line_error(run(args, tmp_path), "nnnnnnnnnn...", *words)
    assert files(tmp_path) == ["b.xlsx"]
