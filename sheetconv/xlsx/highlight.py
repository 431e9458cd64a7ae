"""A highlighted copy of the workbook (the level pictures are drawn by sheetconv.pictures).

``write_highlight``: a copy of the workbook with the traced cell outlined thick green,
selected and scrolled to, and each level of its precedents (or dependents) outlined in the
level's colour (the colours of the level pictures: level 1 red, level 2 orange, ...): a box
around each block of cells, as Trace Precedents draws around a range, so the cells keep
their values' heatmap. A cell borders its neighbour where the neighbour is not in the same
level (a cell in several levels counts in the nearest). The copy is streamed: every
zip part is copied unchanged except ``xl/styles.xml`` (new borders and cell formats
appended; nothing existing is renumbered) and the worksheets holding traced cells,
whose XML is copied byte for byte but for the ``s`` (style) attribute of the outlined
cells, the cells added where an outlined cell had no element and the sheet view (selection,
scroll position) of the traced cell's sheet. Formulas, stored values and conditional
formats stay, so the copy is still a workbook ``sheetconv check`` accepts. (A workbook
without a styles part gets one, listed in ``[Content_Types].xml`` and the workbook's
relationships; a trace whose cell lies on another sheet than the open one also changes
``workbook.xml``'s active tab.)

Output paths are checked up front (:func:`check_outputs`) and written through
:func:`sheetconv.xlsx.files.atomic_output`.
"""
from __future__ import annotations

import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import SheetconvError
from ..nn.trace import Trace
from ..sheet.a1 import cell as a1
from ..sheet.a1 import column_names, parse_range, split_sheet
from .files import atomic_output, check_target
from .package import LIMITS, NS_MAIN, open_part, open_zip, read_workbook_parts, relationships

__all__ = ["write_highlight", "check_outputs", "LEVEL_COLORS", "level_color", "RECALC_NOTE"]

# The traced cell, then level 1, 2, ... (cycling): the highlighted copy's outlines and the
# level pictures (sheetconv.pictures) share them; no blue, the heatmaps' negative end.
LEVEL_COLORS = ["1A9641", "D7191C", "E66101", "7B3294", "8C510A", "008B8B", "C51B7D", "B8860B"]
LEFT, RIGHT, TOP, BOTTOM = 1, 2, 4, 8  # the sides of a cell's outline, as a bit mask


def level_color(level: int) -> str:
    """The colour of level ``level`` (0: the traced cell); past the last, the levels' colours
    cycle, never back to the traced cell's green."""
    return LEVEL_COLORS[0] if level == 0 else LEVEL_COLORS[1 + (level - 1) % (len(LEVEL_COLORS) - 1)]


MAX_PAINTED = 2_000_000
RECALC_NOTE = ("note: the copy keeps the workbook's formulas and stored values; only the traced cells' "
               "formats changed")


def check_outputs(book, highlight=None, png=None, force: bool = False):
    """Refuse bad output paths before any tracing: suffix, folder, the traced book itself, an
    existing file without ``force``."""
    for out, suffix, what in ((highlight, ".xlsx", "--highlight"), (png, ".png", "--png")):
        if out is None:
            continue
        out = Path(out)
        if out.is_dir():
            raise SheetconvError(f"{what} {out} is a folder; expected a {suffix} file name")
        if out.suffix.lower() != suffix:
            raise SheetconvError(f"{what} {out}: expected a {suffix} file name")
        if out.exists() and os.path.exists(book) and os.path.samefile(out, book):
            raise SheetconvError(f"{what} {out} is the workbook being traced; choose another output file")
        check_target(out, force, what)






_COLS = column_names()
_COLNUM = {letters: i for i, letters in enumerate(_COLS)}
_CHUNK = 1 << 20
_MAX_EDGE = 64 << 20                  # the XML before <sheetData> and after </sheetData>, read whole
_ZIP_LEVEL = 1                        # zlib's fastest level, as the writer uses
_STYLES_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles"
_STYLES_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"
_MINIMAL_STYLES = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<styleSheet xmlns="{NS_MAIN}">'
                   '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
                   '<fills count="2"><fill><patternFill patternType="none"/></fill>'
                   '<fill><patternFill patternType="gray125"/></fill></fills>'
                   '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
                   '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
                   '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
                   '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
                   '<dxfs count="0"/></styleSheet>').encode()


