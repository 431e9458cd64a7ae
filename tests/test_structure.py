"""The package's architecture and style, checked: import-linter's contracts and ruff's rules
(both configured in pyproject.toml) hold.

The layers ``nn <- sheet <- xlsx <- formulagraph / interop <- build / tracing / check <- cli``
never import upward, and no two sibling modules or packages import each other in a circle.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports (import-linter) is not installed; it is part of the test extras")
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout



def test_ruff_finds_nothing():
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed; it is part of the test extras")
    result = subprocess.run([exe, "check", "sheetconv", "tests", "bench", "tools", "docs"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
