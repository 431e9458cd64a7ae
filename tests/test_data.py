"""Inputs: the bundled digits, .npy files and images read through Pillow."""
import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sheetconv as sc

# The labels the MNIST README (shared data folder) gives for the first ten test digits.
README_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
SHARED_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist" / "mnist_test_10.csv"
BUNDLED_CSV = Path(sc.__file__).parent / "nn" / "data" / "mnist_test_10.csv"
# sha256 of the shared folder's mnist_test_10.csv, the file the bundled copy was taken from
SHARED_SHA256 = "36872cba8ad8788b41d8dc391e84e33871ba1bb9d73a5a4c95c0429fd63e96e5"


def test_bundled_csv_is_the_shared_subset_byte_for_byte():
    assert hashlib.sha256(BUNDLED_CSV.read_bytes()).hexdigest() == SHARED_SHA256
    if SHARED_CSV.exists():
        assert SHARED_CSV.read_bytes() == BUNDLED_CSV.read_bytes()
    elif os.environ.get("CI") == "true":
        pytest.fail(f"{SHARED_CSV} is missing; CI lays the shared folder beside the clone")


def csv_rows(path):
    with open(path, newline="") as f:
        return [[int(v) for v in row] for row in csv.reader(f)]


def test_digit_labels_match_the_readme():
    assert [sc.digit_label(i) for i in range(10)] == README_LABELS


def test_digits_are_the_csv_pixels_over_255():
    rows = csv_rows(BUNDLED_CSV)
    assert [r[0] for r in rows] == README_LABELS
    for i, row in enumerate(rows):
        x = sc.digit(i)
        assert x.shape == (1, 28, 28) and x.dtype == np.float64
        expected = np.array(row[1:], dtype=np.float64).reshape(28, 28) / 255
        np.testing.assert_array_equal(x[0], expected)
        assert 0.0 <= x.min() and x.max() <= 1.0


def test_digit_looks_like_a_seven():
    x = sc.digit(0)[0]
    # a 7: ink in the top bar and none in the bottom-left corner
    assert x[6:9, 6:20].mean() > 0.2
    assert x[22:, :6].sum() == 0


@pytest.mark.parametrize("bad", [-1, 10, 2.0, "3", None])
def test_digit_index_out_of_range(bad):
    with pytest.raises(sc.SheetconvError, match="digit index must be 0..9"):
        sc.digit(bad)


def test_npy_inputs(tmp_path):
    a = np.random.default_rng(0).random((28, 28))
    np.save(tmp_path / "hw.npy", a)
    np.save(tmp_path / "chw.npy", a[None].astype(np.float32))
    np.save(tmp_path / "int.npy", (a * 255).astype(np.uint8)[None])
    x = sc.load_input(tmp_path / "hw.npy")
    assert x.shape == (1, 28, 28) and x.dtype == np.float64
    np.testing.assert_array_equal(x[0], a)
    np.testing.assert_array_equal(sc.load_input(tmp_path / "chw.npy", shape=(1, 28, 28))[0], a.astype(np.float32))
    # uint8 arrays are pixels, scaled like images; other integer types are taken as they are.
    np.testing.assert_array_equal(sc.load_input(tmp_path / "int.npy")[0], (a * 255).astype(np.uint8) / 255.0)
    np.save(tmp_path / "i16.npy", (a * 255).astype(np.int16))
    np.testing.assert_array_equal(sc.load_input(tmp_path / "i16.npy")[0], (a * 255).astype(np.int16))
    net = sc.preset("conv-example")
    assert net.forward(x).shape == (2, 7, 7)


