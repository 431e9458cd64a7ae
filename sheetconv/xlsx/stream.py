"""One worksheet's cells, streamed a row at a time: formula text and stored value together.

:func:`iter_rows` parses a worksheet part of an open, checked xlsx zip (see
:func:`sheetconv.xlsx.package.open_zip`) with the same entity-refusing expat parser as
every other reader, in chunks of 1 MiB, and yields ``(row, cells)`` in document order,
``cells`` a list of :class:`Cell` of that row. Nothing but one chunk's rows is held, so
memory does not grow with the sheet. Positions are 0-based; a cell without ``r`` takes
the next column, a row without ``r`` the next row, as the format says.

A cell is a tuple ``(col, type, value, formula, fattrs)``: ``value`` the raw text of its
``<v>`` (or inline string) or None, ``type`` its ``t`` attribute: :func:`cell_value` turns
both into the value a reader sees (float, str, bool, shared strings resolved). ``formula``
is the ``<f>`` text (without ``=``) or None, ``fattrs`` the ``<f>`` element's attributes
(``t="shared"``, ``si``, ``ref``) when it has any. A shared formula's child cell gets its
master's text moved to the child's position (openpyxl's Translator), as Excel shows it.

Two readers give the same rows. The fast one reads the rows of the common plain form
(``<c r=".." s=".." t=".."><f>..</f><v>..</v></c>``, as sheetconv, XlsxWriter and
LibreOffice write them, shared and array formulas included) with regular expressions, a
row at a time, and accepts a row only if every ``<`` in it belongs to a recognised cell;
the part outside ``<sheetData>`` goes through expat (entities and DTDs refused). Anything
else - a comment, CDATA, a namespace prefix, another encoding - sends the part to the
general reader (expat with Python handlers, about five times slower), which resumes
after the last row already given.
"""
from __future__ import annotations

import codecs
import html
import re
import zipfile
from contextlib import contextmanager
from xml.parsers.expat import ExpatError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from ..errors import SheetconvError
from ..sheet.a1 import COLNUM, MAX_ROWS
from ..sheet.a1 import cell as a1
from .cells import CellCursor, read_shared_strings, value_of
from .package import NS_MAIN, open_part

__all__ = ["iter_rows", "SharedFormulas", "cell_value", "read_shared_strings"]

_CHUNK = 1 << 20


class SharedFormulas:
    """Shared formulas (``<f t="shared" si="..">``): the master cell holds the text, each
    child gets it moved from the master's cell to its own, as Excel shows it (openpyxl's
    Translator, made once per master). With ``move=False`` children get no text (None): a
    reader that wants one child's text calls :meth:`moved` for it alone."""

    def __init__(self, move: bool = True):
        self.move = move
        self.masters: dict = {}

    def __call__(self, text: str | None, si, row: int, col: int) -> str | None:
        if text:
            self.masters[si] = [row, col, text, None]
            return text
        return self.moved(si, row, col) if self.move else None

    def moved(self, si, row: int, col: int) -> str | None:
        """The text of shared formula ``si`` moved to (row, col); None before its master."""
        master = self.masters.get(si)
        if master is None:
            return None                          # a child before its master: no formula to give
        if master[3] is None:
            from openpyxl.formula.translate import Translator
            master[3] = Translator("=" + master[2], origin=a1(master[0], master[1]))
        return master[3].translate_formula(a1(row, col))[1:]


