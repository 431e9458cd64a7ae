"""Regenerate the README's pictures (docs/img/) and sample files (examples/).

    python tools/make_docs_images.py            # from the repository's root

Writes, reproducibly (bundled digits, seed 0):
  examples/digit.png              bundled MNIST digit 1 (a 2), 28 x 28 grey: for `build --image`
  examples/simple-cnn-weights.npz simple-cnn's weights (seed 1) keyed like its state dict: for `--weights`
  examples/course-style.xlsx      a workbook sheetconv did not write, laid out like fastai's course
                                  sheet: a 28 x 28 input, two 3 x 3 kernels, two layers of array formulas
  docs/img/levels-conv-example.png   the level panels of conv-example's conv2[0,3,3]
  docs/img/levels-simple-cnn.png     the level panels of simple-cnn's conv3[0,2,2]
  docs/img/levels-course-style.png   the level panels of examples/course-style.xlsx's BI1
  docs/img/workbook.png           the conv-example workbook as LibreOffice prints it
  docs/img/highlight.png          the --highlight copy of conv2[0,3,3], printed the same way
  docs/img/explain.png            conv-example's sheet 'explain' (the worked cell conv2[0,3,3])
  docs/img/prediction.png         conv-course's sheet 'prediction' (softmax and predicted class)

The two printed pictures need LibreOffice (`soffice`) and poppler (`pdftoppm`); without them
they are skipped with a message.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
from openpyxl.utils import get_column_letter as col
from openpyxl.worksheet.formula import ArrayFormula
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sheetconv as sc  # noqa: E402
from sheetconv.tracing import open_workbook  # noqa: E402

IMG, EXAMPLES = ROOT / "docs" / "img", ROOT / "examples"


def course_style(path: Path) -> Path:
    """fastai's course layout in miniature: input A1:AB28, kernels AD1:AF3 and AD5:AF7, conv1
    (single-cell array formulas) at AH1:BG26, conv2 at BI1:CF24; opens on its 'conv' sheet."""
    wb = openpyxl.Workbook()
    notes = wb.active
    notes.title = "notes"
    notes["A1"] = "The network is on the sheet 'conv'."
    ws = wb.create_sheet("conv")
    x = sc.digit(0)[0]
    for r in range(28):
        for c in range(28):
            ws.cell(r + 1, c + 1, round(float(x[r, c]), 4))
    kernels = (np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]), np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]))
    for k0, k in zip((1, 5), kernels):
        for r in range(3):
            for c in range(3):
                ws.cell(k0 + r, 30 + c, int(k[r, c]))
    for r in range(26):
        for c in range(26):
            ref = f"{col(34 + c)}{r + 1}"
            ws[ref] = ArrayFormula(ref, f"=MAX(0,SUM({col(c + 1)}{r + 1}:{col(c + 3)}{r + 3}*$AD$1:$AF$3))")
    for r in range(24):
        for c in range(24):
            ref = f"{col(61 + c)}{r + 1}"
            ws[ref] = ArrayFormula(ref, f"=MAX(0,SUM({col(34 + c)}{r + 1}:{col(36 + c)}{r + 3}*$AD$5:$AF$7))")
    wb.active = 1
    wb.save(path)
    _fixed_times(path)
    return path


def _fixed_times(path: Path) -> None:
    """The same bytes on every run: openpyxl stamps the save time into docProps/core.xml
    and the zip's entries; both are set to one fixed time."""
    with zipfile.ZipFile(path) as z:
        parts = [(info.filename, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", rb"\g<1>2026-01-01T00:00:00Z", data)
            z.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED)


def printed(book: Path, out: Path, tmp: Path, sheet: str = "conv", dpi: int = 220, area: str = "") -> None:
    """The sheet ``sheet`` of ``book`` (cells ``area``, by default its whole used range) printed by LibreOffice
    on one landscape page at ``dpi``, cropped to the ink, as a PNG."""
    if not (shutil.which("soffice") and shutil.which("pdftoppm")):
        print(f"skipped {out.name}: needs soffice and pdftoppm")
        return
    wb = openpyxl.load_workbook(book)
    for ws in wb.worksheets:
        if ws.title != sheet:
            ws.sheet_state = "hidden"
    ws = wb[sheet]
    wb.active = wb.worksheets.index(ws)
    ws.print_area = area or ws.dimensions
    ws.page_setup.orientation = "landscape"
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 1
    ws.print_options.gridLines = False
    copy = tmp / f"{out.stem}.xlsx"
    wb.save(copy)
    subprocess.run(["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(tmp), str(copy)],
                   check=True, capture_output=True, timeout=300)
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", str(tmp / f"{out.stem}.pdf"),
                    str(tmp / out.stem)], check=True, timeout=120)
    page = Image.open(tmp / f"{out.stem}.png").convert("RGB")
    ink = np.nonzero(np.asarray(page.convert("L")) < 250)
    box = (max(0, ink[1].min() - 8), max(0, ink[0].min() - 8), ink[1].max() + 8, ink[0].max() + 8)
    page.crop(box).save(out)
    print(f"wrote {out}")


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    EXAMPLES.mkdir(exist_ok=True)
    Image.fromarray((sc.digit(1)[0] * 255).round().astype(np.uint8), "L").save(EXAMPLES / "digit.png")
    np.savez(EXAMPLES / "simple-cnn-weights.npz", **sc.preset("simple-cnn", seed=1).state_dict())
    course = course_style(EXAMPLES / "course-style.xlsx")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        conv = sc.write_workbook(sc.preset("conv-example"), sc.digit(0), tmp / "conv-example.xlsx").path
        simple = sc.write_workbook(sc.preset("simple-cnn"), sc.digit(0), tmp / "simple-cnn.xlsx").path
        open_workbook(conv).precedents("conv2[0,3,3]").to_png(IMG / "levels-conv-example.png", force=True)
        open_workbook(simple).precedents("conv3[0,2,2]").to_png(IMG / "levels-simple-cnn.png", force=True)
        open_workbook(course).precedents("BI1").to_png(IMG / "levels-course-style.png", force=True)
        highlighted = open_workbook(conv).highlight("conv2[0,3,3]", tmp / "highlight.xlsx")
        printed(conv, IMG / "workbook.png", tmp)
        printed(highlighted, IMG / "highlight.png", tmp)
        printed(conv, IMG / "explain.png", tmp, sheet="explain", dpi=110, area="A1:S19")
        conv_course = sc.write_workbook(sc.preset("conv-course"), sc.digit(0), tmp / "conv-course.xlsx").path
        printed(conv_course, IMG / "prediction.png", tmp, sheet="prediction", dpi=110, area="A1:I16")
    for name in ("digit.png", "simple-cnn-weights.npz", "course-style.xlsx"):
        print(f"wrote {EXAMPLES / name}")
    for name in ("levels-conv-example.png", "levels-simple-cnn.png", "levels-course-style.png"):
        print(f"wrote {IMG / name}")


if __name__ == "__main__":
    main()
