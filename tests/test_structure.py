"""The package's architecture, checked: import-linter's contracts (pyproject.toml) hold.

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

