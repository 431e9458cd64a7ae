"""State dicts: reading ``torch.save``'d files and mapping named arrays onto a network.

``read_state_dict_file(path)`` reads a file written by ``torch.save(model.state_dict())``
with ``torch.load(weights_only=True)`` — it never unpickles arbitrary objects.
Invariants of the reader, in order:

- the zip archive is inspected first: its pickle is small, its tensor storages are stored
  uncompressed (as torch.save writes them) and take at most ``8 * max_elements`` bytes,
  so a 1 MB file whose storage inflates to 1 GiB is refused before torch reads it;
- the file is then loaded memory-mapped (``mmap=True``): storages are not read yet;
- every tensor must be a dense real CPU tensor (sparse, meta, quantized, nested and
  complex tensors are refused by name);
- ``accept(headers)`` sees every tensor's shape before any storage is converted, so a
  caller bounds the memory by the network it loads into.

``map_state_dict(state, net)`` maps names to the network's parameters (its own names or
any in the network's order), checking every shape; ``load_state_dict_file(path, net)``
does both and loads the weights. torch is imported only when a file is read.
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import SheetconvError
from ..nn.arrayfiles import ArrayHeader, stand_in
from ..nn.network import Network
from ..nn.paths import check_name, os_reason
from ..nn.specfile import MAX_PARAMS
from .verify import require_torch

__all__ = ["load_state_dict_file", "map_state_dict", "read_state_dict_file", "state_dict_headers"]

_MAX_PICKLE = 16 << 20               # the pickle of a state dict names tensors: kilobytes
_HINT = "save one with torch.save(model.state_dict(), path)"


def _check_archive(path: Path, max_elements: int) -> None:
    """Refuse a file that is not torch's zip format, or whose storages are compressed or too big."""
    check_name(path, "state-dict")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except FileNotFoundError:
        raise SheetconvError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SheetconvError(f"{path}: is a directory, expected a state-dict file") from None
    except PermissionError:
        raise SheetconvError(f"{path}: permission denied") from None
    except OSError as e:
        raise SheetconvError(f"{path}: cannot read the state-dict file: {os_reason(e)}") from None
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise SheetconvError(f"{path}: not a PyTorch state dict that loads with weights_only=True: not "
                             f"torch.save's zip format (PyTorch >= 1.6); {_HINT}") from None
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    if len(pickles) != 1:
        raise SheetconvError(f"{path}: a zip file, but not one written by torch.save (no single data.pkl); {_HINT}")
    if pickles[0].file_size > _MAX_PICKLE:
        raise SheetconvError(f"{path}: its pickle takes {pickles[0].file_size:,} bytes; a state dict's takes "
                             f"at most {_MAX_PICKLE:,}")
    storages = [i for i in infos if "/data/" in i.filename and not i.filename.endswith("/")]
    for info in storages:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise SheetconvError(f"{path}: storage {info.filename[:80]!r} is compressed; torch.save stores "
                                 f"storages uncompressed ({_HINT})")
    total, limit = sum(i.file_size for i in storages), 8 * max_elements
    if total > limit:
        raise SheetconvError(f"{path}: its tensor storages take {total:,} bytes, more than the {limit:,} bytes of "
                             f"{max_elements:,} float64 values expected")


def _load(path: Path):
    torch = require_torch()
    try:
        return torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except FileNotFoundError:
        raise SheetconvError(f"{path}: no such file") from None
    except PermissionError:
        raise SheetconvError(f"{path}: permission denied") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        # torch's own text is a long tutorial on weights_only; name only the kind of failure
        what = "it holds pickled objects, not just tensors (a whole model?)" if "Weights only load failed" in str(e) \
            else f"{type(e).__name__}"
        raise SheetconvError(f"{path}: not a PyTorch state dict that loads with weights_only=True: {what}; "
                             f"{_HINT}") from None


def _tensor_kind(torch, t) -> str | None:
    """Why a tensor cannot be read as plain numbers, or None."""
    if t.layout != torch.strided:
        return f"a sparse tensor ({str(t.layout).removeprefix('torch.')})"
    if t.is_nested:
        return "a nested tensor"
    if t.is_quantized:
        return "a quantized tensor"
    if t.device.type == "meta":
        return "a meta tensor (it has a shape but no values)"
    if t.is_complex():
        return "complex"
    return None


def _read_state(path, max_elements: int = MAX_PARAMS) -> dict:
    """The file's mapping of names to dense real tensors (memory-mapped, not yet read)."""
    path = Path(path)
    _check_archive(path, max_elements)         # before torch is even imported
    torch = require_torch()
    obj = _load(path)
    # fastai's learn.save(with_opt=True) and common checkpoints wrap the state dict.
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise SheetconvError(f"{path}: expected a state dict (a mapping of names to tensors), got "
                             f"{'an empty mapping' if isinstance(obj, dict) else type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise SheetconvError(f"{path}: expected a state dict of tensors; entry {bad[0]!r:.80} is "
                             f"{type(obj[bad[0]]).__name__}")
    for key, tensor in obj.items():
        kind = _tensor_kind(torch, tensor)
        if kind is not None:
            raise SheetconvError(f"{path}: tensor {key!r:.80} is {kind}; expected dense real tensors (call "
                                 f".to_dense(), .dequantize() or .float() before saving)")
    return obj


