"""Untrusted workbooks: every bad file is refused with a one-line SheetconvError (CLI: exit
code 2, no traceback) before anything large is allocated or any entity is expanded."""
from __future__ import annotations

import struct
import tracemalloc
import zipfile

import pytest
from _craft_xlsx import CONTENT_TYPES, NS, ROOT_RELS, cell_xml, sheet_xml, write_xlsx
from click.testing import CliRunner

from sheetconv.cli import cli
from sheetconv.errors import SheetconvError
from sheetconv.tracing import open_workbook
from sheetconv.xlsx import package as reader

BILLION_LAUGHS = """<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
"""


def simple_sheet():
    return sheet_xml({1: [cell_xml("A1", 1), cell_xml("B1", 2, "A1*2")]})


def expect_refusal(path, *words, ref="B1"):
    """open + trace raise a one-line SheetconvError naming the problem; the CLI exits 2, no traceback."""
    with pytest.raises(SheetconvError) as e:
        open_workbook(path).precedents(ref)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    result = CliRunner().invoke(cli, ["trace", str(path), ref])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert result.output.startswith("sheetconv: error:")
    return msg


def test_missing_file(tmp_path):
    expect_refusal(tmp_path / "nope.xlsx", "no such file")


def test_a_folder(tmp_path):
    expect_refusal(tmp_path, "not a file")


def test_not_a_zip(tmp_path):
    p = tmp_path / "text.xlsx"
    p.write_text("name,value\nA,1\n")
    expect_refusal(p, "not a zip")


def test_truncated_zip(tmp_path):
    good = write_xlsx(tmp_path / "good.xlsx", [("Sheet1", simple_sheet())])
    p = tmp_path / "cut.xlsx"
    p.write_bytes(good.read_bytes()[:300])
    expect_refusal(p, "cut.xlsx")


def test_zip_but_not_xlsx(tmp_path):
    p = tmp_path / "other.xlsx"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("hello.txt", "hi")
    expect_refusal(p, "not an xlsx")
    q = tmp_path / "noworkbook.xlsx"
    with zipfile.ZipFile(q, "w") as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES.format(sheets=""))
        zf.writestr("_rels/.rels", ROOT_RELS)
    expect_refusal(q, "not an xlsx", "workbook.xml")


def test_password_protected(tmp_path):
    # an encrypted OOXML file is an OLE2 compound file holding EncryptionInfo / EncryptedPackage
    p = tmp_path / "locked.xlsx"
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    p.write_bytes(header + "EncryptionInfo".encode("utf-16-le") + bytes(64) + "EncryptedPackage".encode("utf-16-le"))
    expect_refusal(p, "password-protected")
    q = tmp_path / "legacy.xls"
    q.write_bytes(header + bytes(1024))
    expect_refusal(q, "OLE2")


def test_entity_expansion_refused(tmp_path):
    p = write_xlsx(tmp_path / "laughs_wb.xlsx", [("Sheet1", simple_sheet())], workbook_prolog=BILLION_LAUGHS)
    expect_refusal(p, "entit")
    bomb_sheet = sheet_xml({1: [cell_xml("A1", "&lol9;")]}, prolog=BILLION_LAUGHS).replace("&amp;lol9;", "&lol9;")
    q = write_xlsx(tmp_path / "laughs_sheet.xlsx", [("Sheet1", bomb_sheet)])
    expect_refusal(q, "entit", ref="A1")


def test_zip_bomb_ratio_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES.format(sheets=""))
        zf.writestr("_rels/.rels", ROOT_RELS)
        with zf.open("xl/worksheets/sheet1.xml", "w") as fh:     # 64 MB of spaces, streamed
            block = b" " * (1 << 20)
            for _ in range(64):
                fh.write(block)
    assert p.stat().st_size < 1 << 20
    called = []
    real = reader.parse_part
    monkeypatch.setattr(reader, "parse_part", lambda *a, **k: (called.append(a), real(*a, **k))[1])
    ok = write_xlsx(tmp_path / "ok.xlsx", [("Sheet1", simple_sheet())])
    open_workbook(ok).precedents("B1")                         # the patch sits where parts are parsed
    assert called
    called.clear()
    tracemalloc.start()
    msg = expect_refusal(p, "zip bomb")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "compresses" in msg and not called and peak < 16 << 20


