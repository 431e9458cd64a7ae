"""The ``sheetconv`` command: build, trace, summary, check.

Bad input raises SheetconvError; ``main`` prints its one-line message and exits with
status 2, never a traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

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

_PROGRESS_MIN_FORMULAS = 150_000      # about a second of writing


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _pick_input(net, digit, image, npy, resize):
    """(C, H, W) input and a few words saying where it came from."""
    from .data import digit as bundled, digit_label, load_input
    given = [o for o, v in (("--digit", digit), ("--image", image), ("--npy", npy)) if v is not None]
    if len(given) > 1:
        raise SheetconvError(f"give one input, not {' and '.join(given)}")
    if image is not None or npy is not None:
        path = image if image is not None else npy
        if npy is not None and not str(npy).lower().endswith(".npy"):
            raise SheetconvError(f"{npy}: expected a .npy file")
        return load_input(path, shape=net.input_shape, resize=resize), str(path)
    d = 0 if digit is None else digit
    if net.input_shape != (1, 28, 28):
        raise SheetconvError(f"the bundled digits are 1x28x28 but the network takes "
                             f"{'x'.join(map(str, net.input_shape))}; give --image or --npy")
    return bundled(d), f"digit {d} (a {digit_label(d)})"


def _load_weights(net, weights, state_dict):
    if weights is not None and state_dict is not None:
        raise SheetconvError("give --weights or --state-dict, not both")
    if weights is not None:
        import zipfile

        import numpy as np
        try:
            with np.load(weights, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise SheetconvError(f"{weights}: no such file") from None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise SheetconvError(f"{weights}: not a readable .npz file ({e})") from None
        try:
            net.load_state_dict(arrays)
        except SheetconvError as e:
            raise SheetconvError(f"{weights}: {e}") from None
    elif state_dict is not None:
        from .torchio import load_state_dict_file
        load_state_dict_file(state_dict, net)


def _write_quietly_or_not(net, x, out, *, force, quiet, title):
    from .export import formula_count, write_workbook
    from .layout import Layout
    layout = Layout.for_network(net)
    total = formula_count(net, layout)
    if quiet or total < _PROGRESS_MIN_FORMULAS or not _stderr_is_tty():
        return write_workbook(net, x, out, force=force, layout=layout, title=title)
    with click.progressbar(length=total, label=f"writing {out}", file=sys.stderr) as bar:
        return write_workbook(net, x, out, force=force, layout=layout, title=title, progress=bar.update)


def _same_as_existing(net, x, out: Path, title) -> bool:
    """Build beside ``out`` and compare: True if ``out`` already holds exactly this workbook.

    The zip members are compared uncompressed, so another zlib's deflate does not count.
    """
    import tempfile
    import zipfile

    from .export import write_workbook
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".check.xlsx", dir=out.parent)
    os.close(fd)
    try:
        write_workbook(net, x, tmp, force=True, title=title)
        with zipfile.ZipFile(tmp) as new, zipfile.ZipFile(out) as old:
            names = new.namelist()
            return names == old.namelist() and all(new.read(n) == old.read(n) for n in names)
    except (zipfile.BadZipFile, OSError, KeyError):
        return False
    finally:
        os.unlink(tmp)


@cli.command()
@click.option("--preset", "preset_name", type=click.Choice(["conv-example", "simple-cnn"]), default=None,
              help="A ready-made network (default conv-example).")
@click.option("--spec", "spec_file", type=str, default=None,
              help="A network described in a JSON or TOML spec file instead of a preset.")
@click.option("--digit", type=click.IntRange(0, 9), default=None, help="Bundled MNIST digit 0-9 (default 0).")
@click.option("--image", type=str, default=None, help="An image file as the input.")
@click.option("--npy", type=str, default=None, help="A .npy array (H, W) or (C, H, W).")
@click.option("--resize", is_flag=True, help="Resize --image to the network's input size.")
@click.option("--weights", type=str, default=None,
              help="A .npz of arrays keyed like the network's state dict ('conv1.weight', ...).")
@click.option("--state-dict", "state_dict", type=str, default=None,
              help="A PyTorch state dict saved with torch.save.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the random weights (default 0).")
@click.option("--out", type=str, default=None,
              help="Where to write (default workbooks/<preset>.xlsx).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary line.")
def build(preset_name, spec_file, digit, image, npy, resize, weights, state_dict, seed, out, force, quiet):
    """Write a workbook of a network's activations as live formulas.

    With no options: workbooks/conv-example.xlsx from bundled digit 0. An existing
    file is left alone unless --force (if it already holds exactly this workbook, the
    command says so and succeeds).
    """
    from .presets import preset
    if spec_file is not None and preset_name is not None:
        raise SheetconvError("give --preset or --spec, not both")
    if spec_file is not None:
        from .specfile import load_spec
        net = load_spec(spec_file)
        if seed is not None:
            net.init_weights(seed)
        name = Path(spec_file).stem
    else:
        name = preset_name or "conv-example"
        net = preset(name, seed=seed or 0)
    _load_weights(net, weights, state_dict)
    x, source = _pick_input(net, digit, image, npy, resize)
    if out is None:
        out_path = Path("workbooks") / f"{name}.xlsx"
        if not out_path.parent.exists() and out_path.parent.parent.is_dir():
            out_path.parent.mkdir()
    else:
        out_path = Path(out)
        if out_path.suffix.lower() != ".xlsx" and not out_path.is_dir():
            raise SheetconvError(f"{out}: the output must be a .xlsx file")
    title = f"{name} on {source}"
    if out_path.is_file() and not force and out_path.parent.is_dir():
        if _same_as_existing(net, x, out_path, title):
            if not quiet:
                click.echo(f"{out_path} is up to date ({name} on {source})")
            return
    result = _write_quietly_or_not(net, x, out_path, force=force, quiet=quiet, title=title)
    if not quiet:
        click.echo(f"wrote {out_path}: {name} on {source}, {result.formulas:,} formulas "
                   f"({result.seconds:.1f} s)")


@cli.command()
@click.option("--out-dir", type=str, default="workbooks", show_default=True,
              help="Folder for conv-example.xlsx and simple-cnn.xlsx.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing.")
def examples(out_dir, quiet):
    """Regenerate the example workbooks (both presets, digit 0, seed 0), reproducibly."""
    from .data import digit, digit_label
    from .export import write_workbook
    from .presets import preset
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise SheetconvError(f"{folder} is a file, expected a folder for the example workbooks")
    if not folder.is_dir():
        if not folder.parent.is_dir():
            raise SheetconvError(f"output folder {folder.parent} does not exist")
        folder.mkdir()
    for name in ("conv-example", "simple-cnn"):
        path = folder / f"{name}.xlsx"
        result = write_workbook(preset(name, seed=0), digit(0), path, force=True,
                                title=f"{name} on digit 0 (a {digit_label(0)})")
        if not quiet:
            click.echo(f"wrote {path}: {result.formulas:,} formulas")


# ---------------------------------------------------------------- trace (trace issue)

def _depth(ctx, param, value):
    if value is None or str(value).strip().lower() == "all":
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"expected a positive whole number or 'all', got {value!r}")
    return int(text)


@cli.command()
@click.argument("book", type=click.Path())
@click.argument("cell")
@click.option("--depth", default="all", show_default=True, callback=_depth,
              help="How many times to press Trace Precedents: a number or 'all'.")
@click.option("--dependents", is_flag=True, help="Trace the cells that read CELL instead.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--highlight", type=click.Path(dir_okay=False), default=None,
              help="Write a copy of BOOK with CELL outlined green and the traced cells filled blue.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Draw the input with the receptive field outlined, one shade per level.")
def trace(book, cell, depth, dependents, fmt, highlight, png):
    """Precedents (or dependents) of CELL in BOOK, level by level.

    CELL is an A1 reference ('My sheet'!C4) or, in a sheetconv workbook, a layer
    coordinate such as conv2[0,3,3] (channel, row, column).
    """
    from .trace_export import write_highlight, write_png
    from .workbook import open_workbook

    wb = open_workbook(book)
    result = wb.trace(cell, depth, dependents)
    click.echo(result.text() if fmt == "text" else result.to_json())
    if highlight:
        click.echo(f"wrote {write_highlight(book, result, highlight)}", err=True)
    if png:
        click.echo(f"wrote {write_png(book, wb, result, png)}", err=True)


# ---------------------------------------------------------------- summary, check (torch issue)

@cli.command()
@click.option("--preset", "preset_name", type=click.Choice(["conv-example", "simple-cnn"]), default=None,
              help="A ready-made network (default: conv-example).")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None,
              help="An architecture spec file (.json or .toml; see sheetconv.specfile).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size shown in the output shapes and MACs.")
def summary(preset_name, spec_file, batch):
    """A per-layer table: output shape, parameters, MACs, receptive field."""
    from .presets import preset
    from .specfile import load_spec
    from .summary import summary as table
    if preset_name and spec_file:
        raise SheetconvError("give either --preset or --spec, not both")
    net = load_spec(spec_file) if spec_file else preset(preset_name or "conv-example")
    click.echo(table(net, batch))


@cli.command()
@click.argument("book", type=click.Path(dir_okay=False))
@click.option("--recalc", is_flag=True, help="Compare with the values LibreOffice recalculates from the formulas.")
@click.pass_context
def check(ctx, book, recalc):
    """Compare a (possibly edited) sheetconv workbook with the engine and torch.

    Exit status: 0 when every cell agrees, 1 on a mismatch, 2 for bad input.
    """
    from .check import check_workbook
    report = check_workbook(book, recalc=recalc)
    click.echo(str(report))
    if not report.ok:
        ctx.exit(1)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="sheetconv", standalone_mode=True)
    except SheetconvError as e:          # raised outside a command (option callbacks)
        click.echo(f"sheetconv: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
