"""Quantities with units: the one shared pint registry, cached parsing and structure checks.

Why this module exists: a unit slip is a tenfold overdose, and pint alone does not catch every slip. ``g/kg`` is
dimensionless like ``%``, and ``mg/kg/min`` has the dimension 1/[time] like ``mL/mL/min``, so a dimension check is not
enough. Every unit is therefore classified by the dimensions of its numerator and its denominator separately
(mass per mass per time, volume per time, ...), and only the shapes a field accepts get through.

A quantity is a number and a unit and nothing else. pint reads more than that (``#`` starts a comment, Unicode digits
are digits, prefixes run to ronna and quetta), so the text is held to a strict form before pint sees it: an ASCII
number, a unit of letters, digits, ``/ * . ^ ( ) %``, spaces and the micro sign, at most ``MAX_UNIT_CHARS`` long;
the magnitude, and the value in the canonical unit, finite and at most ``MAX_MAGNITUDE``. The error names the
offending character by its code point, so a control or bidi character in the input never reaches a terminal.

Parsing a compound unit with pint costs 100-175 us a call, so unit strings are parsed once and cached, the number is
read with a regular expression, and everything downstream works with plain floats in canonical units.

pint's own disk cache (``cache_folder=":auto:"``) is a pickle in ~/.cache/pint, shared with every pint program of the
account and unpickled without a check: whoever can write there runs code in this process. The cache used here is a
private folder (see :func:`private_cache_folder`), verified before every use; when it cannot be trusted the
definitions are parsed instead (about 350 ms more at start-up).
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .numbers import format_number  # here too: where every caller has imported it from

import pint

#: Longest unit text accepted ("mL/kg/min" is 9); longer text is refused before pint parses it.
MAX_UNIT_CHARS = 40
#: Longest quantity text accepted (number, spaces and unit); refused before parsing or caching.
MAX_QUANTITY_CHARS = 80
#: Distinct quantity texts each plan field keeps validated (quantity_validator); an order file uses a few hundred.
FIELD_CACHE_SIZE = 4096
#: Largest magnitude, and largest value in the canonical unit, any quantity may have. Far beyond anything real
#: (the plan model sets the plausible range per field), and small enough that the engine's integer millionths
#: (fields.SCALE) and every later product of two quantities stay finite and within 64 bits.
MAX_MAGNITUDE = 1e12


def private_cache_folder() -> Path | None:
    """The folder pint's parsed definitions may be cached in, or None when no folder can be trusted.

    ``$XDG_CACHE_HOME/ivig-safety/pint-<pint version>`` (``~/.cache/...`` when XDG_CACHE_HOME is unset or not an
    absolute path), created with mode 0700. It is used only if the two folders this package creates are real
    directories (not symlinks), owned by this user and closed to group and others, everything in the cache folder is
    a regular file of this user that nobody else may write, and the base folder is not one another user could swap
    them in (writable by others without the sticky bit, or owned by another user than this one or root).
    """
    base_text = os.environ.get("XDG_CACHE_HOME", "")
    if not base_text or not os.path.isabs(base_text):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base_text = os.path.join(home, ".cache")
    base = Path(base_text)
    app = base / "ivig-safety"
    folder = app / f"pint-{pint.__version__}"
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.stat(base)  # the user's own cache folder may be a symlink (e.g. to another disk): its target counts
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (os.getuid(), 0):
            return None
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return None
        for path in (app, folder):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            if not _private_dir(path):
                return None
        for entry in os.scandir(folder):
            entry_info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(entry_info.st_mode) or entry_info.st_uid != os.getuid() \
                    or entry_info.st_mode & 0o022:
                return None
    except OSError:
        return None
    return folder


def _private_dir(path: Path) -> bool:
    """A real directory (not a symlink), owned by this user, with no permission for group or others."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _registry() -> pint.UnitRegistry:
    """pint parses its definition file on every start (about 350 ms); with a cache folder it loads in about 30 ms.
    The cache is the private folder or nothing: a read-only home, or a folder that fails verification, falls back to
    parsing."""
    folder = private_cache_folder()
    if folder is not None:
        try:
            return pint.UnitRegistry(autoconvert_offset_to_baseunit=False, cache_folder=folder)
        except Exception:  # noqa: BLE001 - any cache problem (e.g. a stale or truncated file): parse instead
            pass
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=False)


