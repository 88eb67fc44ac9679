"""Report models built from values this package computed itself: pydantic's ``model_construct`` less its Python loop.

Why: a report holds about fifteen models (the report, its plan summary, four findings, four schedule steps, their
rate triples, the dispense and its vials). Validating the report's plain data in pydantic-core took 23 to 27 us a
plan, a fifth of ``check()``; these models are built in 3 to 4. Nothing here is input: every value was computed by the
pipeline from a plan that pydantic has already validated, by code that mypy type-checks (and mypyc checks at run time
in the compiled build). tests/test_report_model.py holds every report built this way equal, field by field, type by
type and in the same order, to the one pydantic's validator builds from the same data, over generated and golden
plans; the reference outputs (tests/test_reference_outputs.py) hold its JSON byte for byte.

What :func:`trusted` asks of its caller, as ``model_construct`` does: every field of the model given, in the model's
field order, each value already of the field's type (a float field a ``float``, not an ``int``: validation would have
converted it, and the JSON would show ``30`` for ``30.0``), nested models as model instances, and containers that no
one else holds (the model keeps the dict and the lists it is given).
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from .report import MODEL_SLOT_SETTERS

M = TypeVar("M")

_new: Final = object.__new__
# BaseModel's four slots, set through their descriptors: object.__setattr__ looks each one up again (measured 0.53
# against 0.39 us a model). (Not imported from pydantic: see MODEL_SLOT_SETTERS.)
_set_dict: Final[Any] = MODEL_SLOT_SETTERS[0]
_set_fields_set: Final[Any] = MODEL_SLOT_SETTERS[1]
_set_extra: Final[Any] = MODEL_SLOT_SETTERS[2]
_set_private: Final[Any] = MODEL_SLOT_SETTERS[3]


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """A ``cls`` whose fields are ``values`` (see the module's docstring for what they must be).

    The same four slots ``BaseModel.model_construct`` fills for a model without private attributes, extra fields or
    ``model_post_init`` (the report's models have none: tests/test_report_model.py checks that too)."""
    model = _new(cls)
    _set_dict(model, values)
    _set_fields_set(model, set(values))
    _set_extra(model, None)
    _set_private(model, None)
    return model
