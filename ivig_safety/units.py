"""Quantities with units: the one shared pint registry, cached parsing and structure checks.

Why this module exists: a unit slip is a tenfold overdose, and pint alone does not catch every slip. ``g/kg`` is
dimensionless like ``%``, and ``mg/kg/min`` has the dimension 1/[time] like ``mL/mL/min``, so a dimension check is not
enough. Every unit is therefore classified by the dimensions of its numerator and its denominator separately
(mass per mass per time, volume per time, ...), and only the shapes a field accepts get through.

Parsing a compound unit with pint costs 100-175 us a call, so unit strings are parsed once and cached, the number is
read with a regular expression, and everything downstream works with plain floats in canonical units.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, Callable

import pint

def _registry() -> pint.UnitRegistry:
    """pint parses its definition file on every start (about 350 ms); with a cache folder it loads in about 30 ms.
    A read-only home must not stop the engine, so an unusable cache falls back to parsing."""
    try:
        return pint.UnitRegistry(autoconvert_offset_to_baseunit=False, cache_folder=":auto:")
    except Exception:  # noqa: BLE001 - any cache problem: parse the definitions instead
        return pint.UnitRegistry(autoconvert_offset_to_baseunit=False)


#: The single registry of the package. Created eagerly at import, because contexts and definitions are registry-wide.
ureg: pint.UnitRegistry = _registry()

_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")


class UnitError(ValueError):
    """A quantity that cannot be read, or whose unit has the wrong shape for its field."""


class Shape(str, Enum):
    """The shapes a unit can have, judged by numerator and denominator separately."""

    MASS = "mass"
    LENGTH = "length"
    TIME = "time"
    VOLUME = "volume"
    MASS_PER_MASS = "mass/mass"  # dose per kg: g/kg
    MASS_PER_VOLUME = "mass/volume"  # concentration: mg/mL
    VOLUME_PER_MASS = "volume/mass"  # volume per kg: mL/kg
    MASS_PER_MASS_TIME = "mass/mass/time"  # mg/kg/min
    VOLUME_PER_MASS_TIME = "volume/mass/time"  # mL/kg/min, mL/kg/h
    VOLUME_PER_TIME = "volume/time"  # mL/h
    MASS_PER_TIME = "mass/time"  # mg/min
    DIMENSIONLESS = "dimensionless"  # %, plain numbers
    OTHER = "other"


#: The canonical unit of each shape; every float that leaves this module is in one of these.
CANONICAL: dict[Shape, str] = {
    Shape.MASS: "kg",
    Shape.LENGTH: "cm",
    Shape.TIME: "min",
    Shape.VOLUME: "mL",
    Shape.MASS_PER_MASS: "g/kg",
    Shape.MASS_PER_VOLUME: "mg/mL",
    Shape.VOLUME_PER_MASS: "mL/kg",
    Shape.MASS_PER_MASS_TIME: "mg/kg/min",
    Shape.VOLUME_PER_MASS_TIME: "mL/kg/min",
    Shape.VOLUME_PER_TIME: "mL/min",
    Shape.MASS_PER_TIME: "mg/min",
    Shape.DIMENSIONLESS: "",
}

#: Shapes an infusion rate may be written in; concentration and weight convert between them.
RATE_SHAPES = frozenset(
    {Shape.MASS_PER_MASS_TIME, Shape.VOLUME_PER_MASS_TIME, Shape.VOLUME_PER_TIME, Shape.MASS_PER_TIME}
)

_MASS = ureg.kilogram.dimensionality
_LENGTH = ureg.meter.dimensionality
_TIME = ureg.second.dimensionality
_VOLUME = ureg.liter.dimensionality
_NONE = ureg.dimensionless.dimensionality

_SHAPES: dict[tuple[Any, Any], Shape] = {
    (_MASS, _NONE): Shape.MASS,
    (_LENGTH, _NONE): Shape.LENGTH,
    (_TIME, _NONE): Shape.TIME,
    (_VOLUME, _NONE): Shape.VOLUME,
    (_MASS, _MASS): Shape.MASS_PER_MASS,
    (_MASS, _VOLUME): Shape.MASS_PER_VOLUME,
    (_VOLUME, _MASS): Shape.VOLUME_PER_MASS,
    (_MASS, _MASS * _TIME): Shape.MASS_PER_MASS_TIME,
    (_VOLUME, _MASS * _TIME): Shape.VOLUME_PER_MASS_TIME,
    (_VOLUME, _TIME): Shape.VOLUME_PER_TIME,
    (_MASS, _TIME): Shape.MASS_PER_TIME,
}


@dataclass(frozen=True, slots=True)
class ParsedUnit:
    """A unit string parsed once: its shape, and the factor that takes a magnitude to the shape's canonical unit."""

    text: str
    shape: Shape
    to_canonical: float