#: The single registry of the package. Created eagerly at import, because contexts and definitions are registry-wide.
ureg: pint.UnitRegistry = _registry()

#: "value unit": an ASCII number ([0-9.eE+-] only: Python's \\d also matches Arabic-Indic or fullwidth digits), then
#: the unit. Spaces only (no tabs, no Unicode spaces) around and between them.
_NUMBER = re.compile(r" *([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?) *(.*?) *", re.ASCII)
#: Everything a unit may contain: ASCII letters and digits, / * . ^ ( ) %, space, and the micro sign (U+00B5) or
#: Greek mu (U+03BC). Notably not '#' (pint reads the rest of the text as a comment), '-', '_', ',', ';' or quotes.
_UNIT_TEXT = re.compile(r"[A-Za-z0-9/*.^()% \u00b5\u03bc]*")
#: The characters of a whole quantity text: a unit's, and the number's sign.
_QUANTITY_TEXT = re.compile(r"[A-Za-z0-9/*.^()% \u00b5\u03bc+-]*")
#: Bidirectional formatting characters (they reorder what a reader sees): ALM, LRM, RLM, LRE..RLO, LRI..PDI.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


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
    _screen(text, _UNIT_TEXT, MAX_UNIT_CHARS, "a unit")
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
    try:
        factor = float(ureg.Quantity(1.0, unit).to(CANONICAL[shape] if shape is not Shape.DIMENSIONLESS
                                                    else "dimensionless").magnitude)
    except (ArithmeticError, ValueError) as exc:  # e.g. OverflowError for a prefix raised to a huge power
        raise UnitError(f"unit {cleaned!r} is out of range") from exc
    if not math.isfinite(factor) or factor == 0:
        raise UnitError(f"unit {cleaned!r} is out of range")
    return ParsedUnit(cleaned, shape, factor)


def parse_quantity(value: Any) -> Quantity:
    """Read "70 kg", {"value": 70, "unit": "kg"} or a bare number (dimensionless) into a finite Quantity.

    Raises :class:`UnitError` naming the problem for anything else: text that is not exactly a number and a unit
    (see the module's docstring), a magnitude or canonical value that is not finite or beyond ``MAX_MAGNITUDE``.
    """
    if isinstance(value, Quantity):
        return value
    if isinstance(value, str):
        if len(value) > MAX_QUANTITY_CHARS:  # before the cache: a megabyte of text is never a key
            raise UnitError(f"a quantity is longer than {MAX_QUANTITY_CHARS} characters; write a number and a unit, "
                            f'e.g. "70 kg"')
        return _parse_text(value)
    if isinstance(value, dict):
        extra = set(value) - {"value", "unit"}
        if extra or "value" not in value or "unit" not in value:
            raise UnitError('a quantity object needs exactly the keys "value" and "unit"')
        magnitude, unit_text = value["value"], value["unit"]
        if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
            raise UnitError(f"value must be a number, not {type(magnitude).__name__}")
        if not isinstance(unit_text, str):
            raise UnitError("unit must be a string")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        magnitude, unit_text = value, ""
    else:
        raise UnitError(f'expected a quantity such as "70 kg" or {{"value": 70, "unit": "kg"}}, '
                        f"not {type(value).__name__}")
    return _quantity(_magnitude(magnitude), parse_unit(unit_text))


@lru_cache(maxsize=65536)
def _parse_text(value: str) -> Quantity:
    """A "value unit" string, parsed once: order files repeat the same few quantities thousands of times."""
    _screen(value, _QUANTITY_TEXT, MAX_QUANTITY_CHARS, "a quantity")
    match = _NUMBER.fullmatch(value)
    if not match:
        raise UnitError(f'{value!r} is not a quantity; write a number and a unit, e.g. "70 kg"')
    return _quantity(_magnitude(float(match.group(1))), parse_unit(match.group(2)))


