"""Shared test fixtures.

Spreadsheet engines: a test that needs LibreOffice or Gnumeric says so with
``@pytest.mark.engine("libreoffice")`` (or calls ``require_engine`` from a fixture).
Without the engine it is skipped, with the reason, on a developer's machine, and it
fails under CI=true, where .ci/run installs both.
"""
from __future__ import annotations

import os

import pytest

from sheetconv.xlsx import recalc


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_engine(name: str) -> None:
    """Skip (or, in CI, fail) the current test unless the engine ``name`` is installed."""
    if recalc.available()[name]:
        return
    exe, package = recalc.ENGINES[name]
    reason = f"{name} is not installed ({exe} not on PATH; apt-get install {package})"
    if in_ci():
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "engine(*names): needs these spreadsheet engines ('libreoffice', 'gnumeric'); "
                   "skips without them, fails when CI=true")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("engine"):
        for name in mark.args:
            require_engine(name)


@pytest.fixture(scope="session")
def engine_required():
    """The ``require_engine`` function, for fixtures of test modules."""
    return require_engine
