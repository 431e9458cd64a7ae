"""Inputs: the bundled MNIST digits, .npy arrays and image files."""
from __future__ import annotations

import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import SheetconvError

__all__ = ["digit", "digit_label", "load_input"]

_CSV = "mnist_test_10.csv"


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    text = resources.files("sheetconv.nn").joinpath("data", _CSV).read_text()
    rows = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.int64)
    return rows[:, 0], rows[:, 1:].reshape(-1, 28, 28)


def digit(index: int = 0) -> np.ndarray:
    """Bundled MNIST test digit ``index`` (0..9) as a (1, 28, 28) float64 array in 0..1."""
    labels, images = _digits()
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(labels):
        raise SheetconvError(f"digit index must be 0..{len(labels) - 1}, got {index!r}")
    return images[index][None].astype(np.float64) / 255.0


def digit_label(index: int = 0) -> int:
    """The true label of bundled digit ``index``."""
    digit(index)
    return int(_digits()[0][index])


def load_input(path, shape: tuple[int, int, int] | None = None, resize: bool = False, invert: bool = False,
               warn=None) -> np.ndarray:
    """An input image as (C, H, W) float64 from a .npy file or an image (PNG, JPEG, ...).

    Images become grey 0..1 (or RGB if ``shape`` asks for 3 channels); a uint8 .npy
    array is scaled by 1/255 the same way, any other .npy array is taken as it is. With
    ``shape`` the size is checked; ``resize=True`` resizes an image to it instead.
    ``invert=True`` gives 1 - x, for dark ink on a light background (MNIST digits are
    light on dark). ``warn(message)`` receives one-line notes: an image stretched to a
    different aspect ratio, or one that looks like dark ink on light (default: a
    UserWarning).
    """
    if warn is None:
        def warn(message):
            warnings.warn(message, UserWarning, stacklevel=3)
    path = Path(path)
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        x = _load_npy(path, shape)
        return 1.0 - x if invert else x
    notes: list[str] = []
    x = _load_image(path, shape, resize, notes.append)
    if not invert and x.shape[0] == 1 and x.mean() > 0.5:      # grey, like MNIST
        notes.append(f"{path} looks like dark ink on a light background, but MNIST digits are light on dark: "
                     f"consider --invert")
    for note in notes:
        warn(note)
    return 1.0 - x if invert else x


def _load_npy(path: Path, shape) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:
        raise SheetconvError(f"{path}: not a readable .npy array ({e.__class__.__name__}: {e})") from None
    if x.ndim == 2:
        x = x[None]
    real = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool
    if x.ndim != 3 or not real:
        raise SheetconvError(f"{path}: expected a numeric (H, W) or (C, H, W) array, got {x.dtype} {x.shape}")
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if shape is not None and x.shape != tuple(shape):
        raise SheetconvError(f"{path}: array has shape {x.shape}, the network expects {tuple(shape)}")
    if not np.all(np.isfinite(x)):
        raise SheetconvError(f"{path}: contains NaN or Inf")
    return x


def _load_image(path: Path, shape, resize: bool, note) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            channels = shape[0] if shape is not None else 1
            if im.mode.startswith("I;16") and channels != 3:      # 16-bit grey: keep its precision
                im = im.convert("I")
                scale = 65535.0
            else:
                im = im.convert("RGB" if channels == 3 else "L")
                scale = 255.0
            if shape is not None and (im.height, im.width) != tuple(shape[1:]):
                if not resize:
                    raise SheetconvError(f"{path}: image is {im.width}x{im.height}, the network expects "
                                         f"{shape[2]}x{shape[1]} (use --resize to scale it)")
                if im.width * shape[1] != im.height * shape[2]:
                    note(f"{path}: the {im.width}x{im.height} image was stretched to {shape[2]}x{shape[1]} "
                         f"(a different aspect ratio)")
                im = im.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float64) / scale
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise SheetconvError(f"{path}: not a readable image ({e})") from None
    x = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if shape is not None and x.shape[0] != shape[0]:
        raise SheetconvError(f"{path}: image has {x.shape[0]} channels, the network expects {shape[0]}")
    return x
