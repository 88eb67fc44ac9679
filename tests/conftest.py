"""Shared test helpers: a valid plan to start from, and the loaded checker."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ivig_safety import Checker, get_checker

BASE_PLAN: dict[str, Any] = {
    "product": "octagam-10",
    "indication": "dermatomyositis",
    "patient": {"weight": "70 kg", "age": 50, "risk_factors": []},
    "dose": {"per_course": "2 g/kg", "days": 5},
    "steps": [
        {"rate": "0.01 mL/kg/min", "duration": "30 min"},
        {"rate": "0.02 mL/kg/min", "duration": "30 min"},
        {"rate": "0.04 mL/kg/min"},
    ],
}


def plan(**changes: Any) -> dict[str, Any]:
    """A copy of BASE_PLAN with dotted-path changes, e.g. plan(**{"patient.weight": "80 kg"})."""
    result = copy.deepcopy(BASE_PLAN)
    for path, value in changes.items():
        target = result
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return result


@pytest.fixture(scope="session")
def checker() -> Checker:
    return get_checker()
