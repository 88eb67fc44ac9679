"""The product models: rules/products/*.yaml, one file per product, every figure with its citation and tag.

Why a model per file: a pharmacist edits these files by hand. Loading them through pydantic turns a typo, a missing
citation, a figure tagged U or a rate in the wrong shape into an error that names the file and the field, at start-up,
before any plan is judged. Rates are stored as the label writes them and converted here, once, to mg/kg/min.

Why every safety section is required: a product file that forgets its contraindications or its regimen must not
read as "this product has none". Each section (sucrose, excipients, contraindications, and per indication the
labelled population and regimens) is either listed or stated as ``none`` with a citation; a missing section is a load
error. What holds for every IVIG product (the class contraindications and warnings) lives in rules/class.yaml and
applies whatever a product file says.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..model.rates import rate_to_mg_per_kg_min
from ..model.units import RATE_SHAPES, Quantity, Shape, UnitError, expecting
from .codes import CodeList, Kebab

#: L: label text (the US prescribing information, also where a manufacturer page or monograph reproduces it);
#: M: the manufacturer's own material, not label text; G: a national or provincial guideline (off-label regimens).
Tag = Literal["L", "M", "G"]
Text = Annotated[str, Field(min_length=3)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Cited(_Strict):
    """Anything taken from a label carries where it was read (the section or table) and how sure we are."""

    citation: Annotated[str, Field(min_length=10)]
    tag: Tag

    @field_validator("tag", mode="before")
    @classmethod
    def _no_unverified(cls, value: Any) -> Any:
        if value == "U":
            raise ValueError("figures tagged U are unverified and may not ship as label figures; leave them out")
        return value


class NotOnFile(_Strict):
    """A section whose label text could not be read: said so explicitly, with what was looked for. The class facts
    still apply, and rules treat the section as unknown (never as "none"): e.g. a patient with hereditary fructose
    intolerance on a product whose excipients are not on file gets a warning to confirm there is no sorbitol."""

    not_on_file: Annotated[str, Field(min_length=10)]


class NoneStated(Cited):
    """A section the label states is empty ("does not contain sucrose", "no other contraindications"): an explicit,
    cited ``none``, never an absent key."""

    none: Literal[True]


_RATE_SHAPES = tuple(sorted(RATE_SHAPES, key=lambda s: s.value))
_Rate = Annotated[Quantity, BeforeValidator(expecting(*_RATE_SHAPES, what="a rate"))]
_Time = Annotated[Quantity, BeforeValidator(expecting(Shape.TIME, what="a duration"))]
_DosePerKg = Annotated[Quantity, BeforeValidator(expecting(Shape.MASS_PER_MASS, what="a dose per kg"))]


class RateFigure(Cited):
    """A cited rate, in whatever rate unit the label writes it. ``below: true`` records a label's "less than"."""

    quantity: _Rate = Field(alias="value")
    below: bool = False


class TimeFigure(Cited):
    quantity: _Time = Field(alias="value")


class ConcentrationFigure(Cited):
    quantity: Annotated[Quantity, BeforeValidator(expecting(Shape.MASS_PER_VOLUME, what="a concentration"))] = Field(
        alias="value")


class BoolFigure(Cited):
    value: bool


class Excipient(Cited):
    name: Kebab
    amount: str | None = None
    source: str | None = None


class RiskStatement(Cited):
    """A risk factor the label contraindicates, or says to avoid, for this product."""

    risk_factor: Kebab


class ReasonStatement(Cited):
    """A patient group for whom the label asks for the minimum practicable rate beyond the class's renal and
    thrombosis risk (Gammaplex: volume overload)."""

    reason: Literal["volume-overload"]


class Vials(Cited):
    value: list[str]

    @field_validator("value")
    @classmethod
    def _sizes(cls, value: list[str]) -> list[str]:
        for size in value:
            if not re.fullmatch(r"\d+(\.\d+)? g/\d+(\.\d+)? mL", size):
                raise ValueError(f'vial size {size!r} must read like "5 g/50 mL"')
        return value


