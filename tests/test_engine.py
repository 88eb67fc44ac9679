"""The engine: every applicable rule fires on every evaluation, from one thread or eight, and errors are errors."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import yaml

import ivig_safety.pipeline.engine as engine_module
from ivig_safety import EngineError, check, get_checker
from ivig_safety.pipeline.facts import build_facts

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.yaml"))
PLANS = [yaml.safe_load(p.read_text())["plan"] for p in GOLDEN]


def _answer(plan: dict) -> dict:
    return check(plan).to_json_dict()


def test_three_broken_rules_give_three_findings_every_time() -> None:
    plan = {
        "product": "octagam-10", "indication": "dermatomyositis",
        "patient": {"weight": "70 kg", "age": 40, "risk_factors": ["immune-globulin-anaphylaxis"]},
        "dose": {"per_course": "2 g/kg", "days": 5},
        "steps": [{"rate": "0.02 mL/kg/min", "duration": "30 min"}, {"rate": "0.08 mL/kg/min"}],
    }
    expected = {"max-rate", "initial-rate", "contraindication-immune-globulin-anaphylaxis"}
    for _ in range(1000):
        fired = {f.rule for f in check(plan).findings if f.severity != "info"}
        assert fired == expected


def test_evaluations_share_no_state() -> None:
    """Plans with and without optional facts, in random order, always give their own answers."""
    baseline = [_answer(p) for p in PLANS]
    rng = random.Random(7)
    for _ in range(20):
        order = list(range(len(PLANS)))
        rng.shuffle(order)
        for i in order:
            assert _answer(PLANS[i]) == baseline[i], GOLDEN[i].name


def test_eight_threads_get_the_same_answers_as_one() -> None:
    baseline = [_answer(p) for p in PLANS]
    work = [i % len(PLANS) for i in range(8 * 150)]
    results: dict[int, list[tuple[int, dict]]] = {}
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        rng = random.Random(worker)
        mine = work[:]
        rng.shuffle(mine)
        out = []
        try:
            for i in mine:
                out.append((i, _answer(PLANS[i])))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        results[worker] = out

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(len(v) for v in results.values()) == 8 * len(work)
    for out in results.values():
        for i, answer in out:
            assert answer == baseline[i]


def test_absent_fields_never_match_a_field_comparison() -> None:
    """Regression: durable_rules' $m references matched stale values when a field was absent."""
    checker = get_checker()
    labelled = checker.parse(PLANS[0])
    unlabelled = checker.parse({**PLANS[0], "indication": "stiff-person-syndrome"})  # no regimen anywhere
    policy = checker.policy
    with_fields = build_facts(labelled, checker.catalogue.products["octagam-10"], policy, checker.knowledge)
    without = build_facts(unlabelled, checker.catalogue.products["octagam-10"], policy, checker.knowledge)
    assert "label_days_min" not in without.values
    for _ in range(50):
        checker.engine.evaluate(with_fields.encode(checker.engine.encoding))
        fired = checker.engine.evaluate(without.encode(checker.engine.encoding))
        assert not {"days-out-of-range", "dose-above-label", "dose-below-label"} & set(fired)


def test_an_engine_failure_is_an_error_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = get_checker()
    checker.check(PLANS[0])  # warm
    monkeypatch.setattr(engine_module._dre, "assert_fact", lambda handle, text: (7, 0))
    with pytest.raises(EngineError):
        checker.check(PLANS[0])


def test_rules_are_split_across_rulesets_so_none_exceeds_durable_limits() -> None:
    engine = get_checker().engine
    assert all(len(chunk) <= engine_module.RULES_PER_RULESET for chunk in engine._chunks)
    assert sum(len(chunk) for chunk in engine._chunks) == len(get_checker().ruleset.rules)


def test_a_rule_set_durable_rules_refuses_is_a_rule_file_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from ivig_safety import RuleFileError
    from ivig_safety.pipeline.engine import Engine

    def refuse(name: str, definition: str) -> int:
        raise engine_module._dre.error("Could not create ruleset, error code: 204")

    monkeypatch.setattr(engine_module._dre, "create_ruleset", refuse)
    with pytest.raises(RuleFileError, match="durable_rules refused the rule set"):
        Engine(get_checker().ruleset)
