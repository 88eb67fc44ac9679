"""Hand-written shortcuts on the report models give exactly what pydantic gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ivig_safety.model.report import RateTriple

_RATES = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(_RATES, _RATES, _RATES)
def test_a_rate_triple_as_json_is_its_model_dump(mg: float, ml_kg: float, ml_h: float) -> None:
    triple = RateTriple.model_validate({"mg/kg/min": mg, "mL/kg/min": ml_kg, "mL/h": ml_h})
    assert triple.as_json() == triple.model_dump(mode="json")
    assert list(triple.as_json()) == list(triple.model_dump(mode="json"))  # the same keys in the same order
    assert list(triple.as_json()) == [f.serialization_alias for f in RateTriple.model_fields.values()]
