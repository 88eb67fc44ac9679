"""Dosing weight, dose rounding and the vials to dispense: institutional methods, configured in the site policy.

Why a module of its own: these are pharmacy arithmetic, not label rules. Which weight a dose is calculated on and how
it is rounded differ by jurisdiction (Australian NBA adjusted weight, Ontario BMI > 30 and
nearest 5 g, a US protocol's 120% IBW and nearest whole vial), so the method comes from policy.yaml and the report
says which was used.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from ..knowledge.policy import Policy
from ..model.numbers import round_int, round_to

_INCH_CM = 2.54


@dataclass(frozen=True, slots=True, init=False)
class DosingWeight:
    """The weight doses are calculated on. (``__init__`` written out: one is built per plan; compiled, it is native
    code, see facts.StepFacts.)"""

    kg: float
    method: str  # what was used and why, for the report

    def __init__(self, kg: float, method: str) -> None:
        object.__setattr__(self, "kg", kg)
        object.__setattr__(self, "method", method)


def ideal_body_weight(height_cm: float, sex: str) -> float:
    """Devine: men 50 kg, women 45.5 kg, + 2.3 kg per inch over 60 inches (as the Australian NBA uses it)."""
    base = 50.0 if sex == "male" else 45.5
    return base + 2.3 * (height_cm / _INCH_CM - 60.0)


def dosing_weight(actual: float, height_cm: float | None, sex: str | None, age: float | None,
                  pregnant: bool | None, policy: Policy) -> DosingWeight:
    """The weight the dose and the per-kg rates are calculated on, by the policy's method."""
    if policy["dosing_weight"] == "actual":
        return DosingWeight(actual, "actual body weight, by site policy")
    if height_cm is None or sex is None:
        return DosingWeight(actual, "actual body weight: adjusted weight needs height and sex")
    if age is None or age < policy["adjusted_weight_min_age"]:
        return DosingWeight(actual, "actual body weight: adjusted weight not applied under "
                                    f"{policy['adjusted_weight_min_age']:g} years or without an age")
    if height_cm < policy["adjusted_weight_min_height"].canonical:
        return DosingWeight(actual, "actual body weight: adjusted weight not applied under "
                                    f"{policy['adjusted_weight_min_height']}")
    if pregnant:
        return DosingWeight(actual, "actual body weight: adjusted weight not applied in pregnancy")
    ibw = ideal_body_weight(height_cm, sex)
    if actual <= ibw:
        return DosingWeight(actual, "actual body weight: at or below ideal body weight")
    trigger, threshold = policy["adjusted_weight_trigger"], policy["adjusted_weight_threshold"]
    if trigger == "bmi":
        bmi = actual / (height_cm / 100.0) ** 2
        if bmi <= threshold:
            return DosingWeight(actual, f"actual body weight: BMI {bmi:.1f} not above {threshold:g}")
    elif trigger == "percent-ibw":
        percent = actual / ibw * 100.0
        if percent <= threshold:
            return DosingWeight(actual, f"actual body weight: {percent:.0f}% of IBW, not above {threshold:g}%")
    factor = policy["adjusted_weight_factor"]
    adjusted = ibw + factor * (actual - ibw)
    return DosingWeight(adjusted, f"adjusted body weight = IBW {ibw:.1f} kg (Devine) + {factor:g} x "
                                  f"(actual {actual:.1f} - IBW) ({trigger} trigger)")


@dataclass(frozen=True, slots=True)
class Vial:
    grams: float
    ml: float
    label: str


_VIAL = re.compile(r"^\s*(\d+(?:\.\d+)?) g/(\d+(?:\.\d+)?) mL\s*$")


def parse_vials(sizes: Iterable[str]) -> list[Vial]:
    vials = []
    for size in sizes:
        match = _VIAL.match(size)
        if match:
            vials.append(Vial(float(match.group(1)), float(match.group(2)), size.strip()))
    return sorted(vials, key=lambda v: v.grams)


#: Vial totals are tabulated up to this many grams a day (far above any IVIG daily dose: 2 g/kg x 650 kg / 2 days).
_TABLE_LIMIT_G = 700


def _reachable(vials: list[Vial]) -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """Every total (in 0.1 g) reachable with whole vials, with the fewest vials for each; computed once per product.

    Cached by the vials' sizes in grams, all the table depends on (hashing the Vial objects themselves cost more
    than the rest of the day's dispense)."""
    return _reachable_grams(tuple([v.grams for v in vials]))


