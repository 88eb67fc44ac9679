"""FHIR R4 resources validated by fhir.resources (its R4B models read R4 MedicationRequests, Observations and
Bundles), after a cheap screen of the document's size and shape.

Why a screen first: a hostile document (10,000 entries, nesting 10,000 deep, a million nodes) must be refused in
milliseconds with a clear error, before a validator walks it. Why fhir.resources: FHIR's datatypes (decimal,
dateTime with partial dates, references, choice types such as ``medication[x]``) are subtle, and a maintained model
of the specification gets them right; nothing here parses FHIR by hand.
"""

from __future__ import annotations

from functools import lru_cache
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..model.bounds import MAX_BUNDLE_ENTRIES, MAX_FHIR_DEPTH, MAX_FHIR_NODES
from ..model.errors import FieldError, InvalidPlanError

#: Resource types the mapping reads; any other type in a Bundle is validated as FHIR but otherwise ignored.
READ_TYPES = ("Bundle", "MedicationRequest", "Medication", "Patient", "Observation", "Condition",
              "MedicationStatement")
#: Fields that exist in FHIR R5 but not R4: a resource using them is from another FHIR version.
_R5_FIELDS = {"MedicationRequest": {"medication", "reason"}, "MedicationStatement": {"medication", "reason"},
              "Observation": {"instantiatesCanonical", "triggeredBy"}}


def is_fhir(data: Any) -> bool:
    """A mapping that names a FHIR resource type (a plan never has ``resourceType``)."""
    if type(data) is dict:  # every plan read from JSON or YAML: the Mapping ABC's isinstance costs ~0.5 us a plan
        return "resourceType" in data
    return isinstance(data, Mapping) and "resourceType" in data


def screen(data: Any) -> None:
    """Refuse a document too big or too deep to be one order and its chart, before any validation."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_FHIR_NODES:
            raise InvalidPlanError.single("", f"the FHIR document has more than {MAX_FHIR_NODES:,} elements; send "
                                              "the order and the resources it needs")
        if depth > MAX_FHIR_DEPTH:
            raise InvalidPlanError.single("", f"the FHIR document is nested more than {MAX_FHIR_DEPTH} levels "
                                              "deep; no FHIR resource is")
        if isinstance(node, Mapping):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
        entries = data.get("entry")
        if isinstance(entries, list) and len(entries) > MAX_BUNDLE_ENTRIES:
            raise InvalidPlanError.single("Bundle.entry", f"{len(entries):,} entries; at most "
                                                          f"{MAX_BUNDLE_ENTRIES:,} (the order and the resources it "
                                                          "needs)")


@lru_cache(maxsize=32)
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class  # imported on first FHIR input only

    return get_fhir_model_class(resource_type)


def validate(data: Mapping[str, Any]) -> Any:
    """The fhir.resources model of a resource (a Bundle with its entries), or InvalidPlanError naming every element
    at fault by its FHIR path (``Bundle.entry[2].resource.valueQuantity.value``)."""
    screen(data)
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type.isalpha():
        raise InvalidPlanError.single("resourceType", "must name a FHIR R4 resource type")
    _refuse_other_versions(data)
    try:
        model = _model(resource_type)
    except (KeyError, AttributeError, ImportError, ValueError):
        raise InvalidPlanError.single("resourceType", f"{resource_type[:40]!r} is not a FHIR R4 resource "
                                                      "type") from None
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidPlanError(_errors(resource_type, exc)) from None
    except (KeyError, ValueError, TypeError) as exc:  # fhir.resources: an entry whose resourceType is unknown
        raise InvalidPlanError.single(resource_type, f"not valid FHIR R4 ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = str(exc).replace("R4.", "").replace("Type'", "'")
    return text[:120]


def _refuse_other_versions(data: Mapping[str, Any]) -> None:
    resources: list[tuple[str, Any]] = [(str(data.get("resourceType")), data)]
    if data.get("resourceType") == "Bundle" and isinstance(data.get("entry"), list):
        resources += [(f"Bundle.entry[{i}].resource", e.get("resource")) for i, e in enumerate(data["entry"])
                      if isinstance(e, Mapping)]
    for path, resource in resources:
        if not isinstance(resource, Mapping):
            continue
        kind = resource.get("resourceType")
        r5 = _R5_FIELDS.get(kind, set()) & set(resource) if isinstance(kind, str) else set()
        if r5:
            raise InvalidPlanError.single(f"{path}.{sorted(r5)[0]}",
                                          "is FHIR R5 (R4 writes medicationCodeableConcept/medicationReference "
                                          "and reasonCode/reasonReference); ivig-safety reads FHIR R4")


def _errors(resource_type: str, exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors()[:20]:
        path = resource_type
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "not an element of this FHIR R4 resource"
        elif error["type"] == "missing":
            message = "required by FHIR R4 and missing"
        errors.append(FieldError(path, message[:300]))
    return errors
