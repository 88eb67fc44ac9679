"""The CSV order format: the columns a row of orders has, and one row mapped to the plan dict the checker takes.

A reader that sits low: it imports nothing from ivig_safety; batch reads CSV files with it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

CSV_COLUMNS = ("id", "product", "indication", "weight", "height", "age", "risk_factors", "dose_per_course",
               "dose_per_day", "days", "steps")
CSV_REQUIRED = ("product", "indication", "weight", "days", "steps")

_STEP_SEPARATOR = re.compile(r"\s+(?:x|×|for)\s+", re.IGNORECASE)
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_steps(text: str) -> list[dict[str, str]]:
    """'0.01 mL/kg/min x 30 min; 0.04 mL/kg/min' -> [{rate, duration}, {rate}]. Empty segments are ignored;
    whatever does not read as a rate or a duration is passed on for the plan's validation to name."""
    steps = []
    for segment in text.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        parts = _STEP_SEPARATOR.split(segment, maxsplit=1)
        step = {"rate": parts[0].strip()}
        if len(parts) > 1:
            step["duration"] = parts[1].strip()
        steps.append(step)
    return steps


def csv_row_to_plan(row: Mapping[str, str]) -> dict[str, Any]:
    """Map one CSV row (column -> cell) to the plan dict :meth:`Checker.check` takes.

    Empty cells are left out, so the plan's validation says which field is missing. ``age`` and ``days`` become
    numbers when they are plain numbers; anything else is passed on as text for validation to judge (an age may be
    "18 months"). ``risk_factors`` is ``;``-separated.
    """
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    plan: dict[str, Any] = {}
    if cell("id"):
        plan["id"] = cell("id")
    for name in ("product", "indication"):
        if cell(name):
            plan[name] = cell(name)
    patient: dict[str, Any] = {name: cell(name) for name in ("weight", "height") if cell(name)}
    if age := cell("age"):
        patient["age"] = float(age) if _NUMBER.match(age) else age
    risks = [r.strip() for r in cell("risk_factors").split(";") if r.strip()]
    if risks:
        patient["risk_factors"] = risks
    plan["patient"] = patient
    dose: dict[str, Any] = {name: cell(f"dose_{name}") for name in ("per_course", "per_day") if cell(f"dose_{name}")}
    if days := cell("days"):
        dose["days"] = int(days) if _INTEGER.match(days) else days
    plan["dose"] = dose
    if cell("steps"):
        plan["steps"] = parse_steps(cell("steps"))
    return plan
