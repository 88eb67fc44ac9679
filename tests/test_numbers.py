"""The fast roundings of model/numbers.py give the very number the builtins give (the report's figures and the
engine's millionths, byte for byte)."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivig_safety.model.numbers import round_int, round_significant, round_to


def _same(a: float, b: float) -> bool:
    """The same float: equal with the same sign (0.0 is not -0.0), or both NaN."""
    return (a == b and math.copysign(1.0, a) == math.copysign(1.0, b)) or (math.isnan(a) and math.isnan(b))


def _near_ties() -> st.SearchStrategy[float]:
    """Decimals that end in 5 one place past the rounding, and their neighbours one ulp either side."""
    return st.builds(lambda whole, digits, ulps: math.nextafter(float(f"{whole}5e-{digits + 1}"), math.inf * ulps)
                     if ulps else float(f"{whole}5e-{digits + 1}"),
                     st.integers(0, 10 ** 9), st.integers(0, 8), st.sampled_from([-1, 0, 1]))


_ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
_REPORT_FLOATS = st.floats(min_value=0, max_value=1e7)


@given(st.one_of(_ANY_FLOAT, _REPORT_FLOATS, _near_ties()), st.integers(0, 23))
@example(0.125, 2)
@example(0.0, 3)
@example(-0.0001, 3)
@example(2.675, 2)
@example(1e300, 6)
@example(4503599627370495.5, 0)
def test_round_to_is_round(value: float, digits: int) -> None:
    assert _same(round_to(value, digits), round(value, digits)), (value, digits)


@given(st.one_of(_ANY_FLOAT, _REPORT_FLOATS, _near_ties()), st.integers(1, 17))
@example(0.04000000000000001, 10)
@example(9.9999999999999, 10)
@example(1e-12, 10)
@example(999999999999.5, 10)
@example(0.1, 10)
@example(1000.0, 10)
@example(99999.99999500001, 10)
def test_round_significant_is_g_formatting(value: float, significant: int) -> None:
    assert _same(round_significant(value, significant), float("%.*g" % (significant, value))), (value, significant)


_HALVES = st.integers(0, 10 ** 6).map(lambda n: n / 2)  # every tie of round(), and the whole numbers between


@given(st.one_of(_ANY_FLOAT, _REPORT_FLOATS, _near_ties(), st.floats(-3, 3), _HALVES))
@example(0.5)
@example(1.5)
@example(2.5)
@example(-0.5)
@example(-0.49999999999999994)
@example(0.49999999999999994)
@example(4503599627370495.5)
@example(4503599627370497.0)
@example(1e300)
def test_round_int_is_round(value: float) -> None:
    """The engine's integer millionths: the same int as round(), or the same error (NaN, infinity)."""
    try:
        expected: int | type[Exception] = round(value)
    except (ValueError, OverflowError) as exc:
        expected = type(exc)
    try:
        got: int | type[Exception] = round_int(value)
    except (ValueError, OverflowError) as exc:
        got = type(exc)
    assert got == expected and type(got) is type(expected), value


def test_round_to_returns_a_float_for_an_int() -> None:
    """A report's float field must hold a float (its JSON says 0.0, not 0), even where a sum of nothing is 0."""
    assert type(round_to(0, 2)) is float and type(round_to(3, 1)) is float


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_roundings_agree_on_many_random_doubles(seed: int) -> None:
    """A wider sweep than hypothesis runs: random bit patterns, magnitudes, and decimals near a tie."""
    rng = random.Random(seed)
    for _ in range(50_000):
        kind = rng.random()
        if kind < 0.25:
            value = rng.uniform(0, 2000)
        elif kind < 0.5:
            value = 10 ** rng.uniform(-14, 16)
        elif kind < 0.75:
            value = round(rng.uniform(0, 1000), rng.randint(0, 6)) + rng.choice([0, 5e-7, 5e-4, 0.005, 0.05, 0.5])
        else:
            value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        digits, significant = rng.randint(0, 8), rng.randint(1, 15)
        assert _same(round_to(value, digits), round(value, digits)), (value, digits)
        assert _same(round_significant(value, significant), float("%.*g" % (significant, value))), (value, significant)
        if math.isfinite(value * 1e6):
            assert round_int(value * 1e6) == round(value * 1e6), value