@lru_cache(maxsize=64)
def _reachable_grams(grams: tuple[float, ...]) -> tuple[list[int], dict[int, tuple[int, ...]]]:
    units = [round_int(g * 10) for g in grams]
    best: dict[int, tuple[int, ...]] = {0: tuple(0 for _ in grams)}
    for total in range(1, _TABLE_LIMIT_G * 10 + 1):
        choice: tuple[int, ...] | None = None
        for i, size in enumerate(units):
            previous = best.get(total - size)
            if previous is not None and (choice is None or sum(previous) + 1 < sum(choice)):
                choice = tuple(c + (1 if j == i else 0) for j, c in enumerate(previous))
        if choice is not None:
            best[total] = choice
    return sorted(t for t in best if t > 0), best


@dataclass(frozen=True, slots=True, init=False)
class Dispense:
    """The day's dose and the whole vials that cover it. (``__init__`` written out: compiled, it is native code; see
    facts.StepFacts.)"""

    dose_g: float  # as prescribed, per day
    rounded_dose_g: float  # what will be given, per day, after the policy's rounding
    rounding: str
    vials: list[tuple[Vial, int]]  # vial and count, per day; empty when the product file lists no sizes
    waste_g: float | None

    def __init__(self, dose_g: float, rounded_dose_g: float, rounding: str, vials: list[tuple[Vial, int]],
                 waste_g: float | None) -> None:
        object.__setattr__(self, "dose_g", dose_g)
        object.__setattr__(self, "rounded_dose_g", rounded_dose_g)
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "vials", vials)
        object.__setattr__(self, "waste_g", waste_g)


def round_and_dispense(dose_g: float, vials: list[Vial], policy: Policy) -> Dispense:
    """Round the day's dose as the policy says (only within its tolerance), then cover it with whole vials."""
    rounded, note = round_dose(dose_g, vials, policy)
    return dispense(dose_g, rounded, note, vials)


def round_dose(dose_g: float, vials: list[Vial], policy: Policy) -> tuple[float, str]:
    """The day's dose after the policy's rounding (only within its tolerance), and how it was rounded. Apart from
    :func:`dispense` because the rules need the dose and only a report shows the vials."""
    method = policy["dose_rounding"]
    if method == "none":
        return dose_g, "none"
    tolerance = policy["dose_rounding_tolerance"]
    rounded, note = dose_g, "none"
    if method == "nearest-5g":
        candidate = round_int(dose_g / 5.0) * 5.0
        if candidate > 0 and abs(candidate - dose_g) <= tolerance * dose_g:
            rounded, note = candidate, "nearest 5 g"
    elif method == "nearest-vial" and vials:
        totals, _ = _reachable(vials)
        at = bisect.bisect_left(totals, round_int(dose_g * 10))
        near = [totals[i] / 10 for i in (at - 1, at) if 0 <= i < len(totals)]
        if near:
            candidate = min(near, key=lambda g: (abs(g - dose_g), g))
            if abs(candidate - dose_g) <= tolerance * dose_g:
                rounded, note = candidate, "nearest whole vial combination"
    if note == "none":
        note = f"not rounded: no {method} value within {tolerance:.0%}"
    return rounded, note


def dispense(dose_g: float, rounded: float, note: str, vials: list[Vial]) -> Dispense:
    """Whole vials covering the rounded dose, the fewest that do, and what is left over."""
    if not vials:
        return Dispense(dose_g, rounded, note, [], None)
    totals, best = _reachable(vials)
    at = bisect.bisect_left(totals, math.ceil(rounded * 10 - 1e-9))
    if at == len(totals):  # beyond the table: the largest vial, as many as it takes
        largest = vials[-1]
        count = math.ceil(rounded / largest.grams - 1e-9)
        return Dispense(dose_g, rounded, note, [(largest, count)], round_to(count * largest.grams - rounded, 3))
    counts = best[totals[at]]
    chosen = [(vial, count) for vial, count in zip(vials, counts, strict=True) if count]
    return Dispense(dose_g, rounded, note, sorted(chosen, key=lambda p: -p[0].grams),
                    round_to(totals[at] / 10 - rounded, 3))
