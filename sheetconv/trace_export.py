"""Pictures of a trace: a highlighted copy of the workbook, and a PNG of the input.

``write_highlight``: a copy of the workbook with the traced cell outlined green and its
precedents (or dependents) filled blue, a darker shade for nearer levels — the picture
of Trace Precedents in the book. Color-scale heatmaps would paint over the fills, so the
copy drops conditional formatting on the sheets it highlights.

``write_png``: the input image (cell values) with each level's footprint outlined, one
shade per level. Both write a temporary file beside the target and rename it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import SheetconvError
from .trace import Trace
from .xlref import parse_range

__all__ = ["write_highlight", "write_png", "LEVEL_FILLS"]

LEVEL_FILLS = ["1F5FBF", "4A90D9", "8DB8EA", "BCD6F3", "DCE9F8"]
ROOT_BORDER = "00A000"


def _atomic(target: Path, write):
    target = Path(target)
    if not target.parent.is_dir():
        raise SheetconvError(f"output folder {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _check_out(book, out, suffix):
    out = Path(out)
    if out.suffix.lower() != suffix:
        raise SheetconvError(f"{out}: expected a {suffix} file name")
    if out.exists() and os.path.samefile(out, book):
        raise SheetconvError(f"{out} is the workbook being traced; choose another output file")
    return out


def write_highlight(book, trace: Trace, out) -> Path:
    """Copy ``book`` to ``out`` with the trace drawn on it (openpyxl)."""
    import openpyxl
    from openpyxl.formatting.formatting import ConditionalFormattingList
    from openpyxl.styles import Border, PatternFill, Side

    out = _check_out(book, out, ".xlsx")
    trace.complete()
    try:
        wb = openpyxl.load_workbook(book)
    except Exception as e:                                  # noqa: BLE001 - any reader failure
        raise SheetconvError(f"cannot load {book} for highlighting: {e}") from None
    sheets = {ws.title.lower(): ws for ws in wb.worksheets}
    touched = set()
    limit = 2_000_000
    painted = 0
    for k, level in reversed(list(enumerate(trace.meta.get("sheet_levels", [])))):
        fill = PatternFill("solid", start_color=LEVEL_FILLS[min(k, len(LEVEL_FILLS) - 1)])
        for entry in level:
            ws = sheets.get((entry.get("sheet") or "").lower())
            if ws is None:
                continue
            touched.add(ws.title)
            for text in entry["ranges"]:
                r0, c0, r1, c1 = parse_range(text)
                for row in range(r0, r1 + 1):
                    for col in range(c0, c1 + 1):
                        ws.cell(row + 1, col + 1).fill = fill
                        painted += 1
                        if painted > limit:
                            raise SheetconvError(f"more than {limit:,} cells to highlight; trace fewer levels (--depth)")
    sheet, _, addr = trace.meta["cell"].rpartition("!")
    sheet = sheet[1:-1].replace("''", "'") if sheet.startswith("'") else sheet
    ws = sheets[sheet.lower()]
    touched.add(ws.title)
    r, c, _, _ = parse_range(addr)
    side = Side(style="thick", color=ROOT_BORDER)
    ws.cell(r + 1, c + 1).border = Border(left=side, right=side, top=side, bottom=side)
    for name in touched:
        wb[name].conditional_formatting = ConditionalFormattingList()
    _atomic(out, wb.save)
    return out


def _input_image(book, workbook, trace: Trace):
    """(image array H x W or H x W x 3 in 0..1, origin (row, col), per-level boxes on it)."""
    import openpyxl
    from .workbook import SheetconvWorkbook
    info = trace.input_info()
    analytic = isinstance(workbook, SheetconvWorkbook) and trace.direction == "precedents" \
        and trace.root[0] in workbook.net.shapes
    if info is None and not analytic:
        raise SheetconvError("--png draws the precedents' field on the input; this trace does not reach one "
                             "(a constant, or --dependents)")
    wb = openpyxl.load_workbook(book, read_only=True, data_only=True)
    try:
        if analytic:
            c_n, h, w = workbook.net.grid("input")
            ws = wb[workbook.sheet]
            chans = []
            for ch in range(min(c_n, 3) if c_n == 3 else 1):
                r0, c0 = workbook.layout.cell_of(("input", ch, 0, 0))
                vals = np.zeros((h, w))
                for i, row in enumerate(ws.iter_rows(min_row=r0 + 1, max_row=r0 + h, min_col=c0 + 1,
                                                     max_col=c0 + w, values_only=True)):
                    vals[i, :len(row)] = [v if isinstance(v, (int, float)) else 0.0 for v in row]
                chans.append(vals)
            img = np.stack(chans, -1) if len(chans) == 3 else chans[0]
            boxes = _analytic_boxes(workbook, trace)
            return img, boxes
        top, left = info["map_origin"]
        rows = len(info["map"]) * info["scale"]
        cols = len(info["map"][0]) * info["scale"] if info["map"] else 0
        ws = wb[info["name"]]
        vals = np.zeros((rows, cols))
        for i, row in enumerate(ws.iter_rows(min_row=top + 1, max_row=top + rows, min_col=left + 1,
                                             max_col=left + cols, values_only=True)):
            vals[i, :len(row)] = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0 for v in row]
        boxes = []
        for level in trace.levels:
            boxes.append([(ra - top, ca - left, rb - 1 - top, cb - 1 - left)
                          for reg in level if reg.name == info["name"]
                          for rws, cls in reg.boxes for ra, rb in rws for ca, cb in cls])
        return vals, boxes
    finally:
        wb.close()


def _analytic_boxes(workbook, trace: Trace) -> list[list[tuple]]:
    """Per level, its activation region's footprint on the input: the field of its corner cells."""
    _, h, w = workbook.net.grid("input")
    out = []
    for level in trace.levels:
        boxes = []
        for reg in level:
            if reg.name not in workbook.net.shapes:
                continue
            (_, _), (r0, r1), (c0, c1) = reg.bbox() if len(reg.shape) == 3 else ((0, 0), (0, 0), (0, 0))
            rf = workbook.net.receptive_field(reg.name)
            (a0, _), (b0, _) = rf.region(r0, c0, (h, w))
            (_, a1), (_, b1) = rf.region(r1, c1, (h, w))
            boxes.append((a0, b0, a1, b1))
        out.append(boxes)
    return out


