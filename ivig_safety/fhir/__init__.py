"""FHIR R4 input: an IVIG MedicationRequest (alone, or in a Bundle with the patient's chart) read as a plan.

:class:`FhirMapper` reads a document with one rule set's code lists and policy (a Checker owns one); the public
entry points are :func:`ivig_safety.plan_from_fhir`, :func:`ivig_safety.ivig_orders` and :func:`ivig_safety.check`,
which takes a FHIR document directly. :func:`suggested_dosage` writes a report's schedule back as dosageInstruction
and :func:`collect` joins several documents (an order and its prefetched chart) into one Bundle.
"""

from __future__ import annotations

from .dosage import suggested_dosage
from .document import collect
from .mapping import FhirMapper, FhirPlan
from .resources import is_fhir

__all__ = ["FhirMapper", "FhirPlan", "suggested_dosage", "collect", "is_fhir"]