def _handlers(rows: list, shared: SharedFormulas):
    """expat handlers (closures: the hot loop) appending each complete row to ``rows``."""
    C, F, V, T, IS, ROW = (f"{NS_MAIN}}}{t}" for t in ("c", "f", "v", "t", "is", "row"))
    cursor = CellCursor()            # the one reader of <row r> / <c r> positions (shared with the index)
    cells: list = []
    row = col = -1
    ctype = fattrs = formula = value = None
    buf: list = []
    target = 0                     # text being collected: 1 formula, 2 value, 3 inline string
    in_is = False

    def close_row():
        nonlocal cells
        if cells:
            rows.append((row, cells))
            cells = []

    def start(tag, attrs):
        nonlocal row, col, ctype, fattrs, formula, value, buf, target, in_is
        if tag == C:
            key = cursor.cell(attrs)
            if key >> 14 != row:
                close_row()
                row = key >> 14
            col = key & 0x3FFF
            ctype = attrs.get("t")
            formula = fattrs = value = None
        elif tag == F:
            fattrs = attrs
            buf, target = [], 1
        elif tag == V:
            buf, target = [], 2
        elif tag == T and in_is:
            buf, target = [], 3
        elif tag == IS:
            in_is = True
            value = ""
        elif tag == ROW:
            close_row()
            cursor.row(attrs)
            row, col = cursor.rowbase >> 14, -1

    def end(tag):
        nonlocal formula, value, target, in_is
        if tag == C:
            cells.append((col, ctype, value, formula, fattrs or None))
        elif target:
            if target == 1 and tag == F:
                formula = "".join(buf) or None      # <f/>: no text, as the fast reader gives it
                if fattrs and fattrs.get("t") == "shared":
                    formula = shared(formula, fattrs.get("si"), row, col)
            elif target == 2 and tag == V:
                value = "".join(buf) or None          # <v/>: nothing stored
            elif target == 3 and tag == T:
                value += "".join(buf)
            else:
                return
            target = 0
        elif tag == IS:
            in_is = False
            value = value or None                 # an empty inline string: nothing stored

    def data(text):
        if target:
            buf.append(text)

    return start, end, data, close_row


class _NotPlain(Exception):
    """The part is not in the plain form the fast reader handles."""


