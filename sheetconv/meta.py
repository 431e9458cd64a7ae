"""The machine-readable description a sheetconv workbook carries about itself.

A very hidden worksheet ``_sheetconv`` holds, in column A from A1 down, chunks of at
most 30,000 characters of one JSON document::

    {"format": "sheetconv", "format_version": 1, "sheetconv_version": "0.1.0",
     "spec": <Network.spec()>, "layout": <Layout.to_json()>, "sheet": "conv",
     "dtype": "float64"}

``spec`` rebuilds the network (``Network.from_spec``) and ``layout`` maps every sheet
cell to ``(layer, channel, row, col)`` (``Layout.from_json``), so trace and check need no
guessing.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import SheetconvError

__all__ = ["META_SHEET", "FORMAT", "FORMAT_VERSION", "CHUNK", "build_meta", "to_chunks", "parse_chunks",
           "read_meta", "write_meta"]

META_SHEET = "_sheetconv"
FORMAT = "sheetconv"
FORMAT_VERSION = 1
CHUNK = 30000


def build_meta(net, layout) -> dict:
    from . import __version__
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


def read_meta(path) -> dict | None:
    """The metadata of a sheetconv workbook, or None for any other xlsx workbook."""
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(path)
    if not path.is_file():
        raise SheetconvError(f"{path}: no such file")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
        raise SheetconvError(f"{path}: not a readable xlsx workbook ({e.__class__.__name__}: {e})") from None
    try:
        if META_SHEET not in wb.sheetnames:
            return None
        ws = wb[META_SHEET]
        chunks = [row[0] for row in ws.iter_rows(min_col=1, max_col=1, values_only=True)]
    finally:
        wb.close()
    return parse_chunks(chunks)


def write_meta(workbook, meta: dict):
    """Add the very hidden metadata sheet to an XlsxWriter workbook."""
    ws = workbook.add_worksheet(META_SHEET)
    for i, chunk in enumerate(to_chunks(meta)):
        ws.write_string(i, 0, chunk)
    ws.very_hidden()
    return ws
