"""What ``sheetconv build`` and ``sheetconv examples`` do, as plain functions.

The command line only turns options into one call here and prints the outcome; every
choice (which network, which weights, which input, where to write, whether the file on
disk is already up to date) is made here, and every refusal is a one-line SheetconvError.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SheetconvError
from .interop.state_dict import map_state_dict, read_state_dict_file
from .nn.arrayfiles import read_npz, stand_in
from .nn.inputs import digit as bundled_digit
from .nn.inputs import digit_label, load_input
from .nn.network import Network
from .nn.paths import check_name, os_reason
from .nn.presets import preset
from .nn.specfile import MAX_PARAMS, load_spec
from .sheet.layout import Layout
from .xlsx.files import atomic_output, cleanup_on_signals
from .xlsx.writer import WriteResult, formula_count, same_cells, write_workbook

__all__ = ["Built", "choose_network", "read_weights", "load_weights", "pick_input", "output_path", "build", "examples",
           "EXAMPLES"]

EXAMPLES = ("conv-example", "simple-cnn", "conv-course")


@dataclass
class Built:
    """The outcome of :func:`build`: where, what, and whether anything was written."""
    path: Path
    name: str
    source: str
    result: WriteResult | None         # None: the file already held exactly this workbook

    @property
    def up_to_date(self) -> bool:
        return self.result is None


def choose_network(preset_name: str | None = None, spec_file: str | None = None,
                   seed: int | None = None) -> tuple[Network, str]:
    """The network to build and its name: a preset (default conv-example) or a spec file."""
    if spec_file is not None and preset_name is not None:
        raise SheetconvError("give --preset or --spec, not both")
    if spec_file is not None:
        net = load_spec(spec_file)
        if seed is not None:
            net.init_weights(seed)
        return net, Path(spec_file).stem
    name = preset_name or "conv-example"
    return preset(name, seed=seed or 0), name


def read_weights(net: Network, weights: str | None, state_dict: str | None,
                 chosen: bool = True) -> dict[str, np.ndarray] | None:
    """The arrays of --weights (.npz) or --state-dict (.pt) mapped onto ``net``'s names, or None.

    Names, shapes and dtypes are checked from the file's headers before any value is read,
    so memory is bounded by the network's parameter count whatever the file claims.
    ``chosen``: the network was named (not the default); otherwise a file for another
    network gets a hint to name it.
    """
    if weights is not None and state_dict is not None:
        raise SheetconvError("give --weights or --state-dict, not both")
    if weights is None and state_dict is None:
        return None
    source = str(weights if weights is not None else state_dict)

    def accept(headers):
        _mapped(net, {k: stand_in(h) for k, h in headers.items()}, source, chosen)

    if weights is not None:
        arrays = read_npz(weights, MAX_PARAMS, accept=accept)
    else:
        arrays = read_state_dict_file(state_dict, MAX_PARAMS, accept=accept)
    return _mapped(net, arrays, source, chosen)


def load_weights(net: Network, weights: str | None, state_dict: str | None, chosen: bool = True) -> None:
    """Load --weights or --state-dict (if given) into ``net``; see :func:`read_weights`."""
    mapped = read_weights(net, weights, state_dict, chosen)
    if mapped is not None:
        net.load_state_dict(mapped)


def _mapped(net: Network, arrays: dict, source: str, chosen: bool) -> dict[str, np.ndarray]:
    try:
        return map_state_dict(arrays, net, source=source)
    except SheetconvError as e:
        own = sorted(v.shape for v in net.state_dict().values())
        other_network = sorted(tuple(getattr(a, "shape", ())) for a in arrays.values()) != own
        if chosen or not other_network:
            raise
        raise SheetconvError(f"{e} (that is the default network, conv-example; for other weights pass "
                             f"--preset simple-cnn or --spec FILE)") from None


def digit_words(index: int) -> str:
    return f"digit sample {index} (a {digit_label(index)})"


def pick_input(net: Network, digit: int | None = None, image: str | None = None, npy: str | None = None,
               resize: bool = False, invert: bool = False, warn: Callable[[str], None] | None = None):
    """The (C, H, W) input and a few words saying where it came from."""
    given = [o for o, v in (("--digit", digit), ("--image", image), ("--npy", npy)) if v is not None]
    if len(given) > 1:
        raise SheetconvError(f"give one input, not {' and '.join(given)}")
    if image is not None or npy is not None:
        path = image if image is not None else npy
        if npy is not None and not str(npy).lower().endswith(".npy"):
            raise SheetconvError(f"{npy}: expected a .npy file")
        x = load_input(path, shape=net.input_shape, resize=resize, invert=invert, warn=warn)
        return x, str(path) + (" (inverted)" if invert else "")
    d = 0 if digit is None else digit
    if net.input_shape != (1, 28, 28):
        raise SheetconvError(f"the bundled digits are 1x28x28 but the network takes "
                             f"{'x'.join(map(str, net.input_shape))}; give --image or --npy")
    x = bundled_digit(d)
    return (1.0 - x if invert else x), digit_words(d) + (" (inverted)" if invert else "")


def output_path(out: str | None, name: str) -> Path:
    """--out checked, or workbooks/<name>.xlsx (the folder made if its parent exists)."""
    if out is None:
        path = check_name(Path("workbooks") / f"{name}.xlsx", "output")
        if not path.parent.exists() and path.parent.parent.is_dir():
            path.parent.mkdir()
        return path
    path = check_name(out, "output")
    if path.suffix.lower() != ".xlsx" and not path.is_dir():
        raise SheetconvError(f"{out}: the output must be a .xlsx file")
    return path


@contextmanager
def scratch_folder():
    """A private temporary folder, removed on return, error, Ctrl-C, SIGTERM or SIGHUP.

    Failing to make one is a one-line error.
    """
    with cleanup_on_signals():
        try:
            folder = tempfile.TemporaryDirectory(prefix="sheetconv-")
        except OSError as e:
            raise SheetconvError(f"cannot create a temporary folder: {os_reason(e)}") from None
        with folder as name:
            yield Path(name)


def differs(path: Path) -> SheetconvError:
    return SheetconvError(f"{path} already exists and differs from this build (overwrite it with --force, or force=True in Python)")


def build(net: Network, x, path: Path, *, name: str, source: str, force: bool = False,
          progress_for: Callable[[int], object] | None = None, explain: str | None = None) -> Built:
    """Write ``net`` on ``x`` to ``path``. An existing file is refused unless ``force``, except
    when it already holds exactly this workbook (then nothing is written).

    ``progress_for(total_formulas)`` may return a context manager yielding an ``update(n)``
    callable (a progress bar), or None for no progress. ``explain``: the cell the sheet
    ``explain`` works through ('conv2[0,3,3]'; default the centre of the last conv layer).
    """
    if explain is not None:
        given = explain if isinstance(explain, str) else repr(explain)
        example = net.layers[-1].name + ("[0]" if len(net.shapes[net.layers[-1].name]) == 1 else "[0,0,0]")
        try:
            explain = net.ref(explain)
            if isinstance(explain, tuple) and explain and isinstance(explain[0], str) and "." in explain[0]:
                name = explain[0]
                if name in net.state_dict():
                    raise SheetconvError(f"{name} is a parameter, a constant; give a computed cell, e.g. {example}")
                raise SheetconvError(f"no parameter {name!r}{net.did_you_mean(name)}; give a computed cell, e.g. {example}")
            explain = net.check_cell(explain)
        except SheetconvError as e:
            raise SheetconvError(f"--explain {given}: {e}") from None
        if explain[0] == "input":
            raise SheetconvError(f"--explain {given}: the input is a constant; give a computed cell, e.g. {example}")
    title = f"{name} on {source}"
    if path.is_file() and not force:
        with scratch_folder() as scratch:
            fresh = scratch / path.name
            write_workbook(net, x, fresh, title=title, explain=explain)
            if not same_cells(fresh, path):
                raise differs(path)
        return Built(path, name, source, None)
    layout = Layout.for_network(net)
    bar = progress_for(formula_count(net, layout)) if progress_for is not None else None
    if bar is None:
        return Built(path, name, source, write_workbook(net, x, path, force=force, layout=layout, title=title,
                                                        explain=explain))
    with bar as update:
        return Built(path, name, source, write_workbook(net, x, path, force=force, layout=layout, title=title,
                                                        progress=update, explain=explain))


def examples(out_dir: str | Path, force: bool = False) -> list[Built]:
    """Regenerate the example workbooks (every preset of EXAMPLES, digit sample 0, seed 0), reproducibly.

    A workbook that already holds exactly this content is left as it is; one that differs
    is refused unless ``force``, and then nothing is written.
    """
    folder = check_name(out_dir, "output folder")
    if folder.exists() and not folder.is_dir():
        raise SheetconvError(f"{folder} is a file, expected a folder for the example workbooks")
    if not folder.is_dir():
        if not folder.parent.is_dir():
            raise SheetconvError(f"output folder {folder.parent} does not exist")
        folder.mkdir()
    out = []
    with scratch_folder() as scratch:
        plan = []
        for name in EXAMPLES:
            path, fresh = folder / f"{name}.xlsx", scratch / f"{name}.xlsx"
            result = write_workbook(preset(name, seed=0), bundled_digit(0), fresh, title=f"{name} on {digit_words(0)}")
            exists = path.exists()
            same = exists and path.is_file() and same_cells(fresh, path)
            if exists and not same and not force:
                raise differs(path)
            plan.append((path, fresh, result, exists, same, name))
        for path, fresh, result, exists, same, name in plan:
            if not same:
                with atomic_output(path, force=exists, what="workbook") as tmp:
                    shutil.copyfile(fresh, tmp)
            out.append(Built(path, name, digit_words(0), None if same else result))
    return out
