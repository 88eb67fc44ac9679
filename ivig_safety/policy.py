"""Site policy: the institutional choices (never label figures), each with its default and provenance.

Why a file: hospitals differ (what age counts as advanced, what cap to use where a label only says "minimum
practicable", how finely their pumps step). Those choices are data in rules/policy.yaml; a site overlays its own file
and the report names the policy and its sha256, so a verdict can always be traced to the choices behind it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import RuleFileError
from .units import RATE_SHAPES, Quantity, Shape, UnitError, expect
from .yamlio import load_yaml


def _number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"must be a number from {low} to {high}")
        return float(value)
    return parse


def _quantity(*shapes: Shape) -> Callable[[Any], Quantity]:
    def parse(value: Any) -> Quantity:
        quantity = expect(value, *shapes, what="this entry")
        if quantity.magnitude <= 0:
            raise ValueError("must be positive")
        return quantity
    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(value)
    return parse


#: Every key a policy may set, with the parser that validates its value. Unknown keys are errors.
SCHEMA: dict[str, Callable[[Any], Any]] = {
    "advanced_age_over": _number(18, 120),
    "at_risk_rate_when_label_silent": _quantity(*RATE_SHAPES),
    "high_daily_dose": _quantity(Shape.MASS_PER_MASS),
    "dose_ratio_above_label": _number(1.0, 2.0),
    "dose_ratio_below_label": _number(0.1, 1.0),
    "titration_factor_when_label_silent": _number(1.1, 10),
    "initial_hold_when_label_silent": _quantity(Shape.TIME),
    "titration_interval_when_label_silent": _quantity(Shape.TIME),
    "pump_rate_resolution": _quantity(Shape.VOLUME_PER_TIME),
    "dosing_weight": _choice("actual", "adjusted"),
    "adjusted_weight_trigger": _choice("bmi", "percent-ibw", "always"),
    "adjusted_weight_threshold": _number(0, 300),
    "adjusted_weight_factor": _number(0, 1),
    "adjusted_weight_min_age": _number(0, 130),
    "adjusted_weight_min_height": _quantity(Shape.LENGTH),
    "dose_rounding": _choice("none", "nearest-vial", "nearest-5g"),
    "dose_rounding_tolerance": _number(0, 0.2),
    "volume_load_daily": _quantity(Shape.VOLUME),
}


@dataclass(frozen=True)
class Policy:
    """Validated policy values, the provenance of each, and the identity (name, sha256) of the files behind them."""

    name: str
    values: dict[str, Any]
    provenance: dict[str, str]
    sha256: str

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def _read(path: Path, *, require_all: bool) -> tuple[str, dict[str, Any], dict[str, str]]:
    data = load_yaml(path)
    if not isinstance(data, dict) or set(data) - {"name", "entries"} or not isinstance(data.get("entries"), dict):
        raise RuleFileError(str(path), None, "a policy file has a 'name' and a mapping 'entries' (and nothing else)")
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for key, entry in data["entries"].items():
        if key not in SCHEMA:
            raise RuleFileError(str(path), str(key), f"unknown policy key; known: {', '.join(SCHEMA)}")
        if not isinstance(entry, dict) or set(entry) != {"value", "provenance"} or not str(entry["provenance"]).strip():
            raise RuleFileError(str(path), key, "each entry needs exactly 'value' and a non-empty 'provenance'")
        try:
            values[key] = SCHEMA[key](entry["value"])
        except (ValueError, UnitError) as exc:
            raise RuleFileError(str(path), key, str(exc)) from None
        provenance[key] = " ".join(str(entry["provenance"]).split())
    if require_all and (missing := set(SCHEMA) - set(values)):
        raise RuleFileError(str(path), None,
                            f"the default policy must set every key; missing: {', '.join(sorted(missing))}")
    return str(data.get("name") or path.stem), values, provenance


def load_policy(default: Path, overlay: Path | None = None) -> Policy:
    """Load the default policy, then overlay a site's file on it (validated the same way, unknown keys refused)."""
    name, values, provenance = _read(default, require_all=True)
    digest = hashlib.sha256(default.read_bytes())
    if overlay is not None:
        site_name, site_values, site_provenance = _read(overlay, require_all=False)
        values.update(site_values)
        provenance.update(site_provenance)
        name = f"{site_name} (over {name})"
        digest.update(overlay.read_bytes())
    if values["dose_ratio_below_label"] >= values["dose_ratio_above_label"]:
        raise RuleFileError(str(overlay or default), "dose_ratio_below_label", "must be below dose_ratio_above_label")
    return Policy(name, values, provenance, digest.hexdigest())
