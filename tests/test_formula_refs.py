"""Formula text -> references: the tokenizer path and the shape cache agree, and both match
hand-written expectations; shared-formula offsets match openpyxl's Translator."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.formula.translate import Translator
from openpyxl.utils.cell import get_column_letter

from sheetconv.formulagraph.references import Ref, ShapeCache, StructRef, parse_ref, references


def R(sheet, a1):
    """Expected reference from a plain A1 range, written independently of the code under test."""
    def one(t):
        t = t.replace("$", "")
        letters = "".join(ch for ch in t if ch.isalpha())
        col = 0
        for ch in letters:
            col = col * 26 + ord(ch.upper()) - 64
        return int(t[len(letters):]) - 1, col - 1
    a, _, b = a1.partition(":")
    (r0, c0), (r1, c1) = one(a), one(b or a)
    return Ref(sheet, min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1))


CASES = [
    ("=A1+B2", [R(None, "A1"), R(None, "B2")]),
    ("=SUM($A$1:$B$3)*C$4", [R(None, "A1:B3"), R(None, "C4")]),
    ("{=MAX(0,SUM(A2:C4*$AD$11:$AF$13))}", [R(None, "A2:C4"), R(None, "AD11:AF13")]),
    ("=MAX(0,SUMPRODUCT(B3:D5,$AH$3:$AJ$5)+$AK$3)", [R(None, "B3:D5"), R(None, "AH3:AJ5"), R(None, "AK3")]),
    ("='My sheet (2)'!C3*2", [R("My sheet (2)", "C3")]),
    ("='It''s (a) test'!A1:B2+Sheet2!$C$3", [R("It's (a) test", "A1:B2"), R("Sheet2", "C3")]),
    ('=IF(A1="B2",C3,"D4")&LOG10(E5)', [R(None, "A1"), R(None, "C3"), R(None, "E5")]),
    ("=SUM(A:A)", [Ref(None, None, 0, None, 0)]),
    ("=SUM($B:$D)+SUM(3:5)", [Ref(None, None, 1, None, 3), Ref(None, 2, None, 4, None)]),
    ("=rate*Sheet1!tax", [Ref(None, None, None, None, None, "rate"), Ref("Sheet1", None, None, None, None, "tax")]),
    ("=SUM(Sheet1:Sheet3!A1)", [Ref(("Sheet1", "Sheet3"), 0, 0, 0, 0)]),
    ("=[1]Sheet1!A1+B1", [R(None, "B1")]),                         # another workbook: not a cell here
    ("=XFD1048576+A0", [R(None, "XFD1048576")]),                   # A0 is no cell
    ("=1E3+2.5E-2+TRUE", []),
    ("=B5:B3", [R(None, "B3:B5")]),
    ("=SUM( A1 ,  'a b'!B2 )", [R(None, "A1"), R("a b", "B2")]),      # the tokenizer shortens spaces
    ("=@A1+_xlfn.ANCHORARRAY(C3)", [R(None, "A1"), R(None, "C3")]),
    ("=A1:INDEX(B:B,3)", [R(None, "A1"), Ref(None, None, 1, None, 1)]),
]


@pytest.mark.parametrize("formula,expected", CASES)
def test_references(formula, expected):
    assert references(formula) == expected


@pytest.mark.parametrize("formula,expected", CASES)
def test_shape_cache_matches_tokenizer(formula, expected):
    cache = ShapeCache()
    body = formula.strip("{}").lstrip("=")
    sid, runs = cache.split(body)
    assert cache.refs(sid, runs) == expected
    sid2, digits = cache.digits(body)
    assert sid2 == sid and cache.refs(sid, digits.split()) == expected


def test_parse_ref_forms():
    assert parse_ref("'My sheet (2)'!$A$1:B2") == R("My sheet (2)", "A1:B2")
    assert parse_ref("a1") == R(None, "A1")                        # lower case, as some writers do
    assert parse_ref("Tbl[Col]") == Ref(None, None, None, None, None, table=StructRef("Tbl", frozenset(), "Col", "Col"))
    assert parse_ref("[1]Sheet1!A1") is None                      # another workbook
    assert parse_ref("#REF!") is None


def test_shared_shapes_do_not_leak_sheet_or_name_digits():
    cache = ShapeCache()
    a = cache.digits("Sheet1!A1+rate1")
    b = cache.digits("Sheet2!A1+rate2")
    assert cache.refs(a[0], a[1].split()) == [R("Sheet1", "A1"), Ref(None, None, None, None, None, "rate1")]
    assert cache.refs(b[0], b[1].split()) == [R("Sheet2", "A1"), Ref(None, None, None, None, None, "rate2")]


# ---------------------------------------------------------------- property: random formulas

SHEETS = [None, "Data", "My sheet (2)", "It's", "S1"]


@st.composite
def a_ref(draw):
    r0, c0 = draw(st.integers(0, 2000)), draw(st.integers(0, 800))
    h, w = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    flags = [draw(st.booleans()) for _ in range(4)]

    def cell(r, c, fr, fc):
        return f"{'$' if fc else ''}{get_column_letter(c + 1)}{'$' if fr else ''}{r + 1}"
    text = cell(r0, c0, flags[0], flags[1])
    if h or w:
        text += ":" + cell(r0 + h, c0 + w, flags[2], flags[3])
    sheet = draw(st.sampled_from(SHEETS))
    if sheet is not None:
        text = ("'" + sheet.replace("'", "''") + "'" if not sheet.isalnum() else sheet) + "!" + text
    return text


@st.composite
def a_formula(draw):
    parts = draw(st.lists(st.one_of(a_ref(), st.sampled_from(['"A1"', "2.5", "10", "TRUE", "PI()"])),
                          min_size=1, max_size=6))
    ops = draw(st.lists(st.sampled_from(["+", "*", "-", "&"]), min_size=len(parts) - 1, max_size=len(parts) - 1))
    body = parts[0] + "".join(o + p for o, p in zip(ops, parts[1:]))
    return draw(st.sampled_from(["SUM({})", "MAX(0,{})", "({})", "{}"])).format(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(a_formula(), min_size=1, max_size=8))
def test_cache_equals_tokenizer_on_random_formulas(formulas):
    cache = ShapeCache()                          # shared: later formulas reuse earlier shapes
    for f in formulas * 2:
        sid, digits = cache.digits(f)
        assert cache.refs(sid, digits.split()) == references(f)


@settings(max_examples=200, deadline=None)
@given(a_formula(), st.integers(0, 50), st.integers(0, 30))
def test_shift_matches_openpyxl_translator(formula, dr, dc):
    cache = ShapeCache()
    sid, digits = cache.digits(formula)
    origin = "D5"
    dest = f"{get_column_letter(4 + dc)}{5 + dr}"
    moved = Translator("=" + formula, origin=origin).translate_formula(dest)
    assert cache.refs(sid, digits.split(), dr, dc) == references(moved)
