"""Turn the rules that fired into findings a pharmacist can act on: the message in the plan's own units and in mL/h
for this patient, the citation filled in from the product file, the step at fault and the rule's cap.

Why templates are filled here and not in the rule engine: the engine sees integers in canonical units; people read
"0.06 mL/kg/min (252 mL/h)". Every placeholder was checked when the rule was loaded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Final

from ..knowledge.fields import FIELDS, SCALE
from ..knowledge.policy import Policy
from ..knowledge.rules import Rule
from ..model.errors import EngineError
from ..model.numbers import round_int
from ..model.rates import mg_per_kg_min_to
from ..model.units import ParsedUnit, Shape, format_number
from .facts import Facts
from .suggest import cap_value, rate_triple

_UNIT_OF: Final = {"weight": "kg", "dosing_weight": "kg", "daily_volume": "mL", "daily_volume_per_kg": "mL/kg",
                   "initial_hold": "min", "time_at_initial": "min", "infusion_time": "min", "concentration": "mg/mL"}
#: Durations between courses are shown in days.
_DAYS: Final = {"since_previous_course", "label_interval_min", "weight_age"}


def format_rate(facts: Facts, rate: float, unit: ParsedUnit) -> str:
    """'0.06 mL/kg/min (252 mL/h)': the rate in the plan's unit, and in mL/h for this patient."""
    ml_per_h = format_number(facts.ml_per_h(rate))
    if _is_ml_per_h(unit):
        return f"{ml_per_h} mL/h"
    shown = format_number(mg_per_kg_min_to(unit, rate, facts.concentration, facts.weight_kg))
    return f"{shown} {unit.text} ({ml_per_h} mL/h)"


def _is_ml_per_h(unit: ParsedUnit) -> bool:
    """A rate written in mL/h is shown once, not as 'x mL/h (x mL/h)'."""
    return unit.shape is Shape.VOLUME_PER_TIME and _is_ml_per_h_text(unit.text)


@lru_cache(maxsize=1024)  # per unit text written in plans: a few (a str's hash is cached, a ParsedUnit's is not)
def _is_ml_per_h_text(text: str) -> bool:
    return text.replace(" ", "") in ("mL/h", "ml/h", "mL/hr", "ml/hr")


def _as_rate(facts: Facts, value: Any, unit: ParsedUnit) -> str:
    return format_rate(facts, float(value), unit)


def _as_dose(facts: Facts, value: Any, unit: ParsedUnit) -> str:
    grams = float(value) * facts.weight_kg
    return f"{format_number(float(value))} g/kg ({format_number(grams)} g)"


def _as_days(facts: Facts, value: Any, unit: ParsedUnit) -> str:
    return f"{format_number(float(value) / (24 * 60))} days"


def _in_unit(text: str) -> Callable[[Facts, Any, ParsedUnit], str]:
    return lambda facts, value, unit: f"{format_number(float(value))} {text}"


def _as_is(facts: Facts, value: Any, unit: ParsedUnit) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


@lru_cache(maxsize=None)  # one entry per field name (FIELDS is fixed)
def _formatter(name: str) -> Callable[[Facts, Any, ParsedUnit], str]:
    """How a field is shown, decided once per name rather than on every value."""
    spec = FIELDS[name]
    if spec.variants is not None and Shape.MASS_PER_MASS_TIME in spec.variants:
        return _as_rate
    if spec.variants is not None and Shape.MASS_PER_MASS in spec.variants:
        return _as_dose
    if name in _DAYS:
        return _as_days
    if name in _UNIT_OF:
        return _in_unit(_UNIT_OF[name])
    return _as_is


def _format_value(facts: Facts, name: str, unit: ParsedUnit) -> str:
    if name not in facts.values:
        return "unknown"
    return _formatter(name)(facts, facts.values[name], unit)


