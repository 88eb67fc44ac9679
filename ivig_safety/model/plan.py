"""The infusion plan as it arrives: pydantic models whose errors name the field (``steps[2].rate``).

Why here and not later: everything a plan can get wrong (a rate written as a dose, a weight in mL, NaN, an unknown
product or risk factor, a missing step) is caught in this one pass, and the caller gets every problem at once. The
closed vocabularies come from the loaded rule set through the validation context, so a pharmacist who adds a risk
factor to rules/vocabulary.yaml makes it valid input without touching Python.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, ValidationInfo, WithJsonSchema, WrapValidator,
                      field_validator, model_validator)

from .units import RATE_SHAPES, Quantity, Shape, UnitError, expect, quantity_validator

from .bounds import AGE_YEARS, DAYS, HEIGHT_CM, INTERVAL_DAYS, MAX_ID_CHARS, MAX_ID_INT, MAX_STEPS, STEP_MINUTES, \
    WEIGHT_AGE_DAYS, WEIGHT_KG


def _schema(what: str, example: str) -> WithJsonSchema:
    return WithJsonSchema({
        "anyOf": [
            {"type": "string", "description": f'{what} with its unit, e.g. "{example}"'},
            {"type": "object", "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
             "required": ["value", "unit"], "additionalProperties": False},
        ]
    })


_AS_TEXT = PlainSerializer(str, return_type=str)
_RATE_SHAPES = tuple(sorted(RATE_SHAPES, key=lambda s: s.value))


def _quantity(what: str, *shapes: Shape, check: Callable[[Quantity], Quantity] | None = None) -> WrapValidator:
    """The validator of a Quantity field that accepts ``shapes`` and then passes ``check`` (the field's
    plausibility bounds).

    The bounds are checked inside the field's one cached validator (units.quantity_validator), not in an after
    validator of their own: one call per quantity field instead of two, and a quantity text seen before costs one
    cache lookup. The messages and the order (unit and shape first, then the bounds) are those of the separate
    validators this replaced. (The field types below spell out ``Annotated[Quantity, ...]`` so that type checkers
    see a Quantity.)"""
    return WrapValidator(quantity_validator(*shapes, what=what, check=check))


def _within_days(value: Quantity, bounds: tuple[float, float]) -> Quantity:
    """A duration field in days (canonical minutes) within its plausibility bounds (bounds.py)."""
    low, high = bounds
    if not low <= value.canonical / (24 * 60) <= high:
        raise ValueError(f"must be {low:g} to {high:g} days, not {value}")
    return value


def _human_weight(value: Quantity) -> Quantity:
    low, high = WEIGHT_KG
    if not low <= value.canonical <= high:
        raise ValueError(f"{value} is not a human weight (must be {low:g} to {high:g} kg)")
    return value


def _human_height(value: Quantity) -> Quantity:
    low, high = HEIGHT_CM
    if not low <= value.canonical <= high:
        raise ValueError(f"{value} is not a human height (must be {low:g} to {high:g} cm)")
    return value


def _weight_age(value: Quantity) -> Quantity:
    return _within_days(value, WEIGHT_AGE_DAYS)


def _interval(value: Quantity) -> Quantity:
    return _within_days(value, INTERVAL_DAYS)


def _positive_rate(value: Quantity) -> Quantity:
    if value.magnitude <= 0:
        raise ValueError("a rate must be positive")
    return value


def _step_duration(value: Quantity) -> Quantity:
    low, high = STEP_MINUTES
    if not low < value.canonical <= high:
        raise ValueError(f"a step's duration must be positive and at most 24 h, not {value}")
    return value


#: A dose has no bounds of its own here: DosePlan checks it is positive, the rules judge the amount.
Dose = Annotated[Quantity, _quantity("a dose per kg or a mass", Shape.MASS_PER_MASS, Shape.MASS), _AS_TEXT,
                 _schema("a dose per kg or a mass", "2 g/kg")]
#: Quantity fields with plausibility bounds (bounds.py).
Weight = Annotated[Quantity, _quantity("a mass", Shape.MASS, check=_human_weight), _AS_TEXT,
                   _schema("a mass", "70 kg")]
Height = Annotated[Quantity, _quantity("a length", Shape.LENGTH, check=_human_height), _AS_TEXT,
                   _schema("a length", "170 cm")]
WeightAge = Annotated[Quantity, _quantity("a duration", Shape.TIME, check=_weight_age), _AS_TEXT,
                      _schema("a duration", "30 min")]
Interval = Annotated[Quantity, _quantity("a duration", Shape.TIME, check=_interval), _AS_TEXT,
                     _schema("a duration", "30 min")]
StepRate = Annotated[Quantity, _quantity("an infusion rate", *_RATE_SHAPES, check=_positive_rate), _AS_TEXT,
                     _schema("an infusion rate", "0.04 mL/kg/min")]
StepDuration = Annotated[Quantity, _quantity("a duration", Shape.TIME, check=_step_duration), _AS_TEXT,
                         _schema("a duration", "30 min")]


class _Model(BaseModel):
    # revalidate_instances: a Plan built with model_construct or model_copy(update=...) skipped validation; checking
    # it again on the way in is what keeps such a plan from getting a verdict.
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True,
                              revalidate_instances="always")


class Patient(_Model):
    weight: Weight
    weight_age: WeightAge | None = Field(
        default=None, description="how long before the order the weight was measured, e.g. '3 d' (a stale weight is "
                                  "flagged; the FHIR mapping fills it from the Observation's date)")
    height: Height | None = None
    age: Annotated[float, Field(ge=AGE_YEARS[0], le=AGE_YEARS[1], allow_inf_nan=False,
                                description="age in years")] | None = None
    # A factory, not ``= []``: pydantic deep-copies an unhashable default for every plan that leaves the field out
    # (copy.deepcopy, about 0.6 us); list() gives the same fresh empty list. The schema still says "default": [].
    risk_factors: list[str] = Field(default_factory=list, json_schema_extra={"default": []})
    sex: Literal["female", "male"] | None = Field(default=None, description="for ideal body weight (Devine)")
    pregnant: bool | None = None
    blood_group: Annotated[str, Field(pattern=r"^(O|A|B|AB)[+-]?$")] | None = Field(
        default=None, description="ABO group, e.g. 'A+': non-O groups carry a higher hemolysis risk")

    @field_validator("age", mode="before")
    @classmethod
    def _age(cls, value: Any) -> Any:
        if type(value) is int or type(value) is float:  # the usual case; bool is neither, and refused below
            return value
        if isinstance(value, bool):
            raise ValueError("age must be a number of years")
        if isinstance(value, (str, dict)):
            try:
                return expect(value, Shape.TIME, what="age").canonical / (365.25 * 24 * 60)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("risk_factors", mode="before")
    @classmethod
    def _risk_list(cls, value: Any) -> Any:
        if type(value) is list:  # the usual case
            return value
        if value is None:
            return []
        if isinstance(value, str):
            raise ValueError("risk_factors must be a list, e.g. [immobility, diabetes]")
        return value

    @field_validator("risk_factors")
    @classmethod
    def _known_risks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        unique = set(value)
        context = info.context  # read here, not through a helper: a function call is a tenth of this validator
        vocabulary = context.get("vocabulary") if context else None
        if vocabulary is not None:
            known = vocabulary.risk_factors
            if not known.keys() >= unique:  # one set comparison when every one is known
                unknown = [v for v in value if v not in known]
                raise ValueError(f"unknown risk factor {', '.join(map(repr, unknown))}; valid: {', '.join(known)}")
        return sorted(unique)


class DosePlan(_Model):
    per_course: Dose | None = None
    per_day: Dose | None = None
    days: Annotated[int, Field(ge=DAYS[0], le=DAYS[1], strict=True)]
    since_previous_course: Interval | None = Field(
        default=None, description="time since the previous course began, e.g. '21 d': an early repeat is flagged")

    @model_validator(mode="after")
    def _exactly_one(self) -> "DosePlan":
        per_course, per_day = self.per_course, self.per_day
        if (per_course is None) == (per_day is None):
            raise ValueError("give exactly one of per_course and per_day")
        if per_course is not None:
            if per_course.magnitude <= 0:
                raise ValueError("per_course must be positive")
        elif per_day is not None and per_day.magnitude <= 0:
            raise ValueError("per_day must be positive")
        return self


class Step(_Model):
    rate: StepRate
    duration: StepDuration | None = None


class Plan(_Model):
    """One patient's IVIG order: product, indication, dose and one infusion day's titration steps."""

    id: str | int | None = Field(default=None, description="optional order id, echoed in batch output")
    product: Annotated[str, Field(min_length=1)]
    indication: Annotated[str, Field(min_length=1)]
    patient: Patient
    dose: DosePlan
    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]  # one day; more is not a titration

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        if type(value) is str and len(value) <= MAX_ID_CHARS:  # the usual case
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
            raise ValueError("an order id is text or a whole number")
        if isinstance(value, int) and abs(value) > MAX_ID_INT:
            raise ValueError(f"a numeric order id must be within +/-{MAX_ID_INT} (what every JSON reader keeps "
                             "exactly); send a longer id as text")
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            raise ValueError(f"an order id is at most {MAX_ID_CHARS} characters")
        return value

    @field_validator("product")
    @classmethod
    def _known_product(cls, value: str, info: ValidationInfo) -> str:
        context = info.context
        catalogue = context.get("catalogue") if context else None
        if catalogue is None:
            return value
        product = catalogue.resolve(value)
        if product is None:
            raise ValueError(f"unknown product {value!r}; known: {', '.join(sorted(catalogue.products))}")
        return product.id

    @field_validator("indication")
    @classmethod
    def _known_indication(cls, value: str, info: ValidationInfo) -> str:
        context = info.context
        vocabulary = context.get("vocabulary") if context else None
        if vocabulary is not None and value not in vocabulary.indications:
            raise ValueError(f"unknown indication {value!r}; valid: {', '.join(vocabulary.indications)}")
        return value

    @field_validator("steps")
    @classmethod
    def _durations(cls, steps: list[Step]) -> list[Step]:
        for index in range(len(steps) - 1):
            if steps[index].duration is None:
                raise ValueError(f"step {index + 1} needs a duration: only the last step may run until the dose is in")
        return steps
