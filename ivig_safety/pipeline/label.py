"""What the label (and the policy, where the label is silent) says for one product and indication, as canonical
floats with their citations, computed once per product, indication and policy; and the :class:`Knowledge` it is
cached in. facts.py joins it with each plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ..knowledge.catalogue import ClassKnowledge, Guidelines, Vocabulary
from ..knowledge.fields import SCALE, flag_key
from ..knowledge.policy import Policy
from ..knowledge.products import BoolFigure, DoseRegimen, IndicationEntry, Product
from ..model.rates import rate_to_mg_per_kg_min
from ..model.units import Shape
from .dosing import Vial, parse_vials


def _conservative_entry(product: Product) -> IndicationEntry:
    """For an unlabelled indication: the labelled entry with the lowest maximum (its initial rate and titration)."""
    entries = list(product.indications.values())
    return min(entries, key=lambda e: (product.rate_mg_kg_min(e.max_rate.quantity),
                                       product.rate_mg_kg_min(e.initial_rate.quantity)))


@dataclass(frozen=True)
class Knowledge:
    """What the rule files say beyond the products: the vocabulary, the class facts and the off-label guidelines."""

    vocabulary: Vocabulary
    classwide: ClassKnowledge
    guidelines: Guidelines
    #: Label facts per (product, indication, policy) and contraindications per product, computed once. Kept here,
    #: with the Checker that owns this knowledge, so they are freed with it.
    labels: dict[tuple[int, str, int], "LabelFacts"] = field(default_factory=dict, compare=False)
    contraindicated: dict[int, frozenset[str]] = field(default_factory=dict, compare=False)


#: One engine unit (a millionth of mg/kg/min). A label's "less than X" is checked as "at or above X is too fast" by
#: lowering the cap by this much: the engine compares integer millionths, so ``rate > X - 1e-6`` is ``rate >= X``.
_STRICTLY_BELOW: Final = 1.0 / SCALE


@dataclass(frozen=True)
class LabelFacts:
    """What the label (and the policy, where the label is silent) says for one product and indication, converted to
    canonical floats once: every plan for the same product and indication reuses it."""

    product: Product
    policy: Policy
    entry: IndicationEntry
    labelled: bool
    regimens: list[DoseRegimen]  # the label's, else a guideline's for an off-label indication, else none
    at_risk_rate: float | None  # mg/kg/min; None when the policy's fallback depends on the patient's weight
    at_risk_below: bool  # the label says "less than" the at-risk figure
    initial_hold: float
    titration_interval: float
    titration_ladder: list[float]
    values: dict[str, Any]  # the facts that do not depend on the plan
    vials: list[Vial]
    cite: dict[str, str]
    findings: dict[str, Any] = field(default_factory=dict)  # rendered static findings (findings.build_finding)
    templates: dict[tuple[str, str], Any] = field(default_factory=dict)  # rule templates filled for it (findings.py)
    encodings: dict[Any, Any] = field(default_factory=dict)  # the engine keys fixed by this label (facts.py)
    merged_citations: dict[tuple[str, ...], str] = field(default_factory=dict)  # findings.merge_findings


def label_facts(product: Product, indication: str, policy: Policy, knowledge: Knowledge) -> LabelFacts:
    key = (id(product), indication, id(policy))
    cached = knowledge.labels.get(key)
    if cached is not None and cached.product is product and cached.policy is policy:
        return cached
    labelled = indication in product.indications
    entry = product.indications[indication] if labelled else _conservative_entry(product)
    rate_of = product.rate_mg_kg_min
    tolerance = 1.0 + float(policy["pump_tolerance"])
    values: dict[str, Any] = {
        "product": product.id,
        "indication": indication,
        "labelled": labelled,
        "max_rate": rate_of(entry.max_rate.quantity),
        "initial_rate": rate_of(entry.initial_rate.quantity),
        "concentration": product.concentration_mg_per_ml,
        "excipients_on_file": product.excipients_on_file,
        "sucrose_on_file": product.sucrose_on_file,
    }
    if isinstance(product.sucrose, BoolFigure):
        values["sucrose"] = product.sucrose.value
    values["max_rate_with_tolerance"] = values["max_rate"] * tolerance
    values["initial_rate_with_tolerance"] = values["initial_rate"] * tolerance
    if entry.initial_hold is not None:
        values["initial_hold"] = entry.initial_hold.quantity.canonical
    regimens = entry.regimens if labelled else knowledge.guidelines.regimens.get(indication, [])
    if regimens:
        values.update(_regimen_values(regimens))
        values["regimen_basis"] = "label" if labelled else "guideline (off-label)"
    if labelled:
        values.update(_population_values(entry, policy))
    for excipient in product.excipient_list:
        values[flag_key("excipient", excipient.name)] = True
    for statement in product.minimum_rate_also_for:
        values[flag_key("label_minimum_rate_for", statement.reason)] = True
    at_risk_figure = entry.at_risk_rate or product.at_risk_rate
    fallback = policy["at_risk_rate_when_label_silent"]
    below = False
    if at_risk_figure is not None:
        at_risk: float | None = rate_of(at_risk_figure.quantity)
        below = at_risk_figure.below
        at_risk_cite = _cited(product, at_risk_figure)
        values["at_risk_limit"] = ("less than " if below else "") + str(at_risk_figure.quantity)
    else:
        per_kg = fallback.shape in (Shape.MASS_PER_MASS_TIME, Shape.VOLUME_PER_MASS_TIME)
        at_risk = rate_to_mg_per_kg_min(fallback, product.concentration_mg_per_ml, 1.0) if per_kg else None
        at_risk_cite = (f"{product.label_name}: minimum infusion rate practicable for patients at risk (no figure "
                        "on the label); numeric cap from site policy at_risk_rate_when_label_silent: "
                        + policy.provenance["at_risk_rate_when_label_silent"])
        values["at_risk_limit"] = f"{fallback} (site policy; the label asks for the minimum rate practicable)"
    if at_risk is not None and below:
        at_risk -= _STRICTLY_BELOW
    label = LabelFacts(
        product=product, policy=policy, entry=entry, labelled=labelled, regimens=list(regimens),
        at_risk_rate=at_risk, at_risk_below=below,
        initial_hold=(entry.initial_hold.quantity.canonical if entry.initial_hold
                      else policy["initial_hold_when_label_silent"].canonical),
        titration_interval=(entry.titration.interval.canonical if entry.titration
                            else policy["titration_interval_when_label_silent"].canonical),
        titration_ladder=[rate_of(q) for q in (entry.titration.ladder if entry.titration else None) or []],
        values=values, vials=parse_vials(product.vials.value if product.vials else []),
        cite=_citations(product, entry, regimens, policy, knowledge, at_risk_cite),
    )
    knowledge.labels[key] = label
    return label


def _regimen_values(regimens: list[DoseRegimen]) -> dict[str, Any]:
    """The envelope of the regimens: an order is within the label when its course, daily dose and days fit it."""
    courses = [r.course_range for r in regimens]
    intervals = [r.interval.min.canonical for r in regimens if r.interval is not None]
    values: dict[str, Any] = {
        "label_dose_per_course": max(high for _, high in courses),
        "label_min_dose_per_course": min(low for low, _ in courses),
        "label_max_dose_per_day": max(r.max_daily_g_per_kg for r in regimens),
        "label_days_min": min(r.days.min for r in regimens),
        "label_days_max": max(r.days.max for r in regimens),
        "label_regimens": "; ".join(r.describe() for r in regimens),
    }
    if intervals and len(intervals) == len(regimens):
        values["label_interval_min"] = min(intervals)
    return values


def _population_values(entry: IndicationEntry, policy: Policy) -> dict[str, Any]:
    population = entry.population
    values: dict[str, Any] = {"label_population": population.text}
    minimum = population.min_age
    if minimum == "adults":
        values["label_min_age"] = float(policy["adult_age_from"])
    elif minimum is not None:
        values["label_min_age"] = minimum.canonical / _MINUTES_PER_YEAR
    if population.max_age is not None:
        values["label_max_age"] = population.max_age.canonical / _MINUTES_PER_YEAR
    return values


_MINUTES_PER_YEAR = 365.25 * 24 * 60


def _cited(product: Product, figure: Any) -> str:
    """A figure's citation, naming the label and its revision: 'Privigen US PI (rev. 2022-03), 2.2 Table 2 [L]'."""
    if figure.tag == "G":
        return f"{figure.citation} [guideline, not a label]"
    return f"{product.label_name}, {figure.citation} [{figure.tag}]"


