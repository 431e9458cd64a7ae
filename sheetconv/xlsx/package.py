"""The xlsx package, opened safely: zip checks, bounded reads, workbook parts, XML parsing.

A workbook from elsewhere is untrusted. :func:`open_zip` refuses, before parsing anything,
what is not an unencrypted xlsx (a missing file, a non-zip, an OLE2 container — how Excel
stores a password-protected workbook) and zip bombs: too many members, declared sizes or
compression ratios past sane bounds; every read is also counted against the declared size.
Every XML part goes through defusedxml's parser (entity declarations and DTDs refused);
:func:`parse_part` streams a part through expat handlers, :func:`read_workbook_parts`
lists the sheets, their Excel Tables and the defined names. Strict Open XML workbooks (ISO
29500 strict namespaces) are read as transitional ones: each SheetInfo carries the main
namespace its parts use. A member compressed with a method zipfile cannot read (PPMd, ...)
is refused in :func:`open_zip`, before any parsing.
"""
from __future__ import annotations

import io
import os
import posixpath
import zipfile
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ExpatError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, fromstring

from ..errors import SheetconvError
from ..sheet.a1 import parse_range

__all__ = ["open_zip", "Limits", "LIMITS", "SheetInfo", "TableInfo", "read_workbook_parts", "parse_part", "open_part",
           "relationships", "active_sheet", "NS_MAIN", "NS_MAIN_STRICT", "tags"]

# ---------------------------------------------------------------- safe opening

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass
class Limits:
    """Bounds for untrusted workbooks (a module-level instance, LIMITS, is used)."""
    max_members: int = 10_000
    max_member_bytes: int = 2 << 30          # one part, uncompressed
    max_total_bytes: int = 4 << 30           # all parts
    max_formula_chars: int = 65_536          # Excel allows 8,192
    max_ratio: float = 250.0                 # uncompressed / compressed, for parts over min_ratio_bytes
    min_ratio_bytes: int = 1 << 20
    max_small_part_bytes: int = 64 << 20     # workbook.xml, rels, content types
    max_cells: int = 32_000_000              # <c> elements per worksheet (sheetconv's largest: ~2.3M)


LIMITS = Limits()

NS_MAIN = _NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_MAIN_STRICT = "http://purl.oclc.org/ooxml/spreadsheetml/main"
_NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_NS_REL_STRICT = "http://purl.oclc.org/ooxml/officeDocument/relationships"
_READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                     zipfile.ZIP_LZMA: "lzma"}
_NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE_DOC = ("/officeDocument",)
_WORKSHEET = "/worksheet"
_TABLE = "/table"


def tags(ns: str, *names: str) -> tuple[str, ...]:
    """Element names as expat reports them for namespace ``ns``: tags(NS_MAIN, "c") -> ('...main}c',)."""
    return tuple(f"{ns}}}{n}" for n in names)


