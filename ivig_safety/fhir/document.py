"""The resources of one FHIR document (a Bundle, or a resource with its contained resources), found by type and
by reference; FHIR dates and quantities read the one way the mapping needs. No clinical knowledge here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..model.errors import FieldError, InvalidPlanError
from .ucum import UCUM_SYSTEM, UcumError, ucum_to_unit


@dataclass
class Found:
    """A resource of the document: where it is (its FHIR path), its model and its raw JSON."""

    path: str
    model: Any
    raw: Mapping[str, Any]

    @property
    def ref(self) -> str:
        kind = self.model.get_resource_type()
        return f"{kind}/{self.model.id}" if self.model.id else self.path


@dataclass
class Document:
    resources: list[Found]
    by_reference: dict[str, Found] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[Found]:
        return [r for r in self.resources if r.model.get_resource_type() == kind]

    def resolve(self, reference: str | None, container: Found | None = None) -> Found | None:
        if not reference:
            return None
        if reference.startswith("#") and container is not None:
            for index, contained in enumerate(container.model.contained or []):
                if f"#{contained.id}" == reference:
                    return Found(f"{container.path}.contained[{index}]", contained,
                                  container.raw.get("contained", [])[index])
            return None
        return self.by_reference.get(reference) or self.by_reference.get(reference.split("/_history")[0])


def build_document(model: Any, raw: Mapping[str, Any]) -> Document:
    kind = model.get_resource_type()
    if kind == "Bundle":
        document = Document([])
        for index, entry in enumerate(model.entry or []):
            if entry.resource is None:
                continue
            item = Found(f"Bundle.entry[{index}].resource", entry.resource, raw["entry"][index]["resource"])
            document.resources.append(item)
            if entry.fullUrl:
                document.by_reference[entry.fullUrl] = item
            if item.model.id:
                document.by_reference[f"{item.model.get_resource_type()}/{item.model.id}"] = item
        return document
    item = Found(kind, model, raw)
    document = Document([item])
    if model.id:
        document.by_reference[f"{kind}/{model.id}"] = item
    # A resource sent alone may carry its chart as contained resources (a weight Observation, the Patient): read
    # them as if they were beside it; references to them ("#weight") resolve through the container.
    for index, contained in enumerate(getattr(model, "contained", None) or []):
        document.resources.append(Found(f"{kind}.contained[{index}]", contained, raw["contained"][index]))
    return document


def codings(concept: Any) -> list[Any]:
    return list(concept.coding or []) if concept is not None else []


def as_datetime(value: Any) -> dt.datetime | None:
    """A FHIR date or dateTime as an aware datetime (a date counts from its start, in UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    text = str(value)
    try:
        if len(text) == 4:
            return dt.datetime(int(text), 1, 1, tzinfo=dt.timezone.utc)
        if len(text) == 7:
            return dt.datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=dt.timezone.utc)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def has_an_order(data: Mapping[str, Any]) -> None:
    if data.get("resourceType") == "Bundle" and isinstance(data.get("entry"), list):
        if not any(isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
                   and e["resource"].get("resourceType") == "MedicationRequest" for e in data["entry"]):
            raise InvalidPlanError.single("Bundle.entry", "no MedicationRequest: send the IVIG order (a "
                                                          "MedicationRequest, or a Bundle holding one)")


def age_in_years(birth: dt.date, on: dt.date) -> float:
    """Completed years plus the fraction of the year since the last birthday (exactly N on the Nth birthday; a
    29 February birthday falls on 28 February in other years). A birth date after ``on`` is age 0."""
    if birth >= on:
        return 0.0

    def birthday(year: int) -> dt.date:
        try:
            return birth.replace(year=year)
        except ValueError:  # 29 February
            return dt.date(year, 2, 28)

    years = on.year - birth.year - (birthday(on.year) > on)
    last, following = birthday(birth.year + years), birthday(birth.year + years + 1)
    return round(years + (on - last).days / (following - last).days, 4)


@dataclass(frozen=True)
class Reading:
    """One measured value: the Observation, the Quantity, its FHIR path and when it was taken."""

    found: Found
    quantity: Any
    path: str
    taken: dt.datetime | None

    @property
    def shown(self) -> str:
        """The value as the chart shows it ("176 [lb_av]")."""
        return f"{self.quantity.value} {self.quantity.code or self.quantity.unit or ''}".strip()


def date_of(when: dt.datetime | None) -> str:
    return when.date().isoformat() if when else "undated"


def read_quantity(quantity: Any, path: str, errors: list[FieldError]) -> Any:
    """A FHIR Quantity as a plan quantity: UCUM code read as UCUM; plain unit text only without system/code."""
    if quantity.value is None:
        errors.append(FieldError(f"{path}.value", "missing"))
        return None
    value = float(quantity.value) if isinstance(quantity.value, Decimal) else quantity.value
    if quantity.comparator is not None:
        errors.append(FieldError(f"{path}.comparator", f"{quantity.comparator!r}: a bound is not a value"))
        return None
    if quantity.system is not None and quantity.system != UCUM_SYSTEM:
        errors.append(FieldError(f"{path}.system", f"{quantity.system!r} is not UCUM ({UCUM_SYSTEM})"))
        return None
    if quantity.system is not None or quantity.code is not None:
        if not quantity.code:
            errors.append(FieldError(f"{path}.code", "a UCUM quantity needs its code"))
            return None
        try:
            return {"value": value, "unit": ucum_to_unit(quantity.code)}
        except UcumError as exc:
            errors.append(FieldError(f"{path}.code", str(exc)))
            return None
    if not quantity.unit:
        errors.append(FieldError(f"{path}", "no unit: give system http://unitsofmeasure.org and a UCUM code"))
        return None
    return {"value": value, "unit": quantity.unit}


def collect(*documents: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One collection Bundle of resources given as resources, Bundles or lists of either (e.g. a CDS Hooks
    draft order and its prefetch results)."""
    entries: list[dict[str, Any]] = []

    def add(item: Any) -> None:
        if isinstance(item, Mapping) and item.get("resourceType") == "Bundle":
            for entry in item.get("entry") or []:
                if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                    added = {"resource": entry["resource"]}
                    if isinstance(entry.get("fullUrl"), str):
                        added["fullUrl"] = entry["fullUrl"]
                    entries.append(added)
        elif isinstance(item, Mapping):
            entries.append({"resource": item})
        elif isinstance(item, (list, tuple)):
            for each in item:
                add(each)

    for document in documents:
        add(document)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}

