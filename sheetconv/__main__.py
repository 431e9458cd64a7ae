"""``python -m sheetconv``: the ``sheetconv`` command (:mod:`sheetconv.cli`)."""
from .cli import main

if __name__ == "__main__":
    main()
