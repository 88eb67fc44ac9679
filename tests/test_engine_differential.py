"""The compiled durable_rules core against an independent reading of the same conditions.

ivig-safety builds durable_rules' C core itself (third_party/durable_rules, at -O2 rather than upstream's -O0, with a
compatibility define for Python 3.13). These tests hold that build to what the rule files say: for facts over every
key the loaded rules read, the rules the engine fires are exactly the rules a small pure-Python evaluator of each
rule's compiled condition says match. Values are drawn at, just below and just above every threshold in the
conditions, so a miscompiled comparison (> for >=, an off-by-one, a sign) shows up at its boundary.

The evaluator reads the engine's JSON conditions as rules.py compiles them: ``$and``/``$or`` lists, a comparison
``{"$gt"|"$gte"|"$lt"|"$lte"|"$eq"|"$neq": {key: value}}`` or an equality ``{key: value}``. A clause on a key the
fact lacks never matches (``$neq`` included).
"""

from __future__ import annotations

import operator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ivig_safety
from ivig_safety.check import Checker
from ivig_safety.pipeline.engine import Engine
from ivig_safety.knowledge.rules import Rule

_COMPARISONS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
                "$eq": operator.eq, "$neq": operator.ne}
_RANDOM = st.integers(min_value=-10**12, max_value=10**12)  # integer millionths; a fact never holds floats


@cache
def _rules() -> tuple[Rule, ...]:
    return Checker().ruleset.rules


@cache
def _engine() -> Engine:
    return Engine(Checker().ruleset)


def _clause(node: dict[str, Any]) -> tuple[str, str, Any]:
    """(operator, key, value) of one comparison or equality node."""
    assert len(node) == 1, (
        f"condition node with {len(node)} keys: durable_rules reads only the first key of such an object "
        f"(measured), so the compiler must emit one key per node: {node}")
    (name, body), = node.items()
    if name in _COMPARISONS:
        assert isinstance(body, dict) and len(body) == 1, f"comparison takes one key: {node}"
        (key, value), = body.items()
        return name, key, value
    assert not name.startswith("$"), f"operator the evaluator does not know: {name}"
    return "$eq", name, body


def matches(condition: dict[str, Any], fact: dict[str, Any]) -> bool:
    """The independent reading of one compiled condition."""
    if "$and" in condition or "$or" in condition:
        assert len(condition) == 1, f"$and/$or node with other keys: {condition}"
        (name, parts), = condition.items()
        results = [matches(part, fact) for part in parts]
        return all(results) if name == "$and" else any(results)
    op, key, value = _clause(condition)
    if key not in fact:
        return False
    assert isinstance(value, str) == isinstance(fact[key], str), f"{key}: a word against a number"
    return _COMPARISONS[op](fact[key], value)


def _walk(condition: dict[str, Any]):
    """Every (operator, key, value) clause in a condition."""
    if "$and" in condition or "$or" in condition:
        for part in next(iter(condition.values())):
            yield from _walk(part)
    else:
        yield _clause(condition)


def _thresholds() -> dict[str, set[Any]]:
    """Each key any rule reads, with the values its clauses compare it with."""
    found: dict[str, set[Any]] = {}
    for rule in _rules():
        for _, key, value in _walk(rule.condition):
            found.setdefault(key, set()).add(value)
    for rule in _rules():
        for key in rule.keys:  # a key a rule declares but no clause reads still gets facts
            found.setdefault(key, set())
    return found


def _near(values: set[Any]) -> list[Any]:
    """threshold-1, threshold, threshold+1 for numbers; the words themselves and one other for text."""
    numbers = {v for v in values if not isinstance(v, str)}
    words = {v for v in values if isinstance(v, str)}
    if words:  # a text field holds a word, never a number
        return sorted(words | {"no-such-word"})
    return sorted({n + d for n in numbers for d in (-1, 0, 1)} | {0, 1})


@st.composite
def facts(draw: st.DrawFn) -> dict[str, Any]:
    """A fact over the union of rule keys: each key absent, at/next to one of its thresholds, or random."""
    fact: dict[str, Any] = {}
    for key, values in sorted(_thresholds().items()):
        choice = draw(st.sampled_from(["absent", "near", "near", "random"]))
        if choice == "absent":
            continue
        text = any(isinstance(v, str) for v in values)  # a text field holds a word, never a number
        fact[key] = draw(st.sampled_from(_near(values)) if choice == "near" or text else _RANDOM)
    return fact


def _expected(fact: dict[str, Any]) -> set[str]:
    return {rule.id for rule in _rules() if matches(rule.condition, fact)}


def test_the_rule_set_has_conditions_to_compare() -> None:
    thresholds = _thresholds()
    assert len(_rules()) >= 10 and thresholds
    assert any(values for values in thresholds.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts())
def test_engine_fires_exactly_the_rules_the_conditions_say(fact: dict[str, Any]) -> None:
    assert set(_engine().evaluate(_engine().record(fact))) == _expected(fact), fact


def _witness(condition: dict[str, Any]) -> dict[str, Any] | None:
    """One fact satisfying the condition (the first alternative of each $or), or None if its parts conflict."""
    if "$and" in condition:
        merged: dict[str, Any] = {}
        for part in condition["$and"]:
            found = _witness(part)
            if found is None or any(k in merged and merged[k] != v for k, v in found.items()):
                return None
            merged.update(found)
        return merged
    if "$or" in condition:
        return _witness(condition["$or"][0])
    op, key, value = _clause(condition)
    if isinstance(value, str):
        return {key: value if op != "$neq" else value + "-other"}
    return {key: value + {"$gt": 1, "$lt": -1, "$neq": 1}.get(op, 0)}


@pytest.mark.parametrize("rule_id", [rule.id for rule in _rules()])
def test_every_rule_fires_on_its_witness_and_its_boundaries_agree(rule_id: str) -> None:
    """Deterministic: each rule fires on a fact made to satisfy it, and moving each of that fact's values one
    step down or up, or removing it, changes the engine's answer exactly as the conditions say."""
    rule = next(r for r in _rules() if r.id == rule_id)
    witness = _witness(rule.condition)
    if witness is None:
        pytest.skip("no simple witness (conflicting parts)")
    assert rule_id in _engine().evaluate(_engine().record(witness))
    variants = [witness]
    for key, value in witness.items():
        variants.append({k: v for k, v in witness.items() if k != key})
        if not isinstance(value, str):
            variants += [{**witness, key: value - 1}, {**witness, key: value + 1}]
    for fact in variants:
        assert set(_engine().evaluate(_engine().record(fact))) == _expected(fact), fact


def test_the_engine_is_the_vendored_build() -> None:
    """engine.py drives the C core built from third_party/durable_rules into this package, not a durable-rules
    distribution that happens to be installed."""
    from ivig_safety import _durable_rules_engine
    from ivig_safety.pipeline import engine

    assert engine._dre is _durable_rules_engine
    package = Path(ivig_safety.__file__).resolve().parent
    built = Path(_durable_rules_engine.__file__).resolve()
    assert built.parent == package, built
    assert built.name.startswith("_durable_rules_engine.") and built.suffix in (".so", ".pyd"), built
