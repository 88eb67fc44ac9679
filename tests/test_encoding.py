"""The fact record the engine sees is the same whether its label keys are encoded once per label or per plan.

Why: Facts.encode encodes the keys that depend only on the product, indication and policy once per label, and per
plan only the keys that read a plan's own values (facts.PLAN_FIELDS and its flags). If build_facts wrote a value the
split does not know to be per plan, the engine would see the first plan's value for every later plan of that label:
a finding that should fire would not. This test encodes every key from the whole of ``Facts.values``, the plain way,
and compares, over generated plans of every product, indication, unit and risk factor.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

from ivig_safety import InvalidPlanError, get_checker
from ivig_safety.knowledge.fields import SCALE
from ivig_safety.pipeline.facts import PLAN_FIELDS, Facts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench import generate_plan  # noqa: E402  - the benchmark's generator: every product, unit and risk factor


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return round(value * SCALE)
    if isinstance(value, int):
        return value * SCALE
    return value


def _encode_plainly(facts: Facts, entries: Any) -> dict[str, Any]:
    """Every key the rules read, computed from the whole ``Facts.values`` for this plan alone."""
    w, c = facts.weight_kg, facts.concentration
    factors = {"": 1.0, "ml_per_kg_min": 1.0 / c, "ml_per_min": w / c, "mg_per_min": w, "kg": w / 1000.0}
    out: dict[str, Any] = {}
    for key, base, other, variant in entries:
        value = facts.values.get(base)
        if value is None:
            continue
        if other is not None:
            second = facts.values.get(other)
            if second is not None:
                out[key] = _plain(value) - _plain(second)
        elif variant:
            out[key] = round(value * factors[variant] * SCALE)
        else:
            out[key] = _plain(value)
    return out


@pytest.fixture(scope="module")
def facts_of_many_plans() -> list[Facts]:
    checker = get_checker()
    rng = random.Random(7)
    built = []
    for number in range(1500):
        plan = generate_plan(rng, checker, number)
        try:
            parsed = checker.parse(plan)
            built.append(checker._facts(parsed))
        except InvalidPlanError:
            continue
    assert len(built) > 1000
    return built


def test_every_plan_is_encoded_as_from_its_own_values(facts_of_many_plans: list[Facts]) -> None:
    checker = get_checker()
    encoding = checker.engine.encoding
    for facts in facts_of_many_plans:
        assert facts.encode(encoding) == _encode_plainly(facts, encoding.entries)


def test_build_facts_writes_only_per_plan_names_beyond_the_label(facts_of_many_plans: list[Facts]) -> None:
    for facts in facts_of_many_plans:
        own = set(facts.values) - set(facts.label.values)
        assert own <= PLAN_FIELDS | set(facts.flags), own - PLAN_FIELDS - set(facts.flags)
        assert not PLAN_FIELDS & set(facts.label.values)
