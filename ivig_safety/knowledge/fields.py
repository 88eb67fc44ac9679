"""The names rules may use: every field of the normalised facts, with its kind and canonical unit.

Why a table: the rule loader checks each condition against it (unknown field, wrong unit shape, a number without a
unit where one is needed), and the fact builder fills exactly these fields. Rates exist in every rate shape
(``peak_rate`` in mg/kg/min, mL/kg/min, mL/min and mg/min for this patient), so a pharmacist can write a threshold as
"0.04 mL/kg/min" or "168 mL/h" and it is compared in that basis, without a hand conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ..model.units import Shape

Kind = Literal["quantity", "number", "bool", "text"]

#: Every number reaches the rule engine as an integer in millionths of its canonical unit. Integers dodge the
#: durable_rules parser bug with exponents ("5e-05" is rejected) and make "exactly the maximum" compare exactly.
SCALE: Final = 1_000_000

#: Separates the two fields of a difference key ("peak_rate__minus__max_rate"), see rules.difference_key.
DIFFERENCE = "__minus__"

#: The key suffix under which each rate shape is stored; the base (mg/kg/min) has none.
RATE_VARIANTS: dict[Shape, str] = {
    Shape.MASS_PER_MASS_TIME: "",
    Shape.VOLUME_PER_MASS_TIME: "__ml_per_kg_min",
    Shape.VOLUME_PER_TIME: "__ml_per_min",
    Shape.MASS_PER_TIME: "__mg_per_min",
}
#: Doses per kg may also be compared with an absolute mass ("140 g").
DOSE_VARIANTS: dict[Shape, str] = {Shape.MASS_PER_MASS: "", Shape.MASS: "__kg"}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    description: str
    variants: dict[Shape, str] | None = None  # for quantities: shape -> key suffix
    step: Literal["first", "peak"] | None = None  # which step a finding on this field points at

    def key(self, shape: Shape | None = None) -> str:
        if self.variants is None or shape is None:
            return self.name
        return self.name + self.variants[shape]


def _rate(name: str, description: str, step: Literal["first", "peak"] | None = None) -> FieldSpec:
    return FieldSpec(name, "quantity", description, RATE_VARIANTS, step)


def _dose(name: str, description: str) -> FieldSpec:
    return FieldSpec(name, "quantity", description, DOSE_VARIANTS)


def _single(name: str, shape: Shape, description: str) -> FieldSpec:
    return FieldSpec(name, "quantity", description, {shape: ""})


FIELDS: dict[str, FieldSpec] = {f.name: f for f in [
    FieldSpec("product", "text", "catalogue id of the product"),
    FieldSpec("indication", "text", "the indication being treated"),
    FieldSpec("labelled", "bool", "the product's label covers this indication"),
    _single("concentration", Shape.MASS_PER_VOLUME, "the product's concentration (5% = 50 mg/mL)"),
    _single("weight", Shape.MASS, "the patient's actual body weight"),
    _single("weight_age", Shape.TIME, "how long before the order the weight was measured (absent when not given)"),
    _single("dosing_weight", Shape.MASS, "the weight doses and per-kg rates are calculated on (policy)"),
    FieldSpec("blood_group_non_o", "bool", "the patient's ABO group is A, B or AB (absent when not given)"),
    FieldSpec("age", "number", "age in years (absent when the plan gives none)"),
    FieldSpec("label_min_age", "number", "youngest age in years the label covers for this indication (absent: none)"),
    FieldSpec("label_max_age", "number", "oldest age in years the label covers for this indication (absent: none)"),
    FieldSpec("label_population", "text", "the label's words for the population it covers"),
    FieldSpec("days", "number", "infusion days in the course"),
    FieldSpec("steps", "number", "number of titration steps in the plan"),
    _dose("dose_per_day", "the dose given on each infusion day"),
    _dose("dose_per_course", "the whole course's dose"),
    _single("daily_volume", Shape.VOLUME, "volume infused on each day"),
    _single("daily_volume_per_kg", Shape.VOLUME_PER_MASS, "volume infused on each day per kg of dosing weight"),
    _single("since_previous_course", Shape.TIME, "time since the previous course began (absent when not given)"),
    FieldSpec("regimen_basis", "text", "where the regimen comes from: the label, or a guideline for off-label use"),
    FieldSpec("label_regimens", "text", "the regimens the order is checked against, in words"),
    _dose("label_dose_per_course", "the largest course dose of the regimens for this indication"),
    _dose("label_min_dose_per_course", "the smallest course dose of the regimens for this indication"),
    _dose("label_max_dose_per_day", "the largest daily dose the regimens allow"),
    FieldSpec("label_days_min", "number", "fewest days the regimens spread a course over"),
    FieldSpec("label_days_max", "number", "most days the regimens spread a course over"),
    _single("label_interval_min", Shape.TIME, "the shortest interval between courses the regimens give"),
    FieldSpec("course_dose_ratio", "number", "course dose divided by the regimens' largest course dose"),
    FieldSpec("course_dose_ratio_low", "number", "course dose divided by the regimens' smallest course dose"),
    FieldSpec("daily_dose_ratio", "number", "daily dose divided by the regimens' largest daily dose"),
    FieldSpec("short_course", "bool",
              "fewer days than a daily-dose regimen, at its daily dose (e.g. cITP's second dose held)"),
    FieldSpec("daily_dose_vs_ceiling", "number", "daily dose divided by the policy's absolute daily ceiling"),
    FieldSpec("course_dose_vs_ceiling", "number", "course dose divided by the policy's absolute course ceiling"),
    _rate("max_rate", "the label's maximum rate for this indication (most conservative if unlabelled)"),
    _rate("max_rate_with_tolerance", "the label's maximum plus the policy's pump tolerance"),
    _rate("initial_rate", "the label's initial rate for this indication"),
    _rate("initial_rate_with_tolerance", "the label's initial rate plus the policy's pump tolerance"),
    _single("initial_hold", Shape.TIME, "how long the label holds the initial rate"),
    _rate("at_risk_rate", "the cap for patients at risk (label figure, else the policy's)"),
    FieldSpec("at_risk_limit", "text", "the at-risk cap in the label's (or policy's) words"),
    _rate("peak_rate", "the fastest step of the plan", step="peak"),
    _rate("first_rate", "the plan's first step", step="first"),
    _single("time_at_initial", Shape.TIME,
            "minutes the plan stays at or below the initial rate (within tolerance) before it first goes faster"),
    _single("infusion_time", Shape.TIME, "the plan's time to give one day's dose"),
    FieldSpec("sucrose", "bool", "the product contains sucrose (absent when its label text is not on file)"),
    FieldSpec("sucrose_on_file", "bool", "the product file states whether it contains sucrose"),
    FieldSpec("excipients_on_file", "bool", "the product file lists its excipients (or states it has none)"),
]}

#: Flags set per plan: ``rf_<risk factor>``, ``ex_<excipient>``, ``ci_<contraindicated factor present>``,
#: ``av_<factor the label says to avoid, present>``, ``mr_<reason the label gives for the minimum practicable rate
#: beyond renal and thrombosis risk>``; names have '-' replaced by '_'.
FLAG_PREFIXES = {"risk_factor": "rf_", "excipient": "ex_", "contraindicated": "ci_", "avoided": "av_",
                 "label_minimum_rate_for": "mr_"}


def flag_key(prefix: str, name: str) -> str:
    return FLAG_PREFIXES[prefix] + name.replace("-", "_")
