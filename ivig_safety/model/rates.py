"""Rates between the shapes an infusion rate may be written in (mg/kg/min, mL/kg/min, mL/h, mg/min), for one
product's concentration and one patient's weight.
"""

from __future__ import annotations

from .units import ParsedUnit, Quantity, Shape, UnitError


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
