"""docs/chapter13.ipynb runs from top to bottom (its cells assert the chapter's numbers:
fields 1 x 1 -> 3 x 3 -> 7 x 7, simple_cnn's 3, 7, 15, 31, 63, the engine equal to torch)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("torch")

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "chapter13.ipynb"


def test_chapter13_notebook_runs(tmp_path, monkeypatch):
    root = str(NOTEBOOK.parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if o.output_type == "execute_result" and "text/html" in o["data"]]
    assert any("<img src=\"data:image/png;base64," in h for h in html)        # a trace's panels
    assert any("Receptive field" in h for h in html)                           # a network's table
    assert any("image/png" in o.get("data", {}) for o in outputs)              # trace.figure()
