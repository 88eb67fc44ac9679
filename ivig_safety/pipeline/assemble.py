"""The last stage of a check: the :class:`~ivig_safety.model.report.Report`, from the facts, the rules that fired,
their findings and the suggestion.

The report's models are built with :func:`~ivig_safety.model.trusted.trusted`, not validated again: every value here
was computed from a validated plan (see model/trusted.py for why, and for what that asks of this module: each float
field a ``float``, every field in its model's order, containers of the report's own).

Why a module of its own: it runs once per ``check()`` and is plain arithmetic and dict building, which mypyc compiles
(pyproject.toml, ``mypyc-modules``); check.py, whose Checker the tests patch per instance, stays Python.
"""

from __future__ import annotations

from ..knowledge.policy import Policy
from ..knowledge.rules import Rule
from ..model.plan import Plan
from ..model.numbers import round_to
from ..model.report import (DispenseReport, Finding, PlanSummary, PolicyIdentity, Report, RuleSetIdentity,
                            VialCount, verdict_of)
from ..model.trusted import trusted
from .facts import Facts
from .findings import FindingData
from .suggest import exceeds, rate_triple, suggest


def build_report(parsed: Plan, sources: dict[str, str] | None, facts: Facts, fired: list[Rule],
                 findings: list[FindingData], policy: Policy, ruleset: RuleSetIdentity,
                 policy_identity: PolicyIdentity) -> Report:
    """The report of a checked plan: its findings, the suggested cap and schedule, the plan's summary, the dispense,
    and the identities of the rule set and policy that produced it."""
    suggestion = suggest(facts, fired, policy)
    cached = facts.label.findings
    return trusted(Report, {
        "verdict": verdict_of({f["severity"] for f in findings}),
        "plan": plan_summary(parsed, sources, facts),
        "findings": [trusted(Finding, _own(f, cached)) for f in findings],
        "suggested_max_rate": rate_triple(facts, suggestion.max_rate, policy),
        "suggested_steps": suggestion.steps,
        "suggested_infusion_min": suggestion.total_min,
        "dispense": dispense_report(facts),
        "ruleset": ruleset,
        "policy": policy_identity,
        "pump_tolerance_used": tolerance_used(facts),
    })


def _own(finding: FindingData, cached: dict[str, FindingData]) -> FindingData:
    """A finding's data for this report's model alone. A static rule's finding is cached per product and indication
    and shared by every plan (findings.build_finding): the report gets a copy, with lists of its own, as validation
    gave it, so that changing one report's finding changes no other. Every other finding was built for this plan."""
    if cached.get(finding["rule"]) is not finding:
        return finding
    return {**finding, "rules": list(finding["rules"]), "kinds": list(finding["kinds"])}


def plan_summary(parsed: Plan, sources: dict[str, str] | None, facts: Facts) -> PlanSummary:
    """What the engine believed about the plan, as the report shows it."""
    values = facts.values
    weight_kg = facts.weight_kg
    return trusted(PlanSummary, {
        "id": parsed.id, "product": facts.product.id, "product_name": facts.product.name,
        "indication": facts.indication, "labelled": bool(values["labelled"]),
        "weight_kg": round_to(float(values["weight"]), 6), "dosing_weight_kg": round_to(float(weight_kg), 6),
        "dosing_weight_method": facts.dosing.method,
        "concentration_mg_per_ml": float(facts.concentration), "risk_factors": sorted(facts.risk_factors),
        "derived_risk_factors": sorted(facts.derived_risk_factors), "days": int(values["days"]),
        "dose_per_day_g": round_to(float(values["dose_per_day"]) * weight_kg, 3),
        "dose_per_day_g_per_kg": round_to(float(values["dose_per_day"]), 4),
        "daily_volume_ml": round_to(float(values["daily_volume"]), 3),
        "plan_infusion_min": round_to(float(values["infusion_time"]), 2),
        "sources": dict(sources) if sources is not None else None,
    })


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


def dispense_report(facts: Facts) -> DispenseReport:
    """What pharmacy prepares."""
    d = facts.dispense
    waste = d.waste_g
    return trusted(DispenseReport, {
        "prescribed_dose_g": round_to(float(d.dose_g), 3), "dose_g": round_to(float(d.rounded_dose_g), 3),
        "rounding": d.rounding, "volume_ml": round_to(float(facts.values["daily_volume"]), 3),
        "vials": [trusted(VialCount, {"size": vial.label, "count": count}) for vial, count in d.vials],
        "waste_g": float(waste) if waste is not None else None,
    })
