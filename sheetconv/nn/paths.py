"""File names from the command line: checked before the file system sees them.

Invariant: a path whose name (one component) is longer than 255 bytes, or which is
longer than 4,095 bytes in all, is refused with a one-line SheetconvError before any
``open``, ``stat`` or ``is_file`` (which would raise OSError errno 36, ENAMETOOLONG);
``os_reason`` words any other OSError for a message.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import SheetconvError

__all__ = ["check_name", "os_reason", "shown", "MAX_NAME", "MAX_PATH"]

MAX_NAME = 255          # bytes in one file name (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)
MAX_PATH = 4095         # bytes in a whole path (Linux PATH_MAX less the terminating NUL)


def shown(path, width: int = 60) -> str:
    """``path`` as text for a message, cut in the middle when it is very long."""
    text = str(path)
    return text if len(text) <= width else f"{text[:width // 2]}...{text[-(width // 2):]}"


def check_name(path, what: str = "file") -> Path:
    """``path`` as a Path, or SheetconvError if a name in it or the whole is too long."""
    path = Path(path)
    raw = os.fsencode(path)
    if len(raw) > MAX_PATH:
        raise SheetconvError(f"{shown(path)}: the {what} path is {len(raw):,} bytes long; "
                             f"a path may have at most {MAX_PATH:,}")
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > MAX_NAME:
            raise SheetconvError(f"{shown(path)}: a name in this {what} path is {size} bytes long "
                                 f"({shown(part, 30)!r}); a file name may have at most {MAX_NAME} bytes")
    return path


def os_reason(e: OSError) -> str:
    """A short reason for an OSError ('No space left on device', 'file name too long ...')."""
    if e.errno == errno.ENAMETOOLONG:
        return f"file name too long (a name may have at most {MAX_NAME} bytes)"
    return e.strerror or str(e)
