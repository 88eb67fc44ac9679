"""Suggested schedules a nurse would program: no step shorter than the policy's minimum except the last (and then
only when the dose runs out), never faster than the suggested cap, delivering exactly the day's volume."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivig_safety import check, get_checker

CHECKER = get_checker()
ENTRIES = [(p.id, ind) for p in CHECKER.catalogue.products.values() for ind in p.indications]
SHORTEST = CHECKER.policy["min_schedule_step"].canonical


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    product, indication = draw(st.sampled_from(ENTRIES))
    return {
        "product": product, "indication": indication,
        "patient": {"weight": f"{draw(st.floats(3, 150))!r} kg", "age": draw(st.integers(2, 90)),
                    "risk_factors": draw(st.lists(st.sampled_from(["immobility", "diabetes", "heart-failure"]),
                                                  unique=True, max_size=2))},
        "dose": {"per_day": f"{draw(st.floats(0.05, 2.0))!r} g/kg", "days": 1},
        "steps": [{"rate": "0.5 mg/kg/min"}],
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_no_step_a_nurse_would_skip(plan: dict[str, Any]) -> None:
    report = check(plan)
    steps = report.suggested_steps
    assert steps
    for step in steps[:-1]:
        assert step.duration_min >= SHORTEST - 1e-6, steps
    assert all(s.rate.ml_per_h <= report.suggested_max_rate.ml_per_h + 1e-9 for s in steps)
    delivered = sum(s.volume_ml for s in steps)
    assert abs(delivered - report.plan.daily_volume_ml) <= 0.001 * len(steps) + 1e-6
    assert abs(sum(s.duration_min for s in steps) - report.suggested_infusion_min) <= 0.01 * len(steps)


def test_a_short_final_rung_merges_into_the_step_before() -> None:
    """A small dose that runs out minutes into a rung: the rung is dropped and the step before runs on."""
    report = check({
        "product": "octagam-10", "indication": "chronic-itp",
        "patient": {"weight": "70 kg", "age": 40},
        "dose": {"per_day": "0.105 g/kg", "days": 1},  # 73.5 mL: 30 min at 42 mL/h (21 mL), then 84 mL/h...
        "steps": [{"rate": "1 mg/kg/min", "duration": "30 min"}, {"rate": "2 mg/kg/min"}],
    })
    steps = report.suggested_steps
    # 21 mL at 42 mL/h, 42 mL at 84 mL/h over 30 min, leaving 10.5 mL: 3.75 min at 168 mL/h is too short a step
    assert [s.rate.ml_per_h for s in steps] == [42, 84]
    assert steps[-1].duration_min > 30 and abs(sum(s.volume_ml for s in steps) - 73.5) < 0.01
