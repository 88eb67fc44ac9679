"""The discovery document (https://cds-hooks.hl7.org/2.0/#discovery): one service on order-select, one on order-sign,
with the same prefetch templates: what the FHIR mapping reads to build a plan."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
#: Prefetch key -> FHIR query template. Weight (29463-7 body weight, 3141-9 measured) and height (8302-2) newest
#: first; eGFR (CKD-EPI 2021 62238-1 and 98979-8, MDRD 33914-3, 48642-3, 48643-1) for renal insufficiency.
PREFETCH: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "weight": f"Observation?patient={{{{context.patientId}}}}&code={LOINC}|29463-7,{LOINC}|3141-9"
              "&_sort=-date&_count=1",
    "height": f"Observation?patient={{{{context.patientId}}}}&code={LOINC}|8302-2&_sort=-date&_count=1",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "renal": f"Observation?patient={{{{context.patientId}}}}&code={LOINC}|62238-1,{LOINC}|98979-8,"
             f"{LOINC}|33914-3,{LOINC}|48642-3,{LOINC}|48643-1&_sort=-date&_count=1",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}&status=active",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}&status=active",
}

SERVICES: dict[str, dict[str, Any]] = {
    "ivig-order-select": {
        "hook": "order-select",
        "title": "IVIG infusion check (order entry)",
        "description": "Checks the dose and infusion rates of an IVIG order against the package insert as it is "
                       "selected, and offers a safer titration schedule.",
    },
    "ivig-order-sign": {
        "hook": "order-sign",
        "title": "IVIG infusion check (signing)",
        "description": "Checks the dose and infusion rates of an IVIG order against the package insert before it "
                       "is signed, and offers a safer titration schedule. The last word on the order.",
    },
}

USAGE = ("Needs a current body weight Observation; without fhirServer and fhirAuthorization, the prefetch keys "
         "must be sent. An order that cannot be checked gets a warning card, never silence.")


def discovery() -> dict[str, Any]:
    return {"services": [{"id": service_id, **service, "prefetch": dict(PREFETCH), "usageRequirements": USAGE}
                         for service_id, service in SERVICES.items()]}