def _header(tensor) -> ArrayHeader:
    """The tensor's shape and the NumPy kind of its values (bfloat16 has no NumPy dtype)."""
    if tensor.dtype.is_floating_point:
        return ArrayHeader(tuple(tensor.shape), np.float64)
    return ArrayHeader(tuple(tensor.shape), np.bool_ if str(tensor.dtype) == "torch.bool" else np.int64)


def state_dict_headers(path, max_elements: int = MAX_PARAMS) -> dict[str, ArrayHeader]:
    """Names, shapes and (NumPy) kinds of a state-dict file's tensors, without reading their values."""
    return {k: _header(t) for k, t in _read_state(path, max_elements).items()}


def read_state_dict_file(path, max_elements: int = MAX_PARAMS,
                         accept: Callable[[dict[str, ArrayHeader]], object] | None = None) -> dict[str, np.ndarray]:
    """A ``torch.save``'d state dict as float64 NumPy arrays under the file's own keys.

    ``accept(headers)`` (raising SheetconvError to refuse) sees the tensors' shapes before
    any value is read.
    """
    state = _read_state(path, max_elements)
    torch = require_torch()
    if accept is not None:
        accept({k: _header(t) for k, t in state.items()})
    return {key: tensor.detach().to("cpu", torch.float64).numpy() for key, tensor in state.items()}


def map_state_dict(state: dict, net: Network, source: str = "state dict") -> dict[str, np.ndarray]:
    """Map ``state`` (names -> arrays) onto ``net.state_dict()``'s keys; pure NumPy.

    Keys may be the network's own ('conv1.weight') or any others in the network's order —
    ``'0.0.weight', '0.0.bias', '1.0.weight', ...`` from a fastai-style nested Sequential.
    Every array's shape is checked against the parameter it lands on; an error names the
    layer, the key in ``source`` and both shapes. BatchNorm's ``num_batches_tracked`` counters
    are skipped (only training uses them). Returns float64 copies keyed by the net's
    names (the network itself is not changed).
    """
    if not isinstance(state, dict) or not state:
        raise SheetconvError(f"{source}: expected a non-empty mapping of names to arrays, got "
                             f"{'an empty mapping' if isinstance(state, dict) else type(state).__name__}")
    own = net.state_dict()
    bad = [k for k in state if not isinstance(k, str)]
    if bad:
        raise SheetconvError(f"{source}: keys must be strings, got {bad[0]!r}")
    # a BatchNorm's step counter only matters for training: not a cell, not kept
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] != "num_batches_tracked" or k in own}
    if set(state) == set(own):
        pairs = [(k, k) for k in own]
    else:
        theirs, ours = list(state), list(own)
        if len(theirs) != len(ours):
            raise SheetconvError(
                f"{source}: holds {len(theirs)} tensor{'s' if len(theirs) != 1 else ''} ({_keys(theirs)}), "
                f"the network has {len(ours)} parameter{'s' if len(ours) != 1 else ''} ({_keys(ours)})")
        pairs = list(zip(ours, theirs))
        for mine, key in pairs:
            if key.rsplit(".", 1)[-1] != mine.rsplit(".", 1)[-1]:
                raise SheetconvError(f"{source}: tensor {key!r} would land on {mine!r}; the tensors "
                                     f"({_keys(theirs)}) do not follow the network's order ({_keys(ours)})")
    mapped = {}
    for mine, key in pairs:
        layer, what = mine.rsplit(".", 1)
        try:
            arr = np.asarray(state[key])
        except Exception as e:  # noqa: BLE001 - anything array-like may fail its own way
            raise SheetconvError(f"{source}: {key!r} is not an array ({type(e).__name__})") from None
        if arr.dtype.kind not in "biuf":
            raise SheetconvError(f"{source}: {key!r} for layer {net[layer].label} {what} has dtype "
                                 f"{arr.dtype}, expected real numbers")
        if arr.shape != own[mine].shape:
            raise SheetconvError(f"{source}: layer {net[layer].label} {what}: {key!r} has shape "
                                 f"{tuple(arr.shape)}, the network expects {tuple(own[mine].shape)}")
        arr = arr.astype(np.float64, copy=True)
        if not np.isfinite(arr).all():
            raise SheetconvError(f"{source}: {key!r} for layer {net[layer].label} {what} holds NaN or infinity")
        mapped[mine] = arr
    return mapped


def load_state_dict_file(path, net: Network) -> dict[str, np.ndarray]:
    """Load a ``torch.save``'d state dict into ``net``; return it keyed by the net's names.

    The keys are mapped by :func:`map_state_dict` (the net's own names, or any in order);
    the shapes are checked from the file's tensors before their values are read.
    """
    source = str(path)
    arrays = read_state_dict_file(
        path, accept=lambda headers: map_state_dict({k: stand_in(h) for k, h in headers.items()}, net, source))
    mapped = map_state_dict(arrays, net, source=source)
    net.load_state_dict(mapped)
    return mapped


def _keys(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f", ... {len(keys) - n} more" if len(keys) > n else "")
