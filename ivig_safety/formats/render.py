"""Render a Report for people (text, with the schedule as a table) and for programs (JSON).

Why rich: a nurse reads the schedule off a table beside the pump; rich draws it, wraps long citations and drops the
colour when the output is not a terminal.

Why every piece of text goes through :func:`clean_text`: an id, or anything else echoed from the input, is shown to
a terminal. An escape sequence in it can move the cursor and overwrite the verdict (a crafted id once turned
"BLOCK" into "OK" on screen), and a bidi control can reverse what a reader sees. Control and bidi characters are
shown escaped (``\\x1b``), never passed through. JSON is escaped the same way (:func:`escape_json_controls`), so
its text is terminal-safe too and still decodes to the original.

Rendering is total: any number (infinite, NaN, an integer beyond 64 bits) renders; a failure here would otherwise
be a traceback after the verdict was known. rich is imported on first use: the batch runner and the Python API
use :func:`clean_text` without paying for it.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import orjson

from ..model.units import format_number

if TYPE_CHECKING:
    from rich.console import Console, Group

    from ..model.report import Report

_VERDICT_STYLE = {"ok": "bold green", "warn": "bold yellow", "block": "bold red"}
_SEVERITY_STYLE = {"critical": "red", "warning": "yellow", "info": "cyan"}

#: C0 controls (tab and newline included), DEL, C1 controls, and the bidirectional formatting characters (ALM, LRM,
#: RLM, LRE..RLO, LRI..PDI), plus the line and paragraph separators that some terminals and editors break lines on.
#: Lone surrogates (U+D800..U+DFFF, which JSON and YAML escapes can produce) are escaped too: no terminal or UTF-8
#: stream can take them.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                       "\ud800-\udfff]")
_CONTROLS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                                   "\u2066-\u2069\ud800-\udfff]")
#: The same characters as they appear in UTF-8 JSON text, where they can only be inside strings (orjson escapes C0
#: itself): DEL, C1 (C2 80..C2 9F), ALM (D8 9C), LRM/RLM (E2 80 8E/8F), LS/PS and LRE..RLO (E2 80 A8..AE),
#: LRI..PDI (E2 81 A6..A9).
_JSON_CONTROLS = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` made safe for a terminal: control characters (C0, DEL, C1, ESC) and bidi controls are shown escaped
    (``\\x1b``, ``\\u202e``), so nothing from the input can move the cursor, recolour or reorder what is shown.
    ``keep_newlines`` keeps line feeds, for our own multi-line text; an echoed value never starts a line of its own.
    The one helper for every piece of input-derived text rendered for people (report, errors, CSV cells)."""
    text = text if isinstance(text, str) else str(text)
    pattern = _CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS
    return pattern.sub(_escape, text) if pattern.search(text) else text


def _escape_json(match: re.Match[bytes]) -> bytes:
    return f"\\u{ord(match.group().decode()):04x}".encode()


def escape_json_controls(data: bytes) -> bytes:
    """UTF-8 JSON with DEL, C1 and bidi controls written as ``\\uXXXX`` escapes (orjson escapes only C0): the same
    JSON once decoded, and safe to show on a terminal."""
    if b"\x7f" not in data and b"\xc2" not in data and b"\xd8" not in data and b"\xe2" not in data:
        return data  # the common case, checked at memchr speed
    return _JSON_CONTROLS.sub(_escape_json, data)


def _json_safe(value: Any) -> Any:
    """For the fallback encoder: non-finite floats become null, as orjson writes them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dumps_json(value: Any, *, indent: bool = False) -> bytes:
    """JSON bytes for any JSON-like value, control-escaped. orjson, unless it refuses the value (an integer beyond
    64 bits, such as an order id 2**64): then the standard library's encoder, with the same output conventions
    (UTF-8, non-finite floats as null). A value of a type JSON has no form for still raises TypeError."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
    except TypeError:
        text = json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False, indent=2 if indent else None,
                          separators=(",", ": ") if indent else (",", ":"))
        data = text.encode("utf-8", "backslashreplace")
    return escape_json_controls(data)


def render_json(report: Report) -> str:
    return dumps_json(report.to_json_dict(), indent=True).decode()


def _number(value: Any) -> str:
    try:
        return format_number(value)
    except (ArithmeticError, ValueError, TypeError):
        return clean_text(value)


def _rate(triple: Any) -> tuple[str, str, str]:
    return (_number(triple.mg_per_kg_min), _number(triple.ml_per_kg_min), _number(triple.ml_per_h))


