"""UCUM codes read as UCUM: a FHIR Quantity whose ``system`` is http://unitsofmeasure.org has a ``code`` that must
parse under the UCUM grammar (ucumvert's), and it is then translated, atom by atom, into the unit text of the
package's one pint registry.

Why not hand the code to pint: UCUM and pint disagree on spellings that matter here. ``[lb_av]`` is not a pint
unit; ``mg/kg/min`` and ``mg/(kg.min)`` are both valid UCUM and mean the same; ``mL/min/{1.73_m2}`` carries an
annotation that is not a unit; and pint accepts things UCUM does not (``mL/hr``). Reading the grammar first and then
only a short list of atoms (mass, volume, time, length) means a unit outside that list is refused by name, never
guessed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"

#: UCUM atoms this package reads, and their spelling in the pint registry. Anything else is refused by name.
_ATOMS = {
    "g": "g", "l": "L", "L": "L", "s": "s", "min": "min", "h": "h", "d": "d", "wk": "week", "m": "m",
    "[lb_av]": "lb", "[oz_av]": "oz", "[in_i]": "inch", "[ft_i]": "foot", "%": "percent",
}
#: UCUM prefixes allowed on the metric atoms above (the usual clinical ones).
_PREFIXES = {"k": "k", "h": "h", "da": "da", "d": "d", "c": "c", "m": "m", "u": "u", "n": "n"}
#: FHIR's UnitsOfTime (Timing.repeat.durationUnit/periodUnit): s | min | h | d | wk | mo | a. Months and years have
#: no fixed length and are refused where a duration must be exact.
UNITS_OF_TIME = {"s": "s", "min": "min", "h": "h", "d": "d", "wk": "week"}


class UcumError(ValueError):
    """A code that is not valid UCUM, or valid UCUM that this package does not read."""


@lru_cache(maxsize=1)
def _parser() -> Any:
    from ucumvert import get_ucum_parser  # imported on first use: plans written in YAML never need it

    return get_ucum_parser()


@lru_cache(maxsize=1024)
def ucum_to_unit(code: str) -> str:
    """The pint unit text for a UCUM code ("mL/(kg.min)" -> "mL/(kg*min)"); UcumError says why not."""
    from lark.exceptions import LarkError

    if not isinstance(code, str) or not code.strip() or len(code) > 40:
        raise UcumError(f"{code!r} is not a UCUM code")
    if code != code.strip():
        raise UcumError(f"{code!r} is not valid UCUM (spaces are not allowed)")
    try:
        tree = _parser().parse(code)
    except LarkError:
        raise UcumError(f"{code!r} is not valid UCUM") from None
    return _render(tree)


def _render(node: Any) -> str:
    from lark import Token, Tree

    if isinstance(node, Token):
        if node.type == "ANNOTATION":
            return "1"  # {1.73_m2}, {score}: an annotation is a comment, unit 1
        if node.type == "EXPONENT":
            return str(int(node))
        raise UcumError(f"UCUM element {str(node)!r} is not read here")
    assert isinstance(node, Tree)
    kind = node.data
    children = node.children
    if kind == "main_term":
        if len(children) == 2:  # "/min": a leading division
            return f"1/({_render(children[1])})"
        return _render(children[0])
    if kind == "term":
        left, operator, right = children
        if str(operator) == "/" and _is_product(right):  # mL/(kg.min) reads as mL/kg/min, as people write it
            return "/".join([_render(left), *(_render(part) for part in _factors(right))])
        shown = _render(right)
        if any(op in shown for op in "*/"):
            shown = f"({shown})"
        return f"{_render(left)}{'*' if str(operator) == '.' else '/'}{shown}"
    if kind == "component":  # a unit followed by an annotation: the annotation is dropped
        return _render(children[0])
    if kind == "annotatable":
        if len(children) == 2 and getattr(children[1], "type", None) == "EXPONENT":
            power = int(children[1])
            base = f"{_render(children[0])}**{abs(power)}"
            return base if power > 0 else f"(1/{base})"
        return _render(children[0])
    if kind == "simple_unit":
        return _simple_unit(children)
    raise UcumError(f"UCUM construct {kind!r} is not read here")


def _unwrap(node: Any) -> Any:
    while getattr(node, "data", None) in ("main_term", "annotatable") and len(node.children) == 1:
        node = node.children[0]
    return node


def _is_product(node: Any) -> bool:
    node = _unwrap(node)
    return getattr(node, "data", None) == "term" and str(node.children[1]) == "." and all(
        getattr(_unwrap(part), "data", None) == "simple_unit" or _is_product(part)
        for part in (node.children[0], node.children[2]))


def _factors(node: Any) -> list[Any]:
    node = _unwrap(node)
    if getattr(node, "data", None) == "term":
        return [*_factors(node.children[0]), *_factors(node.children[2])]
    return [node]


def _simple_unit(children: list[Any]) -> str:
    if len(children) == 1:
        atom, prefix = str(children[0]), ""
    else:
        prefix, atom = str(children[0]), str(children[1])
    if atom not in _ATOMS:
        raise UcumError(f"UCUM unit {prefix + atom!r} is valid UCUM but not a mass, volume, time or length "
                        "unit this package reads")
    if prefix and (prefix not in _PREFIXES or atom not in ("g", "l", "L", "s", "m")):
        raise UcumError(f"UCUM unit {prefix + atom!r} is not read here")
    return _PREFIXES.get(prefix, "") + _ATOMS[atom]
