"""Hand-written shortcuts on the report models give exactly what pydantic gives."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ivig_safety import InvalidPlanError, get_checker
from ivig_safety.model.report import (DispenseReport, Finding, PlanSummary, RateTriple, Report, ScheduleStep,
                                      VialCount)
from ivig_safety.pipeline.suggest import suggest

_RATES = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(_RATES, _RATES, _RATES)
def test_a_rate_triple_as_json_is_its_model_dump(mg: float, ml_kg: float, ml_h: float) -> None:
    triple = RateTriple.model_validate({"mg/kg/min": mg, "mL/kg/min": ml_kg, "mL/h": ml_h})
    assert triple.as_json() == triple.model_dump(mode="json")
    assert list(triple.as_json()) == list(triple.model_dump(mode="json"))  # the same keys in the same order
    assert list(triple.as_json()) == [f.serialization_alias for f in RateTriple.model_fields.values()]


# --- Reports built without validation (model/trusted.py) are the reports pydantic's validator builds -----------------

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _reference_plans() -> list[Any]:
    """Every checkable plan of the reference set (all products, units, risk factors, invalid and odd values), the
    golden and example plans, and the FHIR examples (whose reports carry ``plan.sources``)."""
    plans: list[Any] = []
    for line in (REFERENCE / "plans.jsonl").read_bytes().splitlines():  # (it holds bytes that are not UTF-8)
        with contextlib.suppress(ValueError, RecursionError):  # the rows the reader turns away
            plans.append(json.loads(line))
    plans += [yaml.safe_load(path.read_text())["plan"] for path in sorted(GOLDEN.glob("*.yaml"))]
    plans += [yaml.safe_load(path.read_text()) for path in sorted((EXAMPLES).glob("*.yaml"))]
    plans += [json.loads(path.read_text()) for path in sorted((EXAMPLES / "fhir").glob("*.json"))]
    return plans


def _reports() -> list[Report]:
    checker = get_checker()
    reports = []
    for plan in _reference_plans():
        with contextlib.suppress(InvalidPlanError):
            reports.append(checker.check(plan))
    return reports


def _assert_same(built: Any, validated: Any, where: str = "report") -> None:
    """Equal, of the same type, and for models with the same fields set, in the same order, all the way down."""
    assert type(built) is type(validated), f"{where}: {type(built).__name__} is not {type(validated).__name__}"
    if isinstance(built, BaseModel):
        assert list(built.__dict__) == list(validated.__dict__) == list(type(built).model_fields), where
        assert built.model_fields_set == validated.model_fields_set, where
        assert built.__pydantic_extra__ is validated.__pydantic_extra__ is None, where
        assert built.__pydantic_private__ is validated.__pydantic_private__ is None, where
        for name in built.__dict__:
            _assert_same(built.__dict__[name], validated.__dict__[name], f"{where}.{name}")
    elif isinstance(built, (list, tuple)):
        assert len(built) == len(validated), where
        for n, (a, b) in enumerate(zip(built, validated)):
            _assert_same(a, b, f"{where}[{n}]")
    elif isinstance(built, dict):
        assert list(built) == list(validated), where
        for key in built:
            _assert_same(built[key], validated[key], f"{where}[{key!r}]")
    else:
        assert built == validated, f"{where}: {built!r} != {validated!r}"


def test_a_report_built_without_validation_is_the_report_validation_builds() -> None:
    reports = _reports()
    assert len(reports) > 500
    assert any(r.plan.sources for r in reports)  # FHIR input: the sources dict
    assert any(r.dispense.vials for r in reports) and any(r.dispense.waste_g is None for r in reports)
    assert {r.verdict for r in reports} == {"ok", "warn", "block"}
    for report in reports:
        validated = Report.model_validate(report.model_dump())
        _assert_same(report, validated)
        assert report == validated
        assert report.model_dump_json() == validated.model_dump_json()


def test_the_report_models_have_nothing_trusted_does_not_fill() -> None:
    """trusted() fills __dict__, the fields set, extra and private: a model with private attributes, extra fields
    kept or a model_post_init would need more, and validation would run code that trusted() skips."""
    for model in (Report, PlanSummary, Finding, RateTriple, ScheduleStep, DispenseReport, VialCount):
        assert not model.__private_attributes__, model
        assert model.model_config.get("extra") in (None, "ignore", "forbid"), model
        assert not model.__pydantic_post_init__, model
        assert not model.__pydantic_decorators__.field_validators, model
        assert not model.__pydantic_decorators__.model_validators, model


def test_reports_share_no_containers() -> None:
    """Findings of static rules are cached per label (pipeline/findings.py): each report must get its own lists, or
    a caller who changed one report's finding would change every later report's."""
    checker = get_checker()
    plan = yaml.safe_load((EXAMPLES / "dermatomyositis.yaml").read_text())
    first, second = checker.check(plan), checker.check(plan)
    assert first == second and first.findings
    for a, b in zip(first.findings, second.findings):
        assert a.rules is not b.rules and a.kinds is not b.kinds and a.__dict__ is not b.__dict__
    assert first.plan.risk_factors is not second.plan.risk_factors
    first.findings[0].rules.append("changed")
    assert checker.check(plan) == second


# --- The per-plan classes whose __init__ is written out (so that mypyc compiles it) ----------------------------------


def test_the_written_out_inits_set_every_field_under_its_own_name() -> None:
    """Facts, StepFacts, DosingWeight, Dispense and Suggestion are dataclasses with ``init=False`` and an
    ``__init__`` written out (pipeline/facts.py says why). A field added to the class but not to its ``__init__``
    would be unset (an AttributeError where it is read); an argument named unlike its field would break
    ``dataclasses.replace``. Every field of every one built for the reference plans is set, ``replace`` rebuilds it
    with the same init fields, and the frozen ones stay frozen."""
    checker = get_checker()
    seen: set[type] = set()
    for plan in _reference_plans():
        try:
            facts, fired, _ = checker.evaluate(plan)
        except InvalidPlanError:
            continue
        built = [facts, *facts.steps, facts.dosing, facts.dispense, suggest(facts, fired, checker.policy)]
        for item in built:
            seen.add(type(item))
            values = {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}  # none unset
            copy = dataclasses.replace(item)
            for field in dataclasses.fields(item):
                if field.init:
                    assert getattr(copy, field.name) == values[field.name], (type(item).__name__, field.name)
            if type(item).__dataclass_params__.frozen:  # type: ignore[attr-defined]
                with pytest.raises(dataclasses.FrozenInstanceError):
                    setattr(item, dataclasses.fields(item)[0].name, None)
    assert {cls.__name__ for cls in seen} == {"Facts", "StepFacts", "DosingWeight", "Dispense", "Suggestion"}
