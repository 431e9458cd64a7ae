"""Bounded readers for NumPy's .npy and .npz files.

Invariants: a file's arrays are described from their headers (names, shapes, dtypes)
before any data is read, and data is read only for arrays whose size the caller has
accepted. So a 2 MB .npz whose member expands to 3 GiB, or a header that claims a
7 TiB array, is refused with a one-line SheetconvError before anything large is
allocated. Pickled (object) arrays are never loaded. Nothing here knows about networks:
callers pass the bound (``max_elements``) or a check of the headers.
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable
from math import prod
from pathlib import Path

import numpy as np

from ..errors import SheetconvError
from .paths import check_name, os_reason

__all__ = ["ArrayHeader", "read_npy", "npz_headers", "read_npz", "stand_in"]

_MAX_HEADER = 1 << 16            # numpy itself writes headers of a few hundred bytes
_MAX_MEMBERS = 10_000


class ArrayHeader(tuple):
    """``(shape, dtype)`` of one stored array, read from its .npy header."""
    __slots__ = ()

    def __new__(cls, shape, dtype):
        return super().__new__(cls, (tuple(int(v) for v in shape), np.dtype(dtype)))

    @property
    def shape(self) -> tuple:
        return self[0]

    @property
    def dtype(self) -> np.dtype:
        return self[1]

    @property
    def size(self) -> int:
        return prod(self.shape)


def stand_in(header: ArrayHeader) -> np.ndarray:
    """A zero array of ``header``'s shape and dtype that takes no memory (a broadcast view)."""
    return np.broadcast_to(np.zeros((), header.dtype), header.shape)


def _header(f, where: str) -> tuple[ArrayHeader, bool]:
    """Read one .npy header from ``f``; returns (header, fortran_order). Data is not read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise SheetconvError(f"{where}: not a readable .npy array ({first}); expected a file written by "
                             f"numpy.save") from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise SheetconvError(f"{where}: holds {dtype} values; expected real numbers (bool, int or float)")
    if any(v < 0 for v in shape):
        raise SheetconvError(f"{where}: header claims the negative shape {shape}")
    return ArrayHeader(shape, dtype), fortran


def _data(f, header: ArrayHeader, fortran: bool, where: str) -> np.ndarray:
    """The array's data, read after its header was accepted (exactly size * itemsize bytes)."""
    want = header.size * header.dtype.itemsize
    raw = f.read(want)
    if len(raw) != want:
        raise SheetconvError(f"{where}: holds {len(raw):,} bytes of data, its header promises {want:,} "
                             f"(a truncated file?)")
    arr = np.frombuffer(raw, dtype=header.dtype)
    if fortran:
        return np.ascontiguousarray(arr.reshape(header.shape[::-1]).T)
    return arr.reshape(header.shape).copy()


def _open(path: Path, what: str):
    check_name(path, what)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise SheetconvError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SheetconvError(f"{path}: is a directory, expected a {what} file") from None
    except OSError as e:
        raise SheetconvError(f"{path}: cannot read the {what} file: {os_reason(e)}") from None


def _too_big(where: str, header: ArrayHeader, max_elements: int) -> SheetconvError:
    return SheetconvError(f"{where}: header claims a {'x'.join(map(str, header.shape)) or 'scalar'} "
                          f"{header.dtype} array ({header.size:,} values); at most {max_elements:,} are expected")


def read_npy(path, max_elements: int) -> np.ndarray:
    """A .npy file's array, refused from its header if it holds more than ``max_elements`` values.

    A .npz (zip) file is refused with a hint, as is a pickled array.
    """
    path = Path(path)
    with _open(path, ".npy") as f:
        if f.read(4) == b"PK\x03\x04":
            raise SheetconvError(f"{path}: is a .npz archive of several arrays; expected a single .npy array "
                                 f"(numpy.save)")
        f.seek(0)
        header, fortran = _header(f, str(path))
        if header.size > max_elements:
            raise _too_big(str(path), header, max_elements)
        try:
            return _data(f, header, fortran, str(path))
        except OSError as e:
            raise SheetconvError(f"{path}: cannot read the .npy file: {os_reason(e)}") from None


def _members(z: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    infos = z.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise SheetconvError(f"{path}: holds {len(infos):,} members; a weights file holds a few arrays")
    out = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise SheetconvError(f"{path}: member {info.filename[:80]!r} is not a .npy array; expected a .npz "
                                 f"file written by numpy.savez")
        out[info.filename[:-4]] = info
    return out


def _zip(path: Path) -> zipfile.ZipFile:
    f = _open(path, ".npz")
    try:
        magic = f.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise SheetconvError(f"{path}: expected a .npz file of named arrays (numpy.savez), got a single array")
        f.seek(0)
        return zipfile.ZipFile(f)
    except SheetconvError:
        f.close()
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        f.close()
        raise SheetconvError(f"{path}: not a readable .npz file ({str(e)[:120] or type(e).__name__}); "
                             f"expected a file written by numpy.savez") from None


def npz_headers(path, max_elements: int) -> dict[str, ArrayHeader]:
    """Names, shapes and dtypes of a .npz file's arrays, read from the headers only.

    Refuses the file if its arrays claim more than ``max_elements`` values in all.
    """
    path = Path(path)
    with _zip(path) as z:
        return _headers(z, path, max_elements)


def _headers(z: zipfile.ZipFile, path: Path, max_elements: int) -> dict[str, ArrayHeader]:
    out, total = {}, 0
    for name, info in _members(z, path).items():
        where = f"{path}: array {name!r}"
        try:
            with z.open(info) as f:
                header, _ = _header(f, where)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as e:
            raise SheetconvError(f"{where}: cannot be read ({str(e)[:120] or type(e).__name__})") from None
        total += header.size
        if total > max_elements:
            raise SheetconvError(f"{where}: its header claims {header.size:,} values "
                                 f"({'x'.join(map(str, header.shape))} {header.dtype}), which takes the file past "
                                 f"{max_elements:,} values in all, the most expected")
        out[name] = header
    if not out:
        raise SheetconvError(f"{path}: holds no arrays; expected a .npz file written by numpy.savez")
    return out


def read_npz(path, max_elements: int,
             accept: Callable[[dict[str, ArrayHeader]], object] | None = None) -> dict[str, np.ndarray]:
    """A .npz file's arrays by name, read only after their headers pass.

    The headers are refused if they claim more than ``max_elements`` values in all, and
    ``accept(headers)`` (which raises SheetconvError to refuse) sees them before any data
    is read.
    """
    path = Path(path)
    with _zip(path) as z:
        headers = _headers(z, path, max_elements)
        if accept is not None:
            accept(headers)
        arrays = {}
        for name, info in _members(z, path).items():
            where = f"{path}: array {name!r}"
            try:
                with z.open(info) as f:
                    header, fortran = _header(f, where)
                    arrays[name] = _data(f, header, fortran, where)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as e:
                raise SheetconvError(f"{where}: cannot be read ({str(e)[:120] or type(e).__name__})") from None
        return arrays