@dataclass(frozen=True, slots=True)
class Quantity:
    """A finite magnitude in a parsed unit; ``canonical`` is the magnitude in the shape's canonical unit."""

    magnitude: float
    unit: ParsedUnit

    @property
    def canonical(self) -> float:
        return self.magnitude * self.unit.to_canonical

    @property
    def shape(self) -> Shape:
        return self.unit.shape

    def __str__(self) -> str:
        return f"{format_number(self.magnitude)} {self.unit.text}".strip()


def _part_dimensionality(units: dict[str, float], sign: int) -> Any:
    dim = ureg.dimensionless.dimensionality
    for name, exponent in units.items():
        if exponent * sign > 0:
            dim = dim * ureg.Unit(name).dimensionality ** abs(exponent)
    return dim


@lru_cache(maxsize=4096)
def parse_unit(text: str) -> ParsedUnit:
    """Parse and classify a unit string (cached: pint's parser is the slowest step of reading a plan)."""
    cleaned = text.strip()
    if cleaned in ("", "1"):
        return ParsedUnit(cleaned, Shape.DIMENSIONLESS, 1.0)
    try:
        unit = ureg.Unit(cleaned)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError, TypeError,
            ValueError, AssertionError, KeyError) as exc:
        raise UnitError(f"unknown unit {cleaned!r}") from exc
    except Exception as exc:  # pint's tokenizer raises assorted errors on garbage; all mean "not a unit"
        raise UnitError(f"unknown unit {cleaned!r}") from exc
    units: dict[str, float] = {name: float(exponent) for name, exponent in unit._units.items()}  # type: ignore[arg-type]
    if not units:
        return ParsedUnit(cleaned, Shape.DIMENSIONLESS, 1.0)
    numerator = _part_dimensionality(units, +1)
    denominator = _part_dimensionality(units, -1)
    shape = _SHAPES.get((numerator, denominator))
    if shape is None:
        if unit.dimensionless and all(e > 0 for e in units.values()):
            shape = Shape.DIMENSIONLESS  # %, ppm
        else:
            return ParsedUnit(cleaned, Shape.OTHER, math.nan)
    factor = float(ureg.Quantity(1.0, unit).to(CANONICAL[shape]).magnitude) if shape is not Shape.DIMENSIONLESS \
        else float(ureg.Quantity(1.0, unit).to("dimensionless").magnitude)
    return ParsedUnit(cleaned, shape, factor)