def write_highlight(book, trace: Trace, out, force: bool = False) -> Path:
    """Copy ``book`` to ``out`` with the trace drawn on it, streaming (see the module docstring)."""
    check_outputs(book, highlight=out, force=force)
    trace.complete()
    path = os.fspath(book)
    with open_zip(path) as zf:
        sheets, _ = read_workbook_parts(zf, path)
        plan = _Plan(trace, sheets)
        styles_part, wb_part = _styles_part(zf, path)
        styles = _Styles(_read_edge(zf, styles_part, path) if styles_part else _MINIMAL_STYLES, path)
        edits = _package_edits(zf, path, wb_part, styles_part, sheets, plan.root_sheet)
        with atomic_output(out, force=force, what="highlighted copy") as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as dst:
                for info in zf.infolist():
                    name = info.filename
                    if name == styles_part:
                        continue                                   # written last: it depends on the sheets
                    if name in plan.parts:
                        with _member(dst, info) as fh:
                            _rewrite_sheet(zf, name, path, fh, plan, styles)
                    elif name in edits:
                        dst.writestr(_info_like(info), edits[name])
                    else:
                        with zf.open(info) as src, _member(dst, info) as fh:
                            while chunk := src.read(_CHUNK):
                                fh.write(chunk)
                target = zf.getinfo(styles_part) if styles_part else None
                dst.writestr(_info_like(target) if target else "xl/styles.xml", styles.xml())
    return Path(out)