def write_png(book, workbook, trace: Trace, out, cell_px: int | None = None) -> Path:
    """Draw the input with the traced field outlined (Pillow)."""
    from PIL import Image, ImageDraw

    out = _check_out(book, out, ".png")
    img, boxes = _input_image(book, workbook, trace)
    lo, hi = float(np.min(img)) if img.size else 0.0, float(np.max(img)) if img.size else 1.0
    norm = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    h, w = norm.shape[:2]
    px = cell_px or max(1, min(16, 512 // max(h, w, 1)))
    arr = (norm * 255).astype(np.uint8)
    pic = Image.fromarray(arr, "RGB" if arr.ndim == 3 else "L").convert("RGB")
    pic = pic.resize((w * px, h * px), Image.NEAREST)
    draw = ImageDraw.Draw(pic, "RGBA")
    shades = [(255, 60, 40), (255, 150, 0), (250, 220, 0), (60, 200, 90), (40, 160, 255)]
    for k in range(len(boxes) - 1, -1, -1):
        color = shades[k % len(shades)]
        inset = k * max(1, px // 4)
        for r0, c0, r1, c1 in boxes[k]:
            rect = [c0 * px + inset, r0 * px + inset, (c1 + 1) * px - 1 - inset, (r1 + 1) * px - 1 - inset]
            if rect[2] < rect[0] or rect[3] < rect[1]:
                continue
            draw.rectangle(rect, fill=color + (48,), outline=color + (255,), width=max(1, px // 6))
    _atomic(out, lambda tmp: pic.save(tmp, format="PNG"))
    return out
