"""Normalise a validated plan into one flat record of plain floats in canonical units, joined with the label's and
the policy's numbers for this product and indication.

Why flat floats: units are converted once, here, at the boundary; the rules then compare numbers, and the engine
never sees a unit, a string that looks like a number, or an exponent its parser rejects. The same record feeds the
messages (in the plan's own units) and the suggestions, so what fired and what is shown cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .catalogue import IndicationEntry, Product
from .dosing import Dispense, DosingWeight, Vial, dosing_weight, parse_vials, round_and_dispense
from .errors import InvalidPlanError
from .fields import DIFFERENCE, FIELDS, SCALE, flag_key
from .plan import Plan
from .policy import Policy
from .units import ParsedUnit, Quantity, Shape, rate_to_mg_per_kg_min

#: A rate beyond this (mg/kg/min) is not a slip to flag but garbage: about 70 litres a minute for 70 kg of 10%.
ABSURD_RATE_MG_KG_MIN = 1.0e6


@dataclass(frozen=True, slots=True)
class StepFacts:
    index: int  # 0-based
    rate: float  # mg/kg/min
    duration_min: float | None  # as written; None for an open last step
    unit: ParsedUnit  # the unit the plan wrote this step's rate in


@dataclass(slots=True)
class Facts:
    """Everything the rules and the suggestions need about one plan, in canonical units."""

    plan: Plan
    product: Product
    label: LabelFacts
    indication: str
    weight_kg: float  # the dosing weight: doses and per-kg rates are calculated on it
    dosing: DosingWeight
    dispense: Dispense
    concentration: float  # mg/mL
    values: dict[str, Any]
    steps: list[StepFacts]
    risk_factors: frozenset[str]
    derived_risk_factors: frozenset[str]
    initial_hold: float  # min: the label's, or the policy's where the label is silent
    titration_interval: float  # min
    titration_ladder: list[float]  # mg/kg/min, possibly empty
    cite: dict[str, str] = field(default_factory=dict)
    triples: dict[float, Any] = field(default_factory=dict)  # suggest.rate_triple's memo for this plan
    shown: dict[tuple[str, str], str] = field(default_factory=dict)  # findings' formatted values for this plan

    def ml_per_h(self, rate_mg_kg_min: float) -> float:
        return rate_mg_kg_min * self.weight_kg / self.concentration * 60.0

    def encode(self, plan: "EncodingPlan") -> dict[str, Any]:
        """The record the engine sees: only the keys some rule reads, numbers as integer millionths."""
        out: dict[str, Any] = {}
        values = self.values
        w, c = self.weight_kg, self.concentration
        factors = {"": 1.0, "ml_per_kg_min": 1.0 / c, "ml_per_min": w / c, "mg_per_min": w, "kg": w / 1000.0}
        for key, base, other, variant in plan:
            value = values.get(base)
            if value is None:
                continue  # an unset flag or an absent optional value: no clause on it can match
            if other is not None:
                second = values.get(other)
                if second is not None:
                    out[key] = _scaled(value) - _scaled(second)
            elif variant:
                out[key] = round(value * factors[variant] * SCALE)
            else:
                out[key] = _scaled(value)
        return out


#: (key, base field, other field for a difference, variant suffix) for each key the rules read.
EncodingPlan = tuple[tuple[str, str, str | None, str], ...]


def encoding_plan(keys: frozenset[str]) -> EncodingPlan:
    """Work out once, per rule set, how each engine key is computed from the facts."""
    plan: list[tuple[str, str, str | None, str]] = []
    for key in sorted(keys):
        if DIFFERENCE in key:
            left, right = key.split(DIFFERENCE)
            plan.append((key, left, right, ""))
        elif key in FIELDS or not key.partition("__")[2]:
            plan.append((key, key, None, ""))
        else:
            base, _, variant = key.partition("__")
            plan.append((key, base, None, variant))
    return tuple(plan)


def _scaled(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return round(value * SCALE)
    if isinstance(value, int):
        return value * SCALE
    return value


def _conservative_entry(product: Product) -> IndicationEntry:
    """For an unlabelled indication: the labelled entry with the lowest maximum (its initial rate and titration)."""
    entries = list(product.indications.values())
    return min(entries, key=lambda e: (product.rate_mg_kg_min(e.max_rate.quantity),
                                       product.rate_mg_kg_min(e.initial_rate.quantity)))


@dataclass(frozen=True)
class LabelFacts:
    """What the label (and the policy, where the label is silent) says for one product and indication, converted to
    canonical floats once: every plan for the same product and indication reuses it."""

    product: Product
    policy: Policy
    entry: IndicationEntry
    labelled: bool
    at_risk_rate: float | None  # mg/kg/min; None when the policy's fallback depends on the patient's weight
    initial_hold: float
    titration_interval: float
    titration_ladder: list[float]
    values: dict[str, Any]  # the facts that do not depend on the plan
    vials: list[Vial]
    cite: dict[str, str]
    findings: dict[str, Any] = field(default_factory=dict)  # rendered static findings (findings.build_finding)


_LABELS: dict[tuple[int, str, int], LabelFacts] = {}


def label_facts(product: Product, indication: str, policy: Policy) -> LabelFacts:
    key = (id(product), indication, id(policy))
    cached = _LABELS.get(key)
    if cached is not None and cached.product is product and cached.policy is policy:
        return cached
    labelled = indication in product.indications
    entry = product.indications[indication] if labelled else _conservative_entry(product)
    rate_of = product.rate_mg_kg_min
    values: dict[str, Any] = {
        "product": product.id,
        "indication": indication,
        "labelled": labelled,
        "max_rate": rate_of(entry.max_rate.quantity),
        "initial_rate": rate_of(entry.initial_rate.quantity),
    }
    if entry.initial_hold is not None:
        values["initial_hold"] = entry.initial_hold.quantity.canonical
    if product.sucrose is not None:
        values["sucrose"] = product.sucrose.value
    regimen = entry.dose if labelled else None
    if regimen is not None:
        values.update({
            "label_dose_per_course": regimen.course_g_per_kg,
            "label_max_dose_per_day": regimen.max_daily_g_per_kg,
            "label_days_min": regimen.days.min,
            "label_days_max": regimen.days.max,
        })
    for excipient in product.excipients:
        values[flag_key("excipient", excipient.name)] = True
    at_risk_figure = entry.at_risk_rate or product.at_risk_rate
    fallback = policy["at_risk_rate_when_label_silent"]
    if at_risk_figure is not None:
        at_risk: float | None = rate_of(at_risk_figure.quantity)
        at_risk_cite = f"{at_risk_figure.citation} [{at_risk_figure.tag}]"
    else:
        per_kg = fallback.shape in (Shape.MASS_PER_MASS_TIME, Shape.VOLUME_PER_MASS_TIME)
        at_risk = rate_to_mg_per_kg_min(fallback, product.concentration_mg_per_ml, 1.0) if per_kg else None
        at_risk_cite = ("Boxed warning: minimum infusion rate practicable for patients at risk (L); numeric cap from "
                        "site policy at_risk_rate_when_label_silent: "
                        + policy.provenance["at_risk_rate_when_label_silent"])
    label = LabelFacts(
        product=product, policy=policy, entry=entry, labelled=labelled, at_risk_rate=at_risk,
        initial_hold=(entry.initial_hold.quantity.canonical if entry.initial_hold
                      else policy["initial_hold_when_label_silent"].canonical),
        titration_interval=(entry.titration.interval.canonical if entry.titration
                            else policy["titration_interval_when_label_silent"].canonical),
        titration_ladder=[rate_of(q) for q in (entry.titration.ladder if entry.titration else None) or []],
        values=values, vials=parse_vials(product.vials.value if product.vials else []),
        cite=_citations(product, entry, policy, at_risk_cite),
    )
    _LABELS[key] = label
    return label


def build_facts(plan: Plan, product: Product, policy: Policy) -> Facts:
    """Join plan, product and policy into canonical facts; impossible combinations raise InvalidPlanError."""
    label = label_facts(product, plan.indication, policy)
    patient = plan.patient
    actual_weight = patient.weight.canonical
    dosing = dosing_weight(actual_weight, patient.height.canonical if patient.height else None, patient.sex,
                           patient.age, patient.pregnant, policy)
    weight = dosing.kg
    concentration = product.concentration_mg_per_ml

    steps: list[StepFacts] = []
    for index, step in enumerate(plan.steps):
        rate = rate_to_mg_per_kg_min(step.rate, concentration, weight)
        if not math.isfinite(rate) or rate > ABSURD_RATE_MG_KG_MIN:
            raise InvalidPlanError.single(f"steps[{index}].rate", f"{step.rate} is not a possible infusion rate")
        steps.append(StepFacts(index, rate,
                               step.duration.canonical if step.duration else None, step.rate.unit))

    dose = plan.dose
    days = dose.days
    written = dose.per_course if dose.per_course is not None else dose.per_day
    assert written is not None  # the model insists on exactly one of the two
    per_day = _g_per_kg(written, weight) / (days if dose.per_course is not None else 1)
    dispense = round_and_dispense(per_day * weight, label.vials, policy)
    per_day = dispense.rounded_dose_g / weight
    course = per_day * days
    daily_volume = per_day * weight * 1000.0 / concentration

    at_risk = label.at_risk_rate
    if at_risk is None:
        at_risk = rate_to_mg_per_kg_min(policy["at_risk_rate_when_label_silent"], concentration, weight)
    initial_rate = label.values["initial_rate"]
    infusion_time, time_at_initial = _timeline(steps, daily_volume, weight, concentration, initial_rate)

    risk = set(patient.risk_factors)
    derived: set[str] = set()
    age = patient.age
    if age is not None and age > policy["advanced_age_over"] and "advanced-age" not in risk:
        derived.add("advanced-age")
    risk |= derived

    values: dict[str, Any] = {
        **label.values,
        "weight": actual_weight,
        "dosing_weight": weight,
        "days": days,
        "steps": len(steps),
        "dose_per_day": per_day,
        "dose_per_course": course,
        "daily_volume": daily_volume,
        "at_risk_rate": at_risk,
        "peak_rate": max(s.rate for s in steps),
        "first_rate": steps[0].rate,
        "time_at_initial": time_at_initial,
        "infusion_time": infusion_time,
    }
    if age is not None:
        values["age"] = float(age)
    if patient.blood_group is not None:
        values["blood_group_non_o"] = not patient.blood_group.startswith("O")
    if "label_dose_per_course" in values:
        values["course_dose_ratio"] = course / values["label_dose_per_course"]
        values["daily_dose_ratio"] = per_day / values["label_max_dose_per_day"]
    for name in risk:
        values[flag_key("risk_factor", name)] = True
    for statement in product.contraindications:
        if statement.risk_factor in risk:
            values[flag_key("contraindicated", statement.risk_factor)] = True
    for statement in product.avoid:
        if statement.risk_factor in risk:
            values[flag_key("avoided", statement.risk_factor)] = True

    return Facts(
        plan=plan, product=product, label=label, indication=plan.indication,
        weight_kg=weight, dosing=dosing, dispense=dispense, concentration=concentration, values=values, steps=steps,
        risk_factors=frozenset(risk), derived_risk_factors=frozenset(derived), initial_hold=label.initial_hold,
        titration_interval=label.titration_interval, titration_ladder=label.titration_ladder, cite=label.cite,
    )


def _g_per_kg(quantity: Quantity, weight: float) -> float:
    if quantity.shape is Shape.MASS:
        return quantity.canonical * 1000.0 / weight  # kg of drug -> g per kg of patient
    return quantity.canonical


def _timeline(steps: list[StepFacts], daily_volume: float, weight: float, concentration: float,
              initial_rate: float) -> tuple[float, float]:
    """Minutes the plan takes to give the day's volume, and minutes spent at or below the initial rate first."""
    remaining = daily_volume
    elapsed = 0.0
    held: float | None = None
    initial_key = round(initial_rate * SCALE)
    for step in steps:
        ml_per_min = step.rate * weight / concentration
        needed = remaining / ml_per_min
        minutes = needed if step.duration_min is None else min(step.duration_min, needed)
        if held is None and round(step.rate * SCALE) > initial_key:
            held = elapsed
        elapsed += minutes
        remaining -= minutes * ml_per_min
        if remaining <= daily_volume * 1e-12:
            break
    return elapsed, elapsed if held is None else held


