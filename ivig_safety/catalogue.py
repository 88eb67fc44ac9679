"""The product catalogue: rules/products/*.yaml, one file per product, every figure with its citation and tag.

Why a model per file: a pharmacist edits these files by hand. Loading them through pydantic turns a typo, a missing
citation, a figure tagged U or a rate in the wrong shape into an error that names the file and the field, at start-up,
before any plan is judged. Rates are stored as the label writes them and converted here, once, to mg/kg/min.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import RuleFileError, format_loc
from .units import RATE_SHAPES, Quantity, Shape, UnitError, expecting, rate_to_mg_per_kg_min
from .yamlio import load_yaml

Tag = Literal["L", "M"]
Kebab = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Cited(_Strict):
    """Anything taken from a label carries where it was read and how sure we are (package-inserts.md tags)."""

    citation: Annotated[str, Field(min_length=10)]
    tag: Tag

    @field_validator("tag", mode="before")
    @classmethod
    def _no_unverified(cls, value: Any) -> Any:
        if value == "U":
            raise ValueError("figures tagged U are unverified and may not ship as label figures; leave them out")
        return value


_RATE_SHAPES = tuple(sorted(RATE_SHAPES, key=lambda s: s.value))


class RateFigure(Cited):
    """A cited rate, in whatever rate unit the label writes it."""

    quantity: Annotated[Quantity, BeforeValidator(expecting(*_RATE_SHAPES, what="a rate"))] = Field(alias="value")


class TimeFigure(Cited):
    quantity: Annotated[Quantity, BeforeValidator(expecting(Shape.TIME, what="a duration"))] = Field(alias="value")


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


class Vials(Cited):
    value: list[str]

    @field_validator("value")
    @classmethod
    def _sizes(cls, value: list[str]) -> list[str]:
        for size in value:
            if not re.fullmatch(r"\d+(\.\d+)? g/\d+(\.\d+)? mL", size):
                raise ValueError(f'vial size {size!r} must read like "5 g/50 mL"')
        return value


class DaysRange(_Strict):
    min: Annotated[int, Field(ge=1, le=31)]
    max: Annotated[int, Field(ge=1, le=31)]

    @model_validator(mode="after")
    def _ordered(self) -> "DaysRange":
        if self.min > self.max:
            raise ValueError("days.min must not exceed days.max")
        return self


class DoseRegimen(Cited):
    """The label's regimen: a course dose (spread over the days) or a daily dose (given on each day)."""

    per_course: Any = None
    per_day: Any = None
    days: DaysRange

    @field_validator("per_course", "per_day", mode="before")
    @classmethod
    def _dose(cls, value: Any) -> Quantity | None:
        return None if value is None else expecting(Shape.MASS_PER_MASS, what="a dose per kg")(value)

    @model_validator(mode="after")
    def _one_dose(self) -> "DoseRegimen":
        if (self.per_course is None) == (self.per_day is None):
            raise ValueError("give exactly one of per_course and per_day")
        return self

    @property
    def course_g_per_kg(self) -> float:
        """The label's whole-course dose in g/kg (a daily dose times the fewest days)."""
        if self.per_course is not None:
            return self.per_course.canonical
        return self.per_day.canonical * self.days.min

    @property
    def max_daily_g_per_kg(self) -> float:
        """The largest daily dose the regimen allows, in g/kg."""
        if self.per_day is not None:
            return self.per_day.canonical
        return self.per_course.canonical / self.days.min


class Titration(Cited):
    interval: Any
    ladder: list[Any] | None = None

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Quantity:
        return expecting(Shape.TIME, what="a titration interval")(value)

    @field_validator("ladder", mode="before")
    @classmethod
    def _ladder(cls, value: Any) -> list[Quantity] | None:
        if value is None:
            return None
        parse = expecting(*_RATE_SHAPES, what="a titration rate")
        return [parse(v) for v in value]


