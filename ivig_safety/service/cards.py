"""A Report as CDS Hooks cards (https://cds-hooks.hl7.org/2.0/#card-attributes). Nothing clinical is decided here:
every word of advice is the finding's message and citation, every number the report's.

- one card per kind of finding (findings of one kind are one decision for the prescriber), its ``indicator`` the most
  severe of them; a ``summary`` under 140 characters with the safe rate in mL/h; a markdown ``detail`` with each
  finding's message and citation and the suggested schedule as a table; a ``source`` naming ivig-safety, its
  version and the rule set's sha256; a fresh ``uuid``;
- on warning and critical cards, the suggestion "Use the suggested schedule" (when the caller gives the rewritten
  order: an ``update`` of the draft MedicationRequest) and the ``overrideReasons`` below;
- an order that cannot be checked gets a warning card saying what is missing and why it matters (never silence, and
  never an "ok").
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Iterable

from ..formats.render import clean_text, format_minutes
from ..model.errors import FieldError
from ..model.report import Finding, Report
from ..model.units import format_number
from .store import NOT_CHECKED, IssuedCard

SUMMARY_MAX = 139  # the spec: "<140-character summary"
OVERRIDE_SYSTEM = "urn:ivig-safety:cds-hooks:override-reason"
#: The coded reasons a prescriber picks from when overriding a warning or critical card.
OVERRIDE_REASONS = (
    ("tolerated-faster-rate", "Patient has tolerated a faster rate before"),
    ("benefit-outweighs-risk", "Clinical benefit outweighs the risk"),
    ("rate-confirmed-with-prescriber", "Rate confirmed with the prescriber"),
    ("other", "Other"),
)
OVERRIDE_CODES = frozenset(code for code, _ in OVERRIDE_REASONS)
KIND_SYSTEM = "urn:ivig-safety:finding-kind"
SUGGESTION_LABEL = "Use the suggested schedule"
_RANK = {"info": 0, "warning": 1, "critical": 2}
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!|~])")


@dataclass(frozen=True)
class Built:
    cards: list[dict[str, Any]]
    issued: list[IssuedCard]


def source(version: str, ruleset_version: str, sha256: str, kind: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"label": f"ivig-safety {version} (rule set {ruleset_version} sha256:{sha256[:12]})"}
    if kind:
        result["topic"] = {"system": KIND_SYSTEM, "code": kind, "display": title(kind)}
    return result


def title(kind: str) -> str:
    return kind.replace("-", " ").capitalize()


def override_reasons() -> list[dict[str, str]]:
    return [{"system": OVERRIDE_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS]


def md(text: object) -> str:
    """Text from outside (an error naming an input value) made inert in markdown and on a terminal."""
    return _MARKDOWN.sub(r"\\\1", clean_text(text))


def mlh(value: float) -> str:
    return format_number(value) if isinstance(value, (int, float)) and math.isfinite(value) else "?"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;:") + "…"


def _minutes(value: float) -> str:
    return format_minutes(value) if math.isfinite(value) else "?"


def schedule_table(report: Report) -> str:
    rows = ["| Step | Rate (pump) | mL/kg/min | mg/kg/min | Duration | Volume |", "|---:|---:|---:|---:|---:|---:|"]
    last = len(report.suggested_steps) - 1
    for n, step in enumerate(report.suggested_steps):
        duration = "until the dose is in" if n == last else _minutes(step.duration_min)
        rows.append(f"| {step.step} | {mlh(step.rate.ml_per_h)} mL/h | {format_number(step.rate.ml_per_kg_min)} | "
                    f"{format_number(step.rate.mg_per_kg_min)} | {duration} | {format_number(step.volume_ml)} mL |")
    return "\n".join(rows)


def _is_rate_card(findings: list[Finding]) -> bool:
    return any(f.step is not None or f.suggested_max_rate is not None for f in findings)


def _summary(kind: str, findings: list[Finding], cap_mlh: float) -> str:
    steps = sorted({f.step for f in findings if f.step is not None})
    tail = f"; at most {mlh(cap_mlh)} mL/h for this patient"
    if steps:
        head = f"{title(kind)}: step {', '.join(map(str, steps))} of the order is too fast"
    else:
        first = findings[0].message.split(". ")[0].rstrip(".")
        head = f"{title(kind)}: {first}"
    return clip(head, SUMMARY_MAX - len(tail)) + tail


def _detail(findings: list[Finding], report: Report, with_schedule: bool) -> str:
    parts = []
    for finding in findings:
        step = f" (step {finding.step})" if finding.step is not None else ""
        parts.append(f"**{finding.severity.capitalize()}{step}:** {md(finding.message)}\n\n"
                     f"*Source:* {md(finding.citation)}\n\n*Rules:* {', '.join(md(r) for r in finding.rules)}")
    cap = report.suggested_max_rate
    parts.append(f"**Suggested maximum rate for this patient:** {mlh(cap.ml_per_h)} mL/h "
                 f"({format_number(cap.ml_per_kg_min)} mL/kg/min, {format_number(cap.mg_per_kg_min)} mg/kg/min), "
                 f"at {format_number(report.plan.dosing_weight_kg)} kg dosing weight.")
    if with_schedule:
        parts.append("**Suggested schedule** (one infusion day, "
                     f"{_minutes(report.suggested_infusion_min)} in all):\n\n{schedule_table(report)}")
    parts.append(f"Rule set {md(report.ruleset.version)} sha256:{report.ruleset.sha256}; "
                 f"policy {md(report.policy.name)} sha256:{report.policy.sha256[:12]}.")
    return "\n\n".join(parts)


def report_cards(report: Report, *, version: str, service: str, hook: str,
                 updated_order: dict[str, Any] | None, order_label: str) -> Built:
    """The cards for one checked order. ``updated_order``: the draft MedicationRequest with the suggested schedule
    as its dosageInstruction (None: no suggestion is offered)."""
    groups: dict[str, list[Finding]] = {}
    for finding in report.findings:
        groups.setdefault(finding.kind, []).append(finding)
    cards, issued = [], []
    for kind, findings in groups.items():
        indicator = max((f.severity for f in findings), key=_RANK.__getitem__)
        rate_card = _is_rate_card(findings)
        cap = next((f.suggested_max_rate for f in findings if f.suggested_max_rate), report.suggested_max_rate)
        card: dict[str, Any] = {
            "uuid": str(uuidlib.uuid4()),
            "summary": _summary(kind, findings, cap.ml_per_h),
            "indicator": indicator,
            "detail": _detail(findings, report, with_schedule=rate_card or indicator != "info"),
            "source": source(version, report.ruleset.version, report.ruleset.sha256, kind),
        }
        if indicator != "info":
            if rate_card and updated_order is not None:
                card["suggestions"] = [suggestion(updated_order, report, order_label)]
                card["selectionBehavior"] = "at-most-one"
            card["overrideReasons"] = override_reasons()
        cards.append(card)
        rules = tuple(dict.fromkeys((rule, kind) for f in findings for rule in (f.rules or [f.rule])))
        issued.append(IssuedCard(card["uuid"], service, hook, indicator, report.ruleset.sha256, rules))
    return Built(cards, issued)


def suggestion(updated_order: dict[str, Any], report: Report, order_label: str) -> dict[str, Any]:
    steps = report.suggested_steps
    rates = " -> ".join(f"{mlh(s.rate.ml_per_h)}" for s in steps)
    return {
        "label": SUGGESTION_LABEL,
        "uuid": str(uuidlib.uuid4()),
        "isRecommended": True,
        "actions": [{
            "type": "update",
            "description": clip(f"Rewrite the dosage of {order_label} to the suggested schedule: {rates} mL/h", 300),
            "resource": updated_order,
        }],
    }


#: What each kind of missing input stops the check from judging, matched on the error's path and message.
_WHY = (
    (("weight",), "Without a current body weight the dose per kg and every rate in mL/kg/min cannot be checked "
                  "against the label: record a body weight (LOINC 29463-7 or 3141-9) in the chart."),
    (("medication", "product", "coding"), "Without a known IVIG product the label's maximum and initial rates "
                                          "are unknown: order the product by its NDC or RxNorm code."),
    (("rate", "unit"), "Without infusion rates in a rate unit (such as mL/h) the schedule cannot be compared with "
                       "the label's maximum rate: give each step's rate as a UCUM rate quantity."),
)
_DEFAULT_WHY = ("ivig-safety could not check this order against the package insert, so no rate or dose on it has "
                "been checked: review it by hand before signing.")


def not_checked_card(errors: Iterable[FieldError], *, version: str, ruleset_version: str, sha256: str,
                     service: str, hook: str, order_label: str) -> Built:
    """A warning for an order that cannot be checked: what is missing and why it matters."""
    errors = list(errors)[:20]
    text = " ".join(f"{e.loc} {e.msg}".lower() for e in errors)
    why = [reason for words, reason in _WHY if any(w in text for w in words)] or [_DEFAULT_WHY]
    first = errors[0].msg if errors else "the order could not be read"
    tail = " (rates not checked)"
    card = {
        "uuid": str(uuidlib.uuid4()),
        "summary": clip(f"IVIG order not checked: {clean_text(first)}", SUMMARY_MAX - len(tail)) + tail,
        "indicator": "warning",
        "detail": (f"ivig-safety could not check {md(order_label)}. Nothing on this order has been checked against "
                   "the package insert: this is not an \"ok\".\n\n**What is missing:**\n\n"
                   + "\n".join(f"- `{md(e.loc) or 'order'}`: {md(e.msg)}" for e in errors)
                   + "\n\n**Why it matters:** " + " ".join(why)),
        "source": source(version, ruleset_version, sha256, "not-checked"),
        "overrideReasons": override_reasons(),
    }
    return Built([card], [IssuedCard(card["uuid"], service, hook, "warning", sha256, ((NOT_CHECKED, "not-checked"),))])