class LabelIdentity(_Strict):
    """Which label the figures come from, so a pharmacist can open the same document."""

    title: Annotated[str, Field(min_length=10)]
    revised: Annotated[str, Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$", description="the label version's date")]
    revision_note: Annotated[str, Field(min_length=10, description="what the date is: the PI's 'Revised' line, "
                                                                   "or the DailyMed version date where that line "
                                                                   "was not read")]
    setid: Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")] | None
    source: Annotated[str, Field(min_length=8, description="where the copy that was read is stored")]

    @field_validator("revised", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value  # YAML reads 2024-01-26 as a date


class DaysRange(_Strict):
    min: Annotated[int, Field(ge=1, le=31)]
    max: Annotated[int, Field(ge=1, le=31)]

    @model_validator(mode="after")
    def _ordered(self) -> "DaysRange":
        if self.min > self.max:
            raise ValueError("days.min must not exceed days.max")
        return self


class DoseRange(_Strict):
    """A dose per kg, or a range of them ("300 to 600 mg/kg")."""

    min: _DosePerKg
    max: _DosePerKg

    @model_validator(mode="before")
    @classmethod
    def _single(cls, value: Any) -> Any:
        if isinstance(value, (str, Quantity)) or (isinstance(value, dict) and set(value) == {"value", "unit"}):
            return {"min": value, "max": value}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "DoseRange":
        if not 0 < self.min.canonical <= self.max.canonical:
            raise ValueError("a dose range must be positive with min not above max")
        return self


class IntervalRange(_Strict):
    min: _Time
    max: _Time | None = None


class DoseRegimen(Cited):
    """One regimen of the label (or of a guideline): a course dose spread over the days, or a dose given on each day,
    optionally repeated every ``interval``. An indication may have several (loading and maintenance)."""

    name: str | None = None
    per_course: DoseRange | None = None
    per_day: DoseRange | None = None
    days: DaysRange
    interval: IntervalRange | None = None

    @model_validator(mode="after")
    def _one_dose(self) -> "DoseRegimen":
        if (self.per_course is None) == (self.per_day is None):
            raise ValueError("give exactly one of per_course and per_day")
        return self

    @property
    def course_range(self) -> tuple[float, float]:
        """The whole course in g/kg, lowest and highest."""
        if self.per_course is not None:
            return self.per_course.min.canonical, self.per_course.max.canonical
        assert self.per_day is not None
        return self.per_day.min.canonical * self.days.min, self.per_day.max.canonical * self.days.max

    @property
    def max_daily_g_per_kg(self) -> float:
        """The largest daily dose the regimen allows, in g/kg."""
        if self.per_day is not None:
            return self.per_day.max.canonical
        assert self.per_course is not None
        return self.per_course.max.canonical / self.days.min

    def describe(self) -> str:
        """'1 g/kg a day for 2 days' / '300-600 mg/kg over 1 day, every 3-4 weeks' (for messages)."""
        dose = self.per_day or self.per_course
        assert dose is not None
        amount = str(dose.min) if dose.min == dose.max else f"{dose.min} to {dose.max}"
        days = f"{self.days.min}" if self.days.min == self.days.max else f"{self.days.min} to {self.days.max}"
        text = (f"{amount} a day for {days} day(s)" if self.per_day is not None
                else f"{amount} per course over {days} day(s)")
        if self.interval is not None:
            upper = f" to {self.interval.max}" if self.interval.max not in (None, self.interval.min) else ""
            text += f", every {self.interval.min}{upper}"
        return f"{self.name}: {text}" if self.name else text


class Population(Cited):
    """The patients the label covers for one indication. ``min_age: adults`` means the policy's adult age."""

    text: Text
    min_age: Literal["adults"] | _Time | None = None
    max_age: _Time | None = None

    @field_validator("min_age", mode="before")
    @classmethod
    def _min_age(cls, value: Any) -> Any:
        return value if value in (None, "adults") else expecting(Shape.TIME, what="an age")(value)


class Titration(Cited):
    interval: _Time
    ladder: list[_Rate] | None = None


class IndicationEntry(_Strict):
    """One labelled indication: who it covers, its regimens and its rates. Where the label gives no hold time or
    titration, the entry leaves them out and the suggested schedule uses the policy's fallbacks (named in the
    report's citations)."""

    population: Population
    regimens: Annotated[list[DoseRegimen], Field(min_length=1)]
    initial_rate: RateFigure  # type: ignore[valid-type]
    initial_hold: TimeFigure | None = None  # type: ignore[valid-type]
    titration: Titration | None = None
    max_rate: RateFigure  # type: ignore[valid-type]
    at_risk_rate: RateFigure | None = None  # type: ignore[valid-type]
    notes: str | None = None


class Product(_Strict):
    """One product file. Rates are kept as written; the ``*_mg_kg_min`` helpers convert with the concentration."""

    id: Kebab
    name: str
    aliases: list[str] = []
    manufacturer: str
    label: LabelIdentity
    codes: list[CodeList] | NotOnFile = Field(default_factory=list, description=(
        "NDC and RxNorm codes that name this product in FHIR orders, each list cited; a product with none is only "
        "matched by a site's codes or its exact name"))
    concentration: ConcentrationFigure  # type: ignore[valid-type]
    sucrose: BoolFigure | NotOnFile
    excipients: list[Excipient] | NoneStated | NotOnFile
    iga_content: Cited | None = None
    vials: Vials | None = None
    contraindications: list[RiskStatement] | NoneStated | NotOnFile
    avoid: list[RiskStatement] = []
    at_risk_rate: RateFigure | None = None  # type: ignore[valid-type]
    minimum_rate_also_for: list[ReasonStatement] = []
    indications: dict[Kebab, IndicationEntry]
    notes: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("iga_content", mode="before")
    @classmethod
    def _iga(cls, value: Any) -> Any:
        # The content is recorded for the pharmacist; only its citation is checked here.
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != "value"}
        return value

    @field_validator("indications")
    @classmethod
    def _some(cls, value: dict[str, IndicationEntry]) -> dict[str, IndicationEntry]:
        if not value:
            raise ValueError("a product needs at least one labelled indication")
        return value

    @property
    def concentration_mg_per_ml(self) -> float:
        return self.concentration.quantity.canonical

    def rate_mg_kg_min(self, quantity: Quantity) -> float:
        """A label rate in mg/kg/min. Weight-free shapes only: a label never states a rate per patient."""
        if quantity.shape not in (Shape.MASS_PER_MASS_TIME, Shape.VOLUME_PER_MASS_TIME):
            raise UnitError(f"a label rate must be per kg, not {quantity.unit.text!r}")
        return rate_to_mg_per_kg_min(quantity, self.concentration_mg_per_ml, 1.0)

    @property
    def excipients_on_file(self) -> bool:
        return not isinstance(self.excipients, NotOnFile)

    @property
    def sucrose_on_file(self) -> bool:
        return not isinstance(self.sucrose, NotOnFile)

    @property
    def excipient_list(self) -> list[Excipient]:
        return self.excipients if isinstance(self.excipients, list) else []

    @property
    def contraindication_list(self) -> list[RiskStatement]:
        return self.contraindications if isinstance(self.contraindications, list) else []

    @property
    def excipient_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.excipient_list)

    @property
    def label_name(self) -> str:
        """How a citation names the label: 'Privigen US PI (rev. 2022-03)'."""
        return f"{self.name} US PI (rev. {self.label.revised})"
