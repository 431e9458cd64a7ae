"""The ``sheetconv`` command: build, trace, summary, check.

Bad input raises SheetconvError; ``main`` prints its one-line message and exits with
status 2, never a traceback.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
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


def _pick_input(net, digit, image, npy, resize, invert):
    """(C, H, W) input and a few words saying where it came from."""
    from .data import digit as bundled, digit_label, load_input
    given = [o for o, v in (("--digit", digit), ("--image", image), ("--npy", npy)) if v is not None]
    if len(given) > 1:
        raise SheetconvError(f"give one input, not {' and '.join(given)}")
    if image is not None or npy is not None:
        path = image if image is not None else npy
        if npy is not None and not str(npy).lower().endswith(".npy"):
            raise SheetconvError(f"{npy}: expected a .npy file")
        x = load_input(path, shape=net.input_shape, resize=resize, invert=invert,
                       warn=lambda message: click.echo(f"sheetconv: warning: {message}", err=True))
        return x, str(path) + (" (inverted)" if invert else "")
    d = 0 if digit is None else digit
    if net.input_shape != (1, 28, 28):
        raise SheetconvError(f"the bundled digits are 1x28x28 but the network takes "
                             f"{'x'.join(map(str, net.input_shape))}; give --image or --npy")
    x = bundled(d)
    return (1.0 - x if invert else x), _digit_words(d, digit_label(d)) + (" (inverted)" if invert else "")


def _digit_words(index: int, label: int) -> str:
    return f"digit sample {index} (a {label})"


def _read_weights(weights, state_dict) -> dict | None:
    """The arrays of --weights (.npz) or --state-dict (.pt) under the file's own keys."""
    if weights is not None and state_dict is not None:
        raise SheetconvError("give --weights or --state-dict, not both")
    if weights is not None:
        import zipfile

        import numpy as np

        try:
            z = np.load(weights, allow_pickle=False)
            if isinstance(z, np.lib.npyio.NpzFile):
                with z:
                    return {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise SheetconvError(f"{weights}: no such file") from None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise SheetconvError(f"{weights}: not a readable .npz file ({e})") from None
        raise SheetconvError(f"{weights}: expected a .npz file of named arrays (numpy.savez), got a single array")
    if state_dict is not None:
        from .torchio import read_state_dict_file
        return read_state_dict_file(state_dict)
    return None


def _write_quietly_or_not(net, x, out, *, force, quiet, title):
    from .export import formula_count, write_workbook
    from .layout import Layout
    layout = Layout.for_network(net)
    total = formula_count(net, layout)
    if quiet or total < _PROGRESS_MIN_FORMULAS or not _stderr_is_tty():
        return write_workbook(net, x, out, force=force, layout=layout, title=title)
    with click.progressbar(length=total, label=f"writing {out}", file=sys.stderr) as bar:
        return write_workbook(net, x, out, force=force, layout=layout, title=title, progress=bar.update)


@contextmanager
def _scratch_folder():
    """A private temporary folder; failing to make one is a one-line error."""
    import tempfile
    try:
        folder = tempfile.TemporaryDirectory(prefix="sheetconv-")
    except OSError as e:
        raise SheetconvError(f"cannot create a temporary folder: {e.strerror or e}") from None
    with folder as name:
        yield Path(name)


def _differs(path: Path) -> SheetconvError:
    return SheetconvError(f"{path} already exists and differs from this build (use --force to overwrite)")


@cli.command()
@click.option("--preset", "preset_name", type=click.Choice(["conv-example", "simple-cnn"]), default=None,
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary line.")
def build(preset_name, spec_file, digit, image, npy, resize, invert, weights, state_dict, seed, out, force, quiet):
    """Write a workbook of a network's activations as live formulas.

    With no options: workbooks/conv-example.xlsx from bundled digit sample 0. An
    existing file is left alone unless --force (if it already holds exactly this
    workbook, the command says so and succeeds).
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
    arrays = _read_weights(weights, state_dict)
    if arrays is not None:
        from .torchio import map_state_dict
        try:
            net.load_state_dict(map_state_dict(arrays, net, source=str(weights or state_dict)))
        except SheetconvError as e:
            own = sorted(v.shape for v in net.state_dict().values())
            other_network = sorted(tuple(getattr(a, "shape", ())) for a in arrays.values()) != own
            if spec_file is not None or preset_name is not None or not other_network:
                raise
            raise SheetconvError(f"{e} (that is the default network, conv-example; for other weights pass "
                                 f"--preset simple-cnn or --spec FILE)") from None
    x, source = _pick_input(net, digit, image, npy, resize, invert)
    if out is None:
        out_path = Path("workbooks") / f"{name}.xlsx"
        if not out_path.parent.exists() and out_path.parent.parent.is_dir():
            out_path.parent.mkdir()
    else:
        out_path = Path(out)
        if out_path.suffix.lower() != ".xlsx" and not out_path.is_dir():
            raise SheetconvError(f"{out}: the output must be a .xlsx file")
    title = f"{name} on {source}"
    if out_path.is_file() and not force:
        from .export import same_cells, write_workbook
        with _scratch_folder() as scratch:
            fresh = scratch / out_path.name
            write_workbook(net, x, fresh, title=title)
            if not same_cells(fresh, out_path):
                raise _differs(out_path)
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
@click.option("--force", is_flag=True, help="Overwrite example workbooks that differ from a fresh build.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing.")
def examples(out_dir, force, quiet):
    """Regenerate the example workbooks (both presets, digit sample 0, seed 0), reproducibly.

    An existing workbook that already holds exactly this content is left as it is; one
    that differs is refused unless --force, and then nothing is written.
    """
    import shutil

    from .data import digit, digit_label
    from .export import same_cells, write_workbook
    from .files import atomic_output
    from .presets import preset
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise SheetconvError(f"{folder} is a file, expected a folder for the example workbooks")
    if not folder.is_dir():
        if not folder.parent.is_dir():
            raise SheetconvError(f"output folder {folder.parent} does not exist")
        folder.mkdir()
    with _scratch_folder() as scratch:
        plan = []
        for name in ("conv-example", "simple-cnn"):
            path, fresh = folder / f"{name}.xlsx", scratch / f"{name}.xlsx"
            result = write_workbook(preset(name, seed=0), digit(0), fresh,
                                    title=f"{name} on {_digit_words(0, digit_label(0))}")
            exists = path.exists()
            same = exists and path.is_file() and same_cells(fresh, path)
            if exists and not same and not force:
                raise _differs(path)
            plan.append((path, fresh, result, exists, same))
        for path, fresh, result, exists, same in plan:
            if same:
                if not quiet:
                    click.echo(f"{path} is up to date")
                continue
            with atomic_output(path, force=exists, what="workbook") as tmp:
                shutil.copyfile(fresh, tmp)
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
@click.option("--highlight", type=str, default=None,
              help="Write a copy of BOOK (.xlsx) with CELL outlined green and the traced cells filled blue.")
@click.option("--png", type=str, default=None,
              help="Draw the input (.png) with the receptive field outlined, one shade per level.")
@click.option("--force", is_flag=True, help="Overwrite existing --highlight / --png files.")
def trace(book, cell, depth, dependents, fmt, highlight, png, force):
    """Precedents (or dependents) of CELL in BOOK, level by level.

    CELL is an A1 reference ('My sheet'!C4, case-insensitive) or, in a sheetconv workbook,
    a layer coordinate such as conv2[0,3,3] (channel, row, column) or fc1[3].
    """
    from .trace_export import RECALC_NOTE, check_outputs, write_highlight, write_png
    from .workbook import open_workbook

    check_outputs(book, highlight, png, force)
    wb = open_workbook(book)
    result = wb.trace(cell, depth, dependents)
    click.echo(result.text() if fmt == "text" else result.to_json())
    if highlight:
        click.echo(f"wrote {write_highlight(book, result, highlight, force=force)}", err=True)
        click.echo(RECALC_NOTE, err=True)
    if png:
        click.echo(f"wrote {write_png(book, wb, result, png, force=force)}", err=True)


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

    Without --recalc the stored values are compared: they show what the program that
    last saved the file computed, so a formula's arithmetic is verified only with --recalc.

    Exit status: 0 when references and every value agree; 1 on a mismatch; 2 for bad
    input; 3 when the references agree but values could not be checked (the file has no
    stored values, e.g. saved by openpyxl or pandas; rerun with --recalc). Not 0 then,
    since nothing vouches for the values.
    """
    from .check import check_workbook
    report = check_workbook(book, recalc=recalc)
    click.echo(str(report))
    if report.status != "ok":
        ctx.exit(1 if report.status == "mismatch" else 3)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="sheetconv", standalone_mode=True)
    except SheetconvError as e:          # raised outside a command (option callbacks)
        click.echo(f"sheetconv: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
