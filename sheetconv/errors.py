"""The one exception type sheetconv raises for bad input.

Every message is one line naming what was wrong and what was expected; the CLI
prints it and exits with status 2, without a traceback.
"""


class SheetconvError(ValueError):
    """Bad input to sheetconv: wrong shapes, unreadable files, unknown cells."""