def test_npy_errors(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((1, 20, 20)))
    with pytest.raises(sc.SheetconvError, match=r"shape \(1, 20, 20\), the network expects \(1, 28, 28\)"):
        sc.load_input(tmp_path / "small.npy", shape=(1, 28, 28))
    np.save(tmp_path / "nan.npy", np.full((28, 28), np.nan))
    with pytest.raises(sc.SheetconvError, match="NaN or Inf"):
        sc.load_input(tmp_path / "nan.npy")
    np.save(tmp_path / "vec.npy", np.zeros(5))
    with pytest.raises(sc.SheetconvError, match=r"\(H, W\) or \(C, H, W\)"):
        sc.load_input(tmp_path / "vec.npy")
    np.save(tmp_path / "complex.npy", np.zeros((28, 28), complex))
    with pytest.raises(sc.SheetconvError, match="complex128"):
        sc.load_input(tmp_path / "complex.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(sc.SheetconvError, match="holds object values; expected real numbers"):
        sc.load_input(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(sc.SheetconvError, match="not a readable .npy"):
        sc.load_input(tmp_path / "junk.npy")
    with pytest.raises(sc.SheetconvError, match="no such file"):
        sc.load_input(tmp_path / "missing.npy")
    with pytest.raises(sc.SheetconvError, match=r": is a directory, expected an image file \(PNG, JPEG, \.\.\.\) or a \.npy"):
        sc.load_input(tmp_path)


def test_grey_png(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "d.png")
    x = sc.load_input(tmp_path / "d.png", shape=(1, 28, 28))
    assert x.shape == (1, 28, 28)
    np.testing.assert_array_equal(x[0], pixels / 255.0)


def test_rgb_png_becomes_grey_by_luma(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    x = sc.load_input(tmp_path / "c.png", warn=[].append)
    assert x.shape == (1, 10, 12)
    rgb_i = rgb.astype(np.int64)
    luma = (rgb_i[..., 0] * 299 + rgb_i[..., 1] * 587 + rgb_i[..., 2] * 114) / 1000 / 255   # ITU-R 601-2
    assert np.abs(x[0] - luma).max() <= 1 / 255 + 1e-12
    three = sc.load_input(tmp_path / "c.png", shape=(3, 10, 12), warn=[].append)
    np.testing.assert_array_equal(three, rgb.transpose(2, 0, 1) / 255.0)


def test_16_bit_png_keeps_its_range(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 65536, (28, 28), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    x = sc.load_input(tmp_path / "deep.png", shape=(1, 28, 28))
    np.testing.assert_allclose(x[0], pixels / 65535.0, rtol=0, atol=1e-12)


def test_image_size_is_checked_or_resized(tmp_path):
    Image.fromarray(np.full((40, 30), 200, np.uint8), mode="L").save(tmp_path / "big.png")
    with pytest.raises(sc.SheetconvError, match=r"image is 30x40, the network expects 28x28"):
        sc.load_input(tmp_path / "big.png", shape=(1, 28, 28))
    notes = []
    x = sc.load_input(tmp_path / "big.png", shape=(1, 28, 28), resize=True, warn=notes.append)
    assert len(notes) == 2 and "stretched" in notes[0] and "--invert" in notes[1]
    assert x.shape == (1, 28, 28)
    np.testing.assert_allclose(x, 200 / 255)


def test_unreadable_image(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(sc.SheetconvError, match="not a readable image"):
        sc.load_input(tmp_path / "fake.png")


def test_invert_gives_one_minus_the_pixels(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", pixels / 255.0)
    for name in ("d.png", "d.npy"):
        x = sc.load_input(tmp_path / name, shape=(1, 28, 28), invert=True)
        np.testing.assert_allclose(x[0], 1 - pixels / 255.0, rtol=0, atol=1e-15)


def test_dark_ink_on_light_paper_is_noticed_unless_inverted(tmp_path):
    paper = np.full((28, 28), 250, np.uint8)
    paper[5:23, 12:16] = 10                           # a dark stroke
    Image.fromarray(paper, mode="L").save(tmp_path / "ink.png")
    notes = []
    sc.load_input(tmp_path / "ink.png", shape=(1, 28, 28), warn=notes.append)
    assert len(notes) == 1 and "light on dark" in notes[0] and "--invert" in notes[0]
    notes.clear()
    x = sc.load_input(tmp_path / "ink.png", shape=(1, 28, 28), invert=True, warn=notes.append)
    assert notes == [] and x[0, 10, 13] > 0.9
    Image.fromarray(255 - paper, mode="L").save(tmp_path / "mnist-like.png")
    sc.load_input(tmp_path / "mnist-like.png", warn=notes.append)
    np.save(tmp_path / "light.npy", paper / 255.0)    # arrays are never second-guessed
    sc.load_input(tmp_path / "light.npy", warn=notes.append)
    assert notes == []
    with pytest.warns(UserWarning, match="--invert"):
        sc.load_input(tmp_path / "ink.png")


def test_resizing_to_another_aspect_ratio_says_it_stretched(tmp_path):
    Image.new("L", (56, 28)).save(tmp_path / "wide.png")
    Image.new("L", (56, 56)).save(tmp_path / "square.png")
    notes = []
    sc.load_input(tmp_path / "square.png", shape=(1, 28, 28), resize=True, warn=notes.append)
    assert notes == []
    sc.load_input(tmp_path / "wide.png", shape=(1, 28, 28), resize=True, warn=notes.append)
    assert len(notes) == 1 and "stretched" in notes[0] and "56x28" in notes[0]


def test_decompression_bomb_is_a_one_line_error(tmp_path, monkeypatch):
    Image.new("L", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)     # 4096 pixels > 2 x 1000: Pillow refuses
    with pytest.raises(sc.SheetconvError, match="bomb.png: not a readable image"):
        sc.load_input(tmp_path / "bomb.png")
