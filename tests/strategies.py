"""Hypothesis strategies: realistic Octagam 10% plans, and the same plan rewritten in other units."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

CONCENTRATION = 100.0  # mg/mL, Octagam 10%
LB = 0.45359237

# A rate in mg/kg/min -> the same rate in another unit, for a patient of weight w (kg).
RATE_UNITS = {
    "mg/kg/min": lambda r, w: r,
    "mL/kg/min": lambda r, w: r / CONCENTRATION,
    "mL/kg/h": lambda r, w: r / CONCENTRATION * 60,
    "mL/h": lambda r, w: r * w / CONCENTRATION * 60,
    "mL/min": lambda r, w: r * w / CONCENTRATION,
    "mg/min": lambda r, w: r * w,
    "g/kg/h": lambda r, w: r * 60 / 1000,
}
WEIGHT_UNITS = {"kg": lambda w: w, "lb": lambda w: w / LB, "g": lambda w: w * 1000}
DURATION_UNITS = {"min": lambda m: m, "h": lambda m: m / 60, "s": lambda m: m * 60}


@st.composite
def canonical_plans(draw: st.DrawFn, risk_factors: list[str] | None = None) -> dict[str, Any]:
    """A plan in mg/kg/min, kg and min, with numbers kept as plain floats in a 'canonical' side table."""
    indication = draw(st.sampled_from(["dermatomyositis", "chronic-itp"]))
    weight = draw(st.floats(30, 150))
    n_steps = draw(st.integers(1, 5))
    rates = sorted(draw(st.lists(st.floats(0.3, 15), min_size=n_steps, max_size=n_steps)))
    durations = draw(st.lists(st.floats(5, 60), min_size=n_steps - 1, max_size=n_steps - 1))
    factors = draw(st.lists(st.sampled_from(risk_factors), unique=True, max_size=4)) if risk_factors else []
    dose_key = draw(st.sampled_from(["per_course", "per_day"]))
    dose = draw(st.floats(0.2, 2.5))
    return {
        "canonical": {"weight": weight, "rates": rates, "durations": durations},
        "product": "octagam-10",
        "indication": indication,
        "patient": {"weight": f"{weight!r} kg", "age": draw(st.integers(18, 90)), "risk_factors": factors},
        "dose": {dose_key: f"{dose!r} g/kg", "days": draw(st.integers(1, 5))},
        "steps": [{"rate": f"{r!r} mg/kg/min", **({"duration": f"{d!r} min"} if i < len(durations) else {})}
                  for i, (r, d) in enumerate(zip(rates, durations + [None]))],
    }


def strip(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plan.items() if k != "canonical"}


@st.composite
def rewritten(draw: st.DrawFn, plan: dict[str, Any]) -> dict[str, Any]:
    """The same plan with every rate, the weight and every duration in a randomly chosen other unit."""
    c = plan["canonical"]
    weight_unit = draw(st.sampled_from(sorted(WEIGHT_UNITS)))
    out = strip(plan)
    out["patient"] = {**plan["patient"], "weight": f"{WEIGHT_UNITS[weight_unit](c['weight'])!r} {weight_unit}"}
    steps = []
    for i, rate in enumerate(c["rates"]):
        unit = draw(st.sampled_from(sorted(RATE_UNITS)))
        step: dict[str, Any] = {"rate": f"{RATE_UNITS[unit](rate, c['weight'])!r} {unit}"}
        if i < len(c["durations"]):
            d_unit = draw(st.sampled_from(sorted(DURATION_UNITS)))
            step["duration"] = {"value": DURATION_UNITS[d_unit](c["durations"][i]), "unit": d_unit}
        steps.append(step)
    out["steps"] = steps
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
