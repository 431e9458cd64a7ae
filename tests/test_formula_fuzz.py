"""Random formula text through the reference parser and the precedent index: mixtures of
references, names, structured references, operators, whitespace, strings, error literals and
plain garbage give references or a one-line SheetconvError, never another exception."""
from __future__ import annotations

import tempfile
from pathlib import Path

from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sheetconv.errors import SheetconvError
from sheetconv.formulagraph.index import build_index
from sheetconv.formulagraph.references import ShapeCache, references

PIECES = [
    "A1", "$B$2", "c3", "A1:B2", "Sheet1!A1", "'My s''heet'!B2:C3", "Sheet1!A1:Sheet1!B2", "A:A", "3:5", "$C:$D",
    "B2:E5:f", "A1:B2:C3", "Sheet1:Sheet2!A1", "[1]Sheet1!A1", "XFD1048576", "XFE1", "A0", "rate", "hop_1",
    "Table1[Sales]", "Table1[[#This Row],[Cost]]", "[@Sales]", "[Sales]", "Table1[#All]", "Table1[[#Headers],[#Data]]",
    "Table1[[Region]:[Cost]]", "T['#a]", "Table1[", "]", "[[", "#REF!", "#ref!", "#n/a", "#DIV/0!", "#bogus",
    "'other'!#ref!", '"a""b"', '"A1"', "1", "2.5E-3", "TRUE", "{1,2;3,4}", "SUM(", "MAX(0,", "INDEX(B:B,2)", ")",
    "(", ",", ";", "+", "-", "*", "/", "^", "&", "=", "<>", "%", ":", "!", "@", " ", "\t", "\n", "\r\n", "'", '"',
    "{", "}", "$", "#", "_xlfn.", "A1:INDEX(", "é", "Σ", "\u00a0",
]
XML_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r"), max_size=12)
FORMULA = st.lists(st.one_of(st.sampled_from(PIECES), XML_TEXT), min_size=1, max_size=14).map("".join)


def _probe(text: str):
    try:
        references(text)
    except SheetconvError as e:
        assert "\n" not in str(e)
    cache = ShapeCache()
    sid, digits = cache.digits(text)
    cache.refs(sid, digits.split())                       # unreadable text: no references, no error


@settings(max_examples=400, deadline=None)
@given(FORMULA)
@example("A1A1:B2]Sheet1!A1")                 # a closing bracket alone before a 3-D prefix's '!'
def test_reference_parser_on_random_text(text):
    _probe(text)
    _probe("=" + text)


@settings(max_examples=60, deadline=None)
@given(st.lists(FORMULA, min_size=1, max_size=4))
def test_index_on_random_formulas(formulas):
    rows = {1: [cell_xml("A1", 1)] + [cell_xml(f"{c}1", 0, f) for c, f in zip("BCDE", formulas)]}
    with tempfile.TemporaryDirectory() as d:
        p = write_xlsx(Path(d) / "fuzz.xlsx", [("Sheet1", sheet_xml(rows)), ("Sheet2", sheet_xml({}))],
                       names=[("rate", "Sheet1!$A$1", None), ("f", "Sheet1!$C$2:$D$3", None)])
        try:
            ix = build_index(p)
        except SheetconvError as e:
            assert "\n" not in str(e)
            return
        for c in range(len(formulas) + 1):
            ix.precedents(0, 0, c)
        ix.dependents(0, 0, 0)
