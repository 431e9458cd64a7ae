"""Hand-written xlsx files for the trace tests: zipfile plus XML as Excel writes it."""
from __future__ import annotations

import zipfile
from xml.sax.saxutils import escape, quoteattr

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RNS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"

CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
{sheets}
</Types>"""

ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""


def cell_xml(ref: str, value=None, formula=None, shared=None, array=None) -> str:
    """One <c>: value (number or str), formula text (no '='), shared=(si, ref or None), array=ref."""
    attrs = f' r="{ref}"'
    inner = ""
    if formula is not None or shared is not None:
        fattrs = ""
        if shared is not None:
            si, sref = shared
            fattrs = f' t="shared" si="{si}"' + (f' ref="{sref}"' if sref else "")
        elif array is not None:
            fattrs = f' t="array" ref="{array}"'
        inner += f"<f{fattrs}>{escape(formula)}</f>" if formula else f"<f{fattrs}/>"
    if isinstance(value, str):
        attrs += ' t="inlineStr"'
        inner += f"<is><t>{escape(value)}</t></is>"
    elif value is not None:
        inner += f"<v>{value}</v>"
    return f"<c{attrs}>{inner}</c>"


def sheet_xml(rows: dict[int, list[str]], dimension: str | None = None, prolog: str = "") -> str:
    """rows: 1-based row number -> list of <c> strings."""
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    body = "".join(f'<row r="{r}">{"".join(cells)}</row>' for r, cells in sorted(rows.items()))
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n{prolog}'
            f'<worksheet xmlns="{NS}" xmlns:r="{RNS}">{dim}<sheetData>{body}</sheetData></worksheet>')


def write_xlsx(path, sheets: list[tuple[str, str]], names: list[tuple[str, str, int | None]] = (),
               workbook_prolog: str = "", extra: dict[str, bytes] | None = None):
    """sheets: (name, sheet XML); names: (name, text, localSheetId)."""
    overrides = "\n".join(
        f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" '
        f'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(len(sheets)))
    sheet_els = "".join(f'<sheet name={quoteattr(n)} sheetId="{i + 1}" r:id="rId{i + 1}"/>'
                        for i, (n, _) in enumerate(sheets))
    name_els = "".join(
        f'<definedName name={quoteattr(n)}{"" if local is None else f" localSheetId={chr(34)}{local}{chr(34)}"}>'
        f'{escape(text)}</definedName>' for n, text, local in names)
    workbook = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n{workbook_prolog}'
                f'<workbook xmlns="{NS}" xmlns:r="{RNS}"><sheets>{sheet_els}</sheets>'
                + (f"<definedNames>{name_els}</definedNames>" if names else "") + "</workbook>")
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(f'<Relationship Id="rId{i + 1}" Type="http://schemas.openxmlformats.org/officeDocument/'
                      f'2006/relationships/worksheet" Target="worksheets/sheet{i + 1}.xml"/>'
                      for i in range(len(sheets)))
            + "</Relationships>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES.format(sheets=overrides))
        zf.writestr("_rels/.rels", ROOT_RELS)
        zf.writestr("xl/workbook.xml", workbook)
        zf.writestr("xl/_rels/workbook.xml.rels", rels)
        for i, (_, xml) in enumerate(sheets):
            zf.writestr(f"xl/worksheets/sheet{i + 1}.xml", xml)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path