def _info_like(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    out = zipfile.ZipInfo(info.filename, info.date_time)
    out.compress_type = zipfile.ZIP_DEFLATED
    out._compresslevel = _ZIP_LEVEL          # zipfile takes a given ZipInfo's level, not the archive's
    out.external_attr = info.external_attr
    return out


@contextmanager
def _member(dst: zipfile.ZipFile, info: zipfile.ZipInfo):
    with dst.open(_info_like(info), "w", force_zip64=info.file_size > (1 << 30)) as fh:
        yield fh


# ---------------------------------------------------------------- what to paint

class _Plan:
    """The traced cells per worksheet part: ``rows[part][row] = [(c0, c1, level), ...]``, and
    the root cell."""

    def __init__(self, trace: Trace, sheets):
        by_name = {s.name.lower(): s for s in sheets}
        self.rows: dict[str, dict[int, list]] = {}
        painted = 0
        for k, level in enumerate(trace.meta.get("sheet_levels", [])):
            for entry in level:
                info = by_name.get((entry.get("sheet") or "").lower())
                if info is None or info.part is None:
                    continue
                rows = self.rows.setdefault(info.part, {})
                for text in entry["ranges"]:
                    r0, c0, r1, c1 = parse_range(text)
                    painted += (r1 - r0 + 1) * (c1 - c0 + 1)
                    if painted > MAX_PAINTED:
                        raise SheetconvError(f"more than {MAX_PAINTED:,} cells to highlight; trace fewer levels (--depth)")
                    for r in range(r0, r1 + 1):
                        rows.setdefault(r, []).append((c0, c1, k))
        sheet, addr = split_sheet(trace.meta["cell"])
        info = by_name.get((sheet or "").lower())
        if info is None or info.part is None:
            raise SheetconvError(f"the traced cell's sheet {sheet!r} is not a worksheet of the workbook")
        r, c, _, _ = parse_range(addr)
        self.root_sheet = [s.name for s in sheets].index(info.name)
        self.root = (info.part, r, c)
        self.rows.setdefault(info.part, {}).setdefault(r, [])
        self.parts = set(self.rows)
        self._levels: dict = {}

    def _row_levels(self, part: str, row: int) -> dict[int, int]:
        """col -> level of the traced cells of one row; the nearest level wins. The rows are
        asked in order, so only the last few are kept."""
        key = (part, row)
        if key not in self._levels:
            if len(self._levels) > 4:
                self._levels.pop(next(iter(self._levels)))
            out: dict[int, int] = {}
            for c0, c1, k in sorted(self.rows[part].get(row, ()), key=lambda t: -t[2]):
                out.update(dict.fromkeys(range(c0, c1 + 1), k))
            self._levels[key] = out
        return self._levels[key]

    def row_styles(self, part: str, row: int) -> dict[int, tuple]:
        """col -> (level, outline sides, root) of the cells to restyle in one row: a traced
        cell on the edge of its level's block (a side where the neighbour is not in the
        same level), and the root cell."""
        here = self._row_levels(part, row)
        above, below = self._row_levels(part, row - 1), self._row_levels(part, row + 1)
        out: dict[int, tuple] = {}
        for c, k in here.items():
            sides = (LEFT * (here.get(c - 1) != k) | RIGHT * (here.get(c + 1) != k)
                     | TOP * (above.get(c) != k) | BOTTOM * (below.get(c) != k))
            if sides:
                out[c] = (k, sides, False)
        rpart, rr, rc = self.root
        if rpart == part and rr == row:
            out[rc] = (here.get(rc), 0, True)
        return out


# ---------------------------------------------------------------- styles.xml

def _attr(tag: bytes, name: bytes, value: bytes) -> bytes:
    """``tag`` (a start tag's text) with attribute ``name`` set to ``value``."""
    pat = re.compile(rb"(\s" + name + rb'=)("[^"]*"|\'[^\']*\')')
    if pat.search(tag):
        return pat.sub(lambda m: m.group(1) + b'"' + value + b'"', tag, count=1)
    end = len(tag) - (2 if tag.endswith(b"/>") else 1)
    return tag[:end] + b" " + name + b'="' + value + b'"' + tag[end:]


class _Styles:
    """styles.xml with the trace's borders and cell formats appended (existing ids kept)."""

    def __init__(self, xml: bytes, path: str):
        self.xml_in, self.path = xml, path
        self.borders = self._count(b"borders")
        block = self._block(b"cellXfs")
        self.xfs = re.findall(rb"<xf\b[^>]*?/>|<xf\b[^>]*?>.*?</xf>", block, re.S)
        if not self.xfs:
            raise SheetconvError(f"{path}: xl/styles.xml lists no cell formats; cannot add the trace's")
        self.added: list[bytes] = []
        self.ids: dict = {}
        self.new_borders: list[bytes] = []
        self.border_ids: dict = {}

    def _block(self, name: bytes) -> bytes:
        m = re.search(rb"<" + name + rb"\b[^>]*?(?:/>|>(.*?)</" + name + rb">)", self.xml_in, re.S)
        return (m.group(1) or b"") if m else b""

    def _count(self, name: bytes) -> int:
        m = re.search(rb"<" + name + rb"\b[^>]*?(?:/>|>(.*?)</" + name + rb">)", self.xml_in, re.S)
        if m is None:
            raise SheetconvError(f"{self.path}: xl/styles.xml has no <{name.decode()}>; cannot add the trace's")
        return len(re.findall(rb"<" + name[:-1] + rb"\b", m.group(1) or b""))

    def _border(self, level: int | None, sides: int, root: bool) -> int:
        """The id of a border: the root's thick green box, or a level's medium lines on ``sides``."""
        key = "root" if root else (level, sides)
        if key not in self.border_ids:
            color = level_color(0 if root else level + 1).encode()
            style = b"thick" if root else b"medium"
            parts = []
            for bit, name in ((LEFT, b"left"), (RIGHT, b"right"), (TOP, b"top"), (BOTTOM, b"bottom")):
                if root or sides & bit:
                    parts.append(b'<%s style="%s"><color rgb="FF%s"/></%s>' % (name, style, color, name))
                else:
                    parts.append(b"<%s/>" % name)
            self.border_ids[key] = self.borders + len(self.new_borders)
            self.new_borders.append(b"<border>" + b"".join(parts) + b"<diagonal/></border>")
        return self.border_ids[key]

    def xf(self, base: int, level: int | None, sides: int, root: bool) -> int:
        """A cell format: ``base``'s with the root's border or the level's outline on ``sides``."""
        key = (base, level, sides, root)
        if key not in self.ids:
            src = self.xfs[base] if 0 <= base < len(self.xfs) else self.xfs[0]
            head_end = src.index(b">") + 1
            head, rest = src[:head_end], src[head_end:]
            head = _attr(_attr(head, b"borderId", str(self._border(level, sides, root)).encode()), b"applyBorder", b"1")
            self.ids[key] = len(self.xfs) + len(self.added)
            self.added.append(head + rest)
        return self.ids[key]

    def xml(self) -> bytes:
        xml = self._append(self.xml_in, b"borders", b"".join(self.new_borders), self.borders + len(self.new_borders))
        return self._append(xml, b"cellXfs", b"".join(self.added), len(self.xfs) + len(self.added))

    @staticmethod
    def _append(xml: bytes, name: bytes, items: bytes, count: int) -> bytes:
        m = re.search(rb"<" + name + rb"\b[^>]*?(/?)>", xml)
        tag = _attr(m.group(0).replace(b"/>", b">") if m.group(1) else m.group(0), b"count", str(count).encode())
        if m.group(1):
            return xml[:m.start()] + tag + items + b"</" + name + b">" + xml[m.end():]
        close = xml.index(b"</" + name + b">", m.end())
        return xml[:m.start()] + tag + xml[m.end():close] + items + xml[close:]


def _read_edge(zf, part: str, path: str) -> bytes:
    info = zf.getinfo(part)
    if info.file_size > LIMITS.max_small_part_bytes:
        raise SheetconvError(f"{path}: {part} is {info.file_size:,} bytes; refusing it")
    with open_part(zf, part, path) as fh:
        return b"".join(iter(lambda: fh.read(_CHUNK), b""))


def _styles_part(zf, path: str) -> tuple[str | None, str]:
    """(the styles part or None, the workbook part)."""
    root = relationships(zf, "", path)
    wb = next((t for typ, t in root.values() if typ.endswith("/officeDocument")), "xl/workbook.xml")
    found = next((t for typ, t in relationships(zf, wb, path).values() if typ.endswith("/styles")), None)
    return (found if found in zf.namelist() else None), wb


def _package_edits(zf, path: str, wb_part: str, styles_part, sheets, root_sheet: int) -> dict[str, bytes]:
    """Small parts to change: the workbook's active tab; for a workbook without styles, the
    content type and relationship of the new styles part."""
    edits = {}
    wb = _read_edge(zf, wb_part, path)
    view = re.search(rb"<workbookView\b[^>]*?/?>", wb)
    active = re.search(rb'\sactiveTab="([0-9]+)"', view.group(0)) if view else None
    if view is not None and int(active.group(1) if active else 0) != root_sheet:
        edits[wb_part] = wb[:view.start()] + _attr(view.group(0), b"activeTab", str(root_sheet).encode()) + wb[view.end():]
    if styles_part is None:
        ct = _read_edge(zf, "[Content_Types].xml", path)
        edits["[Content_Types].xml"] = ct.replace(
            b"</Types>", b'<Override PartName="/xl/styles.xml" ContentType="%s"/></Types>' % _STYLES_CT.encode())
        folder, base = wb_part.rsplit("/", 1) if "/" in wb_part else ("", wb_part)
        rels_part = f"{folder}/_rels/{base}.rels" if folder else f"_rels/{base}.rels"
        rels = _read_edge(zf, rels_part, path)
        target = os.path.relpath("xl/styles.xml", folder or ".").replace(os.sep, "/")
        edits[rels_part] = rels.replace(b"</Relationships>", b'<Relationship Id="rIdSheetconvStyles" Type="%s" '
                                        b'Target="%s"/></Relationships>' % (_STYLES_TYPE.encode(), target.encode()))
    return edits


# ---------------------------------------------------------------- worksheets

_ROW_TAG = re.compile(rb"<row\b[^>]*?(/?)>")
_CELL_TAG = re.compile(rb"<c\b([^>]*?)(/?)>")
_R_ATTR = re.compile(rb'\sr="([A-Z]{1,3})([0-9]+)"')
_ROWNUM = re.compile(rb'\sr="([0-9]+)"')
_S_ATTR = re.compile(rb'\ss="([0-9]+)"')


def _rewrite_sheet(zf, part: str, path: str, out, plan: _Plan, styles: _Styles):
    """Stream worksheet ``part`` into ``out`` with the traced cells restyled (see the module docstring)."""
    with open_part(zf, part, path) as fh:
        read = lambda: fh.read(_CHUNK)          # noqa: E731
        buf = b""
        while (at := buf.find(b"<sheetData")) < 0:
            chunk = read()
            if not chunk or len(buf) > _MAX_EDGE:
                raise SheetconvError(f"{path}: {part} has no <sheetData> (not a worksheet in the expected form)")
            buf += chunk
        head, buf = buf[:at], buf[at:]
        if plan.root[0] == part:
            head = _show_cell(head, plan.root[1], plan.root[2])
        out.write(head)
        rows = _RowPainter(plan, part, styles)
        opening = re.match(rb"<sheetData\b[^>]*?(/?)>", buf)
        while opening is None:
            chunk = read()
            if not chunk:
                raise SheetconvError(f"{path}: {part} ends inside <sheetData>; the workbook is corrupt")
            buf += chunk
            opening = re.match(rb"<sheetData\b[^>]*?(/?)>", buf)
        if opening.group(1):                            # <sheetData/>: no rows at all
            out.write(opening.group(0)[:-2] + b">" + rows.finish() + b"</sheetData>")
            tail = buf[opening.end():]
        else:
            out.write(opening.group(0))
            buf = buf[opening.end():]
            while True:
                end = buf.find(b"</sheetData>")
                if end >= 0:
                    out.write(rows.paint(buf[:end]) + rows.finish())
                    tail = buf[end:]
                    break
                cut = buf.rfind(b"</row>")
                if cut >= 0:
                    out.write(rows.paint(buf[:cut + 6]))
                    buf = buf[cut + 6:]
                chunk = read()
                if not chunk:
                    raise SheetconvError(f"{path}: {part} ends inside <sheetData>; the workbook is corrupt")
                buf += chunk
        while chunk := read():
            tail += chunk
            if len(tail) > _MAX_EDGE:
                raise SheetconvError(f"{path}: {part} has more than {_MAX_EDGE:,} bytes after its cells; refusing it")
        out.write(tail)


class _RowPainter:
    """Restyles the traced cells of complete rows of one sheet, adding the rows and cells that are missing."""

    def __init__(self, plan: _Plan, part: str, styles: _Styles):
        self.plan, self.part, self.styles = plan, part, styles
        self.todo = sorted(plan.rows[part])             # traced rows not yet met
        self.next = 0
        self.last = -1

    def paint(self, data: bytes) -> bytes:
        """``data``: whole rows (and whatever lies between them)."""
        out, pos = [], 0
        for m in _ROW_TAG.finditer(data):
            num = _ROWNUM.search(m.group(0))
            row = int(num.group(1)) - 1 if num else self.last + 1
            self.last = row
            missing = self._missing_before(row)
            if missing:
                out += [data[pos:m.start()], missing]
                pos = m.start()
            if self.next < len(self.todo) and self.todo[self.next] == row:
                self.next += 1
                end = m.end() if m.group(1) else data.index(b"</row>", m.end()) + 6
                body = b"" if m.group(1) else data[m.end():end - 6]
                start_tag = m.group(0)[:-2] + b">" if m.group(1) else m.group(0)
                out += [data[pos:m.start()], start_tag, self._cells(row, body), b"</row>"]
                pos = end
        out.append(data[pos:])
        return b"".join(out)

    def finish(self) -> bytes:
        """The traced rows after the last row of the sheet."""
        return self._missing_before(1 << 30)

    def _missing_before(self, row: int) -> bytes:
        out = []
        while self.next < len(self.todo) and self.todo[self.next] < row:
            r = self.todo[self.next]
            self.next += 1
            out.append(b'<row r="%d">%s</row>' % (r + 1, self._cells(r, b"")))
        return b"".join(out)

    def _cells(self, row: int, body: bytes) -> bytes:
        want = self.plan.row_styles(self.part, row)
        if not want:
            return body
        out, pos = [], 0
        for col in sorted(want):                        # the usual case: every traced cell is there, with r=
            at = body.find(b'<c r="%s%d"' % (_COLS[col].encode(), row + 1), pos)
            if at < 0:
                return self._cells_in_order(row, body, want)
            end = body.index(b">", at) + 1
            tag = body[at:end]
            s = _S_ATTR.search(tag)
            xf = self.styles.xf(int(s.group(1)) if s else 0, *want[col])
            out += [body[pos:at], _attr(tag, b"s", str(xf).encode())]
            pos = end
        out.append(body[pos:])
        return b"".join(out)

    def _cells_in_order(self, row: int, body: bytes, want: dict) -> bytes:
        """Every cell of the row in turn: for rows missing traced cells, or cells without r=."""
        styles = self.styles
        out, pos, col = [], 0, -1
        pending = sorted(want)
        i = 0
        for m in _CELL_TAG.finditer(body):
            r = _R_ATTR.search(m.group(1))
            col = _COLNUM.get(r.group(1).decode(), col + 1) if r else col + 1
            while i < len(pending) and pending[i] < col:          # traced cells without an element
                out += [body[pos:m.start()], self._new_cell(row, pending[i], want[pending[i]])]
                pos = m.start()
                i += 1
            if i < len(pending) and pending[i] == col:
                i += 1
                s = _S_ATTR.search(m.group(1))
                xf = styles.xf(int(s.group(1)) if s else 0, *want[col])
                out += [body[pos:m.start()], _attr(m.group(0), b"s", str(xf).encode())]
                pos = m.end()
        out.append(body[pos:])
        out += [self._new_cell(row, c, want[c]) for c in pending[i:]]
        return b"".join(out)

    def _new_cell(self, row: int, col: int, style: tuple) -> bytes:
        return b'<c r="%s%d" s="%d"/>' % (_COLS[col].encode(), row + 1, self.styles.xf(0, *style))


def _show_cell(head: bytes, row: int, col: int) -> bytes:
    """The sheet XML before <sheetData> with (row, col) selected and scrolled into view, and the tab selected."""
    m = re.search(rb"<sheetView\b[^>]*?(/?)>", head)
    if m is None:
        return head
    if m.group(1):
        start_tag, inner, end = m.group(0)[:-2] + b">", b"", m.end()
    else:
        close = head.index(b"</sheetView>", m.end())
        start_tag, inner, end = m.group(0), head[m.end():close], close + len(b"</sheetView>")
    top, left = max(row - 4, 0), max(col - 4, 0)
    pane = re.search(rb"<pane\b[^>]*?/>", inner)
    state = re.search(rb'\sstate="([A-Za-z]+)"', pane.group(0)) if pane else None
    active = None
    if pane is not None and state is not None and state.group(1) in (b"frozen", b"frozenSplit"):
        split = {k: float(v) for k, v in re.findall(rb'\s([xy]Split)="([0-9.]+)"', pane.group(0))}
        fr, fc = int(split.get(b"ySplit", 0)), int(split.get(b"xSplit", 0))
        new_pane = _attr(pane.group(0), b"topLeftCell", a1(max(top, fr), max(left, fc)).encode())
        inner = inner[:pane.start()] + new_pane + inner[pane.end():]
        start_tag = _attr(start_tag, b"topLeftCell", a1(0 if fr else top, 0 if fc else left).encode())
        act = re.search(rb'\sactivePane="([A-Za-z]+)"', new_pane)
        active = act.group(1) if act else b"bottomLeft"
    else:
        start_tag = _attr(start_tag, b"topLeftCell", a1(top, left).encode())
    start_tag = _attr(start_tag, b"tabSelected", b"1")
    inner = re.sub(rb"<selection\b[^>]*?/>", b"", inner)
    addr = a1(row, col).encode()
    selection = (b'<selection%s activeCell="%s" sqref="%s"/>'
                 % (b' pane="%s"' % active if active else b"", addr, addr))
    pane = re.search(rb"<pane\b[^>]*?/>", inner)
    at = pane.end() if pane else 0
    inner = inner[:at] + selection + inner[at:]
    return head[:m.start()] + start_tag + inner + b"</sheetView>" + head[end:]