def _format_policy(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer() and value < 1:
        return f"{format_number(value * 100)}%"
    return str(value) if not isinstance(value, float) else format_number(value)


def _step_list(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"step {numbers[0]}"
    return "steps " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def build_finding(rule: Rule, facts: Facts, policy: Policy) -> FindingData:
    if rule.static:
        cached = facts.label.findings.get(rule.id)
        if cached is None:
            cached = facts.label.findings[rule.id] = _render(rule, facts, policy)
        return cached
    return _render(rule, facts, policy)


class _Scope:
    """What a placeholder of one finding may show: the plan's facts, the rule, the step at fault, the steps over
    the cap, the unit the plan wrote its rates in, the cap (mg/kg/min) and the policy."""

    __slots__ = ("facts", "rule", "step", "over", "unit", "cap", "policy")

    def __init__(self, facts: Facts, rule: Rule, step: int | None, over: list[int], unit: ParsedUnit,
                 cap: float | None, policy: Policy):
        self.facts, self.rule, self.step, self.over, self.unit, self.cap, self.policy = \
            facts, rule, step, over, unit, cap, policy


Getter = Callable[[_Scope], str]


def _citation(key: str) -> Getter:
    def get(s: _Scope) -> str:
        cite = s.facts.cite
        if key not in cite:
            raise EngineError(f"rule {s.rule.id}: no citation {key!r} for product {s.facts.product.id}")
        return cite[key]
    return get


def _policy_value(key: str) -> Getter:
    return lambda s: _format_policy(s.policy[key])


_ABSENT: Final = object()


def _fact(name: str) -> Getter:
    """A fact shown as its field is shown (formatter chosen here, once per template); a rate or a dose, which
    often appears in several findings of one plan, is formatted once per plan and unit."""
    format_as = _formatter(name)
    if format_as is not _as_rate and format_as is not _as_dose:
        def get(s: _Scope) -> str:
            value = s.facts.values.get(name, _ABSENT)
            return "unknown" if value is _ABSENT else format_as(s.facts, value, s.unit)
        return get

    def get_shared(s: _Scope) -> str:
        facts, unit = s.facts, s.unit
        shown_key = (name, unit.text)
        text = facts.shown.get(shown_key)
        if text is None:
            value = facts.values.get(name, _ABSENT)
            text = facts.shown[shown_key] = "unknown" if value is _ABSENT else format_as(facts, value, unit)
        return text
    return get_shared


def _risk_factors(s: _Scope) -> str:
    facts = s.facts
    present = [r + (" (from age)" if r in facts.derived_risk_factors else "")
               for r in s.rule.risk_factors if r in facts.risk_factors]
    return ", ".join(present) or "none"


_NAMED: Final[dict[str, Getter]] = {
    "step": lambda s: str(s.step) if s.step is not None else "-",
    "step_rate": lambda s: format_rate(s.facts, s.facts.steps[s.step - 1].rate, s.unit) if s.step else "-",
    "over_cap_steps": lambda s: _step_list(s.over) if s.over else "no step",
    "risk_factors": _risk_factors,
    "product_name": lambda s: s.facts.product.name,
    "blood_group": lambda s: s.facts.plan.patient.blood_group or "not given",
    "cap": lambda s: format_rate(s.facts, s.cap, s.unit) if s.cap is not None else "-",
}


def _getter(name: str) -> Getter:
    if name.startswith("cite."):
        return _citation(name[5:])
    if name in _NAMED:
        return _NAMED[name]
    if name.startswith("policy."):
        return _policy_value(name.removeprefix("policy."))
    return _fact(name)


@lru_cache(maxsize=4096)
def compile_template(parts: tuple[str, ...]) -> tuple[Getter, ...]:
    """A template's placeholders (the odd ``parts``, see rules.split_template) as functions, worked out once per
    template instead of on every finding: rendering the findings was the largest stage of a batch row."""
    return tuple(_getter(name) for name in parts[1::2])


def _label_fixed(name: str, facts: Facts) -> bool:
    """A placeholder whose text depends only on the product, the indication and the policy (their LabelFacts): a
    citation, a policy value, the product's name, or a label fact not shown in the plan's unit or per patient."""
    if name.startswith(("cite.", "policy.")) or name == "product_name":
        return True
    if name not in FIELDS or name not in facts.label.values:
        return False
    return _formatter(name) is not _as_rate and _formatter(name) is not _as_dose


def _for_label(rule: Rule, which: str, scope: _Scope) -> tuple[tuple[str, ...], tuple[Getter, ...]]:
    """The rule's message or citation template with every placeholder fixed by the label filled in (once per
    product, indication and policy, held with their label facts), and the functions for the rest. About half the
    placeholders of a typical plan's findings are fixed (indication, regimens, the at-risk limit, citations)."""
    label = scope.facts.label
    key = (rule.id, which)
    prepared = label.templates.get(key)
    if prepared is not None:
        return prepared
    parts = rule.message_parts if which == "message" else rule.citation_parts
    getters = compile_template(parts)
    kept: list[str] = [parts[0]]
    kept_getters: list[Getter] = []
    for name, get, literal in zip(parts[1::2], getters, parts[2::2], strict=True):
        if _label_fixed(name, scope.facts):
            kept[-1] += get(scope) + literal
        else:
            kept += [name, literal]
            kept_getters.append(get)
    prepared = (tuple(kept), tuple(kept_getters))
    if scope.policy is label.policy:  # (always, from a Checker: its one policy is the label's)
        label.templates[key] = prepared
    return prepared


def _fill_for_label(rule: Rule, which: str, scope: _Scope) -> str:
    parts, getters = _for_label(rule, which, scope)
    if len(parts) == 1:
        return parts[0]
    out = list(parts)
    out[1::2] = [get(scope) for get in getters]
    return "".join(out)


#: A finding as the pipeline builds it: the fields of :class:`Finding`, in its order, as plain data (the suggested
#: maximum rate as a RateTriple). Check() makes Finding models of them for its report; a batch row needs only their
#: JSON form (:func:`finding_json`), and skipping the models saved about a tenth of a batch row. Never mutated:
#: a rendered static finding is shared by every plan of its product and indication.
FindingData = dict[str, Any]


def _render(rule: Rule, facts: Facts, policy: Policy) -> FindingData:
    cap = cap_value(rule.cap, facts) if rule.cap is not None else None
    if cap is not None:
        limit = round_int(cap * SCALE)  # exceeds(), inline: once per step of every finding with a cap
        over = [s.index + 1 for s in facts.steps if round_int(s.rate * SCALE) > limit]
    else:
        over = []
    step = 1 if rule.step == "first" else (over[0] if rule.step == "over-cap" and over else None)
    scope = _Scope(facts, rule, step, over, facts.steps[(step or 1) - 1].unit, cap, policy)
    return {
        "kind": rule.kind, "severity": rule.severity, "rule": rule.id,
        "message": _fill_for_label(rule, "message", scope), "citation": _fill_for_label(rule, "citation", scope),
        "step": step, "suggested_max_rate": rate_triple(facts, cap, policy) if cap is not None else None,
        "rules": [rule.id], "kinds": [rule.kind],
    }


def finding_json(finding: FindingData) -> dict[str, Any]:
    """What ``Finding(**finding).model_dump(mode="json")`` gives, without the model (a new dict, new lists)."""
    triple = finding["suggested_max_rate"]
    return {**finding, "suggested_max_rate": triple.as_json() if triple is not None else None,
            "rules": list(finding["rules"]), "kinds": list(finding["kinds"])}


_SEVERITY_ORDER: Final = {"critical": 0, "warning": 1, "info": 2}


def _severity_rank(finding: FindingData) -> int:
    return _SEVERITY_ORDER[finding["severity"]]


def plan_findings(fired: list[Rule], facts: Facts, policy: Policy) -> list[FindingData]:
    """The findings of the rules that fired for a plan: one per decision (:func:`merge_findings`), the most severe
    first. The sort is stable: findings of one severity keep the rule files' order."""
    findings = merge_findings(fired, [build_finding(rule, facts, policy) for rule in fired], facts)
    if len(findings) > 1:
        findings.sort(key=_severity_rank)
    return findings


def merge_findings(fired: list[Rule], findings: list[FindingData], facts: Facts) -> list[FindingData]:
    """One finding per decision. Rules of one ``group``, or imposing the same cap, at the same severity, become one
    finding that keeps every reason (message), every source (citation) and every rule id; the rest pass through.

    Why here and not in the rules: two rules can reach the same decision for different reasons (renal and thrombosis
    risk both cap the rate at the at-risk cap); the prescriber needs the decision once, with all its reasons."""
    groups: dict[Any, list[FindingData]] = {}
    for rule, finding in zip(fired, findings, strict=True):
        if rule.group is not None:
            key: Any = (finding["severity"], "group", rule.group)
        elif rule.cap is not None:
            key = (finding["severity"], "cap", round_int(cap_value(rule.cap, facts) * SCALE))
        else:
            key = rule.id
        members = groups.get(key)
        if members is None:
            groups[key] = [finding]
        else:
            members.append(finding)
    if len(groups) == len(findings):
        return list(findings)  # nothing to merge: the common case
    merged: list[FindingData] = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        merged.append({
            **members[0],
            "message": " ".join(dict.fromkeys(f["message"] for f in members)),
            "citation": _merged_citation(tuple(f["citation"] for f in members), facts.label.merged_citations),
            "step": min((f["step"] for f in members if f["step"] is not None), default=None),
            "rules": [r for f in members for r in f["rules"]],
            "kinds": list(dict.fromkeys(k for f in members for k in f["kinds"])),
        })
    return merged


#: Merged citations kept per label (LabelFacts.merged_citations) before it is emptied and fills again: a label's
#: citations are filled once (findings._for_label), so its merges recur; a citation that shows a plan's own value
#: could make new ones without end.
MERGED_CITATIONS_PER_LABEL: Final = 256


def _merged_citation(citations: tuple[str, ...], memo: dict[tuple[str, ...], str]) -> str:
    """Every source of the merged rules once, in order: each citation split at "; " and joined again.

    Kept per label: splitting the citations was the largest part of merging (a sixth of the findings stage)."""
    merged = memo.get(citations)
    if merged is None:
        merged = "; ".join(dict.fromkeys(part for citation in citations for part in citation.split("; ")))
        if len(memo) >= MERGED_CITATIONS_PER_LABEL:
            memo.clear()
        memo[citations] = merged
    return merged


def explain_rule(rule: Rule, facts: Facts) -> list[str]:
    """The facts a fired rule read, as 'name = value' lines, for a pharmacist asking why it fired."""
    unit = facts.steps[0].unit
    lines: list[str] = []
    for key in sorted(rule.keys):
        if key.startswith(("rf_", "ex_", "ci_", "av_", "mr_")):
            if facts.values.get(key):
                what = {"rf_": "risk factor", "ex_": "excipient", "ci_": "contraindicated", "av_": "avoid",
                        "mr_": "label asks for the minimum rate for"}[key[:3]]
                lines.append(f"{what} {key[3:].replace('_', '-')}: present")
            continue
        name = key.partition("__")[0]
        if name not in FIELDS:
            continue
        line = f"{name} = {_format_value(facts, name, unit)}"
        if line not in lines:
            lines.append(line)
    lines.append(f"condition: {rule.when}")
    return lines
