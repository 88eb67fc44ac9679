"""The product catalogue (rules/products/*.yaml) against the label and against the engine.

Every product and every labelled indication in the loaded catalogue is exercised: nothing here names a figure
copied from a product file. Rates are written in the unit the product file stores them in (the label's own unit),
so a file that stores "5 mL/kg/h" is tested in mL/kg/h and one that stores "4 mg/kg/min" in mg/kg/min.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivig_safety import check, get_checker
from ivig_safety.knowledge.products import IndicationEntry, Product
from ivig_safety.model.units import Quantity, parse_quantity

CATALOGUE = get_checker().catalogue
ENTRIES: list[tuple[str, str]] = [
    (product_id, indication)
    for product_id, product in sorted(CATALOGUE.products.items())
    for indication in sorted(product.indications)
]
#: Hold and step times the plans below use where the label gives none (any positive time will do for rate tests).
DEFAULT_STEP_MIN = 30.0
#: The policy's pump tolerance: a rate this fraction over a label maximum is a warning, not a block.
TOLERANCE = float(get_checker().policy["pump_tolerance"])
#: The documented tolerance for a label's printed conversion (no more than 1%).
CONVERSION_TOLERANCE = 0.01


def _entry(product_id: str, indication: str) -> tuple[Product, IndicationEntry]:
    product = CATALOGUE.products[product_id]
    return product, product.indications[indication]


def _written(quantity: Quantity, factor: float = 1.0) -> str:
    """A rate in the unit the product file wrote it in, scaled by ``factor``."""
    return f"{quantity.magnitude * factor!r} {quantity.unit.text}"


def _dose(entry: IndicationEntry) -> dict[str, Any]:
    """The first labelled regimen, at its largest dose and most days: within the label."""
    regimen = entry.regimens[0]
    if regimen.per_day is not None:
        return {"per_day": str(regimen.per_day.max), "days": regimen.days.max}
    assert regimen.per_course is not None
    return {"per_course": str(regimen.per_course.max), "days": regimen.days.max}


def _climb(product: Product, entry: IndicationEntry) -> list[dict[str, Any]]:
    """Steps as the label climbs them: the initial rate for its hold, each ladder rung for the interval, then an
    open step (the caller decides its rate)."""
    hold = entry.initial_hold.quantity.canonical if entry.initial_hold else DEFAULT_STEP_MIN
    interval = entry.titration.interval.canonical if entry.titration else DEFAULT_STEP_MIN
    maximum = product.rate_mg_kg_min(entry.max_rate.quantity)
    initial = product.rate_mg_kg_min(entry.initial_rate.quantity)
    steps = [{"rate": _written(entry.initial_rate.quantity), "duration": f"{hold!r} min"}]
    for rung in (entry.titration.ladder if entry.titration else None) or []:
        if initial < product.rate_mg_kg_min(rung) < maximum:
            steps.append({"rate": _written(rung), "duration": f"{interval!r} min"})
    return steps


def _plan(product_id: str, indication: str, steps: list[dict[str, Any]], weight: str = "70 kg") -> dict[str, Any]:
    _, entry = _entry(product_id, indication)
    return {
        "product": product_id,
        "indication": indication,
        "patient": {"weight": weight, "age": 50, "risk_factors": []},
        "dose": _dose(entry),
        "steps": steps,
    }


def _kinds(report: Any) -> set[str]:
    return {f.kind for f in report.findings}


def test_catalogue_is_not_empty() -> None:
    assert ENTRIES, "no labelled indications loaded"
    assert all(CATALOGUE.products[p].indications for p, _ in ENTRIES)


# --- the label's maximum and initial rate, through the engine -------------------------------------------------


@pytest.mark.parametrize(("product_id", "indication"), ENTRIES)
def test_climb_to_exactly_the_label_maximum_passes(product_id: str, indication: str) -> None:
    product, entry = _entry(product_id, indication)
    steps = _climb(product, entry) + [{"rate": _written(entry.max_rate.quantity)}]
    report = check(_plan(product_id, indication, steps))
    assert report.plan.labelled
    assert "max-rate-exceeded" not in _kinds(report), report.findings
    # The climb starts at the initial rate and holds it as long as the label says: no initial-rate finding either.
    assert "initial-rate-exceeded" not in _kinds(report), report.findings


@pytest.mark.parametrize(("product_id", "indication"), ENTRIES)
def test_last_step_beyond_the_pump_tolerance_above_the_maximum_blocks(product_id: str, indication: str) -> None:
    product, entry = _entry(product_id, indication)
    steps = _climb(product, entry) + [{"rate": _written(entry.max_rate.quantity, 1 + TOLERANCE + 0.005)}]
    report = check(_plan(product_id, indication, steps))
    over = [f for f in report.findings if f.kind == "max-rate-exceeded"]
    assert over, report.findings
    assert all(f.severity == "critical" for f in over)
    assert over[0].step == len(steps)
    assert report.verdict == "block"
    # The suggested cap is the label maximum (to within the pump's rounding), never above it.
    assert report.suggested_max_rate.mg_per_kg_min <= product.rate_mg_kg_min(entry.max_rate.quantity) + 1e-9


@pytest.mark.parametrize(("product_id", "indication"), ENTRIES)
def test_first_step_above_the_initial_rate_is_flagged(product_id: str, indication: str) -> None:
    product, entry = _entry(product_id, indication)
    steps = _climb(product, entry) + [{"rate": _written(entry.max_rate.quantity)}]
    steps[0] = {**steps[0], "rate": _written(entry.initial_rate.quantity, 1 + TOLERANCE + 0.005)}
    report = check(_plan(product_id, indication, steps))
    flagged = [f for f in report.findings if f.kind == "initial-rate-exceeded"]
    assert flagged, report.findings
    assert any(f.step == 1 for f in flagged)
    assert "max-rate-exceeded" not in _kinds(report)


# --- the label's printed conversions ---------------------------------------------------------------------------

#: (product whose concentration applies, one side, the other side as the label prints it).
#: 0.5 mL/kg/h and 5 mL/kg/h of a 10% product are printed "0.8" and "8" mg/kg/min; the reference gives the
#: unrounded 0.83 and 8.3, which are what agree within 1% (the one-digit prints are 4% off).
PRINTED_PAIRS = [
    pytest.param("gammagard-liquid", "0.5 mL/kg/h", "0.83 mg/kg/min", id="10%-0.5mL/kg/h"),
    pytest.param("gammagard-liquid", "5 mL/kg/h", "8.3 mg/kg/min", id="10%-5mL/kg/h"),
    pytest.param("octagam-5", "0.01 mL/kg/min", "0.5 mg/kg/min", id="5%-0.01mL/kg/min"),
    pytest.param("gammaplex-10", "0.5 mg/kg/min", "0.005 mL/kg/min", id="gammaplex10-0.5mg/kg/min"),
    pytest.param("octagam-10", "0.04 mL/kg/min", "4 mg/kg/min", id="octagam10-0.04mL/kg/min"),
    pytest.param("octagam-5", "3.33 mg/kg/min", "0.07 mL/kg/min", id="octagam5-max-printed-pair",
                 marks=pytest.mark.xfail(strict=True, reason=(
                     "Octagam 5%'s label prints its maximum as 3.33 mg/kg/min (0.07 mL/kg/min); "
                     "0.07 mL/kg/min of 50 mg/mL is 3.5 mg/kg/min, 5% off. The file stores 3.33 mg/kg/min."))),
]


@pytest.mark.parametrize(("product_id", "one", "other"), PRINTED_PAIRS)
def test_printed_conversion_pairs_agree_within_one_percent(product_id: str, one: str, other: str) -> None:
    product = CATALOGUE.products.get(product_id)
    if product is None:
        pytest.skip(f"{product_id} is not in the catalogue")
    a = product.rate_mg_kg_min(parse_quantity(one))
    b = product.rate_mg_kg_min(parse_quantity(other))
    assert math.isclose(a, b, rel_tol=CONVERSION_TOLERANCE), (one, a, other, b)


def test_conversion_tolerance_discriminates() -> None:
    """The 1% check must reject a tenfold slip and the 4%-off one-digit print (otherwise the pairs prove nothing)."""
    product = next(p for p in CATALOGUE.products.values() if p.concentration_mg_per_ml == 100.0)
    exact = product.rate_mg_kg_min(parse_quantity("5 mL/kg/h"))
    assert not math.isclose(exact, product.rate_mg_kg_min(parse_quantity("8 mg/kg/min")), rel_tol=CONVERSION_TOLERANCE)
    assert not math.isclose(exact, product.rate_mg_kg_min(parse_quantity("0.83 mg/kg/min")),
                            rel_tol=CONVERSION_TOLERANCE)


# --- properties of every catalogue entry -------------------------------------------------------------------------


@settings(max_examples=max(50, 3 * len(ENTRIES)), deadline=None)
@given(st.sampled_from(ENTRIES))
def test_entry_figures_are_consistent(key: tuple[str, str]) -> None:
    product, entry = _entry(*key)
    assert product.concentration_mg_per_ml > 0
    initial = product.rate_mg_kg_min(entry.initial_rate.quantity)
    maximum = product.rate_mg_kg_min(entry.max_rate.quantity)
    assert entry.initial_rate.quantity.magnitude > 0 and entry.max_rate.quantity.magnitude > 0
    assert 0 < initial <= maximum
    at_risk = entry.at_risk_rate or product.at_risk_rate
    if at_risk is not None:
        cap = product.rate_mg_kg_min(at_risk.quantity)
        assert 0 < cap <= maximum, f"{key}: at-risk cap {cap} above the maximum {maximum}"
    if entry.initial_hold is not None:
        assert entry.initial_hold.quantity.canonical > 0
    if entry.titration is not None:
        assert entry.titration.interval.canonical > 0
        ladder = [product.rate_mg_kg_min(q) for q in entry.titration.ladder or []]
        if ladder:
            assert math.isclose(ladder[0], initial, rel_tol=1e-9), "a ladder starts at the initial rate"
            assert all(low < high for low, high in zip(ladder, ladder[1:])), f"{key}: ladder does not climb"
            assert ladder[-1] <= maximum
    for regimen in entry.regimens:
        low, high = regimen.course_range
        assert 0 < low <= high and regimen.max_daily_g_per_kg > 0


_UNITS = ["mg/kg/min", "mL/kg/min", "mL/kg/h", "mL/h"]


def _in_unit(rate_mg_kg_min: float, unit: str, concentration: float, weight_kg: float) -> str:
    value = {
        "mg/kg/min": rate_mg_kg_min,
        "mL/kg/min": rate_mg_kg_min / concentration,
        "mL/kg/h": rate_mg_kg_min / concentration * 60.0,
        "mL/h": rate_mg_kg_min * weight_kg / concentration * 60.0,
    }[unit]
    return f"{value!r} {unit}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(ENTRIES),
    factor=st.one_of(st.floats(0.05, 0.995), st.floats(1.005, 3.0)),
    unit=st.sampled_from(_UNITS),
    weight=st.floats(20.0, 150.0),
)
def test_max_rate_fires_exactly_when_the_peak_is_above_the_label(key: tuple[str, str], factor: float, unit: str,
                                                                 weight: float) -> None:
    """Whatever unit the plan uses and whatever the weight, a peak above the label maximum blocks, and one below
    it raises no max-rate finding."""
    product, entry = _entry(*key)
    maximum = product.rate_mg_kg_min(entry.max_rate.quantity)
    peak = maximum * factor
    c = product.concentration_mg_per_ml
    steps = [{"rate": _written(entry.initial_rate.quantity), "duration": "30 min"},
             {"rate": _in_unit(peak, unit, c, weight)}]
    report = check(_plan(*key, steps, weight=f"{weight!r} kg"))
    fired = "max-rate-exceeded" in _kinds(report)
    assert fired == (peak > maximum), (key, peak, maximum, report.findings)
    blocked = any(f.rule == "max-rate" for f in report.findings)
    assert blocked == (peak > maximum * (1 + TOLERANCE)), (key, peak, maximum, report.findings)
    if blocked:
        assert report.verdict == "block"


# --- names ---------------------------------------------------------------------------------------------------------


def test_every_name_and_alias_resolves_to_its_own_product() -> None:
    seen: dict[str, str] = {}
    for product in CATALOGUE.products.values():
        for name in (product.id, product.name, *product.aliases):
            key = " ".join(name.lower().split())
            assert seen.setdefault(key, product.id) == product.id, f"{name!r} names {seen[key]} and {product.id}"
            resolved = CATALOGUE.resolve(name)
            assert resolved is not None and resolved.id == product.id, name
