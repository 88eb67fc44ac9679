"""Numbers as people write them, for messages and reports: a module of its own so that mypyc can compile it (see
pyproject.toml, ``mypyc-modules``) while units.py, which the tests patch, stays Python. ``units.format_number`` is
this function.
"""

from __future__ import annotations

import math
from typing import Final


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


#: Exact powers of ten (every one up to 1e22 is a double exactly).
_POWERS: Final = tuple(float(10 ** n) for n in range(23))
_TWO_TO_52: Final = 4503599627370496.0  # from here up a double has no fraction


def round_int(value: float) -> int:
    """``round(value)`` of a float: the nearest integer, a tie to the even one, the same int.

    Why not the builtin: compiled code calls ``round`` as a Python builtin, which looks up the float's ``__round__``
    and calls it (about 400 instructions); a check rounds some fifty numbers to the engine's integer millionths. From
    zero up, ``value - floor(value)`` is exact (Sterbenz: the floor is 0 or at least half the value), so comparing it
    with one half decides as the builtin does; a negative value, NaN or infinity goes to the builtin (the same result
    or the same error). tests/test_numbers.py compares the two."""
    if value >= 0.0 and value < _TWO_TO_52:
        whole = math.floor(value)
        rest = value - whole
        if rest > 0.5 or (rest == 0.5 and whole % 2 == 1):
            return whole + 1
        return whole
    return round(value)


def round_to(value: float, digits: int) -> float:
    """``round(value, digits)``, the very same float, in about a quarter of the time: a report rounds some twenty
    numbers (its summary, dispense and schedule), and the builtin writes each out in decimal digits and reads it back.
    Zero, negative and not finite values, and the rare ones :func:`_nearest` cannot decide (a product that is
    half-way as a double), go to the builtin; tests/test_numbers.py compares the two."""
    if value > 0.0 and 0 <= digits <= 22:
        whole = _nearest(value * _POWERS[digits])
        if whole is not None:
            return whole / _POWERS[digits]
    return round(float(value), digits)  # (a float, as a report's field holds, even for an int)


def round_significant(value: float, significant: int = 10) -> float:
    """``float("%.10g" % value)`` (``significant`` digits), the same float, without the text: the value rounded at its
    ``significant``-th digit, as :func:`round_to` rounds. Zero, negative and not finite values, and those the fast
    path cannot decide, go through the text; tests/test_numbers.py compares the two."""
    if 1e-12 <= value < 1e12 and 1 <= significant <= 15:
        digits = significant - 1 - math.floor(math.log10(value))
        if 0 <= digits <= 22:
            whole = _nearest(value * _POWERS[digits])
            # log10 may be one off next to a power of ten: then whole has a digit too many or too few, and the text
            # decides. Exactly 10**significant is the value rounded up to the next power of ten, as %g gives it.
            if whole is not None and _POWERS[significant - 1] <= whole <= _POWERS[significant]:
                return whole / _POWERS[digits]
    return float("%.*g" % (significant, value))


def _nearest(scaled: float) -> float | None:
    """The integer nearest the exact product a positive ``scaled`` was rounded from (``value * 10**digits``), or None
    when ``scaled`` alone cannot tell.

    Why this is the builtins' integer: ``round`` and ``%g`` take the integer nearest the exact ``value * 10**digits``
    (a tie to the even one) and give the double nearest that integer over ``10**digits``. Below 2**52, every
    half-way point ``n + 0.5`` is a double, and rounding to a double never crosses a double: a product above
    ``n + 0.5`` gives a ``scaled`` at or above it, one below gives one at or below. So ``scaled`` strictly above or
    below the half tells the side; exactly on it, the product may lie either side (or be the tie), and the builtin
    decides. The integer and ``10**digits`` are doubles exactly and IEEE division rounds correctly, so the caller's
    quotient is the double nearest the decimal, as the builtin's is."""
    if scaled >= _TWO_TO_52:
        return None
    whole = float(int(scaled))  # scaled > 0: truncation is the floor
    fraction = scaled - whole  # exact (Sterbenz: whole is 0, or at least half of scaled)
    if fraction < 0.5:
        return whole
    if fraction > 0.5:
        return whole + 1.0
    return None