def parse_quantity(value: Any) -> Quantity:
    """Read "70 kg", {"value": 70, "unit": "kg"} or a bare number (dimensionless) into a finite Quantity."""
    if isinstance(value, Quantity):
        return value
    if isinstance(value, dict):
        extra = set(value) - {"value", "unit"}
        if extra or "value" not in value or "unit" not in value:
            raise UnitError('a quantity object needs exactly the keys "value" and "unit"')
        magnitude, unit_text = value["value"], value["unit"]
        if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
            raise UnitError(f"value must be a number, not {type(magnitude).__name__}")
        if not isinstance(unit_text, str):
            raise UnitError("unit must be a string")
        magnitude = float(magnitude)
    elif isinstance(value, str):
        return _parse_text(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        magnitude, unit_text = float(value), ""
    else:
        raise UnitError(f'expected a quantity such as "70 kg" or {{"value": 70, "unit": "kg"}}, '
                        f"not {type(value).__name__}")
    if not math.isfinite(magnitude):
        raise UnitError("value must be a finite number")
    return Quantity(magnitude, parse_unit(unit_text))


@lru_cache(maxsize=65536)
def _parse_text(value: str) -> Quantity:
    """A "value unit" string, parsed once: order files repeat the same few quantities thousands of times."""
    match = _NUMBER.match(value)
    if not match:
        raise UnitError(f'{value!r} is not a quantity; write a number and a unit, e.g. "70 kg"')
    magnitude = float(match.group(1))
    if not math.isfinite(magnitude):
        raise UnitError("value must be a finite number")
    return Quantity(magnitude, parse_unit(match.group(2)))


def expect(value: Any, *shapes: Shape, what: str) -> Quantity:
    """Parse ``value`` and insist its unit has one of ``shapes``; the error says what was expected."""
    quantity = parse_quantity(value)
    if quantity.shape not in shapes:
        wanted = " or ".join(f"{s.value} (e.g. {_EXAMPLES[s]})" for s in shapes)
        unit = quantity.unit.text or "no unit"
        raise UnitError(f"{what} must be {wanted}; {unit!r} is {quantity.shape.value}")
    return quantity


def expecting(*shapes: Shape, what: str) -> Callable[[Any], Quantity]:
    """A field validator: :func:`expect` with the shapes bound. UnitError is a ValueError, which pydantic reports
    as a validation error naming the field, so plan, product and policy models all validate quantities this way."""
    def validate(value: Any) -> Quantity:
        return expect(value, *shapes, what=what)
    return validate


_EXAMPLES = {
    Shape.MASS: "70 kg", Shape.LENGTH: "170 cm", Shape.TIME: "30 min", Shape.VOLUME: "100 mL",
    Shape.MASS_PER_MASS: "2 g/kg", Shape.MASS_PER_VOLUME: "100 mg/mL", Shape.VOLUME_PER_MASS: "10 mL/kg",
    Shape.MASS_PER_MASS_TIME: "4 mg/kg/min", Shape.VOLUME_PER_MASS_TIME: "0.04 mL/kg/min",
    Shape.VOLUME_PER_TIME: "168 mL/h", Shape.MASS_PER_TIME: "280 mg/min", Shape.DIMENSIONLESS: "5 %",
    Shape.OTHER: "",
}


def rate_to_mg_per_kg_min(quantity: Quantity, concentration_mg_per_ml: float, weight_kg: float) -> float:
    """Convert any rate shape to mg/kg/min for this product (concentration) and this patient (weight)."""
    value = quantity.canonical
    shape = quantity.shape
    if shape is Shape.MASS_PER_MASS_TIME:
        return value
    if shape is Shape.VOLUME_PER_MASS_TIME:
        return value * concentration_mg_per_ml
    if shape is Shape.VOLUME_PER_TIME:
        return value * concentration_mg_per_ml / weight_kg
    if shape is Shape.MASS_PER_TIME:
        return value / weight_kg
    raise UnitError(f"{quantity.unit.text!r} is not a rate")


def mg_per_kg_min_to(unit: ParsedUnit, rate: float, concentration_mg_per_ml: float, weight_kg: float) -> float:
    """The inverse of :func:`rate_to_mg_per_kg_min`: express a canonical rate in ``unit`` for this patient."""
    shape = unit.shape
    if shape is Shape.MASS_PER_MASS_TIME:
        canonical = rate
    elif shape is Shape.VOLUME_PER_MASS_TIME:
        canonical = rate / concentration_mg_per_ml
    elif shape is Shape.VOLUME_PER_TIME:
        canonical = rate * weight_kg / concentration_mg_per_ml
    elif shape is Shape.MASS_PER_TIME:
        canonical = rate * weight_kg
    else:
        raise UnitError(f"{unit.text!r} is not a rate")
    return canonical / unit.to_canonical


def format_number(value: float, significant: int = 4) -> str:
    """A number as a person writes it: up to ``significant`` digits, no exponent, no trailing zeros."""
    if significant == 4 and 1e-3 <= abs(value) < 9999.5:
        return f"{value:.4g}"  # the common case, 10x faster; %g drops trailing zeros and uses no exponent here
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    digits = max(significant - int(math.floor(math.log10(abs(value)))) - 1, 0)
    text = f"{round(value, digits):.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
