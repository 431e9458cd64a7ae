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
from ..nn.nesting import nesting
from ..nn.network import Network
from ..version import __version__
from .a1 import MAX_COLS, MAX_ROWS
from .layout import LAYOUT_VERSION, Layout

__all__ = ["META_SHEET", "FORMAT", "FORMAT_VERSION", "CHUNK", "build_meta", "to_chunks", "parse_chunks",
           "load_model", "MAX_SHEET_CELLS", "MAX_NESTING"]

META_SHEET = "_sheetconv"
FORMAT = "sheetconv"
FORMAT_VERSION = 2
CHUNK = 30000
MAX_NESTING = 8                  # meta -> layout -> panels -> panel -> channels: 5
MAX_SHEET_CELLS = 20_000_000     # activations and parameters a workbook's metadata may describe
_MAX_PANELS = 100_000


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
    except RecursionError:
        raise SheetconvError(f"workbook metadata: nested too deeply to read; it nests at most {MAX_NESTING} "
                             f"levels") from None
    except ValueError as e:      # invalid JSON, or an integer of thousands of digits
        raise SheetconvError(f"workbook metadata is not valid JSON ({str(e).splitlines()[0][:200]})") from None
    if nesting(meta, MAX_NESTING) > MAX_NESTING:
        raise SheetconvError(f"workbook metadata: nested more than {MAX_NESTING} levels deep; it nests at most "
                             f"{MAX_NESTING}")
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
    _check_sizes(spec, layout)
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


# ---------------------------------------------------------------- bounds before allocating

def _int(value, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise SheetconvError(f"workbook metadata: {where} must be an int >= {least}, got {_kind(value)}")
    return value


def _layout_cells(layout: dict) -> int:
    """The cells the layout's panels claim, every number checked (no zero or negative sizes).

    A panel is ``[grid, role, label, vector, top, left, bh, bw, ph, pw, per_row, n, cin,
    channels, col_width]`` (sheet.layout.Panel.to_json): ``n`` blocks of ``bh`` x ``bw``
    cells (kernel panels: ``n`` x ``cin`` blocks). A layout of another version is left to
    Layout.from_json, which refuses it with its own message.
    """
    if layout.get("version") != LAYOUT_VERSION:
        return 0
    panels = layout.get("panels")
    if not isinstance(panels, list) or not panels or len(panels) > _MAX_PANELS:
        raise SheetconvError(f"workbook metadata: layout 'panels' must be a list of 1..{_MAX_PANELS:,} "
                             f"panels, got {_kind(panels)}")
    total = 0
    for i, panel in enumerate(panels):
        where = f"layout panel {i}"
        if not isinstance(panel, list) or len(panel) != 15:
            raise SheetconvError(f"workbook metadata: {where} must be a list of 15 items, got {_kind(panel)}")
        top, left, bh, bw, ph, pw, per_row, n, cin = (
            _int(panel[k], f"{where} {key!r}", least) for k, (key, least) in enumerate(
                (("top", 0), ("left", 0), ("bh", 1), ("bw", 1), ("ph", 1), ("pw", 1), ("per_row", 1), ("n", 1),
                 ("cin", 1)), 4))
        if top >= MAX_ROWS or left >= MAX_COLS:
            raise SheetconvError(f"workbook metadata: {where} starts at row {top}, column {left}; "
                                 f"a sheet has {MAX_ROWS:,} rows and {MAX_COLS:,} columns")
        total += n * (cin if panel[1] == "kernel" else 1) * bh * bw
        if total > MAX_SHEET_CELLS:
            break
    return total


def _spec_params(spec: dict) -> int:
    """Parameters the spec's layers claim, from their own numbers (malformed ones are left to from_spec)."""
    def num(v):
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    def area(k):
        if isinstance(k, list) and len(k) == 2:
            return num(k[0]) * num(k[1])
        return num(k) ** 2

    total = 0
    for cfg in spec["layers"]:
        if cfg.get("type") == "Conv2d":
            total += num(cfg.get("out_channels")) * (num(cfg.get("in_channels")) * area(cfg.get("kernel_size")) + 1)
        elif cfg.get("type") == "Linear":
            total += num(cfg.get("out_features")) * (num(cfg.get("in_features")) + 1)
    return total


def _check_sizes(spec: dict, layout: dict) -> None:
    """Refuse metadata describing more than MAX_SHEET_CELLS cells before the network is built.

    The layout's cells are checked against the network afterwards (Layout.from_json), so
    bounding both here bounds every array the network and its activations need.
    """
    shape = spec.get("input_shape")
    if isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape):
        cells = shape[0] * shape[1] * shape[2]
        if cells > MAX_SHEET_CELLS:
            raise SheetconvError(f"workbook metadata: input_shape {shape} has {cells:,} cells; a workbook holds "
                                 f"at most {MAX_SHEET_CELLS:,}")
    params = _spec_params(spec)
    if params > MAX_SHEET_CELLS:
        raise SheetconvError(f"workbook metadata: the network has {params:,} parameters; a workbook holds at "
                             f"most {MAX_SHEET_CELLS:,} cells")
    cells = _layout_cells(layout)
    if cells > MAX_SHEET_CELLS:
        raise SheetconvError(f"workbook metadata: the layout claims more than {MAX_SHEET_CELLS:,} cells, the most "
                             f"a workbook holds")