def open_zip(path) -> zipfile.ZipFile:
    """Open ``path`` as an xlsx zip after checking it is one and not a zip bomb."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SheetconvError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise SheetconvError(f"not a file: {path} (expected an .xlsx workbook)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head == OLE2_MAGIC:
                fh.seek(0)
                blob = fh.read(8 << 20)
                if "EncryptionInfo".encode("utf-16-le") in blob or "EncryptedPackage".encode("utf-16-le") in blob:
                    raise SheetconvError(f"{path} is password-protected (an encrypted OLE2 container); "
                                         "save an unprotected copy as .xlsx")
                raise SheetconvError(f"{path} is an OLE2 file (legacy .xls or encrypted), not an .xlsx workbook")
        zf = zipfile.ZipFile(path)
    except SheetconvError:
        raise
    except zipfile.BadZipFile:
        raise SheetconvError(f"{path} is not a zip file (expected an .xlsx workbook)") from None
    except (OSError, ValueError, EOFError, NotImplementedError) as e:
        raise SheetconvError(f"cannot open {path}: {e}") from None
    try:
        _check_members(zf, path)
    except BaseException:
        zf.close()
        raise
    return zf


def _check_members(zf: zipfile.ZipFile, path: str):
    infos = zf.infolist()
    lim = LIMITS
    if len(infos) > lim.max_members:
        raise SheetconvError(f"{path}: {len(infos)} zip members (at most {lim.max_members}); refusing it")
    total = 0
    file_size = os.path.getsize(path)
    for info in infos:
        if info.compress_size > file_size:
            raise SheetconvError(f"{path}: zip member {info.filename} claims {info.compress_size:,} compressed bytes "
                                 f"in a {file_size:,}-byte file; the file is corrupt")
        if info.compress_type not in _READABLE_METHODS:
            method = zipfile.compressor_names.get(info.compress_type, "unknown")
            raise SheetconvError(f"{path}: zip member {info.filename} is compressed with method {info.compress_type} "
                                 f"({method}); expected {', '.join(_READABLE_METHODS.values())}")
        if info.flag_bits & 0x1:
            raise SheetconvError(f"{path}: zip member {info.filename} is encrypted; expected a plain .xlsx")
        size = info.file_size
        total += size
        if size > lim.max_member_bytes:
            raise SheetconvError(f"{path}: member {info.filename} would expand to {size:,} bytes "
                                 f"(at most {lim.max_member_bytes:,}); refusing a possible zip bomb")
        if size > lim.min_ratio_bytes and size > lim.max_ratio * max(info.compress_size, 1):
            raise SheetconvError(f"{path}: member {info.filename} compresses {size / max(info.compress_size, 1):,.0f}:1 "
                                 f"(at most {lim.max_ratio:,.0f}:1); refusing a possible zip bomb")
    if total > lim.max_total_bytes:
        raise SheetconvError(f"{path}: members would expand to {total:,} bytes (at most {lim.max_total_bytes:,}); "
                             "refusing a possible zip bomb")
    names = set(zf.namelist())
    if "[Content_Types].xml" not in names:
        raise SheetconvError(f"{path} is a zip file but not an xlsx workbook (no [Content_Types].xml)")


class _Counted(io.RawIOBase):
    """A zip member read in chunks, refused once it yields more than it declared."""

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str):
        self._fh = zf.open(info)
        self._left = info.file_size
        self._name = f"{path}: {info.filename}"

    def read(self, n=-1):
        data = self._fh.read(n if n is not None and n >= 0 else 1 << 20)
        self._left -= len(data)
        if self._left < 0:
            raise SheetconvError(f"{self._name} expands past its declared size; refusing it")
        return data

    def close(self):
        self._fh.close()


def open_part(zf: zipfile.ZipFile, part: str, path: str) -> io.RawIOBase:
    """A member of a checked zip, to read in chunks: refused once it yields more than it declared."""
    return _Counted(zf, zf.getinfo(part), path)


def _read_small(zf: zipfile.ZipFile, name: str, path: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > LIMITS.max_small_part_bytes:
        raise SheetconvError(f"{path}: {name} is {info.file_size:,} bytes; refusing it")
    try:
        fh = _Counted(zf, info, path)
        chunks = []
        while True:
            b = fh.read(1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise SheetconvError(f"{path}: cannot read {name}: {e}") from None


def _xml(zf, name, path):
    data = _read_small(zf, name, path)
    try:
        return fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise SheetconvError(f"{path}: {name} declares XML entities or a DTD ({type(e).__name__}); refusing it") from None
    except ParseError as e:
        raise SheetconvError(f"{path}: {name} is not well-formed XML ({e})") from None


def _rels(zf, part, path) -> dict[str, tuple[str, str]]:
    """Relationships of ``part``: id -> (type, target part name)."""
    folder, base = posixpath.split(part)
    name = posixpath.join(folder, "_rels", base + ".rels")
    if name not in zf.namelist():
        return {}
    out = {}
    for rel in _xml(zf, name, path).iter(f"{{{_NS_PKG_REL}}}Relationship"):
        target = rel.get("Target", "")
        if rel.get("TargetMode") == "External":
            continue
        full = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
        out[rel.get("Id")] = (rel.get("Type", ""), full)
    return out


def relationships(zf: zipfile.ZipFile, part: str, path: str) -> dict[str, tuple[str, str]]:
    """Relationships of ``part`` ('' for the package): id -> (type, target part name)."""
    return _rels(zf, part, path)


@dataclass(frozen=True)
class TableInfo:
    """An Excel Table (xl/tables/tableN.xml): its name as formulas use it, the rectangle it
    covers (r0, c0, r1, c1, header and totals rows included), the number of header and
    totals rows, and its column names, left to right."""
    name: str
    ref: tuple
    header_rows: int
    totals_rows: int
    columns: tuple


@dataclass
class SheetInfo:
    name: str
    part: str | None            # worksheet XML part (None: a chart sheet or missing)
    state: str = "visible"
    ns: str = NS_MAIN           # the main namespace of its XML (transitional or strict)
    tables: tuple = ()          # its TableInfo s


def _count(text: str | None, default: int, what: str, path: str) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 7:
        raise SheetconvError(f"{path}: {what} {text[:20]!r} is not a row count; the workbook is corrupt")
    return int(text)


def _tables(zf, part: str, path: str) -> tuple:
    """The Excel Tables of one worksheet, from its relationships."""
    out = []
    for typ, target in _rels(zf, part, path).values():
        if not typ.endswith(_TABLE) or target not in zf.namelist():
            continue
        root = _xml(zf, target, path)
        ns = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
        name = root.get("displayName") or root.get("name") or ""
        where = f"table {name[:40]!r} ({target})"
        try:
            ref = parse_range(root.get("ref", ""))
        except SheetconvError:
            raise SheetconvError(f"{path}: {where} covers {root.get('ref', '')[:40]!r}, not a range "
                                 "such as A1:C9; the workbook is corrupt") from None
        header = _count(root.get("headerRowCount"), 1, f"{where} headerRowCount", path)
        totals = _count(root.get("totalsRowCount"), 0, f"{where} totalsRowCount", path)
        cols = tuple(c.get("name", "") for c in root.iter(f"{{{ns}}}tableColumn"))
        out.append(TableInfo(name, ref, header, totals, cols[:ref[3] - ref[1] + 1]))
    return tuple(out)


def read_workbook_parts(zf: zipfile.ZipFile, path: str) -> tuple[list[SheetInfo], list[tuple]]:
    """Sheets (in workbook order, with their tables) and defined names (name, local sheet
    index or None, text)."""
    root_rels = _rels(zf, "", path) if "_rels/.rels" in zf.namelist() else {}
    wb_part = next((t for typ, t in root_rels.values() if typ.endswith(_OFFICE_DOC)), "xl/workbook.xml")
    if wb_part not in zf.namelist():
        raise SheetconvError(f"{path} is a zip file but not an xlsx workbook (no {wb_part})")
    wb = _xml(zf, wb_part, path)
    ns = NS_MAIN_STRICT if wb.tag == f"{{{NS_MAIN_STRICT}}}workbook" else NS_MAIN
    rels = _rels(zf, wb_part, path)
    sheets = []
    for el in wb.iter(f"{{{ns}}}sheet"):
        rid = el.get(f"{{{_NS_REL}}}id") or el.get(f"{{{_NS_REL_STRICT}}}id")
        typ, target = rels.get(rid, ("", None))
        part = target if typ.endswith(_WORKSHEET) and target in zf.namelist() else None
        tables = _tables(zf, part, path) if part else ()
        sheets.append(SheetInfo(el.get("name", ""), part, el.get("state", "visible"), ns, tables))
    if not sheets:
        raise SheetconvError(f"{path}: the workbook lists no sheets")
    names = []
    for el in wb.iter(f"{{{ns}}}definedName"):
        local = el.get("localSheetId")
        names.append((el.get("name", ""), int(local) if local and local.isdigit() else None, el.text or ""))
    return sheets, names


EMPTY_CELL_MARK = "~"                           # what an empty <c/> reaches the handler as


class _Squeezed:
    """Worksheet bytes with each empty ``<c/>`` replaced by one character of text (see
    :func:`parse_part`); chunks are cut after a '>' so no tag is split. Counts the other
    ``<c`` elements against Limits.max_cells before they are parsed."""

    def __init__(self, where: str):
        self.tail = b""
        self.off = False                         # CDATA, comments or PIs seen: pass bytes through
        self.cells = 0
        self.where = where
        self.first = True

    def feed(self, chunk: bytes) -> bytes:
        data = self.tail + chunk
        body = data[data.find(b"?>") + 2:] if self.first and data.startswith(b"<?xml") else data
        self.first = False
        if self.off or b"<![CDATA[" in body or b"<!--" in body or b"<?" in body:
            self.off, self.tail = True, b""
            out = data
        else:
            cut = data.rfind(b">") + 1
            self.tail = data[cut:]
            out = data[:cut].replace(b"<c/>", b"~")
        self.cells += out.count(b"<c")
        if self.cells > LIMITS.max_cells:
            raise SheetconvError(f"{self.where} holds more than {LIMITS.max_cells:,} cells; refusing it")
        return out

    def close(self) -> bytes:
        out, self.tail = self.tail, b""
        return out


def parse_part(zf: zipfile.ZipFile, part: str, path: str, handler, squeeze: bool = False):
    """Stream one XML part through ``handler`` (start, end, data callbacks) with expat.

    ``squeeze=True`` (worksheets): each empty ``<c/>`` (no position, value or formula) reaches
    the handler as the character EMPTY_CELL_MARK in the text between cells, so a sheet padded
    with millions of them costs a byte replacement, not a Python call per cell (readers
    place cells with xlsx.cells.CellCursor, whose ``skip`` counts them); other cells are
    counted against Limits.max_cells before they are parsed."""
    defused = DefusedXMLParser(forbid_dtd=True)
    parser = defused.parser                      # expat with defusedxml's entity/DTD guards
    parser.ordered_attributes = False
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.data
    parser.buffer_text = True
    sq = _Squeezed(f"{path}: {part}") if squeeze else None
    try:
        fh = _Counted(zf, zf.getinfo(part), path)
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            parser.Parse(sq.feed(chunk) if sq else chunk, False)
        parser.Parse(sq.close() if sq else b"", True)
    except DefusedXmlException as e:
        raise SheetconvError(f"{path}: {part} declares XML entities or a DTD ({type(e).__name__}); refusing it") from None
    except ExpatError as e:
        raise SheetconvError(f"{path}: {part} is not well-formed XML ({e})") from None
    except SheetconvError as e:
        msg = str(e)
        raise SheetconvError(msg if msg.startswith(f"{path}: ") else f"{path}: {part}: {msg}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise SheetconvError(f"{path}: cannot read {part}: {e}") from None


def active_sheet(zf: zipfile.ZipFile, path: str) -> int | None:
    """The index (in workbook order, hidden sheets counted) of the sheet the workbook opens on:
    ``<workbookView activeTab>`` of its first view, 0 when absent; None if unreadable."""
    root_rels = _rels(zf, "", path) if "_rels/.rels" in zf.namelist() else {}
    wb_part = next((t for typ, t in root_rels.values() if typ.endswith(_OFFICE_DOC)), "xl/workbook.xml")
    if wb_part not in zf.namelist():
        return None
    view = next(_xml(zf, wb_part, path).iter(f"{{{_NS_MAIN}}}workbookView"), None)
    tab = view.get("activeTab", "0") if view is not None else "0"
    return int(tab) if tab.isdigit() else 0
