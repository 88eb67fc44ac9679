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

from ..model.errors import RuleFileError
from ..model.units import RATE_SHAPES, Quantity, Shape, UnitError, expect
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
    "volume_load_daily_per_kg": _quantity(Shape.VOLUME_PER_MASS),
    "max_daily_dose": _quantity(Shape.MASS_PER_MASS),
    "max_course_dose": _quantity(Shape.MASS_PER_MASS),
    "adult_age_from": _number(12, 21),
    "pump_tolerance": _number(0, 0.05),
    "min_schedule_step": _quantity(Shape.TIME),
    "weight_max_age": _quantity(Shape.TIME),
    "egfr_renal_threshold": _quantity(Shape.VOLUME_PER_TIME),
}

#: The keys that set how strict a boxed-warning or absolute-limit check is, and which way is stricter. A site value
#: on the lenient side of the bundled default is flagged in every report (a site may choose it; it may not hide it).
STRICTER_WHEN: dict[str, str] = {
    "advanced_age_over": "lower",
    "at_risk_rate_when_label_silent": "lower",
    "high_daily_dose": "lower",
    "volume_load_daily": "lower",
    "volume_load_daily_per_kg": "lower",
    "max_daily_dose": "lower",
    "max_course_dose": "lower",
    "dose_ratio_above_label": "lower",
    "dose_ratio_below_label": "higher",
    "pump_tolerance": "lower",
    "adult_age_from": "higher",
    "weight_max_age": "lower",
    "egfr_renal_threshold": "higher",
}

#: The bundled policy's name: a site file may not take it.
DEFAULT_NAME = "ivig-safety default policy"


@dataclass(frozen=True)
class PolicyChange:
    """One key a site file set to something other than the bundled default."""

    key: str
    default: str
    value: str
    less_strict: bool  # on the lenient side of the default for a boxed-warning or absolute-limit check


@dataclass(frozen=True)
class Policy:
    """Validated policy values, the provenance of each, the identity (name, sha256) of the files behind them, and
    every change a site file made to the bundled defaults."""

    name: str
    values: dict[str, Any]
    provenance: dict[str, str]
    sha256: str
    changes: tuple[PolicyChange, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256,
                "changes": [{"key": c.key, "default": c.default, "value": c.value, "less_strict": c.less_strict}
                            for c in self.changes]}


def _shown(value: Any) -> str:
    return str(value) if not isinstance(value, float) else f"{value:g}"


def _less_strict(key: str, default: Any, value: Any) -> bool:
    """Whether a site value weakens a check. A rate in another unit basis (mL/kg/min against mg/kg/min) cannot be
    compared without a product's concentration, so it counts as weaker until a person has looked."""
    direction = STRICTER_WHEN.get(key)
    if direction is None:
        return False
    if isinstance(default, Quantity):
        if value.shape is not default.shape:
            return True
        default, value = default.canonical, value.canonical
    return value > default if direction == "lower" else value < default


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
    changes: list[PolicyChange] = []
    if overlay is not None:
        site_name, site_values, site_provenance = _read(overlay, require_all=False)
        if DEFAULT_NAME.casefold() in site_name.casefold():
            raise RuleFileError(str(overlay), "name", f"{DEFAULT_NAME!r} is the bundled policy's name; "
                                                      "name your site policy after your site")
        for key, value in site_values.items():
            if value != values[key]:
                changes.append(PolicyChange(key, _shown(values[key]), _shown(value),
                                            _less_strict(key, values[key], value)))
        values.update(site_values)
        provenance.update(site_provenance)
        name = f"{site_name} (over {name})"
        digest.update(overlay.read_bytes())
    if values["dose_ratio_below_label"] >= values["dose_ratio_above_label"]:
        raise RuleFileError(str(overlay or default), "dose_ratio_below_label", "must be below dose_ratio_above_label")
    return Policy(name, values, provenance, digest.hexdigest(), tuple(changes))
