"""Fail closed: every kind of invalid input raises InvalidPlanError naming the field; none comes back as a verdict."""

from __future__ import annotations

import math

import pytest

from ivig_safety import InvalidPlanError, check

from .conftest import plan


def _errors(data: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidPlanError) as info:
        check(data)
    return [(e.loc, e.msg) for e in info.value.errors]


@pytest.mark.parametrize("path, value, loc, words", [
    ("patient.weight", "-70 kg", "patient.weight", "not a human weight"),
    ("patient.weight", "0 kg", "patient.weight", "not a human weight"),
    ("patient.weight", "7000 kg", "patient.weight", "not a human weight"),
    ("patient.weight", "nan kg", "patient.weight", "not a quantity"),
    ("patient.weight", {"value": math.nan, "unit": "kg"}, "patient.weight", "finite"),
    ("patient.weight", {"value": math.inf, "unit": "kg"}, "patient.weight", "finite"),
    ("patient.weight", "70 mL", "patient.weight", "must be mass"),
    ("patient.weight", 70, "patient.weight", "must be mass"),
    ("patient.weight", "70", "patient.weight", "must be mass"),
    ("patient.weight", True, "patient.weight", "expected a quantity"),
    ("patient.height", "170 kg", "patient.height", "must be length"),
    ("patient.age", -3, "patient.age", "greater than or equal"),
    ("patient.age", "abc", "patient.age", "not a quantity"),
    ("patient.risk_factors", ["immobility", "bad-knees"], "patient.risk_factors", "unknown risk factor 'bad-knees'"),
    ("patient.risk_factors", "immobility", "patient.risk_factors", "must be a list"),
    ("steps.0.rate", "0.04 mg/kg", "steps[0].rate", "must be"),
    ("steps.0.rate", "0.04 mL/mL/min", "steps[0].rate", "must be"),
    ("steps.0.rate", "4 furlongs/fortnight", "steps[0].rate", "must be"),
    ("steps.0.rate", "-0.01 mL/kg/min", "steps[0].rate", "positive"),
    ("steps.0.rate", "0 mL/kg/min", "steps[0].rate", "positive"),
    ("steps.0.rate", "1e400 mg/kg/min", "steps[0].rate", "finite"),
    ("steps.0.duration", "-30 min", "steps[0].duration", "positive"),
    ("steps.0.duration", "30 mg", "steps[0].duration", "must be time"),
    ("steps.0.duration", "25 h", "steps[0].duration", "at most 24 h"),
    ("steps", [], "steps", "at least 1"),
    ("steps", None, "steps", "valid list"),
    ("steps", [{"rate": "1 mg/kg/min", "duration": "1 min"}] * 51, "steps", "at most 50"),
    ("dose.per_course", "2 %", "dose.per_course", "must be"),
    ("dose.per_course", "-2 g/kg", "dose", "positive"),
    ("dose.days", 0, "dose.days", "greater than or equal to 1"),
    ("dose.days", "5", "dose.days", "valid integer"),
    ("product", "octagam-11", "product", "unknown product 'octagam-11'; known: "),
    ("product", "", "product", "at least 1 character"),
    ("indication", "migraine", "indication", "unknown indication 'migraine'; valid: "),
])
def test_invalid_field_is_named(path: str, value: object, loc: str, words: str) -> None:
    errors = _errors(plan(**{path: value}))
    assert any(err_loc == loc and words in msg for err_loc, msg in errors), errors


def test_only_the_last_step_may_be_open() -> None:
    data = plan()
    del data["steps"][0]["duration"]
    errors = _errors(data)
    assert errors[0][0] == "steps" and "step 1 needs a duration" in errors[0][1]


def test_missing_required_fields_are_each_named() -> None:
    data = plan()
    del data["patient"]["weight"]
    del data["dose"]["days"]
    locs = {loc for loc, _ in _errors(data)}
    assert {"patient.weight", "dose.days"} <= locs


def test_unknown_field_is_rejected_not_ignored() -> None:
    data = plan()
    data["patient"]["wieght"] = "70 kg"
    assert ("patient.wieght", "unknown field") in _errors(data)


