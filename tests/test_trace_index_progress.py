"""Progress of a formula-index build: the hook sees the sheet XML's bytes as they are read,
adding up to what the zip declares; the CLI's ``trace`` draws a bar only on a terminal and
not with ``--quiet``."""
from __future__ import annotations

import zipfile
from contextlib import contextmanager

import pytest
from _craft_xlsx import cell_xml, sheet_xml, write_xlsx
from click.testing import CliRunner

from sheetconv.cli import cli
from sheetconv.formulagraph.index import build_index


def _book(path, rows: int):
    """Two sheets: A values, B a running total (1 MiB chunks: a few of them for big ``rows``)."""
    cells = {r: [cell_xml(f"A{r}", r), cell_xml(f"B{r}", 0, f"A{r}+B{r - 1}" if r > 1 else "A1")]
             for r in range(1, rows + 1)}
    other = {1: [cell_xml("A1", 0, "Sheet1!B3*2")]}
    return write_xlsx(path, [("Sheet1", sheet_xml(cells)), ("Sheet2", sheet_xml(other))])


def _recorder():
    calls, totals = [], []

    def factory(total):
        totals.append(total)

        @contextmanager
        def bar():
            yield calls.append
        return bar()
    return factory, calls, totals


@pytest.mark.parametrize("rows", [3, 40_000])
def test_hook_sees_every_byte_of_sheet_xml(tmp_path, rows):
    p = _book(tmp_path / "b.xlsx", rows)
    with zipfile.ZipFile(p) as zf:                # the oracle: the zip's own member sizes
        declared = sum(i.file_size for i in zf.infolist() if i.filename.startswith("xl/worksheets/"))
    factory, calls, totals = _recorder()
    ix = build_index(p, progress=factory)
    assert totals == [declared]
    assert calls and all(n > 0 for n in calls)     # running sums strictly increase ...
    assert sum(calls) == declared                  # ... up to the total
    if rows > 3:
        assert len(calls) > 2                      # several megabytes: several updates
    plain = build_index(p)
    assert ix.nformulas == plain.nformulas == rows + 1
    assert ix.dependents(0, 0, 0, depth=3) == plain.dependents(0, 0, 0, depth=3)   # (a chain of `rows` levels)
    assert ix.precedents(1, 0, 0) == plain.precedents(1, 0, 0)


def test_no_bar_from_the_factory_reads_the_book_as_usual(tmp_path):
    p = _book(tmp_path / "b.xlsx", 3)
    seen = []
    ix = build_index(p, progress=lambda total: seen.append(total))   # returns None: no bar
    assert seen and ix.nformulas == 4


@pytest.mark.parametrize("tty, quiet, shown", [(True, False, True), (False, False, False), (True, True, False)])
def test_trace_bar_only_on_a_terminal_and_not_quiet(tmp_path, monkeypatch, tty, quiet, shown):
    import sheetconv.cli as cli_module
    monkeypatch.setattr(cli_module, "_INDEX_PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(cli_module, "_stderr_is_tty", lambda: tty)
    p = _book(tmp_path / "b.xlsx", 3)
    r = CliRunner().invoke(cli, ["trace", str(p), "Sheet1!A1", "--dependents"] + (["--quiet"] if quiet else []),
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert ("indexing" in r.stderr) == shown, r.stderr
    assert "Sheet1!B1" in r.stdout


def test_trace_of_a_small_book_shows_no_bar_even_on_a_terminal(tmp_path, monkeypatch):
    import sheetconv.cli as cli_module
    monkeypatch.setattr(cli_module, "_stderr_is_tty", lambda: True)
    p = _book(tmp_path / "b.xlsx", 3)
    r = CliRunner().invoke(cli, ["trace", str(p), "Sheet1!A1"], catch_exceptions=False)
    assert r.exit_code == 0 and "indexing" not in r.stderr, r.stderr
