"""Writing an output file all at once or not at all.

``atomic_output`` hands out a temporary path beside the target; only when the writer
succeeds is the temporary file renamed over the target, so the target is never
half-written and a failure leaves nothing behind.
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from ..errors import SheetconvError

__all__ = ["atomic_output", "check_target"]


def check_target(path: Path, force: bool, what: str) -> None:
    """Refuse an output path whose folder is missing or not writable, or that exists (unless ``force``)."""
    parent = path.parent
    if not parent.is_dir():
        raise SheetconvError(f"output folder {parent} does not exist (create it or choose another path for the {what})")
    if path.is_dir():
        raise SheetconvError(f"{path} is a folder, expected a file path for the {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SheetconvError(f"output folder {parent} is not writable")
    if path.exists() and not force:
        raise SheetconvError(f"{path} already exists (use --force to overwrite)")


def _new_temp(path: Path) -> Path:
    """An empty new file beside ``path``, keeping its suffix (writers pick formats by it).

    It is created with mode 0o666 so that the kernel applies the umask, as for any new file.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


@contextmanager
def atomic_output(path, *, force: bool, what: str):
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    ``what`` names the output in messages ('workbook', 'PNG'). Refuses an existing
    target unless ``force``; checks up front that the folder exists and is writable.
    On any exception the temporary file is removed; an OSError (a full disk, a lost
    permission) becomes a one-line SheetconvError.
    """
    path = Path(path)
    check_target(path, force, what)
    try:
        tmp = _new_temp(path)
        mode = os.stat(tmp).st_mode & 0o777
    except OSError as e:
        raise SheetconvError(f"cannot write the {what} in {path.parent}: {_reason(e)}") from None
    try:
        yield tmp
        os.chmod(tmp, mode)              # whatever the writer did: a new file's usual mode
        if not force and path.exists():  # appeared while we were writing
            raise SheetconvError(f"{path} already exists (use --force to overwrite)")
        os.replace(tmp, path)
    except OSError as e:
        raise SheetconvError(f"cannot write {what} {path}: {_reason(e)}") from None
    finally:
        try:
            os.unlink(tmp)               # still there only if something failed
        except OSError:
            pass