def _citations(product: Product, entry: IndicationEntry, policy: Policy, at_risk: str) -> dict[str, str]:
    def cited(figure: Any) -> str:
        return f"{figure.citation} [{figure.tag}]"

    cite = {
        "max_rate": cited(entry.max_rate),
        "initial_rate": cited(entry.initial_rate),
        "initial_hold": cited(entry.initial_hold) if entry.initial_hold else
        "site policy initial_hold_when_label_silent: " + policy.provenance["initial_hold_when_label_silent"],
        "at_risk_rate": at_risk,
        "titration": cited(entry.titration) if entry.titration else
        "site policy titration_interval_when_label_silent: "
        + policy.provenance["titration_interval_when_label_silent"],
        "concentration": cited(product.concentration),
    }
    if entry.dose is not None:
        cite["dose"] = cited(entry.dose)
    if product.sucrose is not None:
        cite["sucrose"] = cited(product.sucrose)
    for excipient in product.excipients:
        cite[f"excipient:{excipient.name}"] = cited(excipient)
    for statement in product.contraindications:
        cite[f"contraindication:{statement.risk_factor}"] = cited(statement)
    for statement in product.avoid:
        cite[f"avoid:{statement.risk_factor}"] = cited(statement)
    for key, text in policy.provenance.items():
        cite[f"policy:{key}"] = f"site policy {key}: {text}"
    return cite

