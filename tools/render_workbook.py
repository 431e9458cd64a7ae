"""Render a workbook to PNG pages to look at it: soffice -> PDF -> pdftoppm -> PNG.

    python tools/render_workbook.py workbooks/conv-example.xlsx [--out DIR] [--dpi 80]

Writes DIR/<name>-<page>.png (DIR defaults to a folder beside the workbook named
<name>-png) and prints their paths. LibreOffice prints each sheet as its print settings
say (the conv sheet: landscape, one page wide).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def render(xlsx: Path, out: Path, dpi: int = 80) -> list[Path]:
    for tool in ("soffice", "pdftoppm"):
        if shutil.which(tool) is None:
            sys.exit(f"render_workbook: {tool} is not installed")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-") as tmp:
        subprocess.run(["soffice", f"-env:UserInstallation=file://{tmp}/profile", "--headless", "--convert-to",
                        "pdf", "--outdir", tmp, str(xlsx)], check=True, capture_output=True, timeout=600)
        pdf = Path(tmp) / (xlsx.stem + ".pdf")
        if not pdf.is_file():
            sys.exit(f"render_workbook: LibreOffice made no PDF of {xlsx}")
        for old in out.glob(f"{xlsx.stem}-*.png"):
            old.unlink()
        subprocess.run(["pdftoppm", "-png", "-r", str(dpi), str(pdf), str(out / xlsx.stem)], check=True, timeout=600)
    return sorted(out.glob(f"{xlsx.stem}-*.png"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("xlsx", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args(argv)
    if not args.xlsx.is_file():
        sys.exit(f"render_workbook: {args.xlsx}: no such file")
    for page in render(args.xlsx, args.out or args.xlsx.with_name(args.xlsx.stem + "-png"), args.dpi):
        print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