def _citations(product: Product, entry: IndicationEntry, regimens: list[DoseRegimen], policy: Policy,
               knowledge: Knowledge, at_risk: str) -> dict[str, str]:
    cite = {
        "max_rate": _cited(product, entry.max_rate),
        "initial_rate": _cited(product, entry.initial_rate),
        "initial_hold": _cited(product, entry.initial_hold) if entry.initial_hold else
        "site policy initial_hold_when_label_silent: " + policy.provenance["initial_hold_when_label_silent"],
        "at_risk_rate": at_risk,
        "titration": _cited(product, entry.titration) if entry.titration else
        "site policy titration_interval_when_label_silent: "
        + policy.provenance["titration_interval_when_label_silent"],
        "concentration": _cited(product, product.concentration),
        "population": _cited(product, entry.population),
        "dose": "; ".join(dict.fromkeys(_cited(product, r) for r in regimens)) if regimens else
        "no labelled or guideline regimen for this indication: checked against the site policy's absolute ceilings",
        "label": f"{product.label.title}, revised {product.label.revised}"
                 + (f", DailyMed set id {product.label.setid}" if product.label.setid else ""),
    }
    if isinstance(product.sucrose, BoolFigure):
        cite["sucrose"] = _cited(product, product.sucrose)
    for name, warning in knowledge.classwide.warnings.items():
        cite[f"warning:{name}"] = f"{warning.citation} [{warning.tag}]"
    for statement in knowledge.classwide.contraindications:
        cite[f"contraindication:{statement.risk_factor}"] = f"{statement.citation} [{statement.tag}]"
    for name, vocab in knowledge.vocabulary.excipients.items():
        if vocab.contraindicates and name in product.excipient_names:
            own = next(e for e in product.excipient_list if e.name == name)
            cite[f"contraindication:{vocab.contraindicates}"] = f"{vocab.citation}; {_cited(product, own)}"
    for excipient in product.excipient_list:
        cite[f"excipient:{excipient.name}"] = _cited(product, excipient)
    for contraindication in product.contraindication_list:
        cite[f"contraindication:{contraindication.risk_factor}"] = _cited(product, contraindication)
    for avoided in product.avoid:
        cite[f"avoid:{avoided.risk_factor}"] = _cited(product, avoided)
    for reason in product.minimum_rate_also_for:
        cite[f"minimum_rate_also_for:{reason.reason}"] = _cited(product, reason)
    for key, text in policy.provenance.items():
        cite[f"policy:{key}"] = f"site policy {key}: {text}"
    return cite