def format_minutes(value: float) -> str:
    """Minutes as "1 h 34 min"; a time no clock can show (infinite, NaN) as such, not an OverflowError."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{value} min"
    hours, minutes = divmod(round(value), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def render_text(report: Report, explain: dict[str, list[str]] | None = None) -> Group:
    """A readable summary: verdict, what is wrong and why, and the schedule to program instead. Every piece of text
    goes through :func:`clean_text`."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def text(value: object, style: str = "") -> Text:
        return Text(clean_text(value), style=style)

    plan = report.plan
    parts: list[Any] = []
    head = Text()
    head.append(clean_text(report.verdict.upper()), style=_VERDICT_STYLE.get(report.verdict, "bold"))
    head.append(clean_text(f"  {plan.product_name} for {plan.indication}, {_number(plan.weight_kg)} kg, "
                           f"{_number(plan.dose_per_day_g)} g ({_number(plan.daily_volume_ml)} mL) a day "
                           f"for {plan.days} day(s)"))
    if plan.id is not None:
        head.append(f"  [order {clean_text(plan.id)}]")
    parts.append(head)
    if plan.sources:
        parts.append(text("Read from FHIR:"))
        for field, where in plan.sources.items():
            if "[" not in field:  # steps[i] are in the JSON report; the text shows the steps line
                parts.append(text(f"  {field}: {where}"))
    if plan.risk_factors:
        derived = f" (derived: {', '.join(plan.derived_risk_factors)})" if plan.derived_risk_factors else ""
        parts.append(text(f"Risk factors: {', '.join(plan.risk_factors)}{derived}"))
    if not report.ruleset.bundled:
        parts.append(text(f"NOT the bundled rule set: rules loaded from {report.ruleset.path}", style="bold yellow"))
    for change in report.policy.changes:  # a site policy's choices are said under the verdict, weakened or not
        flag = " - LESS STRICT than the default for a boxed-warning or absolute-limit check" \
            if change.less_strict else ""
        parts.append(text(f"Site policy: {change.key} = {change.value} (default {change.default}){flag}",
                          style="bold yellow" if change.less_strict else ""))
    for used in report.pump_tolerance_used:
        parts.append(text(f"Pump tolerance used: {used}"))
    parts.append(Text(""))
    if not report.findings:
        parts.append(Text("No findings."))
    for finding in report.findings:
        line = Text()
        line.append(clean_text(f"[{finding.severity}] "), style=_SEVERITY_STYLE.get(finding.severity, ""))
        line.append(clean_text(f"{finding.kind} ({finding.rule})"), style="bold")
        if finding.step is not None:
            line.append(f" at step {finding.step}")
        parts.append(line)
        parts.append(text(f"  {finding.message}"))
        parts.append(text(f"  Source: {finding.citation}", style="dim"))
        for rule in finding.rules if explain else ():  # a merged finding: why each of its rules fired
            if rule in explain:
                label = f" ({rule})" if len(finding.rules) > 1 else ""
                parts.append(text(f"  Because{label}: " + "; ".join(map(str, explain[rule])), style="italic"))
    parts.append(Text(""))
    cap = report.suggested_max_rate
    parts.append(text(f"Suggested maximum rate: {_number(cap.mg_per_kg_min)} mg/kg/min = "
                      f"{_number(cap.ml_per_kg_min)} mL/kg/min = {_number(cap.ml_per_h)} mL/h "
                      f"for this patient", style="bold"))
    # The title and the headers as Text, styled as rich styles them when given text: a str would go through rich's
    # markup and emoji replacement, which loads its 140 kB emoji table (4 ms of every text report) for none.
    table = Table(title=Text("Suggested schedule (one infusion day)", style="table.title"), title_justify="left")
    for column in ("step", "mg/kg/min", "mL/kg/min", "mL/h (pump)", "duration", "volume mL"):
        table.add_column(Text(column), justify="right")
    for n, step in enumerate(report.suggested_steps):
        last = n == len(report.suggested_steps) - 1
        duration = format_minutes(step.duration_min) + (" (until dose in)" if last else "")
        table.add_row(*(text(cell) for cell in (str(step.step), *_rate(step.rate), duration,
                                                _number(step.volume_ml))))
    parts.append(table)
    parts.append(text(f"Total infusion time for the day's dose: {format_minutes(report.suggested_infusion_min)} "
                      f"(the plan as written: {format_minutes(plan.plan_infusion_min)})"))
    d = report.dispense
    vials = ", ".join(f"{v.count} x {v.size}" for v in d.vials) or "no vial sizes on file"
    rounding = "" if d.rounding == "none" else f" (prescribed {_number(d.prescribed_dose_g)} g; {d.rounding})"
    parts.append(text(f"Dispense per day: {_number(d.dose_g)} g = {_number(d.volume_ml)} mL{rounding}; "
                      f"vials: {vials}" + (f"; waste {_number(d.waste_g)} g" if d.waste_g else "")))
    parts.append(text(f"Dosing weight: {_number(plan.dosing_weight_kg)} kg ({plan.dosing_weight_method})"))
    parts.append(text(f"Rule set {report.ruleset.version} sha256:{report.ruleset.sha256[:12]}; "
                      f"policy '{report.policy.name}' sha256:{report.policy.sha256[:12]}", style="dim"))
    return Group(*parts)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=None)
