"""The suggested schedule written back as FHIR R4 ``dosageInstruction``: what a CDS Hooks card's "use the suggested
schedule" action puts into the draft order, in the shape the mapping reads (one instruction per step, in sequence
order, rates in UCUM mL/h as a pump is programmed, durations in minutes; the first step keeps the order's dose and
course timing).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from ..model.report import Report
from ..model.units import format_number
from .ucum import UCUM_SYSTEM

#: Elements of the order's first instruction that every suggested step keeps (how it is given, not how fast).
_KEPT = ("route", "method", "site", "asNeededBoolean", "patientInstruction")


def _first_instruction(order: Mapping[str, Any]) -> dict[str, Any]:
    instructions = [d for d in order.get("dosageInstruction") or [] if isinstance(d, Mapping)]
    if not instructions:
        return {}
    ordered = sorted(enumerate(instructions), key=lambda item: (item[1].get("sequence", 10**9), item[0]))
    return copy.deepcopy(dict(ordered[0][1]))


def suggested_dosage(order: Mapping[str, Any], report: Report) -> list[dict[str, Any]]:
    """The order's dosageInstruction rewritten to the report's suggested steps (the dose and course kept)."""
    first = _first_instruction(order)
    kept = {key: first[key] for key in _KEPT if key in first}
    first_dose = [{k: v for k, v in (first.get("doseAndRate") or [{}])[0].items() if k.startswith("dose")}]
    first_repeat = {k: v for k, v in ((first.get("timing") or {}).get("repeat") or {}).items()
                    if k not in ("duration", "durationUnit", "durationMax")}
    steps = report.suggested_steps
    instructions = []
    for position, step in enumerate(steps):
        last = position == len(steps) - 1
        rate = step.rate.ml_per_h
        instruction: dict[str, Any] = {"sequence": position + 1, **copy.deepcopy(kept)}
        minutes = "until the dose is in" if last else f"for {format_number(step.duration_min)} min"
        instruction["text"] = f"Step {step.step}: {format_number(rate)} mL/h {minutes}"
        repeat: dict[str, Any] = dict(first_repeat) if position == 0 else {}
        if not last:
            repeat.update({"duration": round(step.duration_min, 3), "durationUnit": "min"})
        if repeat:
            instruction["timing"] = {"repeat": repeat}
        dose_and_rate = dict(first_dose[0]) if position == 0 else {}
        dose_and_rate["rateQuantity"] = {"value": round(rate, 3), "unit": "mL/h", "system": UCUM_SYSTEM,
                                         "code": "mL/h"}
        instruction["doseAndRate"] = [dose_and_rate]
        instructions.append(instruction)
    return instructions
