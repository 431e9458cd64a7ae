"""Inputs: the bundled MNIST digits, .npy arrays and image files.

Invariants: every input is a finite (C, H, W) float64 array in the units the network was
trained on (0..1 for images). A .npy array is refused from its header when it holds more
values than the network's input; an image is read by its mode (8-bit, 16-bit, 0..1 float,
with alpha composited on the background the image implies), and any other mode is refused
by name rather than converted to something else.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from importlib import resources
from math import prod
from pathlib import Path

import numpy as np

from ..errors import SheetconvError
from .arrayfiles import read_npy
from .paths import check_name
from .specfile import MAX_CELLS

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
    path = check_name(path, "input")
    if path.is_dir():
        raise SheetconvError(f"{path}: is a directory, expected an image file (PNG, JPEG, ...) or a .npy array")
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file (expected an image file (PNG, JPEG, ...) or a .npy array)")
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
    limit = prod(shape) if shape is not None else MAX_CELLS
    x = read_npy(path, max_elements=limit)            # refused from its header if larger
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise SheetconvError(f"{path}: expected a numeric (H, W) or (C, H, W) array, got {x.dtype} {x.shape}")
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if shape is not None and x.shape != tuple(shape):
        raise SheetconvError(f"{path}: array has shape {x.shape}, the network expects {tuple(shape)}")
    if not np.all(np.isfinite(x)):
        raise SheetconvError(f"{path}: contains NaN or Inf")
    return x


# Pillow modes read as they are; others are refused by name.
_EIGHT_BIT = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"}
_WITH_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])      # ITU-R 601-2 luma, as Pillow's convert("L")


def _pixels(im, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The image as (H, W, C) float64 in 0..1 (C is 1 or 3) and its alpha (H, W) in 0..1, or None."""
    mode = im.mode
    if mode == "P" and "transparency" in im.info:
        mode = "PA"
    if mode in _WITH_ALPHA:
        grey = mode in ("LA", "La")
        rgba = np.asarray(im.convert("LA" if grey else "RGBA"), dtype=np.float64) / 255.0
        colour = rgba[..., :1] if grey else rgba[..., :3]
        return colour, rgba[..., -1]
    if mode in _EIGHT_BIT:
        grey = mode in ("1", "L") or (mode == "P" and _palette_is_grey(im))
        arr = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.float64) / 255.0
        return (arr[..., None] if grey else arr), None
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im.convert("I") if mode != "I" else im, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise SheetconvError(f"{path}: a 32-bit integer image with values {arr.min():.0f}..{arr.max():.0f}; "
                                 f"expected 0..65535 (16-bit grey)")
        return arr[..., None] / 65535.0, None
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise SheetconvError(f"{path}: a floating-point image holding NaN or Inf; expected values 0..1")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise SheetconvError(f"{path}: a floating-point image with values {arr.min():.4g}..{arr.max():.4g}; "
                                 f"expected 0..1 (save it as 8-bit grey, or as a .npy array)")
        return arr[..., None], None
    raise SheetconvError(f"{path}: image mode {mode} is not supported; expected grey, RGB, palette, 16-bit "
                         f"grey or 0..1 floating-point images (with or without alpha)")


def _palette_is_grey(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))


def _flatten_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite on the background the image implies: white behind dark ink, black behind light ink.

    The ink is what is opaque; its alpha-weighted brightness decides. Fully transparent
    pixels become the background, so black ink on a transparent background reads as black
    on white (and ``--invert`` gives back the alpha channel exactly).
    """
    weight = alpha.sum()
    ink = float((colour.mean(axis=2) * alpha).sum() / weight) if weight > 0 else 0.0
    background = 1.0 if ink < 0.5 else 0.0
    return colour * alpha[..., None] + background * (1.0 - alpha[..., None])


def _resized(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float array resized to ``size`` (height, width), bilinearly, channel by channel."""
    from PIL import Image
    planes = [np.asarray(Image.fromarray(arr[..., c].astype(np.float32), mode="F")
                         .resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float64)
              for c in range(arr.shape[2])]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def _load_image(path: Path, shape, resize: bool, note) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            colour, alpha = _pixels(im, path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        if isinstance(e, SheetconvError):
            raise
        raise SheetconvError(f"{path}: not a readable image ({e})") from None
    if alpha is not None:
        colour = _flatten_alpha(colour, alpha)
    channels = shape[0] if shape is not None else 1
    if channels == 1 and colour.shape[2] == 3:
        colour = (colour @ _GREY_WEIGHTS)[..., None]
    elif channels == 3 and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    height, width = colour.shape[:2]
    if shape is not None and (height, width) != tuple(shape[1:]):
        if not resize:
            raise SheetconvError(f"{path}: image is {width}x{height}, the network expects "
                                 f"{shape[2]}x{shape[1]} (use --resize to scale it)")
        if width * shape[1] != height * shape[2]:
            note(f"{path}: the {width}x{height} image was stretched to {shape[2]}x{shape[1]} "
                 f"(a different aspect ratio)")
        colour = _resized(colour, tuple(shape[1:]))
    x = colour.transpose(2, 0, 1)
    if shape is not None and x.shape[0] != shape[0]:
        raise SheetconvError(f"{path}: image has {x.shape[0]} channels, the network expects {shape[0]}")
    return np.ascontiguousarray(x)
