"""The last stage of a check: the report's content as plain data, from the facts, the rules that fired, their
findings and the suggestion (``Checker._report`` validates it into a :class:`~ivig_safety.model.report.Report`).

Why a module of its own: it runs once per ``check()`` and is plain arithmetic and dict building, which mypyc compiles
(pyproject.toml, ``mypyc-modules``); check.py, whose Checker the tests patch per instance, stays Python.
"""

from __future__ import annotations

from typing import Any

from ..knowledge.policy import Policy
from ..knowledge.rules import Rule
from ..model.plan import Plan
from ..model.report import verdict_of
from .facts import Facts
from .findings import FindingData
from .suggest import exceeds, rate_triple, suggest


def report_data(parsed: Plan, sources: dict[str, str] | None, facts: Facts, fired: list[Rule],
                findings: list[FindingData], policy: Policy, ruleset: Any, policy_identity: Any) -> dict[str, Any]:
    """The fields of a Report for this plan, as plain data (the rate triples and the two identities as the models
    they already are: pydantic does not validate a model instance again)."""
    suggestion = suggest(facts, fired, policy)
    values = facts.values
    weight_kg = facts.weight_kg
    return {
        "verdict": verdict_of({f["severity"] for f in findings}),
        "plan": {
            "id": parsed.id, "product": facts.product.id, "product_name": facts.product.name,
            "indication": facts.indication, "labelled": bool(values["labelled"]),
            "weight_kg": round(values["weight"], 6), "dosing_weight_kg": round(weight_kg, 6),
            "dosing_weight_method": facts.dosing.method,
            "concentration_mg_per_ml": facts.concentration, "risk_factors": sorted(facts.risk_factors),
            "derived_risk_factors": sorted(facts.derived_risk_factors), "days": int(values["days"]),
            "dose_per_day_g": round(values["dose_per_day"] * weight_kg, 3),
            "dose_per_day_g_per_kg": round(values["dose_per_day"], 4),
            "daily_volume_ml": round(values["daily_volume"], 3),
            "plan_infusion_min": round(values["infusion_time"], 2),
            "sources": sources,
        },
        "findings": findings,
        "suggested_max_rate": rate_triple(facts, suggestion.max_rate, policy),
        "suggested_steps": suggestion.steps,
        "suggested_infusion_min": suggestion.total_min,
        "dispense": dispense_data(facts),
        "ruleset": ruleset,
        "policy": policy_identity,
        "pump_tolerance_used": tolerance_used(facts),
    }


def tolerance_used(facts: Facts) -> list[str]:
    """Where a rate above a label figure passed only because of the policy's pump tolerance (said in the report)."""
    values = facts.values
    used = []
    for name, rate_key, label_key in (("maximum", "peak_rate", "max_rate"),
                                      ("initial rate", "first_rate", "initial_rate")):
        rate, figure = float(values[rate_key]), float(values[label_key])
        tolerated = float(values[f"{label_key}_with_tolerance"])
        if exceeds(rate, figure) and not exceeds(rate, tolerated):
            used.append(f"{rate_key.replace('_', ' ')} {rate / figure - 1:.2%} over the label {name}, within the "
                        "pump tolerance")
    return used


def dispense_data(facts: Facts) -> dict[str, Any]:
    """What pharmacy prepares, as the fields of :class:`DispenseReport`."""
    d = facts.dispense
    return {
        "prescribed_dose_g": round(d.dose_g, 3), "dose_g": round(d.rounded_dose_g, 3), "rounding": d.rounding,
        "volume_ml": round(facts.values["daily_volume"], 3),
        "vials": [{"size": vial.label, "count": count} for vial, count in d.vials], "waste_g": d.waste_g,
    }
