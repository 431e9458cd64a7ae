"""How deep parsed, untrusted data nests, measured without recursion.

JSON and TOML parsers accept documents nested thousands of levels deep (TOML's dotted
keys without any recursion at all); code that walks such data recursively — ``repr`` in an
error message, a validator — would then fail with RecursionError. Readers of spec files and
workbook metadata refuse data nested deeper than they need before looking inside it.
"""
from __future__ import annotations

__all__ = ["nesting"]


def nesting(data, limit: int) -> int:
    """How many levels of lists and dicts ``data`` has, counted up to ``limit + 1`` (then it stops)."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list, tuple)):
            if depth + 1 > limit:
                return depth + 1
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest
