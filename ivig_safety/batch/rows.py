"""One input row to one result: the row types, decoding a JSON Lines, CSV or plan-file row into a plan, and
:func:`process_row`, which checks it and turns every failure into an ``error`` row (internal ones marked).
"""

from __future__ import annotations

import csv
from typing import Any, Iterable, Mapping, NamedTuple

from ..check import Checker
from ..knowledge.rules import Rule
from ..model.report import verdict_of
from ..pipeline.facts import Facts
from ..pipeline.findings import FindingData, finding_json
from ..pipeline.suggest import max_rate, rate_triple
from ..formats.csv_orders import csv_row_to_plan
from ..knowledge.yamlio import YamlError, parse_json, parse_yaml
from ..model.errors import EngineError, InvalidPlanError


class BatchInputError(Exception):
    """The input cannot be read at all (missing, unreadable, empty, a CSV header without the needed columns)."""


class InputRow(NamedTuple):
    """One row of input, as little processed as possible so the work happens in the worker processes.

    ``kind`` says how to read ``payload``: ``jsonl`` and ``csv`` carry the raw line (bytes, terminator removed),
    ``file`` a plan file's bytes, ``plan`` an already-parsed plan (the Python API), ``error`` a message (a line
    the reader refused, e.g. too long). ``context`` is the CSV header, or a folder file's name.
    """

    line: int
    kind: str
    payload: Any
    context: Any = None


class BatchResult(NamedTuple):
    """One output row. ``verdict`` is ok, warn, block or ``error`` (not checked: see ``errors``). ``internal`` marks
    an error row that is not the input's fault (the check, the encoding or a worker failed): the row was left
    unchecked, and the run must not pass as if it had been checked. It is not part of the written row."""

    line: int
    id: str | int | None
    verdict: str
    kinds: tuple[str, ...]
    max_mg_per_kg_min: float | None
    max_ml_per_h: float | None
    findings: tuple[dict[str, Any], ...]
    errors: tuple[dict[str, str], ...]
    internal: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines form of the row."""
        return {"line": self.line, "id": self.id, "verdict": self.verdict, "kinds": list(self.kinds),
                "max_mg_per_kg_min": self.max_mg_per_kg_min, "max_ml_per_h": self.max_ml_per_h,
                "findings": list(self.findings), "errors": list(self.errors)}


class _RowError(Exception):
    """A row that could not be read into a plan (decode, JSON, CSV shape)."""

    def __init__(self, msg: str, loc: str = "", plan_id: Any = None):
        super().__init__(msg)
        self.errors = ({"loc": loc, "msg": msg},)
        self.plan_id = plan_id  # whatever id could be read, so the row can still be matched to its order


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _RowError(f"{what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})") \
            from None
    if not text.strip():
        raise _RowError(f"empty {what}: no plan")
    return text


def _decode(row: InputRow) -> tuple[Any, Any]:
    """The plan data of a row and the id to echo (before validation: an invalid row keeps its id)."""
    kind = row.kind
    if kind == "jsonl":
        text = _text(row.payload, "line")
        try:
            data = parse_json(text)
        except YamlError as exc:
            raise _RowError(f"malformed JSON: {exc}") from None
        return data, data.get("id") if isinstance(data, dict) else None
    if kind == "csv":
        text = _text(row.payload, "line")
        header = row.context
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise _RowError(f"malformed CSV: {exc}", plan_id=_csv_id(text, header)) from None
        if len(cells) != len(header):
            raise _RowError(f"{len(cells)} cells, the header has {len(header)}", plan_id=_csv_id(text, header))
        values = dict(zip(header, cells, strict=True))
        return csv_row_to_plan(values), values.get("id", "").strip() or None
    if kind == "file":
        try:
            text = row.payload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _RowError(f"file is not UTF-8 text (byte at position {exc.start + 1})") from None
        if not text.strip():
            raise _RowError("empty file: no plan")
        try:
            data = parse_yaml(text)
        except YamlError as exc:
            raise _RowError(f"malformed YAML/JSON: {exc}") from None
        plan_id = data.get("id") if isinstance(data, dict) else None
        return data, plan_id if plan_id is not None else row.context
    if kind == "plan":
        data = row.payload
        return data, data.get("id") if isinstance(data, Mapping) else None
    if kind == "error":
        raise _RowError(str(row.payload))
    raise _RowError(f"internal error: unknown row kind {kind!r}")


def _csv_id(text: str, header: tuple[str, ...]) -> str | None:
    """The id cell of a row that cannot be used, read leniently, for the error row."""
    if "id" not in header:
        return None
    try:
        cells = next(csv.reader([text]), [])
    except csv.Error:
        return None
    index = header.index("id")
    return cells[index].strip() or None if index < len(cells) else None


def _echo(value: Any) -> str | int | None:
    """An id is echoed only when it is one (a string or a whole number), so output stays well-typed."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value


