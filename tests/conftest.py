"""Shared test fixtures.

Spreadsheet engines: a test that needs LibreOffice or Gnumeric says so with
``@pytest.mark.engine("libreoffice")`` (or calls ``require_engine`` from a fixture).
Without the engine it is skipped, with the reason, on a developer's machine, and it
fails under CI=true, where .ci/run installs both.

Exhaustive runs: a test marked ``@pytest.mark.exhaustive`` walks every cell of a workbook
(a minute or more); the default run checks a fixed sample of the same cells instead. It
runs with ``pytest --exhaustive`` and always under CI=true.
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


def pytest_addoption(parser):
    parser.addoption("--exhaustive", action="store_true",
                     help="also run the tests marked exhaustive (every cell; CI=true runs them always)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "engine(*names): needs these spreadsheet engines ('libreoffice', 'gnumeric'); "
                   "skips without them, fails when CI=true")
    config.addinivalue_line(
        "markers", "exhaustive: checks every cell (slow); runs with --exhaustive and under CI=true")


def exhaustive(config) -> bool:
    return in_ci() or config.getoption("--exhaustive")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("engine"):
        for name in mark.args:
            require_engine(name)
    if item.get_closest_marker("exhaustive") and not exhaustive(item.config):
        pytest.skip("every-cell run: pytest --exhaustive (CI=true runs it); the sampled run covers the default")


@pytest.fixture(scope="session")
def engine_required():
    """The ``require_engine`` function, for fixtures of test modules."""
    return require_engine
