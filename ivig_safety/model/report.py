"""The report: verdict, findings, suggested cap and schedule, and the identity of the rules that produced it.

Why pydantic: the Python API returns this model, the CLI prints ``model_dump(mode="json")`` of it, and the CDS Hooks
service builds cards from it, so there is one shape for every caller and it has a JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]
Verdict = Literal["ok", "warn", "block"]


#: BaseModel's four instance slots' setters (``__dict__``, ``__pydantic_fields_set__``, ``__pydantic_extra__``,
#: ``__pydantic_private__``), for model/trusted.py: it is compiled by mypyc, possibly where pydantic is not installed
#: (the build's own environment), so it takes pydantic's class from here rather than importing it.
MODEL_SLOT_SETTERS = tuple(BaseModel.__dict__[name].__set__ for name in (
    "__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class RateTriple(_Model):
    """One rate for this patient in the three units a pharmacist and a pump use."""

    mg_per_kg_min: float = Field(alias="mg/kg/min", serialization_alias="mg/kg/min")
    ml_per_kg_min: float = Field(alias="mL/kg/min", serialization_alias="mL/kg/min")
    ml_per_h: float = Field(alias="mL/h", serialization_alias="mL/h")

    def as_json(self) -> dict[str, float]:
        """``model_dump(mode="json")``, written out: a batch row dumps a triple per capped finding, and pydantic's
        serializer costs more than the dict (tests/test_report_model.py holds the two equal)."""
        return {"mg/kg/min": self.mg_per_kg_min, "mL/kg/min": self.ml_per_kg_min, "mL/h": self.ml_per_h}


class Finding(_Model):
    """One decision for the prescriber. Rules that reach the same decision (the same cap, or the same group) are
    merged into one finding: ``rule``/``kind`` are the first rule's, ``rules``/``kinds`` list every rule merged in,
    and the message and citation hold each rule's reason and source."""

    kind: str
    severity: Severity
    rule: str
    message: str
    citation: str
    step: int | None = Field(default=None, description="1-based step of the plan at fault, where one is")
    suggested_max_rate: RateTriple | None = None
    rules: list[str] = Field(default_factory=list, description="every rule this finding stands for (merged)")
    kinds: list[str] = Field(default_factory=list, description="the kinds of those rules")


class ScheduleStep(_Model):
    step: int
    rate: RateTriple
    duration_min: float = Field(description="minutes at this rate; the last step runs until the dose is in")
    volume_ml: float


class PlanSummary(_Model):
    id: str | int | None = None
    product: str
    product_name: str
    indication: str
    labelled: bool
    weight_kg: float
    dosing_weight_kg: float
    dosing_weight_method: str
    concentration_mg_per_ml: float
    risk_factors: list[str]
    derived_risk_factors: list[str]
    days: int
    dose_per_day_g: float
    dose_per_day_g_per_kg: float
    daily_volume_ml: float
    plan_infusion_min: float
    sources: dict[str, str] | None = Field(
        default=None, description="for an order read from FHIR: where each value came from (plan field -> FHIR "
                                  "resource and element, with its date), so a pharmacist sees what the engine believed")


class VialCount(_Model):
    size: str
    count: int


class DispenseReport(_Model):
    """What pharmacy prepares for one infusion day."""

    prescribed_dose_g: float = Field(description="the day's dose as prescribed, on the dosing weight")
    dose_g: float = Field(description="the day's dose to give, after the policy's rounding")
    rounding: str
    volume_ml: float
    vials: list[VialCount] = Field(description="whole vials covering the dose; empty if the product lists no sizes")
    waste_g: float | None


class RuleSetIdentity(_Model):
    version: str
    sha256: str
    bundled: bool = Field(default=True, description="the rule set shipped with this version of ivig-safety")
    path: str | None = Field(default=None, description="where a rule set from outside the package was loaded from")


class PolicyChange(_Model):
    key: str
    default: str
    value: str
    less_strict: bool = Field(description="weakens a boxed-warning or absolute-limit check against the default")


class PolicyIdentity(_Model):
    name: str
    sha256: str
    changes: list[PolicyChange] = Field(default_factory=list, description="every key a site file changed")


class Report(_Model):
    verdict: Verdict
    plan: PlanSummary
    findings: list[Finding]
    suggested_max_rate: RateTriple
    suggested_steps: list[ScheduleStep]
    suggested_infusion_min: float = Field(description="total minutes for the day's dose on the suggested schedule")
    dispense: DispenseReport
    ruleset: RuleSetIdentity
    policy: PolicyIdentity
    pump_tolerance_used: list[str] = Field(
        default_factory=list,
        description="where a rate above a label figure was let through by the policy's pump tolerance")

    def to_json_dict(self) -> dict:
        """The JSON form, exactly what ``ivig-safety check --format json`` prints."""
        return self.model_dump(mode="json")


def verdict_for(findings: list[Finding]) -> Verdict:
    return verdict_of({f.severity for f in findings})


def verdict_of(severities: set[str]) -> Verdict:
    """The verdict for findings of these severities."""
    if "critical" in severities:
        return "block"
    if "warning" in severities:
        return "warn"
    return "ok"
