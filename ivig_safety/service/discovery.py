"""The discovery document (https://cds-hooks.hl7.org/2.0/#discovery): one service on order-select, one on order-sign,
with the same prefetch templates: what the FHIR mapping reads to build a plan.

The observation templates ask for exactly the codes the mapping reads (rules/vocabulary.yaml, ``codes.observations``,
plus a site's codes file): the newest body weight, the newest height, and the newest eGFR (``combo-code``, so an eGFR
carried as a component of a renal panel is found too).
"""

from __future__ import annotations

from typing import Any

from ..knowledge.codes import SYSTEM_URIS, VocabularyCodes

PATIENT = "{{context.patientId}}"

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


def _newest(sources: list[VocabularyCodes], kind: str, parameter: str = "code") -> str:
    tokens = dict.fromkeys(f"{SYSTEM_URIS.get(lst.system, lst.system)}|{value}"
                           for codes in sources for lst in codes.observations.get(kind, []) for value in lst.values)
    return f"Observation?patient={PATIENT}&{parameter}={','.join(tokens)}&_sort=-date&_count=1"


def prefetch_templates(*sources: VocabularyCodes) -> dict[str, str]:
    """Prefetch key -> FHIR query template, for the code lists of ``sources`` (the vocabulary's, a site's)."""
    given = list(sources)
    return {
        "patient": f"Patient/{PATIENT}",
        "weight": _newest(given, "body-weight"),
        "height": _newest(given, "body-height"),
        "conditions": f"Condition?patient={PATIENT}&clinical-status=active",
        "renal": _newest(given, "egfr", "combo-code"),
        "medicationRequests": f"MedicationRequest?patient={PATIENT}&status=active",
        "medicationStatements": f"MedicationStatement?patient={PATIENT}&status=active",
    }


def discovery(templates: dict[str, str]) -> dict[str, Any]:
    return {"services": [{"id": service_id, **service, "prefetch": dict(templates), "usageRequirements": USAGE}
                         for service_id, service in SERVICES.items()]}
