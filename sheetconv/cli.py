"""The ``sheetconv`` command: build, trace, summary, check.

Bad input raises SheetconvError; ``main`` prints its one-line message and exits with
status 2, never a traceback.
"""
from __future__ import annotations

import sys

import click

from .errors import SheetconvError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SheetconvError as e:
            click.echo(f"sheetconv: error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sheetconv")
def cli():
    """A small convolutional network as a live spreadsheet."""


# ---------------------------------------------------------------- build (export issue)

@cli.command()
def build():
    """Write a workbook of a network's activations as live formulas."""
    raise SheetconvError("build is not implemented yet")


# ---------------------------------------------------------------- trace (trace issue)

@cli.command()
def trace():
    """Precedents (or dependents) of a cell in any xlsx."""
    raise SheetconvError("trace is not implemented yet")


# ---------------------------------------------------------------- summary, check (torch issue)

@cli.command()
def summary():
    """A per-layer table: output shape, parameters, MACs, receptive field."""
    raise SheetconvError("summary is not implemented yet")


@cli.command()
def check():
    """Compare a (possibly edited) sheetconv workbook with the engine and torch."""
    raise SheetconvError("check is not implemented yet")


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="sheetconv", standalone_mode=True)
    except SheetconvError as e:          # raised outside a command (option callbacks)
        click.echo(f"sheetconv: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