@contextmanager
def _errors(part: str, path: str):
    try:
        yield
    except DefusedXmlException as e:
        raise SheetconvError(f"{path}: {part} declares XML entities or a DTD ({type(e).__name__}); refusing it") from None
    except ExpatError as e:
        raise SheetconvError(f"{path}: {part} is not well-formed XML ({e})") from None
    except SheetconvError as e:
        if str(e).startswith(path):
            raise
        raise SheetconvError(f"{path}: {part}: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise SheetconvError(f"{path}: cannot read {part}: {e}") from None


def iter_rows(zf: zipfile.ZipFile, part: str, path: str, shared: SharedFormulas | None = None):
    """Yield ``(row, [cell, ...])`` of worksheet ``part``, in document order (see the module
    docstring). ``shared``: how shared formulas' children get their text (default: moved)."""
    last = -1
    try:
        for row, cells in _plain_rows(zf, part, path, shared):
            last = row
            yield row, cells
        return
    except _NotPlain:
        pass
    for row, cells in _general_rows(zf, part, path, shared):
        if row > last:
            yield row, cells


_SHEET_DATA = "<sheetData>"
_ROW_HEAD = re.compile(r'\s*(?:<row r="[0-9]+"[^>]*/>\s*)*<row r="([0-9]+)"[^>/]*>')
_CELL = re.compile(r'<c r="([A-Z]{1,3})([0-9]{1,7})"(?: s="[0-9]+")?(?: t="([a-zA-Z]+)")?'
                   r'(?:/>|>(?:<f((?: [a-zA-Z]+="[^"<]*")*)(?:/>|>([^<]*)</f>))?(?:<v>([^<]*)</v>)?'
                   r'(?:<is><t>([^<]*)</t></is>)?</c>)'
                   r'|(<)')                      # any other tag: the row is not plain
_ATTR = re.compile(r' ([a-zA-Z]+)="([^"<]*)"')
_OTHER_REF = re.compile(r"&(?!(?:amp|lt|gt|quot|apos);)")      # any other reference: the general reader decides
_MAX_HEAD = 64 << 20


def _text(s: str):
    if not s:
        return None
    if "&" in s:
        s = html.unescape(s)                 # only XML's five entities get here (_OTHER_REF)
    return s.replace("\r\n", "\n").replace("\r", "\n") if "\r" in s else s


def _plain_rows(zf: zipfile.ZipFile, part: str, path: str, shared: SharedFormulas | None = None):
    """The fast reader (see the module docstring); raises _NotPlain where it cannot go on."""
    shared = SharedFormulas() if shared is None else shared
    colnum = COLNUM
    with _errors(part, path):
        fh = open_part(zf, part, path)
        decode = codecs.getincrementaldecoder("utf-8")().decode
        outside = DefusedXMLParser(forbid_dtd=True).parser          # the part outside <sheetData>
        for name in ("StartElementHandler", "EndElementHandler", "CharacterDataHandler", "DefaultHandlerExpand",
                     "CommentHandler", "ProcessingInstructionHandler"):
            setattr(outside, name, None)
        carry, started, done = "", False, False
        while not done:
            chunk = fh.read(_CHUNK)
            done = not chunk
            try:
                text = carry + decode(chunk, done)
            except UnicodeDecodeError:
                raise _NotPlain from None
            if not started:
                at = text.find(_SHEET_DATA)
                if at < 0:
                    if len(text) > _MAX_HEAD or done or "<sheetData/>" in text:
                        raise _NotPlain
                    carry = text
                    continue
                outside.Parse(text[:at + len(_SHEET_DATA)].encode(), False)
                started, text = True, text[at + len(_SHEET_DATA):]
            end = text.rfind("</row>")
            if done or end < 0:
                carry = text
                if not done:
                    continue
                end = text.find("</sheetData>")
                if end < 0 or text[:end].strip():
                    raise _NotPlain
                outside.Parse(text[end:].encode(), True)
                break
            carry = text[end + 6:]
            for piece in text[:end].split("</row>"):
                head = _ROW_HEAD.match(piece)
                if head is None or "&" in piece and _OTHER_REF.search(piece):
                    raise _NotPlain
                body = piece[head.end():]
                found = _CELL.findall(body)
                if not found:
                    continue
                if any(m[7] for m in found):
                    raise _NotPlain
                digits = head.group(1)
                row = int(digits) - 1
                if not 0 <= row < MAX_ROWS:
                    raise _NotPlain
                try:
                    if any(m[3] for m in found):
                        cells = _attributed(found, digits, row, shared)
                    elif "&" in body or "\r" in body:
                        cells = [(colnum[letters], t or None, _text(v or inline), _text(f), None)
                                 for letters, rd, t, _, f, v, inline, _ in found if rd == digits]
                    else:
                        cells = [(colnum[letters], t or None, v or inline or None, f or None, None)
                                 for letters, rd, t, _, f, v, inline, _ in found if rd == digits]
                except KeyError:
                    raise _NotPlain from None
                if len(cells) != len(found):
                    raise _NotPlain
                yield row, cells


def _attributed(found: list, digits: str, row: int, shared: SharedFormulas) -> list:
    """A row's cells where some ``<f>`` has attributes (shared and array formulas, LibreOffice's
    ``aca``): the attributes as the general reader gives them, shared formulas moved."""
    cells = []
    for letters, rd, t, attrs, f, v, inline, _ in found:
        if rd != digits:
            continue
        col = COLNUM[letters]
        formula = _text(f)
        fattrs = None
        if attrs:
            pairs = _ATTR.findall(attrs)
            fattrs = {k: html.unescape(a) if "&" in a else a for k, a in pairs}
            if len(fattrs) != len(pairs) or any(c in attrs for c in "\t\n\r"):
                raise _NotPlain                  # repeated names, or values XML would normalise
            if fattrs.get("t") == "shared":
                formula = shared(formula, fattrs.get("si"), row, col)
        cells.append((col, t or None, _text(v or inline), formula, fattrs))
    return cells


def _general_rows(zf: zipfile.ZipFile, part: str, path: str, shared: SharedFormulas | None = None):
    """The general reader: expat with Python handlers."""
    shared = SharedFormulas() if shared is None else shared
    rows: list = []
    start, end, data, close_row = _handlers(rows, shared)
    parser = DefusedXMLParser(forbid_dtd=True).parser     # expat with defusedxml's entity/DTD guards
    parser.ordered_attributes = False
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.buffer_text = True
    with _errors(part, path):
        fh = open_part(zf, part, path)
        while True:
            chunk = fh.read(_CHUNK)
            parser.Parse(chunk, not chunk)
            if rows:
                yield from rows
                rows.clear()
            if not chunk:
                break
        close_row()
        yield from rows



def cell_value(cell: tuple, shared, where: str):
    """A streamed cell's stored value: None (none stored), else as cells.value_of reads it
    (float, str — text or an error such as '#VALUE!' —, or bool)."""
    return None if cell[2] is None else value_of(cell[1], cell[2], shared, where)
