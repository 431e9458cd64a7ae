"""The engine: layer kinds, windows, the network, dependency arithmetic, traces, specs,
presets, inputs and the summary. It imports nothing of sheetconv but ``errors`` and
``version``, and never torch (interop passes torch in)."""
