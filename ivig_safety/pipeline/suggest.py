"""Turn the caps of the rules that fired into what to program instead: the lowest applicable maximum rate and a
titration that starts at the label's initial rate, climbs in the label's steps and delivers exactly the day's dose.

Why rounding happens here: a pump takes mL/h in fixed increments (policy ``pump_rate_resolution``). Every suggested
rate is rounded *down* to that increment and the other two units are computed back from the rounded value, so the
three numbers agree and none of them exceeds a cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..knowledge.fields import SCALE
from ..knowledge.policy import Policy
from ..knowledge.rules import Cap, Rule
from ..model.numbers import round_int, round_significant, round_to
from ..model.rates import rate_to_mg_per_kg_min
from ..model.report import RateTriple, ScheduleStep
from ..model.trusted import trusted
from .facts import Facts


def cap_value(cap: Cap, facts: Facts) -> float:
    """A rule's cap in mg/kg/min for this patient."""
    if isinstance(cap, str):
        return float(facts.values[cap])
    return rate_to_mg_per_kg_min(cap, facts.concentration, facts.weight_kg)


def exceeds(rate: float, cap: float) -> bool:
    """The engine's comparison (integer millionths of mg/kg/min), so Python and the rules agree at the boundary."""
    return round_int(rate * SCALE) > round_int(cap * SCALE)


def rate_triple(facts: Facts, rate_mg_kg_min: float, policy: Policy) -> RateTriple:
    """The rate, rounded down to the pump's resolution, in mg/kg/min, mL/kg/min and mL/h for this patient.

    Memoised per plan: the same cap usually appears in a finding, in the suggested maximum and in the schedule."""
    cached = facts.triples.get(rate_mg_kg_min)
    if cached is not None:
        return cached
    return _new_triple(facts, rate_mg_kg_min, _resolution(policy))


def _resolution(policy: Policy) -> float:
    """The pump's rate increment in mL/h."""
    return policy["pump_rate_resolution"].canonical * 60.0


def _new_triple(facts: Facts, rate_mg_kg_min: float, resolution: float) -> RateTriple:
    """:func:`rate_triple` for a rate not yet memoised, the pump's increment (mL/h) given."""
    ml_per_h = facts.ml_per_h(rate_mg_kg_min)
    pump = math.floor(ml_per_h / resolution + 1e-9) * resolution
    if pump <= 0:  # smaller than one pump increment: keep the exact figure rather than round to zero
        pump = ml_per_h
    pump = round_to(pump, 6)
    concentration = facts.concentration
    mg = _tidy(min(pump / 60.0 * concentration / facts.weight_kg, rate_mg_kg_min))
    # built, not validated (model/trusted.py): three floats computed here
    triple = trusted(RateTriple, {"mg_per_kg_min": mg, "ml_per_kg_min": _tidy(mg / concentration), "ml_per_h": pump})
    facts.triples[rate_mg_kg_min] = triple
    return triple


def _tidy(value: float) -> float:
    """Drop float noise (0.04000000000000001) where that does not round up past the value itself."""
    tidy = round_significant(value, 10)  # float(f"{value:.10g}"), without the text
    return tidy if tidy <= value else value


def _floor3(value: float) -> float:
    """Volumes are shown to 0.001 mL, rounded down so a schedule never appears to deliver more than the dose."""
    return math.floor(value * 1000 + 1e-6) / 1000


@dataclass(frozen=True, slots=True, init=False)
class Suggestion:
    """The suggested maximum rate and the schedule that delivers the day's dose. (``__init__`` written out: compiled,
    it is native code; see facts.StepFacts.)"""

    max_rate: float  # mg/kg/min, exact (before pump rounding)
    steps: list[ScheduleStep]
    total_min: float

    def __init__(self, max_rate: float, steps: list[ScheduleStep], total_min: float) -> None:
        object.__setattr__(self, "max_rate", max_rate)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "total_min", total_min)


def max_rate(facts: Facts, fired: list[Rule]) -> float:
    """The suggested maximum rate (mg/kg/min, before pump rounding): the label maximum or the lowest cap fired."""
    cap = float(facts.values["max_rate"])
    for rule in fired:
        if rule.cap is not None:
            cap = min(cap, cap_value(rule.cap, facts))
    return cap


def suggest(facts: Facts, fired: list[Rule], policy: Policy) -> Suggestion:
    cap = max_rate(facts, fired)
    rungs = _rungs(facts, cap, policy)
    steps, total_min = _schedule(facts, rungs, policy)
    return Suggestion(cap, steps, total_min)


def _rungs(facts: Facts, cap: float, policy: Policy) -> list[tuple[float, float]]:
    """(rate mg/kg/min, minutes) pairs; the last rung's minutes are ignored (it runs until the dose is in).

    Rates are compared as :func:`exceeds` does (integer millionths of mg/kg/min), each figure scaled once."""
    initial = float(facts.values["initial_rate"])
    cap_m = round_int(cap * SCALE)
    initial_m = round_int(initial * SCALE)
    if cap_m <= initial_m:
        return [(cap, math.inf)]
    rates: list[float]
    if facts.titration_ladder:
        rates = [r for r in facts.titration_ladder if cap_m > round_int(r * SCALE)]
        if not rates or round_int(rates[0] * SCALE) != initial_m:
            rates = [initial] + [r for r in rates if round_int(r * SCALE) > initial_m]
    else:
        factor = float(policy["titration_factor_when_label_silent"])
        rates = []
        rate = initial
        while cap_m > round_int(rate * SCALE):
            rates.append(rate)
            rate *= factor
    interval = facts.titration_interval
    rungs = [(rate, interval) for rate in rates]
    rungs[0] = (rates[0], facts.initial_hold)  # rates is never empty: the cap exceeds the initial rate
    rungs.append((cap, math.inf))
    return rungs


def _schedule(facts: Facts, rungs: list[tuple[float, float]], policy: Policy) -> tuple[list[ScheduleStep], float]:
    """Program the rungs until the day's volume is in. No step is shorter than the policy's ``min_schedule_step``
    (a label hold of 10 min becomes 15), except the last when the dose runs out; a final rung that would run
    shorter than that is dropped and the step before it runs on until the dose is in (slower, never faster)."""
    shortest = float(policy["min_schedule_step"].canonical)
    remaining = float(facts.values["daily_volume"])
    memo = facts.triples
    resolution = _resolution(policy)
    plan: list[tuple[RateTriple, float, float]] = []  # (rate triple, minutes, mL)
    last_rung = len(rungs) - 1
    for n, (rate, minutes) in enumerate(rungs):
        triple = memo.get(rate)
        if triple is None:
            triple = _new_triple(facts, rate, resolution)
        ml_per_min = triple.ml_per_h / 60.0
        minutes = max(minutes, shortest)
        needed = remaining / ml_per_min
        last = n == last_rung or needed <= minutes
        if last and plan and needed < shortest:
            previous, held, volume = plan.pop()  # the short final rung merges into the step before it
            plan.append((previous, held + remaining / (previous.ml_per_h / 60.0), volume + remaining))
            break
        duration = needed if last else minutes
        volume = remaining if last else duration * ml_per_min
        plan.append((triple, duration, volume))
        remaining -= volume
        if last:
            break
    steps = [trusted(ScheduleStep, {"step": n, "rate": triple, "duration_min": round_to(minutes, 2),
                                    "volume_ml": _floor3(volume)})
             for n, (triple, minutes, volume) in enumerate(plan, 1)]
    return steps, round_to(sum(minutes for _, minutes, _ in plan), 2)
