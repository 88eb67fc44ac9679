"""Numbers as people write them, for messages and reports: a module of its own so that mypyc can compile it (see
pyproject.toml, ``mypyc-modules``) while units.py, which the tests patch, stays Python. ``units.format_number`` is
this function.
"""

from __future__ import annotations

import math


def format_number(value: float, significant: int = 4) -> str:
    """A number as a person writes it: up to ``significant`` digits, no trailing zeros, no exponent (unless the
    number is below 1e-9 or from 1e15 up, where the digits would run to hundreds of characters)."""
    if significant == 4 and 1e-3 <= abs(value) < 9999.5:
        return f"{value:.4g}"  # the common case, 10x faster; %g drops trailing zeros and uses no exponent here
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if not 1e-9 <= abs(value) < 1e15:  # far outside any dose or rate: an exponent, not hundreds of digits
        return f"{value:.{significant}g}"
    digits = max(significant - int(math.floor(math.log10(abs(value)))) - 1, 0)
    text = f"{round(value, digits):.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
