"""Inputs: the bundled MNIST digits, .npy arrays and image files."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import SheetconvError

__all__ = ["digit", "digit_label", "DIGIT_COUNT", "load_input"]

_CSV = "mnist_test_10.csv"
DIGIT_COUNT = 10


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    text = resources.files("sheetconv").joinpath("data", _CSV).read_text()
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


def load_input(path, shape: tuple[int, int, int] | None = None, resize: bool = False) -> np.ndarray:
    """An input image as (C, H, W) float64 from a .npy file or an image (PNG, JPEG, ...).

    Images become grey 0..1 (or RGB if ``shape`` asks for 3 channels). With ``shape``
    the size is checked; ``resize=True`` resizes an image to it instead.
    """
    path = Path(path)
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as e:
            raise SheetconvError(f"{path}: not a readable .npy array ({e.__class__.__name__}: {e})") from None
        if x.ndim == 2:
            x = x[None]
        real = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool
        if x.ndim != 3 or not real:
            raise SheetconvError(f"{path}: expected a numeric (H, W) or (C, H, W) array, got {x.dtype} {x.shape}")
        x = x.astype(np.float64)
        if shape is not None and x.shape != tuple(shape):
            raise SheetconvError(f"{path}: array has shape {x.shape}, the network expects {tuple(shape)}")
        if not np.all(np.isfinite(x)):
            raise SheetconvError(f"{path}: contains NaN or Inf")
        return x
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
                im = im.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float64) / scale
    except (UnidentifiedImageError, OSError) as e:
        raise SheetconvError(f"{path}: not a readable image ({e})") from None
    x = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if shape is not None and x.shape[0] != shape[0]:
        raise SheetconvError(f"{path}: image has {x.shape[0]} channels, the network expects {shape[0]}")
    return x
