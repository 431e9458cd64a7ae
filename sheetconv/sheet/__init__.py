"""The spreadsheet model, without file I/O: A1 addresses, the layout of the ``conv`` sheet,
formula text, the worked cell, the prediction sheet and the metadata document. Imports the
engine (``nn``), nothing above it."""
