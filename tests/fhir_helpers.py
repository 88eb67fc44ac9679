"""Test helper: write a plan (the YAML/dict form) as the FHIR R4 Bundle an EHR would send, using only the codes the
loaded rule set maps (so a plan and its Bundle must get the same report). Independent of the package's mapping
code: it writes FHIR JSON by hand from the plan's fields.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ivig_safety.check import Checker

UCUM = "http://unitsofmeasure.org"
URIS = {"ndc": "http://hl7.org/fhir/sid/ndc", "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "icd-10-cm": "http://hl7.org/fhir/sid/icd-10-cm", "snomed-ct": "http://snomed.info/sct",
        "loinc": "http://loinc.org"}
AUTHORED = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.timezone.utc)
#: The plan's unit spellings as UCUM codes.
UCUM_CODES = {"mg/kg/min": "mg/(kg.min)", "mL/kg/min": "mL/(kg.min)", "mL/kg/h": "mL/(kg.h)", "mL/h": "mL/h",
              "mg/min": "mg/min", "g/kg": "g/kg", "g": "g", "kg": "kg", "cm": "cm", "min": "min", "h": "h",
              "lb": "[lb_av]"}


def _code(system: str, key: str) -> str:
    if system == "icd-10-cm" and len(key) > 3:
        return f"{key[:3]}.{key[3:]}"  # the index keeps ICD-10-CM codes without the dot
    if system == "ndc" and len(key) == 11:
        return f"{key[:5]}-{key[5:9]}-{key[9:]}"
    if system == "ndc" and len(key) == 9:
        return f"{key[:5]}-{key[5:]}-01"
    return key


def codes_for(table: dict[tuple[str, str], tuple[str, ...]], name: str) -> list[dict[str, str]]:
    """Every coding (system URI, code) that the index maps to ``name`` alone (a code meaning several names would
    bring the others too)."""
    return [{"system": URIS.get(system, system), "code": _code(system, key)}
            for (system, key), mapped in sorted(table.items()) if mapped == (name,) and system in URIS]


def codable_risk_factors(checker: Checker) -> list[str]:
    return sorted({name for names in checker.codes.risk_factors.values() for name in names
                   if codes_for(checker.codes.risk_factors, name)})


def codable_indications(checker: Checker) -> list[str]:
    return sorted({name for names in checker.codes.indications.values() for name in names
                   if codes_for(checker.codes.indications, name)})


def quantity(text: str) -> dict[str, Any]:
    match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*(.+?)\s*", text)
    assert match, text
    value, unit = float(match.group(1)), match.group(2)
    return {"value": value, "unit": unit, "system": UCUM, "code": UCUM_CODES[unit]}


def birth_date(age_years: int) -> str:
    """The birth date that makes the patient exactly ``age_years`` old on AUTHORED."""
    day = AUTHORED.date()
    try:
        return day.replace(year=day.year - age_years).isoformat()
    except ValueError:
        return dt.date(day.year - age_years, 2, 28).isoformat()


def observation(oid: str, codes: list[dict[str, str]], value: dict[str, Any], when: dt.datetime = AUTHORED,
                status: str = "final", subject: str = "Patient/p") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": status, "code": {"coding": codes[:1]},
            "subject": {"reference": subject}, "effectiveDateTime": when.isoformat(), "valueQuantity": value}


def condition(cid: str, coding: dict[str, str], status: str = "active", subject: str = "Patient/p") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": subject}, "code": {"coding": [coding]},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": status}]}}


def medication_request(plan: dict[str, Any], checker: Checker) -> dict[str, Any]:
    product = checker.catalogue.resolve(plan["product"])
    assert product is not None
    codings = codes_for(checker.codes.products, product.id)
    medication = {"coding": codings[:1]} if codings else {"text": product.name}
    dose = plan["dose"]
    written = dose.get("per_day") or dose.get("per_course")
    per_day = quantity(written)
    if "per_course" in dose:  # the FHIR shape carries the day's dose: divide the course by its days
        per_day["value"] = per_day["value"] / dose["days"]
    instructions = []
    for index, step in enumerate(plan["steps"]):
        instruction: dict[str, Any] = {"sequence": index + 1, "doseAndRate": [{"rateQuantity": quantity(step["rate"])}]}
        repeat: dict[str, Any] = {}
        if "duration" in step:
            duration = quantity(step["duration"])
            repeat.update({"duration": duration["value"], "durationUnit": duration["code"]})
        if index == 0:
            repeat.update({"boundsDuration": {"value": dose["days"], "unit": "d", "system": UCUM, "code": "d"},
                           "frequency": 1, "period": 1, "periodUnit": "d"})
            instruction["doseAndRate"][0]["doseQuantity"] = per_day
        if repeat:
            instruction["timing"] = {"repeat": repeat}
        instructions.append(instruction)
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": str(plan.get("id", "order-1")), "status": "draft",
        "intent": "order", "subject": {"reference": "Patient/p"}, "authoredOn": AUTHORED.isoformat(),
        "medicationCodeableConcept": medication, "dosageInstruction": instructions,
    }
    reasons = codes_for(checker.codes.indications, plan["indication"])
    if reasons:
        request["reasonCode"] = [{"coding": reasons[:1]}]
    return request


def bundle(plan: dict[str, Any], checker: Checker) -> dict[str, Any]:
    """The Bundle for a plan: its order, the patient, weight and height Observations, one Condition per risk."""
    patient_data = plan["patient"]
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
    if "age" in patient_data:
        patient["birthDate"] = birth_date(int(patient_data["age"]))
    if "sex" in patient_data:
        patient["gender"] = patient_data["sex"]
    resources = [patient, medication_request(plan, checker),
                 observation("w", codes_for(checker.codes.observations, "body-weight"),
                             quantity(patient_data["weight"]))]
    if "height" in patient_data:
        resources.append(observation("h", codes_for(checker.codes.observations, "body-height"),
                                     quantity(patient_data["height"])))
    for index, risk in enumerate(patient_data.get("risk_factors", [])):
        resources.append(condition(f"c{index}", codes_for(checker.codes.risk_factors, risk)[0]))
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
