"""The metadata sheet ``_sheetconv`` in an xlsx file: written with XlsxWriter, read back
through the safe package reader (see :mod:`sheetconv.sheet.meta` for the document).
"""
from __future__ import annotations

import os

from ..sheet.meta import META_SHEET, parse_chunks, to_chunks
from .cells import read_column_a
from .package import open_zip, read_workbook_parts

__all__ = ["read_meta", "read_meta_zip", "write_meta"]


def read_meta(path) -> dict | None:
    """The metadata of a sheetconv workbook, or None for any other xlsx workbook.

    Read through :func:`sheetconv.xlsx.package.open_zip` (zip-bomb and format checks) and its
    streaming, entity-refusing XML parser.
    """
    with open_zip(path) as zf:
        return read_meta_zip(zf, os.fspath(path))


def read_meta_zip(zf, path: str, sheets=None) -> dict | None:
    """:func:`read_meta` on an already opened and checked zip (``sheets``: its SheetInfo list)."""
    if sheets is None:
        sheets, _ = read_workbook_parts(zf, path)
    chunks = read_column_a(zf, path, sheets, META_SHEET)
    return None if chunks is None else parse_chunks(chunks)


def write_meta(workbook, meta: dict):
    """Add the very hidden metadata sheet to an XlsxWriter workbook."""
    ws = workbook.add_worksheet(META_SHEET)
    for i, chunk in enumerate(to_chunks(meta)):
        ws.write_string(i, 0, chunk)
    ws.very_hidden()
    return ws
