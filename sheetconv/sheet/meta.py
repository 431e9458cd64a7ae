"""The machine-readable description a sheetconv workbook carries about itself.

A very hidden worksheet ``_sheetconv`` holds, in column A from A1 down, chunks of at
most 30,000 characters of one JSON document::

    {"format": "sheetconv", "format_version": 2, "sheetconv_version": "0.1.0",
     "spec": <Network.spec()>, "layout": <Layout.to_json()>, "sheet": "conv",
     "dtype": "float64"}

``spec`` rebuilds the network (``Network.from_spec``) and ``layout`` maps every sheet
cell to ``(layer, channel, row, col)`` (``Layout.from_json``), so trace and check need no
guessing.

Format 2 (this version) lays the sheet out in reading order (layout version 2); a
format-1 workbook is still recognised, and loading it says to rebuild it.
"""
from __future__ import annotations

import json

from ..errors import SheetconvError
from ..nn.network import Network
from ..version import __version__
from .layout import Layout

__all__ = ["META_SHEET", "FORMAT", "FORMAT_VERSION", "CHUNK", "build_meta", "to_chunks", "parse_chunks",
           "load_model"]

META_SHEET = "_sheetconv"
FORMAT = "sheetconv"
FORMAT_VERSION = 2
CHUNK = 30000


def build_meta(net, layout) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "sheetconv_version": __version__,
            "spec": net.spec(), "layout": layout.to_json(), "sheet": layout.sheet, "dtype": "float64"}


def to_chunks(meta: dict, size: int = CHUNK) -> list[str]:
    """The JSON text (ASCII) cut into pieces of at most ``size`` characters."""
    text = json.dumps(meta, separators=(",", ":"), sort_keys=True)
    return [text[i:i + size] for i in range(0, len(text), size)] or ["{}"]


def parse_chunks(chunks) -> dict:
    """Join column A's chunks and check the document; raises SheetconvError if it is not ours."""
    parts = []
    for c in chunks:
        if c is None or c == "":
            break
        if not isinstance(c, str):
            raise SheetconvError(f"workbook metadata: expected text chunks in column A, got {type(c).__name__}")
        parts.append(c)
    try:
        meta = json.loads("".join(parts))
    except ValueError as e:
        raise SheetconvError(f"workbook metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SheetconvError(f"workbook metadata: expected format {FORMAT!r}, got {meta.get('format') if isinstance(meta, dict) else meta!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise SheetconvError(f"workbook metadata: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise SheetconvError(f"workbook metadata has format_version {version}; this sheetconv reads up to "
                             f"{FORMAT_VERSION} (upgrade sheetconv)")
    missing = [k for k in ("spec", "layout", "sheet") if k not in meta]
    if missing:
        raise SheetconvError(f"workbook metadata lacks {', '.join(missing)}")
    return meta




def load_model(meta: dict):
    """The network and layout a workbook's metadata describes: ``(net, layout)``.

    Anything malformed (wrong types, unknown layer options, absurd sizes, a layout that
    does not fit the network) raises SheetconvError with one line naming what was wrong.
    """
    if not isinstance(meta, dict):
        raise SheetconvError(f"workbook metadata: expected a JSON object, got {type(meta).__name__}")
    spec, layout = meta.get("spec"), meta.get("layout")
    if not isinstance(spec, dict):
        raise SheetconvError(f"workbook metadata: 'spec' must be an object, got {_kind(spec)}")
    if not isinstance(spec.get("layers"), list):
        raise SheetconvError(f"workbook metadata: spec 'layers' must be a list, got {_kind(spec.get('layers'))}")
    bad = next((i for i, cfg in enumerate(spec["layers"]) if not isinstance(cfg, dict)), None)
    if bad is not None:
        raise SheetconvError(f"workbook metadata: spec layer {bad} must be an object, "
                             f"got {_kind(spec['layers'][bad])}")
    if not isinstance(layout, dict):
        raise SheetconvError(f"workbook metadata: 'layout' must be an object, got {_kind(layout)}")
    sheet = meta.get("sheet")
    if not isinstance(sheet, str) or not sheet:
        raise SheetconvError(f"workbook metadata: 'sheet' must be a sheet name, got {_kind(sheet)}")
    try:
        net = Network.from_spec(spec)            # validated, with bounded sizes (specfile)
        lay = Layout.from_json(layout, net)
    except SheetconvError as e:
        raise SheetconvError(f"workbook metadata describes a bad network: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, MemoryError,
            RecursionError, ZeroDivisionError) as e:
        raise SheetconvError(f"workbook metadata describes a bad network ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else 'malformed'})") from None
    return net, lay


def _kind(value) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__
    return text[:40]
