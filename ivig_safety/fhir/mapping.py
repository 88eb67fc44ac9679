"""A FHIR R4 IVIG order and its chart, mapped onto a plan, with where each value came from.

The mapping reads only what the rule files say it may (code lists in rules/, policy thresholds)
and refuses what it cannot read exactly, naming the FHIR element: a rate range, a rate only in text, a unit that is
not UCUM, a coding that names no product. Nothing is guessed toward "ok": an order whose reason does not map to an
indication is checked as ``undetermined`` (the product's most conservative labelled rates, with a warning), and a
chart with no body weight is invalid input.

How the dose and the titration steps are read is in steps.py; finding resources and reading FHIR dates and
quantities, in document.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..knowledge.catalogue import Catalogue
from ..knowledge.codes import CodeIndex, system_name
from ..knowledge.policy import Policy
from ..model.errors import FieldError, InvalidPlanError
from ..model.plan import Plan
from ..model.units import Shape, UnitError, expect
from .document import (Document, Found, Reading, age_in_years, as_datetime, build_document, codings, date_of,
                       has_an_order, read_quantity)
from .resources import validate
from .steps import read_dosage

#: Words that make a medication an immune globulin when no product code is known: the order is then treated as an
#: IVIG order, and an unknown coding is an error rather than a silently ignored order.
_CLASS_WORDS = ("immune globulin", "immunoglobulin", "ivig", "igiv", "immune serum globulin")
_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
_REFUTED = {"refuted", "entered-in-error"}
_USABLE_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
_ACTIVE_MEDICATION = {"active", "intended", "on-hold"}


@dataclass(frozen=True)
class FhirPlan:
    """The plan read from a FHIR order: ``plan`` in the input form (a dict :func:`ivig_safety.check` takes, and a
    pharmacist can save as a YAML plan), ``parsed`` the validated :class:`Plan` (set by
    :func:`ivig_safety.plan_from_fhir`), and for each plan field where it came from (for the report)."""

    plan: dict[str, Any]
    sources: dict[str, str]
    order: dict[str, Any]  # the IVIG MedicationRequest as given
    parsed: Plan | None = None


class FhirMapper:
    """Maps FHIR documents onto plans with one rule set's code lists and policy. Built once per Checker."""

    def __init__(self, catalogue: Catalogue, policy: Policy, index: CodeIndex):
        self.catalogue, self.policy, self.index = catalogue, policy, index

    # -- the order --------------------------------------------------------------------------------------------

    def map(self, data: Mapping[str, Any]) -> FhirPlan:
        has_an_order(data)  # before validation: a large Bundle without an order is refused in microseconds
        model = validate(data)
        document = build_document(model, data)
        order = self._order(document)
        errors: list[FieldError] = []
        sources: dict[str, str] = {"order": f"{order.ref}" + (f" ({order.path})" if order.path != "MedicationRequest"
                                                               else "")}
        plan: dict[str, Any] = {}
        if order.model.id:
            plan["id"] = order.model.id
        authored = as_datetime(order.model.authoredOn)
        reference_time = authored or dt.datetime.now(dt.timezone.utc)
        if authored is None:
            sources["time"] = "MedicationRequest.authoredOn absent: ages and the weight's age are taken at today"

        product = self._product(document, order, errors)
        if product is not None:
            plan["product"], sources["product"] = product
        patient = self._patient(document, order)
        plan["patient"] = self._patient_data(document, patient, order, reference_time, sources, errors)
        plan["indication"] = self._indication(document, order, sources)
        dose, steps = read_dosage(order, sources, errors)
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
        document = build_document(model, data)
        return [dict(found.raw) for found in document.of_type("MedicationRequest") if self._is_ivig(document, found)]

    def _order(self, document: Document) -> Found:
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

    def _medication_concept(self, document: Document, request: Found) -> tuple[Any, str] | None:
        model = request.model
        if model.medicationCodeableConcept is not None:
            return model.medicationCodeableConcept, f"{request.path}.medicationCodeableConcept"
        reference = model.medicationReference.reference if model.medicationReference is not None else None
        medication = document.resolve(reference, request)
        if medication is None or medication.model.get_resource_type() != "Medication":
            return None
        return medication.model.code, f"{medication.path}.code"

    def _is_ivig(self, document: Document, request: Found) -> bool:
        found = self._medication_concept(document, request)
        if found is None:
            return False
        concept, _ = found
        if any(self._coding_products(c) for c in codings(concept)):
            return True
        words = " ".join([concept.text or "", *(c.display or "" for c in codings(concept))]).lower()
        return any(word in words for word in _CLASS_WORDS) or (
            bool(concept.text) and self.catalogue.resolve(concept.text) is not None)

    def _coding_products(self, coding: Any) -> set[str]:
        system = system_name(coding.system)
        if system is None or not coding.code:
            return set()
        return self.index.product(system, coding.code)

    def _product(self, document: Document, order: Found, errors: list[FieldError]) -> tuple[str, str] | None:
        found = self._medication_concept(document, order)
        if found is None:
            reference = order.model.medicationReference.reference if order.model.medicationReference else None
            errors.append(FieldError("MedicationRequest.medicationReference",
                                     f"{reference!r} names no Medication in the document"))
            return None
        concept, path = found
        matches: dict[str, str] = {}
        for index, coding in enumerate(codings(concept)):
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
        shown = ", ".join(f"{c.system}|{c.code}" for c in codings(concept)) or "no coding"
        errors.append(FieldError(f"{path}.coding", f"unknown medication coding ({shown}): not in any product "
                                                   "file's codes or the site's codes"
                                 + (f", and text {concept.text!r} is no product's name" if concept.text else "")))
        return None

    # -- the patient ------------------------------------------------------------------------------------------

    def _patient(self, document: Document, order: Found) -> Found | None:
        reference = order.model.subject.reference if order.model.subject else None
        patient = document.resolve(reference, order)
        if patient is None:
            patients = document.of_type("Patient")
            patient = patients[0] if len(patients) == 1 and not reference else None
        return patient

    @staticmethod
    def _for_patient(document: Document, found: Found, patient: Found | None) -> bool:
        """A resource about this order's patient (one with no subject is taken to be: it came with the order)."""
        subject = getattr(found.model, "subject", None)
        if patient is None or subject is None or not subject.reference:
            return True
        reference = subject.reference
        return (document.resolve(reference) is patient or reference == patient.ref
                or (reference.startswith("#") and reference == f"#{patient.model.id}"))

    def _patient_data(self, document: Document, patient: Found | None, order: Found, when: dt.datetime,
                      sources: dict[str, str], errors: list[FieldError]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if patient is not None:
            birth = as_datetime(patient.model.birthDate)
            if birth is not None:
                data["age"] = age_in_years(birth.date(), when.date())
                sources["patient.age"] = f"{patient.ref}.birthDate {patient.model.birthDate} at {date_of(when)}"
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
            data["weight"] = read_quantity(weight.quantity, weight.path, errors)
            sources["patient.weight"] = f"{weight.shown} from {weight.found.ref}, {date_of(weight.taken)}"
            if weight.taken is None:  # its age cannot be checked: never read as a fresh weight
                errors.append(FieldError(f"{weight.found.ref}.effective[x]", "the body weight has no date (effective[x] "
                                         "or issued): how old it is cannot be told, and every dose and rate per kg "
                                         "rests on it"))
            else:
                days = max((when - weight.taken).total_seconds() / 86400.0, 0.0)
                data["weight_age"] = {"value": round(days, 3), "unit": "d"}
        height = self._latest(observations, "body-height")
        if height is not None:
            data["height"] = read_quantity(height.quantity, height.path, errors)
            sources["patient.height"] = f"{height.shown} from {height.found.ref}, {date_of(height.taken)}"
        risks = self._risk_factors(document, patient, observations, order, sources, errors)
        if risks:
            data["risk_factors"] = sorted(risks)
        return data

    def _is(self, concept: Any, kind: str) -> bool:
        return any(kind in self.index.lookup(self.index.observations, system_name(c.system), c.code)
                   for c in codings(concept))

    def _latest(self, observations: list[Found], kind: str) -> "Reading | None":
        """The most recent usable reading of a kind: an Observation's valueQuantity, or the valueQuantity of one of
        its components (an eGFR panel carries each equation's result as a component)."""
        readings = []
        for found in observations:
            model = found.model
            if model.status not in _USABLE_OBSERVATION:
                continue
            taken = as_datetime(model.effectiveDateTime) or as_datetime(model.effectiveInstant) or as_datetime(
                model.effectivePeriod.end if model.effectivePeriod else None) or as_datetime(model.issued)
            if model.valueQuantity is not None and self._is(model.code, kind):
                readings.append(Reading(found, model.valueQuantity, f"{found.ref}.valueQuantity", taken))
                continue
            for index, component in enumerate(model.component or []):
                if component.valueQuantity is not None and self._is(component.code, kind):
                    readings.append(Reading(found, component.valueQuantity,
                                             f"{found.ref}.component[{index}].valueQuantity", taken))
                    break
        if not readings:
            return None
        epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return max(readings, key=lambda reading: reading.taken or epoch)

    def _risk_factors(self, document: Document, patient: Found | None, observations: list[Found], order: Found,
                      sources: dict[str, str], errors: list[FieldError]) -> set[str]:
        risks: dict[str, str] = {}
        for found in document.of_type("Condition"):
            model = found.model
            if not self._for_patient(document, found, patient) or not self._active_condition(model):
                continue
            for coding in codings(model.code):
                for name in self.index.lookup(self.index.risk_factors, system_name(coding.system), coding.code):
                    risks.setdefault(name, f"{found.ref} ({coding.code})")
        egfr = self._latest(observations, "egfr")
        if egfr is not None:
            if (reason := self._egfr_low(egfr, errors)) is not None:
                risks.setdefault("renal-insufficiency", f"eGFR {egfr.shown} from {egfr.found.ref}, "
                                 f"{date_of(egfr.taken)}, {reason}")
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
                    risks.setdefault(name, f"{found.ref} ({concept[0].text or codings(concept[0])[0].code})")
        for name, where in risks.items():
            sources[f"patient.risk_factors.{name}"] = where
        return set(risks)

    def _egfr_low(self, egfr: Reading, errors: list[FieldError]) -> str | None:
        """Why the eGFR counts as renal insufficiency, or None. Labs report ">60": a bound at or above the policy
        threshold is not low; any other bound (">30", "<90") may be low and counts, as the safer reading."""
        comparator = egfr.quantity.comparator
        quantity = egfr.quantity.model_copy(update={"comparator": None}) if comparator else egfr.quantity
        value = read_quantity(quantity, egfr.path, errors)
        if value is None:
            return None
        try:
            rate = expect(value, Shape.VOLUME_PER_TIME, what="an eGFR")
        except UnitError as exc:
            errors.append(FieldError(egfr.path, str(exc)))
            return None
        threshold = self.policy["egfr_renal_threshold"]
        if comparator in (">", ">="):
            if rate.canonical >= threshold.canonical:
                return None
            return f"a bound ({comparator}) that may be below {threshold} (policy egfr_renal_threshold)"
        if comparator is not None or rate.canonical < threshold.canonical:
            return f"below {threshold} (policy egfr_renal_threshold)" if comparator is None else \
                f"a bound ({comparator}) read as below {threshold} (policy egfr_renal_threshold)"
        return None

    @staticmethod
    def _active_condition(model: Any) -> bool:
        clinical = {c.code for c in codings(model.clinicalStatus)}
        verification = {c.code for c in codings(model.verificationStatus)}
        if verification & _REFUTED:
            return False
        return not clinical or bool(clinical & _ACTIVE_CONDITION)

    def _medication_risks(self, concept: Any) -> tuple[str, ...]:
        """The risk factors a co-medication brings: by its codes, else by a word of its text (estradiol)."""
        names: tuple[str, ...] = ()
        for coding in codings(concept):
            names += self.index.lookup(self.index.medications, system_name(coding.system), coding.code)
        if names:
            return names
        for text in (concept.text, *(c.display for c in codings(concept))):
            if text and (name := self.index.medication_word(text)):
                return (name,)
        return ()

    # -- indication -------------------------------------------------------------------------------------------

    def _indication(self, document: Document, order: Found, sources: dict[str, str]) -> str:
        found: dict[str, str] = {}
        concepts: list[tuple[Any, str]] = [(c, f"MedicationRequest.reasonCode[{i}]")
                                           for i, c in enumerate(order.model.reasonCode or [])]
        for reference in order.model.reasonReference or []:
            condition = document.resolve(reference.reference, order)
            if condition is not None and condition.model.get_resource_type() == "Condition":
                concepts.append((condition.model.code, f"{condition.ref}.code"))
        for concept, where in concepts:
            for coding in codings(concept):
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