class IndicationEntry(_Strict):
    """One labelled indication. Where the reference records no regimen, hold time or titration, the entry leaves
    it out: dose rules then do not fire, and the suggested schedule uses the policy's fallbacks (named in the
    report's citations)."""

    dose: DoseRegimen | None = None
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
    concentration: ConcentrationFigure  # type: ignore[valid-type]
    sucrose: BoolFigure | None = None  # None: the reference does not say
    excipients: list[Excipient] = []
    iga_content: Cited | None = None
    vials: Vials | None = None
    contraindications: list[RiskStatement] = []
    avoid: list[RiskStatement] = []
    at_risk_rate: RateFigure | None = None  # type: ignore[valid-type]
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

    @property
    def concentration_mg_per_ml(self) -> float:
        return self.concentration.quantity.canonical

    def rate_mg_kg_min(self, quantity: Quantity) -> float:
        """A label rate in mg/kg/min. Weight-free shapes only: a label never states a rate per patient."""
        if quantity.shape not in (Shape.MASS_PER_MASS_TIME, Shape.VOLUME_PER_MASS_TIME):
            raise UnitError(f"a label rate must be per kg, not {quantity.unit.text!r}")
        return rate_to_mg_per_kg_min(quantity, self.concentration_mg_per_ml, 1.0)

    @property
    def excipient_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.excipients)


class Catalogue:
    """All products, looked up by id or by any display name or alias (case and spacing ignored)."""

    def __init__(self, products: dict[str, Product]):
        self.products = products
        self._names: dict[str, str] = {}
        for product in products.values():
            for name in (product.id, product.name, *product.aliases):
                key = _name_key(name)
                if self._names.get(key, product.id) != product.id:
                    raise RuleFileError(f"products/{product.id}.yaml", product.id,
                                        f"name or alias {name!r} is already used by {self._names[key]}")
                self._names[key] = product.id

    def resolve(self, name: str) -> Product | None:
        product_id = self._names.get(_name_key(name))
        return self.products.get(product_id) if product_id else None


def _name_key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


class Vocabulary(_Strict):
    """The closed lists a plan may draw from (rules/vocabulary.yaml)."""

    indications: dict[Kebab, str]
    risk_factors: dict[Kebab, str]
    excipients: dict[Kebab, str]


def _load_model(model: type[BaseModel], path: Path, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{format_loc(e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise RuleFileError(str(path), None, problems) from None


def load_vocabulary(path: Path) -> Vocabulary:
    return _load_model(Vocabulary, path, load_yaml(path))


def load_catalogue(folder: Path, vocabulary: Vocabulary) -> Catalogue:
    """Load and cross-check every product file: ids match file names, indications and risk factors are known."""
    products: dict[str, Product] = {}
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RuleFileError(str(folder), None, "no product files (*.yaml) found")
    for path in files:
        product: Product = _load_model(Product, path, load_yaml(path))
        if product.id != path.stem:
            raise RuleFileError(str(path), product.id, f"product id must match the file name {path.stem!r}")
        if product.id in products:
            raise RuleFileError(str(path), product.id, "duplicate product id")
        for indication, entry in product.indications.items():
            if indication not in vocabulary.indications:
                raise RuleFileError(str(path), indication,
                                    f"unknown indication; known: {', '.join(vocabulary.indications)}")
            _check_rates(path, product, indication, entry)
        for excipient in product.excipients:
            if excipient.name not in vocabulary.excipients:
                raise RuleFileError(str(path), excipient.name, "unknown excipient (see vocabulary.yaml)")
        for statement in (*product.contraindications, *product.avoid):
            if statement.risk_factor not in vocabulary.risk_factors:
                raise RuleFileError(str(path), statement.risk_factor, "unknown risk factor (see vocabulary.yaml)")
        products[product.id] = product
    return Catalogue(products)


def _check_rates(path: Path, product: Product, indication: str, entry: IndicationEntry) -> None:
    try:
        initial = product.rate_mg_kg_min(entry.initial_rate.quantity)
        maximum = product.rate_mg_kg_min(entry.max_rate.quantity)
        at_risk_figure = entry.at_risk_rate or product.at_risk_rate
        at_risk = product.rate_mg_kg_min(at_risk_figure.quantity) if at_risk_figure else None
        ladder = [product.rate_mg_kg_min(q) for q in (entry.titration.ladder if entry.titration else None) or []]
    except UnitError as exc:
        raise RuleFileError(str(path), indication, str(exc)) from None
    if not 0 < initial <= maximum:
        raise RuleFileError(str(path), indication, "initial_rate must be positive and not above max_rate")
    if at_risk is not None and not 0 < at_risk:
        raise RuleFileError(str(path), indication, "at_risk_rate must be positive")
    if ladder and (ladder != sorted(ladder) or ladder[-1] > maximum or ladder[0] <= 0):
        raise RuleFileError(str(path), indication,
                            "titration ladder must climb, stay positive and end at or below max_rate")