def _magnitude(value: int | float) -> float:
    """A finite float within MAX_MAGNITUDE (an int too large for a float is out of range, not an OverflowError)."""
    try:
        magnitude = float(value)
    except OverflowError:
        raise UnitError(f"value is out of range: at most {MAX_MAGNITUDE:g} in absolute value") from None
    if not math.isfinite(magnitude):
        raise UnitError("value must be a finite number")
    if abs(magnitude) > MAX_MAGNITUDE:
        raise UnitError(f"value {magnitude:g} is out of range: at most {MAX_MAGNITUDE:g} in absolute value")
    return magnitude


def _quantity(magnitude: float, unit: ParsedUnit) -> Quantity:
    """The Quantity, once its value in the canonical unit is known to be finite, non-zero if the magnitude is, and
    within MAX_MAGNITUDE (a ronna- or quetta-prefixed unit can take a small number far out of range)."""
    quantity = Quantity(magnitude, unit)
    if unit.shape is not Shape.OTHER:  # a unit of no known shape is refused by the field, naming its shape
        canonical = quantity.canonical
        target = CANONICAL[unit.shape] or "no unit"
        if not math.isfinite(canonical) or abs(canonical) > MAX_MAGNITUDE:
            raise UnitError(f"{magnitude:g} {unit.text} is {canonical:g} {target}, out of range: at most "
                            f"{MAX_MAGNITUDE:g} {target} in absolute value")
        if canonical == 0 and magnitude != 0:
            raise UnitError(f"{magnitude:g} {unit.text} is too small to represent in {target}")
    return quantity


def _screen(text: str, allowed: re.Pattern[str], limit: int, what: str) -> None:
    """Refuse text longer than ``limit`` or with a character outside ``allowed``, naming the character by its
    code point (never echoing it: it may be a control or bidi character meant for a terminal)."""
    if len(text) > limit:
        raise UnitError(f"{what} is longer than {limit} characters")
    if allowed.fullmatch(text):
        return
    position, char = next((i, c) for i, c in enumerate(text) if not allowed.fullmatch(c))
    rule = "may only be a number and a unit" if allowed is _QUANTITY_TEXT else \
        "may only contain letters, digits, / * . ^ ( ) %, spaces and the micro sign"
    raise UnitError(f"{what} {rule}; character {position + 1} is {_describe(char)}")


