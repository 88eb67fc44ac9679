"""Properties that must hold for every plan, not just the golden ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ivig_safety import InvalidPlanError, check, get_checker

from .conftest import BASE_PLAN
from .strategies import canonical_plans, json_values, rewritten, strip

RISK_FACTORS = sorted(get_checker().vocabulary.risk_factors)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _signature(report: Any) -> tuple:
    return (report.verdict, sorted((f.rule, f.step) for f in report.findings))


@SETTINGS
@given(data=st.data())
def test_answer_does_not_depend_on_units(data: st.DataObject) -> None:
    plan = data.draw(canonical_plans(RISK_FACTORS))
    other = data.draw(rewritten(plan))
    first, second = check(strip(plan)), check(other)
    assert _signature(first) == _signature(second)
    assert second.suggested_max_rate.ml_per_h == pytest.approx(first.suggested_max_rate.ml_per_h, abs=1e-6)
    assert second.suggested_max_rate.mg_per_kg_min == pytest.approx(first.suggested_max_rate.mg_per_kg_min,
                                                                    rel=1e-9)


@SETTINGS
@given(data=st.data())
def test_adding_a_risk_factor_never_raises_the_suggested_rate(data: st.DataObject) -> None:
    plan = strip(data.draw(canonical_plans(RISK_FACTORS)))
    extra = data.draw(st.sampled_from(RISK_FACTORS))
    assume(extra not in plan["patient"]["risk_factors"])
    more = copy.deepcopy(plan)
    more["patient"]["risk_factors"] = plan["patient"]["risk_factors"] + [extra]
    before, after = check(plan), check(more)
    assert after.suggested_max_rate.ml_per_h <= before.suggested_max_rate.ml_per_h + 1e-9
    assert {f.rule for f in before.findings if f.severity == "critical"} <= \
        {f.rule for f in after.findings if f.severity == "critical"}


@SETTINGS
@given(plan=canonical_plans(RISK_FACTORS))
def test_suggested_maximum_respects_every_cap(plan: dict[str, Any]) -> None:
    report = check(strip(plan))
    cap = report.suggested_max_rate
    label_max = 4.0 if plan["indication"] == "dermatomyositis" else 12.0
    assert cap.mg_per_kg_min <= label_max + 1e-9
    for finding in report.findings:
        if finding.suggested_max_rate is not None:
            assert cap.ml_per_h <= finding.suggested_max_rate.ml_per_h + 1e-9
            assert cap.mg_per_kg_min <= finding.suggested_max_rate.mg_per_kg_min + 1e-9
    assert cap.ml_per_h == pytest.approx(cap.mg_per_kg_min * report.plan.weight_kg / 100 * 60, rel=1e-6)


@SETTINGS
@given(plan=canonical_plans(RISK_FACTORS))
def test_suggested_schedule_delivers_the_dose_and_no_more(plan: dict[str, Any]) -> None:
    report = check(strip(plan))
    steps = report.suggested_steps
    daily = report.plan.daily_volume_ml
    delivered = sum(s.volume_ml for s in steps)
    assert delivered <= daily + 1e-6
    assert delivered >= daily - 0.001 * len(steps) - 0.01
    rates = [s.rate.ml_per_h for s in steps]
    assert rates == sorted(rates)
    assert all(r <= report.suggested_max_rate.ml_per_h + 1e-9 for r in rates)
    assert steps[0].rate.mg_per_kg_min <= 1.0 + 1e-9  # Octagam 10%'s initial rate for both indications
    assert all(s.duration_min > 0 for s in steps)
    assert sum(s.duration_min for s in steps) == pytest.approx(report.suggested_infusion_min, abs=0.05)
    for s in steps:  # each step's volume is its rate times its duration (durations are shown to 0.01 min)
        assert s.volume_ml == pytest.approx(s.rate.ml_per_h * s.duration_min / 60,
                                            abs=s.rate.ml_per_h * 0.005 / 60 + 0.002)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_random_json_never_gets_a_verdict(value: Any) -> None:
    with pytest.raises(InvalidPlanError):
        check(value)


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, path + (k,))] + [path]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, path + (i,))] + [path]
    return [path]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_malformed_plans_get_a_verdict_only_after_passing_validation(data: st.DataObject) -> None:
    plan = copy.deepcopy(BASE_PLAN)
    path = data.draw(st.sampled_from([p for p in _leaves(plan) if p]))
    target = plan
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = data.draw(json_values)
    try:
        report = check(plan)
    except InvalidPlanError as exc:
        assert exc.errors and all(e.msg for e in exc.errors)
        return
    get_checker().parse(plan)  # a verdict was given: the same input must validate
    assert report.verdict in ("ok", "warn", "block")
