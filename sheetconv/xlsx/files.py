"""Writing an output file all at once or not at all.

``atomic_output`` hands out a temporary path beside the target; only when the writer
succeeds is the temporary file moved onto the target. Invariants:

- the target is never half-written, and a failure leaves nothing behind — a full disk,
  a lost permission, Ctrl-C, and SIGTERM or SIGHUP alike (``cleanup_on_signals`` turns
  those two into an exception while files are being written, so every ``finally`` and
  temporary folder is cleaned up, and then the process dies of the same signal);
- without ``force`` the target is created exclusively (a hard link of the finished file,
  which fails if the name exists), so of two concurrent writers to one new path exactly
  one succeeds and the other gets a one-line "already exists" error;
- every OSError becomes a one-line SheetconvError, and objects the failed writer left
  behind (a ZipFile whose finalizer would write to the full disk again) are finalized
  quietly, so no "Exception ignored" traceback follows the message;
- path names are checked first (at most 255 bytes a name).
"""
from __future__ import annotations

import errno
import gc
import os
import secrets
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from ..errors import SheetconvError
from ..nn.paths import check_name, os_reason

__all__ = ["atomic_output", "check_target", "cleanup_on_signals"]

_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class _Signalled(BaseException):
    """SIGTERM or SIGHUP arrived while files were being written (not an Exception: nothing catches it by mistake)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise(signum, frame):
    raise _Signalled(signum)


@contextmanager
def cleanup_on_signals():
    """While inside, SIGTERM and SIGHUP unwind the stack (running every cleanup), then kill the process.

    Signals that are ignored (``nohup``) or already handled by the program are left alone;
    outside the main thread, and when an outer block is already active, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in _SIGNALS}
    mine = [s for s, h in old.items() if h is signal.SIG_DFL]
    for s in mine:
        signal.signal(s, _raise)
    try:
        yield
    except _Signalled as e:
        for s in mine:
            signal.signal(s, old[s])
        mine = []
        os.kill(os.getpid(), e.signum)       # the default action: die of the signal, as if never caught
        raise
    finally:
        for s in mine:
            signal.signal(s, old[s])


def check_target(path: Path, force: bool, what: str) -> None:
    """Refuse an output path whose folder is missing or not writable, or that exists (unless ``force``)."""
    path = check_name(path, what)
    parent = path.parent
    if not parent.is_dir():
        raise SheetconvError(f"output folder {parent} does not exist (create it or choose another path for the {what})")
    if path.is_dir():
        raise SheetconvError(f"{path} is a folder, expected a file path for the {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SheetconvError(f"output folder {parent} is not writable")
    if path.exists() and not force:
        raise _exists(path)


def _exists(path: Path) -> SheetconvError:
    return SheetconvError(f"{path} already exists (overwrite it with --force, or force=True in Python)")


def _new_temp(path: Path) -> Path:
    """An empty new file beside ``path``, keeping its suffix (writers pick formats by it).

    It is created with mode 0o666 so that the kernel applies the umask, as for any new file.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.stem[:200]}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _finish(tmp: Path, path: Path, force: bool) -> None:
    """Move the finished ``tmp`` onto ``path``: replacing it with ``force``, else only if the name is free."""
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)                   # atomic, and fails if ``path`` exists
    except FileExistsError:
        raise _exists(path) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():                    # no hard links here (FAT, some network file systems)
            raise _exists(path) from None
        os.replace(tmp, path)


def _quietly_finalize(tb) -> None:
    """Release what the failed writer's frames hold now, so finalizers that fail again stay quiet.

    (XlsxWriter leaves an open ZipFile on a full disk; its ``__del__`` would write the zip's
    directory again and print "Exception ignored ... No space left on device".)
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, OSError):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        traceback.clear_frames(tb)
        gc.collect()
    finally:
        sys.unraisablehook = previous


@contextmanager
def atomic_output(path, *, force: bool, what: str):
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    ``what`` names the output in messages ('workbook', 'PNG'). Refuses an existing
    target unless ``force``; checks up front that the folder exists and is writable.
    On any exception (and on SIGTERM or SIGHUP) the temporary file is removed; an
    OSError (a full disk, a lost permission) becomes a one-line SheetconvError.
    """
    path = Path(path)
    check_target(path, force, what)
    with cleanup_on_signals():
        try:
            tmp = _new_temp(path)
            mode = os.stat(tmp).st_mode & 0o777
        except OSError as e:
            raise SheetconvError(f"cannot write the {what} in {path.parent}: {os_reason(e)}") from None
        try:
            yield tmp
            os.chmod(tmp, mode)              # whatever the writer did: a new file's usual mode
            _finish(tmp, path, force)
        except OSError as e:
            reason = os_reason(e)
            _quietly_finalize(e.__traceback__)
            raise SheetconvError(f"cannot write {what} {path}: {reason}") from None
        finally:
            try:
                os.unlink(tmp)               # a leftover if something failed; after a link, the second name
            except OSError:
                pass
