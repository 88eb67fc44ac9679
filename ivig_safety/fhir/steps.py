"""The dose and the titration steps of a FHIR MedicationRequest: ``dosageInstruction`` entries in ``sequence``
order, one per step (the shape the README documents); anything else is refused naming the element.
"""

from __future__ import annotations

from typing import Any

from ..model.errors import FieldError
from .document import Found, read_quantity
from .ucum import UNITS_OF_TIME


def read_dosage(order: Found, sources: dict[str, str],
                errors: list[FieldError]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    instructions = list(enumerate(order.model.dosageInstruction or []))
    if not instructions:
        errors.append(FieldError("MedicationRequest.dosageInstruction", "missing: one dosageInstruction per "
                                                                         "titration step, in sequence order"))
        return None, []
    sequences = [d.sequence for _, d in instructions if d.sequence is not None]
    if len(sequences) != len(set(sequences)):
        errors.append(FieldError("MedicationRequest.dosageInstruction", "two instructions share a sequence "
                                                                         "number: concurrent instructions are "
                                                                         "not a titration"))
    instructions.sort(key=lambda item: (item[1].sequence if item[1].sequence is not None else 10**9, item[0]))
    steps: list[dict[str, Any]] = []
    for position, (index, dosage) in enumerate(instructions):
        path = f"MedicationRequest.dosageInstruction[{index}]"
        step: dict[str, Any] = {}
        rate = _rate(dosage, path, errors)
        if rate is not None:
            step["rate"] = rate
        repeat = dosage.timing.repeat if dosage.timing is not None else None
        if repeat is not None and repeat.duration is not None:
            unit = UNITS_OF_TIME.get(repeat.durationUnit or "")
            if unit is None:
                errors.append(FieldError(f"{path}.timing.repeat.durationUnit",
                                         f"{repeat.durationUnit!r}: give s, min, h, d or wk"))
            else:
                step["duration"] = {"value": float(repeat.duration), "unit": unit}
        elif position < len(instructions) - 1:
            errors.append(FieldError(f"{path}.timing.repeat.duration",
                                     "missing: only the last step may run until the dose is in"))
        steps.append(step)
        sources[f"steps[{position}]"] = path
    sources["steps"] = (", ".join(f"dosageInstruction[{i}]" for i, _ in instructions)
                        + " in sequence order (doseAndRate[0].rateQuantity, timing.repeat.duration)")
    first_index, first = instructions[0]
    dose = _dose(order, first_index, first, errors, sources)
    for index, dosage in instructions[1:]:
        if dosage.doseAndRate and dosage.doseAndRate[0].doseQuantity is not None:
            errors.append(FieldError(f"MedicationRequest.dosageInstruction[{index}].doseAndRate[0].doseQuantity",
                                     "only the first step carries the day's dose"))
    return dose, steps

def _rate(dosage: Any, path: str, errors: list[FieldError]) -> Any:
    if not dosage.doseAndRate:
        reason = (f"the rate is only in text ({dosage.text[:60]!r}); write it as doseAndRate[0].rateQuantity"
                  if dosage.text else "missing doseAndRate[0].rateQuantity")
        errors.append(FieldError(f"{path}.doseAndRate", reason))
        return None
    entry = dosage.doseAndRate[0]
    where = f"{path}.doseAndRate[0]"
    if entry.rateRange is not None:
        errors.append(FieldError(f"{where}.rateRange", "a rate range is not a rate a pump runs: write one "
                                                       "dosageInstruction per step, each with rateQuantity"))
        return None
    if entry.rateRatio is not None:
        numerator = read_quantity(entry.rateRatio.numerator, f"{where}.rateRatio.numerator", errors) \
            if entry.rateRatio.numerator else None
        denominator = read_quantity(entry.rateRatio.denominator, f"{where}.rateRatio.denominator", errors) \
            if entry.rateRatio.denominator else None
        if numerator is None or denominator is None or not denominator["value"]:
            if not errors:
                errors.append(FieldError(f"{where}.rateRatio", "needs a numerator and a non-zero denominator"))
            return None
        return {"value": numerator["value"] / denominator["value"],
                "unit": f"{numerator['unit']}/({denominator['unit']})"}
    if entry.rateQuantity is None:
        errors.append(FieldError(f"{where}.rateQuantity", "missing: each step needs its rate"))
        return None
    return read_quantity(entry.rateQuantity, f"{where}.rateQuantity", errors)

def _dose(order: Found, index: int, first: Any, errors: list[FieldError],
          sources: dict[str, str]) -> dict[str, Any] | None:
    path = f"MedicationRequest.dosageInstruction[{index}]"
    dose: dict[str, Any] = {}
    quantity = first.doseAndRate[0].doseQuantity if first.doseAndRate else None
    if quantity is not None:
        dose["per_day"] = read_quantity(quantity, f"{path}.doseAndRate[0].doseQuantity", errors)
        where = f"{path}.doseAndRate[0].doseQuantity"
    elif order.model.dispenseRequest is not None and order.model.dispenseRequest.quantity is not None:
        dose["per_course"] = read_quantity(order.model.dispenseRequest.quantity,
                                            "MedicationRequest.dispenseRequest.quantity", errors)
        where = "MedicationRequest.dispenseRequest.quantity (the course's dose)"
    else:
        errors.append(FieldError(f"{path}.doseAndRate[0].doseQuantity",
                                 "missing: the day's dose (g or g/kg) on the first step, or "
                                 "dispenseRequest.quantity"))
        return None
    repeat = first.timing.repeat if first.timing is not None else None
    days, basis = _days(repeat, f"{path}.timing.repeat", errors)
    dose["days"] = days
    sources["dose"] = f"{where}; {basis}"
    return dose

def _days(repeat: Any, path: str, errors: list[FieldError]) -> tuple[int, str]:
    if repeat is None or (repeat.boundsDuration is None and repeat.count is None):
        return 1, "no course length in timing.repeat: one infusion day"
    if (repeat.frequency not in (None, 1) or (repeat.period is not None and float(repeat.period) != 1)
            or repeat.periodUnit not in (None, "d")):
        errors.append(FieldError(path, "a course is read as daily infusions: frequency 1 per period 1 d"))
        return 1, ""
    days_from_bounds = None
    if repeat.boundsDuration is not None:
        bounds = repeat.boundsDuration
        unit = bounds.code or bounds.unit
        factor = {"d": 1.0, "wk": 7.0}.get(unit or "")
        value = float(bounds.value) * factor if factor and bounds.value is not None else None
        if value is None or not value.is_integer():
            errors.append(FieldError(f"{path}.boundsDuration", "must be a whole number of days (code d)"))
            return 1, ""
        days_from_bounds = int(value)
    if repeat.count is not None and days_from_bounds is not None and repeat.count != days_from_bounds:
        errors.append(FieldError(f"{path}.count", f"{repeat.count} infusions disagree with boundsDuration "
                                                  f"{days_from_bounds} d"))
    if days_from_bounds is not None:
        return days_from_bounds, f"{path}.boundsDuration {days_from_bounds} d"
    return int(repeat.count), f"{path}.count {repeat.count} daily infusions"
