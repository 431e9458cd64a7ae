"""The ``sheetconv`` command: build, trace, summary, check.

Bad input raises SheetconvError; ``main`` prints its one-line message and exits with
status 2, never a traceback.
"""
from __future__ import annotations

import errno
import sys
import warnings
from contextlib import contextmanager

import click

from .errors import SheetconvError
from .nn.paths import os_reason, shown


class _Group(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, but a usage error (a bad option value, a missing argument) is one line,
        ``sheetconv: error: ...``, like every other error, with exit status 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):   # bare 'sheetconv': the help
                e.show()
                sys.exit(e.exit_code)
            where = f" (see '{e.ctx.command_path} -h')" if e.ctx is not None else ""
            click.echo(f"sheetconv: error: {e.format_message()}{where}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SheetconvError as e:
            click.echo(f"sheetconv: error: {e}", err=True)
            ctx.exit(2)
        except OSError as e:             # a name past 255 bytes met a file-system call before check_name
            if e.errno != errno.ENAMETOOLONG:
                raise
            click.echo(f"sheetconv: error: {shown(e.filename or '')}: {os_reason(e)}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sheetconv")
def cli():
    """A small convolutional network as a live spreadsheet."""


# ---------------------------------------------------------------- build, examples

_PROGRESS_MIN_FORMULAS = 150_000      # about a second of writing
_CHECK_PROGRESS_MIN_CELLS = 200_000   # about a second of checking
_INDEX_PROGRESS_MIN_BYTES = 32 << 20   # about a second of indexing sheet XML


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _warn(message: str) -> None:
    click.echo(f"sheetconv: warning: {message}", err=True)


def _progress(quiet: bool, label: str, minimum: str = "_PROGRESS_MIN_FORMULAS"):
    """A progress-bar factory for long work (build's writing, check's reading, trace's index):
    ``make(total)`` gives a bar on a terminal when ``total`` (formulas, cells, bytes) is at
    least the module constant named ``minimum`` - about a second of work - else None; never
    with ``quiet`` or when stderr is not a terminal."""
    def make(total: int):
        if quiet or total < globals()[minimum] or not _stderr_is_tty():
            return None
        return _Bar(total, label)
    return make


@contextmanager
def _Bar(total: int, label: str):
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@cli.command()
@click.option("--preset", "preset_name", type=click.Choice(["conv-example", "simple-cnn", "conv-course", "simple-cnn-bn", "resnet-mini"]), default=None,
              help="A ready-made network (default conv-example).")
@click.option("--spec", "spec_file", type=str, default=None,
              help="A network described in a JSON or TOML spec file instead of a preset.")
@click.option("--digit", type=click.IntRange(0, 9), default=None,
              help="Bundled MNIST test sample 0-9 (their labels: 7 2 1 0 4 1 4 9 5 9); default 0.")
@click.option("--image", type=str, default=None, help="An image file as the input (grey 0..1).")
@click.option("--npy", type=str, default=None,
              help="A .npy array (H, W) or (C, H, W); uint8 is scaled by 1/255 like an image, "
                   "other types are used as they are.")
@click.option("--resize", is_flag=True, help="Resize --image to the network's input size.")
@click.option("--invert", is_flag=True,
              help="Use 1 - pixel: for dark ink on a light background (MNIST digits are light on dark).")
@click.option("--weights", type=str, default=None,
              help="A .npz of arrays keyed like the network's state dict ('conv1.weight', ...) "
                   "or positionally ('0.weight', '0.bias', ...) in the network's order.")
@click.option("--state-dict", "state_dict", type=str, default=None,
              help="A PyTorch state dict saved with torch.save.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the random weights (default 0).")
@click.option("--out", type=str, default=None,
              help="Where to write (default workbooks/<preset>.xlsx).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--explain", "explain", type=str, default=None, metavar="CELL",
              help="The cell the sheet 'explain' works through step by step, e.g. conv2[0,3,3] or fc1[3] "
                   "(default: the centre of the last conv layer).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary line.")
def build(preset_name, spec_file, digit, image, npy, resize, invert, weights, state_dict, seed, out, force, explain,
          quiet):
    """Write a workbook of a network's activations as live formulas.

    With no options: workbooks/conv-example.xlsx from bundled digit sample 0. An
    existing file is left alone unless --force (if it already holds exactly this
    workbook, the command says so and succeeds).
    """
    from . import build as b
    net, name = b.choose_network(preset_name, spec_file, seed)
    b.load_weights(net, weights, state_dict, chosen=spec_file is not None or preset_name is not None)
    x, source = b.pick_input(net, digit, image, npy, resize, invert, warn=_warn)
    out_path = b.output_path(out, name)
    done = b.build(net, x, out_path, name=name, source=source, force=force,
                   progress_for=_progress(quiet, f"writing {out_path}"), explain=explain)
    if quiet:
        return
    if done.up_to_date:
        click.echo(f"{out_path} is up to date ({name} on {source})")
    else:
        click.echo(f"wrote {out_path}: {name} on {source}, {done.result.formulas:,} formulas "
                   f"({done.result.seconds:.1f} s)")


@cli.command()
@click.option("--out-dir", type=str, default="workbooks", show_default=True,
              help="Folder for conv-example.xlsx, simple-cnn.xlsx and conv-course.xlsx.")
@click.option("--force", is_flag=True, help="Overwrite example workbooks that differ from a fresh build.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing.")
def examples(out_dir, force, quiet):
    """Regenerate the example workbooks (the three presets, digit sample 0, seed 0), reproducibly.

    An existing workbook that already holds exactly this content is left as it is; one
    that differs is refused unless --force, and then nothing is written.
    """
    from . import build as b
    for done in b.examples(out_dir, force=force):
        if not quiet:
            click.echo(f"{done.path} is up to date" if done.up_to_date
                       else f"wrote {done.path}: {done.result.formulas:,} formulas")


# ---------------------------------------------------------------- trace

def _depth(ctx, param, value):
    if value is None or str(value).strip().lower() == "all":
        return None
    text = str(value).strip()
    # ASCII digits only: str.isdigit accepts '²' and other digits int() refuses
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < 1:
        raise SheetconvError(f"--depth: got {value!r:.40}; expected a positive whole number or 'all'")
    return int(text)


@cli.command()
@click.argument("book", type=click.Path())
@click.argument("cell")
@click.option("--depth", default="all", show_default=True, callback=_depth,
              help="How many times to press Trace Precedents: a number or 'all'.")
@click.option("--dependents", is_flag=True, help="Trace the cells that read CELL instead.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--highlight", type=str, default=None,
              help="Write a copy of BOOK (.xlsx) with CELL outlined green and each level of traced cells "
                   "outlined in its colour.")
@click.option("--png", type=str, default=None,
              help="Draw one panel per level (.png): the traced cell on its layer's grid, then each level's "
                   "cells on the grid they belong to, down to the input.")
@click.option("--force", is_flag=True, help="Overwrite existing --highlight / --png files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def trace(book, cell, depth, dependents, fmt, highlight, png, force, quiet):
    """Precedents (or dependents) of CELL in BOOK, level by level.

    CELL is an A1 reference ('My sheet'!C4, case-insensitive) or, in a sheetconv workbook,
    a layer coordinate such as conv2[0,3,3] (channel, row, column) or fc1[3].
    """
    from .pictures import write_png
    from .tracing import open_workbook
    from .xlsx.highlight import RECALC_NOTE, check_outputs, write_highlight

    check_outputs(book, highlight, png, force)
    wb = open_workbook(book, progress=_progress(quiet, f"indexing {book}", "_INDEX_PROGRESS_MIN_BYTES"))
    result = wb.trace(cell, depth, dependents)
    if fmt == "text":
        click.echo(result.text())
    else:                                   # written level by level: a long trace is never one string
        sys.stdout.writelines(result.iter_json())
        sys.stdout.write("\n")
        sys.stdout.flush()
    if highlight:
        click.echo(f"wrote {write_highlight(book, result, highlight, force=force)}", err=True)
        click.echo(RECALC_NOTE, err=True)
    if png:
        click.echo(f"wrote {write_png(result, png, force=force, book=book)}", err=True)


# ---------------------------------------------------------------- summary, check

@cli.command()
@click.option("--preset", "preset_name", type=click.Choice(["conv-example", "simple-cnn", "conv-course", "simple-cnn-bn", "resnet-mini"]), default=None,
              help="A ready-made network (default: conv-example).")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None,
              help="An architecture spec file (.json or .toml; see sheetconv.nn.specfile).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size shown in the output shapes and MACs.")
def summary(preset_name, spec_file, batch):
    """A per-layer table: output shape, parameters, MACs, receptive field."""
    from .nn.presets import preset
    from .nn.specfile import load_spec
    from .nn.summary import summary as table
    if preset_name and spec_file:
        raise SheetconvError("give either --preset or --spec, not both")
    net = load_spec(spec_file) if spec_file else preset(preset_name or "conv-example")
    click.echo(table(net, batch))


@cli.command()
@click.argument("book", type=click.Path(dir_okay=False))
@click.option("--recalc", is_flag=True, help="Compare with the values LibreOffice recalculates from the formulas.")
@click.option("--torch", "with_torch", is_flag=True,
              help="Also run torch on the workbook's input and weights and compare it with the engine, per layer.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def check(ctx, book, recalc, with_torch, quiet):
    """Compare a (possibly edited) sheetconv workbook with the engine (and torch with --torch).

    Without --recalc the stored values are compared: they show what the program that
    last saved the file computed, so a formula's arithmetic is verified only with --recalc.

    Exit status: 0 when references and every value agree; 1 on a mismatch; 2 for bad
    input; 3 when the references agree but values could not be checked (the file has no
    stored values, e.g. saved by openpyxl or pandas; rerun with --recalc). Not 0 then,
    since nothing vouches for the values.
    """
    from .check import check_workbook
    report = check_workbook(book, recalc=recalc, torch=with_torch,
                            progress=_progress(quiet, f"checking {book}", "_CHECK_PROGRESS_MIN_CELLS"))
    click.echo(str(report))
    if report.status != "ok":
        ctx.exit(1 if report.status == "mismatch" else 3)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    _warn(str(message))


def main(argv=None):
    warnings.showwarning = _show_warning     # library warnings read 'sheetconv: warning: ...'
    try:
        cli.main(args=argv, prog_name="sheetconv", standalone_mode=True)
    except SheetconvError as e:          # raised outside a command (option callbacks)
        click.echo(f"sheetconv: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