def test_declared_sizes_bounded(tmp_path, monkeypatch):
    p = write_xlsx(tmp_path / "big_claim.xlsx", [("Sheet1", simple_sheet())])
    monkeypatch.setattr(reader.LIMITS, "max_total_bytes", 1000)
    expect_refusal(p, "zip bomb")
    monkeypatch.setattr(reader.LIMITS, "max_total_bytes", 8 << 30)
    monkeypatch.setattr(reader.LIMITS, "max_members", 3)
    expect_refusal(p, "zip members")


def test_member_expanding_past_its_declared_size(tmp_path):
    p = write_xlsx(tmp_path / "liar.xlsx", [("Sheet1", simple_sheet())])
    data = bytearray(p.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    # shrink the declared uncompressed size in the local header and the central directory
    for sig, size_off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = 0
        while (pos := data.find(sig, pos)) >= 0:
            name_off = 30 if sig == b"PK\x03\x04" else 46
            nlen = struct.unpack_from("<H", data, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            if data[pos + name_off:pos + name_off + nlen] == name:
                struct.pack_into("<I", data, pos + size_off, 40)
            pos += 4
    p.write_bytes(bytes(data))
    expect_refusal(p, "liar.xlsx")


def test_absurd_dimension_and_whole_column(tmp_path):
    sheet = sheet_xml({1: [cell_xml("A1", 1), cell_xml("B1", 3, "SUM(A:A)")], 3: [cell_xml("A3", 2)],
                       1048576: [cell_xml("XFD1048576", 5)]}, dimension="A1:XFD1048576")
    p = write_xlsx(tmp_path / "wide.xlsx", [("Sheet1", sheet)])
    tracemalloc.start()
    t = open_workbook(p).precedents("B1")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A:A is bounded to the used range, which ends at row 1048576 because XFD1048576 is present
    assert t.complete().meta["sheet_levels"][0][0]["ranges"] == ["A1:A1048576"]
    assert peak < 64 << 20
    assert "#" in t.text()


def test_cell_outside_the_grid_in_the_file(tmp_path):
    sheet = sheet_xml({1: [cell_xml("XFE1", 1)]})
    expect_refusal(write_xlsx(tmp_path / "xfe.xlsx", [("Sheet1", sheet)]), "outside the sheet", ref="A1")
    sheet = sheet_xml({1048577: [cell_xml("A1048577", 1)]})
    expect_refusal(write_xlsx(tmp_path / "deep.xlsx", [("Sheet1", sheet)]), "outside the sheet", ref="A1")


def test_malformed_xml(tmp_path):
    p = write_xlsx(tmp_path / "broken.xlsx", [("Sheet1", simple_sheet().replace("</sheetData>", ""))])
    expect_refusal(p, "not well-formed")


@pytest.mark.parametrize("ref,words", [
    ("XFE1", ["outside the sheet"]), ("A1048577", ["outside the sheet"]), ("Nope!A1", ["no sheet", "Sheet1"]),
    ("'My sheet'!A1", ["no sheet"]), ("B1:C2", ["one cell"]), ("hello", ["not a cell reference"]),
])
def test_bad_cell_arguments(tmp_path, ref, words):
    p = write_xlsx(tmp_path / "ok.xlsx", [("Sheet1", simple_sheet())])
    expect_refusal(p, *words, ref=ref)


def test_constant_empty_and_cycle_via_cli(tmp_path):
    sheet = sheet_xml({1: [cell_xml("A1", 1), cell_xml("B1", 0, "C1+1"), cell_xml("C1", 0, "B1*2")]})
    p = write_xlsx(tmp_path / "c.xlsx", [("My sheet (2)", sheet)])
    run = CliRunner()
    out = run.invoke(cli, ["trace", str(p), "A1"])
    assert out.exit_code == 0 and "a constant: no precedents" in out.output
    assert "formula: none (a constant)" in out.output
    out = run.invoke(cli, ["trace", str(p), "'My sheet (2)'!D9"])
    assert out.exit_code == 0 and "an empty cell: no precedents" in out.output
    assert "formula: none (an empty cell)" in out.output and "constant" not in out.output
    out = run.invoke(cli, ["trace", str(p), "B1"])
    assert out.exit_code == 0
    assert "circular reference: 'My sheet (2)'!B1 -> 'My sheet (2)'!C1 -> 'My sheet (2)'!B1" in out.output


def test_overlong_formula_refused(tmp_path):
    sheet = sheet_xml({1: [cell_xml("A1", 1), cell_xml("B1", 0, "+".join(["A1"] * 30000))]})
    expect_refusal(write_xlsx(tmp_path / "long.xlsx", [("Sheet1", sheet)]), "characters", "8,192")


def test_huge_array_formula_range_stays_a_range(tmp_path):
    sheet = sheet_xml({1: [cell_xml("A1", 1, "Data!C1*2", array="A1:XFD1048576")]})
    data = sheet_xml({1: [cell_xml("C1", 3)]})
    p = write_xlsx(tmp_path / "arr.xlsx", [("Sheet1", sheet), ("Data", data)])
    tracemalloc.start()
    book = open_workbook(p)
    t = book.precedents("ZZ99999").complete()          # inside the array: the anchor's references
    d = book.dependents("Data!C1").complete()
    text = t.text() + d.text()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert t.meta["sheet_levels"][0][0]["ranges"] == ["C1"]
    assert d.meta["sheet_levels"][0][0]["ranges"] == ["A1:XFD1048576"]
    assert peak < 64 << 20 and "#" in text


# ---------------------------------------------------------------- hostile metadata in a sheetconv workbook

def _meta_book(tmp_path, name, change):
    """A workbook whose hidden metadata sheet holds a sheetconv document, altered by ``change``."""
    import json

    import sheetconv as sc
    from sheetconv.sheet.layout import Layout
    from sheetconv.sheet.meta import META_SHEET, build_meta, to_chunks
    net = sc.preset("conv-example")
    meta = build_meta(net, Layout.for_network(net))
    change(meta)
    chunks = to_chunks(meta)
    assert json.loads("".join(chunks)) == meta
    rows = {i + 1: [cell_xml(f"A{i + 1}", c)] for i, c in enumerate(chunks)}
    return write_xlsx(tmp_path / f"{name}.xlsx", [("conv", simple_sheet()), (META_SHEET, sheet_xml(rows))])


HOSTILE_META = {
    "unknown_option": lambda m: m["spec"]["layers"].__setitem__(0, {"type": "Conv2d", "foo": 1}),
    "layers_number": lambda m: m["spec"].__setitem__("layers", 5),
    "layer_a_list": lambda m: m["spec"].__setitem__("layers", [["x"]]),
    "layout_a_list": lambda m: m.__setitem__("layout", [1, 2]),
    "huge_conv": lambda m: m["spec"]["layers"].__setitem__(0, {
        "type": "Conv2d", "in_channels": 1, "out_channels": 100_000, "kernel_size": [1000, 1000]}),
    "spec_a_string": lambda m: m.__setitem__("spec", "conv"),
    "input_shape_text": lambda m: m["spec"].__setitem__("input_shape", "28x28"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_META))
def test_hostile_metadata_one_line_from_trace_and_check(tmp_path, name):
    p = _meta_book(tmp_path, name, HOSTILE_META[name])
    for args in (["trace", str(p), "A1"], ["check", str(p)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("sheetconv: error:") and result.output.count("\n") == 1, result.output
        assert "metadata" in result.output, result.output
    with pytest.raises(SheetconvError):
        open_workbook(p)


def test_metadata_with_a_dangling_shared_string(tmp_path):
    """A metadata cell pointing past the shared-string table: one line, from trace and the PNG path."""
    sst = (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{NS}" count="1" uniqueCount="1">'
           '<si><t>x</t></si></sst>')
    meta = sheet_xml({1: ['<c r="A1" t="s"><v>7</v></c>']})
    p = write_xlsx(tmp_path / "sst.xlsx", [("conv", simple_sheet()), ("_sheetconv", meta)])
    with zipfile.ZipFile(p, "a") as zf:
        zf.writestr("xl/sharedStrings.xml", sst)
    result = CliRunner().invoke(cli, ["trace", str(p), "B1"])
    assert result.exit_code == 2 and "shared string" in result.output and result.output.count("\n") == 1


def test_png_of_a_cell_with_a_dangling_shared_string(tmp_path):
    """openpyxl fails lazily while iterating such a cell; --png reports it in one line."""
    sst = (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{NS}" count="1" uniqueCount="1">'
           '<si><t>x</t></si></sst>')
    sheet = sheet_xml({1: ['<c r="A1" t="s"><v>7</v></c>', cell_xml("B1", 2, "A1*2")]})
    p = write_xlsx(tmp_path / "lazy.xlsx", [("Sheet1", sheet)])
    with zipfile.ZipFile(p, "a") as zf:
        zf.writestr("xl/sharedStrings.xml", sst)
    out = tmp_path / "lazy.png"
    result = CliRunner().invoke(cli, ["trace", str(p), "B1", "--png", str(out)])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("sheetconv: error:") and "Traceback" not in result.output and not out.exists()
