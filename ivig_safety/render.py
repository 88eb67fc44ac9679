"""Render a Report for people (text, with the schedule as a table) and for programs (JSON).

Why rich: a nurse reads the schedule off a table beside the pump; rich draws it, wraps long citations and drops the
colour when the output is not a terminal.
"""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .report import Report
from .units import format_number

_VERDICT_STYLE = {"ok": "bold green", "warn": "bold yellow", "block": "bold red"}
_SEVERITY_STYLE = {"critical": "red", "warning": "yellow", "info": "cyan"}


def render_json(report: Report) -> str:
    return orjson.dumps(report.to_json_dict(), option=orjson.OPT_INDENT_2).decode()


def _rate(triple: Any) -> tuple[str, str, str]:
    return (format_number(triple.mg_per_kg_min), format_number(triple.ml_per_kg_min), format_number(triple.ml_per_h))


def _minutes(value: float) -> str:
    hours, minutes = divmod(round(value), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def render_text(report: Report, explain: dict[str, list[str]] | None = None) -> Group:
    """A readable summary: verdict, what is wrong and why, and the schedule to program instead."""
    plan = report.plan
    parts: list[Any] = []
    head = Text()
    head.append(f"{report.verdict.upper()}", style=_VERDICT_STYLE[report.verdict])
    head.append(f"  {plan.product_name} for {plan.indication}, {format_number(plan.weight_kg)} kg, "
                f"{format_number(plan.dose_per_day_g)} g ({format_number(plan.daily_volume_ml)} mL) a day "
                f"for {plan.days} day(s)")
    if plan.id is not None:
        head.append(f"  [order {plan.id}]")
    parts.append(head)
    if plan.risk_factors:
        derived = f" (derived: {', '.join(plan.derived_risk_factors)})" if plan.derived_risk_factors else ""
        parts.append(Text(f"Risk factors: {', '.join(plan.risk_factors)}{derived}"))
    parts.append(Text(""))
    if not report.findings:
        parts.append(Text("No findings."))
    for finding in report.findings:
        line = Text()
        line.append(f"[{finding.severity}] ", style=_SEVERITY_STYLE[finding.severity])
        line.append(f"{finding.kind} ({finding.rule})", style="bold")
        if finding.step is not None:
            line.append(f" at step {finding.step}")
        parts.append(line)
        parts.append(Text(f"  {finding.message}"))
        parts.append(Text(f"  Source: {finding.citation}", style="dim"))
        if explain and finding.rule in explain:
            parts.append(Text("  Because: " + "; ".join(explain[finding.rule]), style="italic"))
    parts.append(Text(""))
    cap = report.suggested_max_rate
    parts.append(Text(f"Suggested maximum rate: {format_number(cap.mg_per_kg_min)} mg/kg/min = "
                      f"{format_number(cap.ml_per_kg_min)} mL/kg/min = {format_number(cap.ml_per_h)} mL/h "
                      f"for this patient", style="bold"))
    table = Table(title="Suggested schedule (one infusion day)", title_justify="left")
    for column in ("step", "mg/kg/min", "mL/kg/min", "mL/h (pump)", "duration", "volume mL"):
        table.add_column(column, justify="right")
    for n, step in enumerate(report.suggested_steps):
        last = n == len(report.suggested_steps) - 1
        duration = _minutes(step.duration_min) + (" (until dose in)" if last else "")
        table.add_row(str(step.step), *_rate(step.rate), duration, format_number(step.volume_ml))
    parts.append(table)
    parts.append(Text(f"Total infusion time for the day's dose: {_minutes(report.suggested_infusion_min)} "
                      f"(the plan as written: {_minutes(plan.plan_infusion_min)})"))
    d = report.dispense
    vials = ", ".join(f"{v.count} x {v.size}" for v in d.vials) or "no vial sizes on file"
    rounding = "" if d.rounding == "none" else f" (prescribed {format_number(d.prescribed_dose_g)} g; {d.rounding})"
    parts.append(Text(f"Dispense per day: {format_number(d.dose_g)} g = {format_number(d.volume_ml)} mL{rounding}; "
                      f"vials: {vials}" + (f"; waste {format_number(d.waste_g)} g" if d.waste_g else "")))
    parts.append(Text(f"Dosing weight: {format_number(plan.dosing_weight_kg)} kg ({plan.dosing_weight_method})"))
    parts.append(Text(f"Rule set {report.ruleset.version} sha256:{report.ruleset.sha256[:12]}; "
                      f"policy '{report.policy.name}' sha256:{report.policy.sha256[:12]}", style="dim"))
    return Group(*parts)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=None)
