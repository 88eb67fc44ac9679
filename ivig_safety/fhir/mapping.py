"""A FHIR R4 IVIG order and its chart, mapped onto a plan, with where each value came from.

The mapping reads only what issue-tracked clinical knowledge says it may (code lists in rules/, policy thresholds)
and refuses what it cannot read exactly, naming the FHIR element: a rate range, a rate only in text, a unit that is
not UCUM, a coding that names no product. Nothing is guessed toward "ok": an order whose reason does not map to an
indication is checked as ``undetermined`` (the product's most conservative labelled rates, with a warning), and a
chart with no body weight is invalid input.

The order shape read (documented with a worked example in the README):
- titration steps are the ``dosageInstruction`` entries in ``sequence`` order, one per step, each with
  ``doseAndRate[0].rateQuantity`` (or ``rateRatio``) and ``timing.repeat.duration``/``durationUnit``; only the last
  may omit its duration;
- the day's dose is ``doseAndRate[0].doseQuantity`` on the first step (g, or g/kg); else ``dispenseRequest.quantity``
  (g) is the course's dose;
- the course is the first step's ``timing.repeat.boundsDuration`` in days, or ``count`` daily infusions (frequency 1
  per period 1 d); with neither, one infusion day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping

from ..knowledge.catalogue import Catalogue, Vocabulary
from ..knowledge.codes import CodeIndex, system_name
from ..knowledge.policy import Policy
from ..model.errors import FieldError, InvalidPlanError
from ..model.units import Shape, UnitError, expect
from .resources import validate
from .ucum import UCUM_SYSTEM, UNITS_OF_TIME, UcumError, ucum_to_unit

#: Words that make a medication an immune globulin when no product code is known: the order is then treated as an
#: IVIG order, and an unknown coding is an error rather than a silently ignored order.
_CLASS_WORDS = ("immune globulin", "immunoglobulin", "ivig", "igiv", "immune serum globulin")
_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
_REFUTED = {"refuted", "entered-in-error"}
_USABLE_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
_ACTIVE_MEDICATION = {"active", "intended", "on-hold"}


@dataclass(frozen=True)
class FhirPlan:
    """The plan read from a FHIR order, and for each plan field where it came from (for the report)."""

    plan: dict[str, Any]
    sources: dict[str, str]
    order: dict[str, Any]  # the IVIG MedicationRequest as given


@dataclass
class _Found:
    """A resource of the document: where it is (its FHIR path), its model and its raw JSON."""

    path: str
    model: Any
    raw: Mapping[str, Any]

    @property
    def ref(self) -> str:
        kind = self.model.get_resource_type()
        return f"{kind}/{self.model.id}" if self.model.id else self.path


@dataclass
class _Document:
    resources: list[_Found]
    by_reference: dict[str, _Found] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[_Found]:
        return [r for r in self.resources if r.model.get_resource_type() == kind]

    def resolve(self, reference: str | None, container: _Found | None = None) -> _Found | None:
        if not reference:
            return None
        if reference.startswith("#") and container is not None:
            for index, contained in enumerate(container.model.contained or []):
                if f"#{contained.id}" == reference:
                    return _Found(f"{container.path}.contained[{index}]", contained,
                                  container.raw.get("contained", [])[index])
            return None
        return self.by_reference.get(reference) or self.by_reference.get(reference.split("/_history")[0])


def _document(model: Any, raw: Mapping[str, Any]) -> _Document:
    kind = model.get_resource_type()
    if kind == "Bundle":
        document = _Document([])
        for index, entry in enumerate(model.entry or []):
            if entry.resource is None:
                continue
            item = _Found(f"Bundle.entry[{index}].resource", entry.resource, raw["entry"][index]["resource"])
            document.resources.append(item)
            if entry.fullUrl:
                document.by_reference[entry.fullUrl] = item
            if item.model.id:
                document.by_reference[f"{item.model.get_resource_type()}/{item.model.id}"] = item
                if entry.fullUrl and "/" in entry.fullUrl and not entry.fullUrl.startswith("urn:"):
                    document.by_reference[entry.fullUrl.rstrip("/")] = item
        return document
    item = _Found(kind, model, raw)
    document = _Document([item])
    if model.id:
        document.by_reference[f"{kind}/{model.id}"] = item
    # A resource sent alone may carry its chart as contained resources (a weight Observation, the Patient): read
    # them as if they were beside it; references to them ("#weight") resolve through the container.
    for index, contained in enumerate(getattr(model, "contained", None) or []):
        document.resources.append(_Found(f"{kind}.contained[{index}]", contained, raw["contained"][index]))
    return document


def _codings(concept: Any) -> list[Any]:
    return list(concept.coding or []) if concept is not None else []


def _when(value: Any) -> dt.datetime | None:
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


def _has_an_order(data: Mapping[str, Any]) -> None:
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
class _Reading:
    """One measured value: the Observation, the Quantity, its FHIR path and when it was taken."""

    found: _Found
    quantity: Any
    path: str
    taken: dt.datetime | None

    @property
    def shown(self) -> str:
        """The value as the chart shows it ("176 [lb_av]")."""
        return f"{self.quantity.value} {self.quantity.code or self.quantity.unit or ''}".strip()


def _day(when: dt.datetime | None) -> str:
    return when.date().isoformat() if when else "undated"


class FhirMapper:
    """Maps FHIR documents onto plans with one rule set's code lists and policy. Built once per Checker."""

    def __init__(self, catalogue: Catalogue, vocabulary: Vocabulary, policy: Policy, index: CodeIndex):
        self.catalogue, self.vocabulary, self.policy, self.index = catalogue, vocabulary, policy, index

    # -- the order --------------------------------------------------------------------------------------------

    def map(self, data: Mapping[str, Any]) -> FhirPlan:
        _has_an_order(data)  # before validation: a large Bundle without an order is refused in microseconds
        model = validate(data)
        document = _document(model, data)
        order = self._order(document)
        errors: list[FieldError] = []
        sources: dict[str, str] = {"order": f"{order.ref}" + (f" ({order.path})" if order.path != "MedicationRequest"
                                                               else "")}
        plan: dict[str, Any] = {}
        if order.model.id:
            plan["id"] = order.model.id
        authored = _when(order.model.authoredOn)
        reference_time = authored or dt.datetime.now(dt.timezone.utc)
        if authored is None:
            sources["time"] = "MedicationRequest.authoredOn absent: ages and the weight's age are taken at today"

        product = self._product(document, order, errors)
        if product is not None:
            plan["product"], sources["product"] = product
        patient = self._patient(document, order)
        plan["patient"] = self._patient_data(document, patient, order, reference_time, sources, errors)
        plan["indication"] = self._indication(document, order, sources)
        dose, steps = self._dosage(order, sources, errors)
        if dose is not None:
            plan["dose"] = dose
        plan["steps"] = steps
        if errors:
            raise InvalidPlanError(errors)
        return FhirPlan(plan, sources, dict(order.raw))

    def ivig_orders(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The IVIG MedicationRequests of a document (by product code, site code, product name or class words);
        other orders are left out. The CDS Hooks service uses this to pick its orders from ``draftOrders``."""
        model = validate(data)
        document = _document(model, data)
        return [dict(found.raw) for found in document.of_type("MedicationRequest") if self._is_ivig(document, found)]

    def _order(self, document: _Document) -> _Found:
        requests = document.of_type("MedicationRequest")
        if not requests:
            raise InvalidPlanError.single("", "no MedicationRequest: send the IVIG order (a MedicationRequest, or a "
                                              "Bundle holding one)")
        orders = [r for r in requests if self._is_ivig(document, r)]
        if not orders and len(requests) == 1:
            orders = requests  # the one order: an unknown coding is reported as such below, not as "no order"
        if not orders:
            raise InvalidPlanError.single("Bundle", f"none of its {len(requests)} MedicationRequests is an IVIG order "
                                                    "(no product code, site code or immune globulin name matched)")
        if len(orders) > 1:
            raise InvalidPlanError.single("Bundle", "holds " + ", ".join(o.ref for o in orders) + ": two or more "
                                                    "IVIG orders where one is expected; check them one at a time")
        return orders[0]

    def _medication_concept(self, document: _Document, request: _Found) -> tuple[Any, str] | None:
        model = request.model
        if model.medicationCodeableConcept is not None:
            return model.medicationCodeableConcept, f"{request.path}.medicationCodeableConcept"
        reference = model.medicationReference.reference if model.medicationReference is not None else None
        medication = document.resolve(reference, request)
        if medication is None or medication.model.get_resource_type() != "Medication":
            return None
        return medication.model.code, f"{medication.path}.code"

    def _is_ivig(self, document: _Document, request: _Found) -> bool:
        found = self._medication_concept(document, request)
        if found is None:
            return False
        concept, _ = found
        if any(self._coding_products(c) for c in _codings(concept)):
            return True
        words = " ".join([concept.text or "", *(c.display or "" for c in _codings(concept))]).lower()
        return any(word in words for word in _CLASS_WORDS) or (
            bool(concept.text) and self.catalogue.resolve(concept.text) is not None)

    def _coding_products(self, coding: Any) -> set[str]:
        system = system_name(coding.system)
        if system is None or not coding.code:
            return set()
        return self.index.product(system, coding.code)

    def _product(self, document: _Document, order: _Found, errors: list[FieldError]) -> tuple[str, str] | None:
        found = self._medication_concept(document, order)
        if found is None:
            reference = order.model.medicationReference.reference if order.model.medicationReference else None
            errors.append(FieldError("MedicationRequest.medicationReference",
                                     f"{reference!r} names no Medication in the document"))
            return None
        concept, path = found
        matches: dict[str, str] = {}
        for index, coding in enumerate(_codings(concept)):
            for product_id in self._coding_products(coding):
                matches.setdefault(product_id, f"{path}.coding[{index}] {coding.system}|{coding.code}")
        if len(matches) > 1:
            errors.append(FieldError(f"{path}.coding", "codes name different products: " + "; ".join(
                f"{p} ({where})" for p, where in matches.items())))
            return None
        if matches:
            product_id, where = next(iter(matches.items()))
            suffix = f" (site codes: {self.index.site})" if self.index.site else ""
            return product_id, where + suffix
        if concept.text and (product := self.catalogue.resolve(concept.text)) is not None:
            return product.id, f"{path}.text {concept.text!r} (exact product name; no coding matched)"
        shown = ", ".join(f"{c.system}|{c.code}" for c in _codings(concept)) or "no coding"
        errors.append(FieldError(f"{path}.coding", f"unknown medication coding ({shown}): not in any product "
                                                   "file's codes or the site's codes"
                                 + (f", and text {concept.text!r} is no product's name" if concept.text else "")))
        return None

    # -- the patient ------------------------------------------------------------------------------------------

    def _patient(self, document: _Document, order: _Found) -> _Found | None:
        reference = order.model.subject.reference if order.model.subject else None
        patient = document.resolve(reference, order)
        if patient is None:
            patients = document.of_type("Patient")
            patient = patients[0] if len(patients) == 1 and not reference else None
        return patient

    @staticmethod
    def _for_patient(document: _Document, found: _Found, patient: _Found | None) -> bool:
        """A resource about this order's patient (one with no subject is taken to be: it came with the order)."""
        subject = getattr(found.model, "subject", None)
        if patient is None or subject is None or not subject.reference:
            return True
        reference = subject.reference
        return (document.resolve(reference) is patient or reference == patient.ref
                or (reference.startswith("#") and reference == f"#{patient.model.id}"))

    def _patient_data(self, document: _Document, patient: _Found | None, order: _Found, when: dt.datetime,
                      sources: dict[str, str], errors: list[FieldError]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if patient is not None:
            birth = _when(patient.model.birthDate)
            if birth is not None:
                data["age"] = age_in_years(birth.date(), when.date())
                sources["patient.age"] = f"{patient.ref}.birthDate {patient.model.birthDate} at {_day(when)}"
            if patient.model.gender in ("female", "male"):
                data["sex"] = patient.model.gender
                sources["patient.sex"] = f"{patient.ref}.gender"
        observations = [o for o in document.of_type("Observation") if self._for_patient(document, o, patient)]
        weight = self._latest(observations, "body-weight")
        if weight is None:
            errors.append(FieldError("Observation", "no body weight: a final body-weight Observation (LOINC 29463-7 "
                                                    "or 3141-9) with a valueQuantity is needed; every dose and rate "
                                                    "per kg rests on it"))
        else:
            data["weight"] = self._quantity(weight.quantity, weight.path, errors)
            sources["patient.weight"] = f"{weight.shown} from {weight.found.ref}, {_day(weight.taken)}"
            if weight.taken is not None:
                days = max((when - weight.taken).total_seconds() / 86400.0, 0.0)
                data["weight_age"] = {"value": round(days, 3), "unit": "d"}
        height = self._latest(observations, "body-height")
        if height is not None:
            data["height"] = self._quantity(height.quantity, height.path, errors)
            sources["patient.height"] = f"{height.shown} from {height.found.ref}, {_day(height.taken)}"
        risks = self._risk_factors(document, patient, observations, order, sources, errors)
        if risks:
            data["risk_factors"] = sorted(risks)
        return data

    def _is(self, concept: Any, kind: str) -> bool:
        return any(kind in self.index.lookup(self.index.observations, system_name(c.system), c.code)
                   for c in _codings(concept))

    def _latest(self, observations: list[_Found], kind: str) -> "_Reading | None":
        """The most recent usable reading of a kind: an Observation's valueQuantity, or the valueQuantity of one of
        its components (an eGFR panel carries each equation's result as a component)."""
        readings = []
        for found in observations:
            model = found.model
            if model.status not in _USABLE_OBSERVATION:
                continue
            taken = _when(model.effectiveDateTime) or _when(model.effectiveInstant) or _when(
                model.effectivePeriod.end if model.effectivePeriod else None) or _when(model.issued)
            if model.valueQuantity is not None and self._is(model.code, kind):
                readings.append(_Reading(found, model.valueQuantity, f"{found.ref}.valueQuantity", taken))
                continue
            for index, component in enumerate(model.component or []):
                if component.valueQuantity is not None and self._is(component.code, kind):
                    readings.append(_Reading(found, component.valueQuantity,
                                             f"{found.ref}.component[{index}].valueQuantity", taken))
                    break
        if not readings:
            return None
        epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return max(readings, key=lambda reading: reading.taken or epoch)

    def _quantity(self, quantity: Any, path: str, errors: list[FieldError]) -> Any:
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

    def _risk_factors(self, document: _Document, patient: _Found | None, observations: list[_Found], order: _Found,
                      sources: dict[str, str], errors: list[FieldError]) -> set[str]:
        risks: dict[str, str] = {}
        for found in document.of_type("Condition"):
            model = found.model
            if not self._for_patient(document, found, patient) or not self._active_condition(model):
                continue
            for coding in _codings(model.code):
                for name in self.index.lookup(self.index.risk_factors, system_name(coding.system), coding.code):
                    risks.setdefault(name, f"{found.ref} ({coding.code})")
        egfr = self._latest(observations, "egfr")
        if egfr is not None:
            value = self._quantity(egfr.quantity, egfr.path, errors)
            if value is not None:
                try:
                    rate = expect(value, Shape.VOLUME_PER_TIME, what="an eGFR")
                except UnitError as exc:
                    errors.append(FieldError(egfr.path, str(exc)))
                else:
                    threshold = self.policy["egfr_renal_threshold"]
                    if rate.canonical < threshold.canonical:
                        risks.setdefault("renal-insufficiency", f"eGFR {egfr.shown} from {egfr.found.ref}, "
                                         f"{_day(egfr.taken)}, below {threshold} (policy egfr_renal_threshold)")
        for kind in ("MedicationStatement", "MedicationRequest"):
            for found in document.of_type(kind):
                if found is order or not self._for_patient(document, found, patient):
                    continue
                if found.model.status not in _ACTIVE_MEDICATION:
                    continue
                concept = self._medication_concept(document, found)
                if concept is None:
                    continue
                for name in self._medication_risks(concept[0]):
                    risks.setdefault(name, f"{found.ref} ({concept[0].text or _codings(concept[0])[0].code})")
        for name, where in risks.items():
            sources[f"patient.risk_factors.{name}"] = where
        return set(risks)

    @staticmethod
    def _active_condition(model: Any) -> bool:
        clinical = {c.code for c in _codings(model.clinicalStatus)}
        verification = {c.code for c in _codings(model.verificationStatus)}
        if verification & _REFUTED:
            return False
        return not clinical or bool(clinical & _ACTIVE_CONDITION)

    def _medication_risks(self, concept: Any) -> tuple[str, ...]:
        """The risk factors a co-medication brings: by its codes, else by a word of its text (estradiol)."""
        names: tuple[str, ...] = ()
        for coding in _codings(concept):
            names += self.index.lookup(self.index.medications, system_name(coding.system), coding.code)
        if names:
            return names
        for text in (concept.text, *(c.display for c in _codings(concept))):
            if text and (name := self.index.medication_word(text)):
                return (name,)
        return ()

    # -- indication -------------------------------------------------------------------------------------------

    def _indication(self, document: _Document, order: _Found, sources: dict[str, str]) -> str:
        found: dict[str, str] = {}
        concepts: list[tuple[Any, str]] = [(c, f"MedicationRequest.reasonCode[{i}]")
                                           for i, c in enumerate(order.model.reasonCode or [])]
        for reference in order.model.reasonReference or []:
            condition = document.resolve(reference.reference, order)
            if condition is not None and condition.model.get_resource_type() == "Condition":
                concepts.append((condition.model.code, f"{condition.ref}.code"))
        for concept, where in concepts:
            for coding in _codings(concept):
                for name in self.index.lookup(self.index.indications, system_name(coding.system), coding.code):
                    found.setdefault(name, f"{where} {coding.system}|{coding.code}")
        if len(found) == 1:
            name, where = next(iter(found.items()))
            sources["indication"] = where
            return name
        if found:
            sources["indication"] = ("reasons map to several indications (" + "; ".join(
                f"{n}: {w}" for n, w in found.items()) + "): checked as undetermined")
        else:
            sources["indication"] = ("no reasonCode or reasonReference maps to an indication"
                                     if concepts else "the order gives no reason") + ": checked as undetermined"
        return "undetermined"

    # -- dose and steps ---------------------------------------------------------------------------------------

    def _dosage(self, order: _Found, sources: dict[str, str],
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
            rate = self._rate(dosage, path, errors)
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
        dose = self._dose(order, first_index, first, errors, sources)
        for index, dosage in instructions[1:]:
            if dosage.doseAndRate and dosage.doseAndRate[0].doseQuantity is not None:
                errors.append(FieldError(f"MedicationRequest.dosageInstruction[{index}].doseAndRate[0].doseQuantity",
                                         "only the first step carries the day's dose"))
        return dose, steps

    def _rate(self, dosage: Any, path: str, errors: list[FieldError]) -> Any:
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
            numerator = self._quantity(entry.rateRatio.numerator, f"{where}.rateRatio.numerator", errors) \
                if entry.rateRatio.numerator else None
            denominator = self._quantity(entry.rateRatio.denominator, f"{where}.rateRatio.denominator", errors) \
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
        return self._quantity(entry.rateQuantity, f"{where}.rateQuantity", errors)

    def _dose(self, order: _Found, index: int, first: Any, errors: list[FieldError],
              sources: dict[str, str]) -> dict[str, Any] | None:
        path = f"MedicationRequest.dosageInstruction[{index}]"
        dose: dict[str, Any] = {}
        quantity = first.doseAndRate[0].doseQuantity if first.doseAndRate else None
        if quantity is not None:
            dose["per_day"] = self._quantity(quantity, f"{path}.doseAndRate[0].doseQuantity", errors)
            where = f"{path}.doseAndRate[0].doseQuantity"
        elif order.model.dispenseRequest is not None and order.model.dispenseRequest.quantity is not None:
            dose["per_course"] = self._quantity(order.model.dispenseRequest.quantity,
                                                "MedicationRequest.dispenseRequest.quantity", errors)
            where = "MedicationRequest.dispenseRequest.quantity (the course's dose)"
        else:
            errors.append(FieldError(f"{path}.doseAndRate[0].doseQuantity",
                                     "missing: the day's dose (g or g/kg) on the first step, or "
                                     "dispenseRequest.quantity"))
            return None
        repeat = first.timing.repeat if first.timing is not None else None
        days, basis = self._days(repeat, f"{path}.timing.repeat", errors)
        dose["days"] = days
        sources["dose"] = f"{where}; {basis}"
        return dose

    @staticmethod
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