def test_both_and_neither_dose_forms_are_rejected() -> None:
    both = plan(**{"dose.per_day": "0.4 g/kg"})
    assert any(loc == "dose" and "exactly one" in msg for loc, msg in _errors(both))
    neither = plan()
    del neither["dose"]["per_course"]
    assert any(loc == "dose" and "exactly one" in msg for loc, msg in _errors(neither))


@pytest.mark.parametrize("data", [None, [], "plan", 42, {}])
def test_not_a_plan_at_all(data: object) -> None:
    assert _errors(data)


def test_every_error_at_once() -> None:
    data = plan(**{"patient.weight": "-1 kg", "steps.1.rate": "2 mg/kg", "product": "nope"})
    locs = {loc for loc, _ in _errors(data)}
    assert {"patient.weight", "steps[1].rate", "product"} <= locs


def test_a_plan_object_that_skipped_validation_is_checked_again(checker) -> None:
    """model_copy(update=...) and model_construct skip pydantic's validation; check() must not trust them."""
    parsed = checker.parse(plan())
    weight = parsed.patient.weight
    heavier = parsed.model_copy(update={"patient": parsed.patient.model_copy(
        update={"weight": type(weight)(-5.0, weight.unit)})})
    with pytest.raises(InvalidPlanError) as info:
        check(heavier)
    assert info.value.errors[0].loc == "patient.weight"
    constructed = type(parsed).model_construct(**{**parsed.__dict__, "product": "no-such-product"})
    with pytest.raises(InvalidPlanError, match="unknown product"):
        check(constructed)
    assert check(parsed).verdict == "ok"  # a validated plan object is accepted as it is


def test_a_quantity_object_is_validated_field_by_field(checker) -> None:
    """A quantity read from text is built by the unit parser and returned as it is; a Quantity *object* in the input
    (a Python caller, model_copy) was built by nobody the model trusts, so its fields are still validated as pydantic
    validates a dataclass, between the unit's shape and the field's bounds (units.quantity_validator)."""
    parsed = checker.parse(plan())
    weight = parsed.patient.weight
    quantity = type(weight)

    def weighing(value: object) -> object:
        return parsed.model_copy(update={"patient": parsed.patient.model_copy(update={"weight": value})})

    with pytest.raises(InvalidPlanError) as info:
        checker.parse(weighing(quantity("heavy", weight.unit)))
    assert [(e.loc, e.msg) for e in info.value.errors] == [
        ("patient.weight.magnitude", "Input should be a valid number, unable to parse string as a number")]
    with pytest.raises(InvalidPlanError, match="not a human weight"):
        checker.parse(weighing(quantity(700.0, weight.unit)))
    with pytest.raises(InvalidPlanError, match="not a human weight"):
        checker.parse(weighing(quantity(math.nan, weight.unit)))
    assert checker.parse(weighing(quantity("70", weight.unit))).patient.weight.magnitude == 70.0  # as pydantic reads it
    with pytest.raises(InvalidPlanError, match="unit must be a ParsedUnit") as info:
        checker.parse(weighing(quantity(70.0, "kg")))  # a unit as text: refused by name, not an AttributeError
    assert info.value.errors[0].loc == "patient.weight"
    rate = parsed.steps[0].rate
    for magnitude in (math.nan, math.inf):  # a rate's own check (positive) lets NaN through: refused all the same
        steps = [parsed.steps[0].model_copy(update={"rate": quantity(magnitude, rate.unit)}), *parsed.steps[1:]]
        with pytest.raises(InvalidPlanError, match="finite") as info:
            checker.parse(parsed.model_copy(update={"steps": steps}))
        assert info.value.errors[0].loc == "steps[0].rate"


def test_a_left_out_risk_factor_list_is_a_fresh_list(checker) -> None:
    """risk_factors defaults through a factory (no deep copy per plan): still an empty list of each plan's own, not
    counted as set, and still "default": [] in the schema."""
    bare = plan()
    bare["patient"].pop("risk_factors", None)
    one, two = checker.parse(bare), checker.parse(bare)
    assert one.patient.risk_factors == [] and one.patient.risk_factors is not two.patient.risk_factors
    assert "risk_factors" not in one.patient.model_fields_set
    assert type(one).model_json_schema()["$defs"]["Patient"]["properties"]["risk_factors"]["default"] == []