def _describe(char: str) -> str:
    import unicodedata

    code = f"U+{ord(char):04X}"
    category = unicodedata.category(char)
    if char == "#":
        return "'#' (a comment is not part of a quantity)"
    if category == "Cc":
        return f"a control character {code}"
    if char in _BIDI:
        return f"a bidirectional control character {code}"
    if category == "Nd":
        return f"{code} ({unicodedata.name(char, 'a digit')}): write the number with ASCII digits 0-9"
    if char.isascii() and char.isprintable():
        return f"{char!r} (a unit is letters, digits, / * . ^ ( ) %% and spaces)".replace("%%", "%")
    name = unicodedata.name(char, "")
    return f"{code}" + (f" ({name})" if name else "") + " (use ASCII letters, digits and / * . ^ ( ) %)"


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
    as a validation error naming the field, so product and policy models validate quantities this way (the plan
    model, validated once per order, uses the cheaper :func:`quantity_validator`).

    A quantity text that passes is cached per field (one cache lookup instead of three calls: validating the
    quantities was a fifth of validating a plan). Text that fails is not cached (lru_cache keeps no exceptions) and
    is refused with the same message every time; text longer than MAX_QUANTITY_CHARS never becomes a key."""
    def validate(value: Any) -> Quantity:
        return expect(value, *shapes, what=what)

    cached = lru_cache(maxsize=4096)(validate)

    def validate_cached(value: Any) -> Quantity:
        if type(value) is str and len(value) <= MAX_QUANTITY_CHARS:
            return cached(value)
        return validate(value)
    return validate_cached


def quantity_validator(*shapes: Shape, what: str, check: Callable[[Quantity], Quantity] | None = None
                       ) -> Callable[[Any, Callable[[Any], Any]], Quantity]:
    """A wrap validator for a field typed ``Quantity``: :func:`expect` with ``shapes``, then the field's own
    ``check`` (its plausibility bounds: raise ValueError, or return the quantity), in one call.

    Why a wrap and not BeforeValidator(:func:`expecting`) plus an after validator for the bounds: Quantity and
    ParsedUnit are dataclasses, so behind a BeforeValidator pydantic validated every quantity again field by field
    and built a new Quantity and ParsedUnit (about 0.9 us a quantity, a third of validating a plan), and the bounds
    were one more call. A quantity read here from text, a number or a {"value", "unit"} object was built by
    :func:`parse_quantity` and is finite and well-formed already, so it is returned as it is (both are frozen, so
    sharing them is safe). A Quantity *object* given as input (a Python caller, model_construct, model_copy) is
    vouched for by nobody: it still goes through pydantic's dataclass validation (``handler``) between the shape and
    the bounds, exactly as before.

    Text that passes is cached with the result of ``check``: one dict lookup per field. A plain dict rather than
    lru_cache, whose hit moves the entry in its recency list (about 0.07 us more a field, 0.5 us a plan); when it
    holds FIELD_CACHE_SIZE texts it is emptied and fills again with the texts in use. Text that fails either check
    raises before it is stored, and is refused with the same message every time; text longer than
    MAX_QUANTITY_CHARS is never looked up or stored. Every entry is a frozen Quantity that is right for its key, so
    threads sharing the cache can at worst store one twice. Errors are those of expect() and of ``check``, raised in
    this order, so pydantic reports them as before: a value_error at the field, with the field's input."""
    def validate(value: Any) -> Quantity:
        quantity = expect(value, *shapes, what=what)
        return check(quantity) if check is not None else quantity

    cache: dict[str, Quantity] = {}

    def validate_field(value: Any, handler: Callable[[Any], Any]) -> Quantity:
        if type(value) is str and len(value) <= MAX_QUANTITY_CHARS:
            quantity = cache.get(value)
            if quantity is None:
                quantity = validate(value)
                if len(cache) >= FIELD_CACHE_SIZE:
                    cache.clear()
                cache[value] = quantity
            return quantity
        if isinstance(value, Quantity):
            if not isinstance(value.unit, ParsedUnit):  # e.g. Quantity(70.0, "kg"): its shape cannot be read
                raise UnitError(f"{what}: a Quantity's unit must be a ParsedUnit (units.parse_unit), not "
                                f"{type(value.unit).__name__}; or give the quantity as text, e.g. "
                                f"{_EXAMPLES[shapes[0]]!r}")
            quantity = handler(expect(value, *shapes, what=what))
            quantity = check(quantity) if check is not None else quantity
            if not math.isfinite(quantity.magnitude):  # as parse_quantity refuses NaN and inf in text or numbers
                raise UnitError(f"{what} must be a finite number, not {quantity.magnitude}")
            return quantity
        return validate(value)
    return validate_field


_EXAMPLES = {
    Shape.MASS: "70 kg", Shape.LENGTH: "170 cm", Shape.TIME: "30 min", Shape.VOLUME: "100 mL",
    Shape.MASS_PER_MASS: "2 g/kg", Shape.MASS_PER_VOLUME: "100 mg/mL", Shape.VOLUME_PER_MASS: "10 mL/kg",
    Shape.MASS_PER_MASS_TIME: "4 mg/kg/min", Shape.VOLUME_PER_MASS_TIME: "0.04 mL/kg/min",
    Shape.VOLUME_PER_TIME: "168 mL/h", Shape.MASS_PER_TIME: "280 mg/min", Shape.DIMENSIONLESS: "5 %",
    Shape.OTHER: "",
}