def _error(line: int, plan_id: Any, errors: Iterable[dict[str, str]], internal: bool = False) -> BatchResult:
    return BatchResult(line, _echo(plan_id), "error", (), None, None, (), tuple(errors), internal)


def _internal(line: int, plan_id: Any, why: str) -> BatchResult:
    """An error row for a row left unchecked by something that is not the row's fault."""
    return _error(line, plan_id, ({"loc": "", "msg": why},), internal=True)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def row_result(line: int, plan_id: Any, checker: Checker, facts: Facts, fired: list[Rule],
               findings: list[FindingData]) -> BatchResult:
    """The output row of a checked plan: what :meth:`Checker.check`'s report says of it, built from the findings
    alone. Why not the report: a row shows the verdict, the findings and the suggested maximum rate; the schedule,
    the dispense and the plan summary cost about a third of a row and are not shown."""
    cap = rate_triple(facts, max_rate(facts, fired), checker.policy)
    report_id = facts.plan.id
    return BatchResult(line, report_id if report_id is not None else _echo(plan_id),
                       verdict_of({f["severity"] for f in findings}), tuple(dict.fromkeys(f["kind"] for f in findings)),
                       cap.mg_per_kg_min, cap.ml_per_h, tuple(map(finding_json, findings)), ())


def process_row(row: InputRow, checker: Checker) -> BatchResult:
    """Check one row. Never raises for anything the row contains: every failure is an ``error`` result (marked
    ``internal`` when it is not the input's fault)."""
    return process_rows([row], checker)[0]


#: Plans checked together by :meth:`Checker.evaluate_many`: stage by stage over a few dozen plans saved about 8%
#: of the CPU per row; over hundreds, nothing (their data no longer fits the caches).
CHECKED_TOGETHER = 32


def process_rows(rows: list[InputRow], checker: Checker) -> list[BatchResult]:
    """:func:`process_row` for each row of a chunk, the plans checked a few dozen at a time
    (:meth:`Checker.evaluate_many`, stage by stage); each row's result is the one it would get alone."""
    if len(rows) > CHECKED_TOGETHER:
        return [result for start in range(0, len(rows), CHECKED_TOGETHER)
                for result in process_rows(rows[start:start + CHECKED_TOGETHER], checker)]
    results: list[BatchResult | None] = []
    pending: list[tuple[int, InputRow, Any]] = []
    plans: list[Any] = []
    for row in rows:
        plan_id: Any = row.context if row.kind == "file" or (row.kind == "error" and isinstance(row.context, str)) \
            else None
        try:
            data, plan_id = _decode(row)
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the run; it is reported, not hidden
            results.append(_failure(row.line, plan_id, exc))
            continue
        pending.append((len(results), row, plan_id))
        results.append(None)
        plans.append(data)
    for (index, row, plan_id), outcome in zip(pending, checker.evaluate_many(plans), strict=True):
        if isinstance(outcome, Exception):
            results[index] = _failure(row.line, plan_id, outcome)
            continue
        try:
            results[index] = row_result(row.line, plan_id, checker, *outcome)
        except Exception as exc:  # noqa: BLE001
            results[index] = _failure(row.line, plan_id, exc)
    return results  # type: ignore[return-value]  # every place is filled


def _failure(line: int, plan_id: Any, exc: Exception) -> BatchResult:
    """The error row for a row that failed: the input's fault (it cannot be read, or is not a valid plan), or not
    (the engine or a bug: marked internal)."""
    if isinstance(exc, _RowError):
        return _error(line, exc.plan_id if exc.plan_id is not None else plan_id, exc.errors)
    if isinstance(exc, InvalidPlanError):
        return _error(line, plan_id, (e.as_dict() for e in exc.errors))
    if isinstance(exc, EngineError):
        return _internal(line, plan_id, f"internal error, no verdict: {exc}")
    return _internal(line, plan_id, f"internal error, no verdict: {_describe(exc)}")
