"""Optimisations change no output: every output of a deterministic reference set, byte for byte as the code before
them (commit c928512) wrote it.

Why: speed work (issue 14) touches validation, rendering, serialising and the batch path; a verdict, finding,
citation, suggestion or error message that moved by one character is a safety change, not a speed-up. The inputs
(tests/data/reference: JSON Lines and CSV orders, generated plans with every unit and product, the golden and
example plans, invalid rows of every kind, a folder of plan files) and the expected outputs (tests/data/reference/
expected/*.gz) are committed. The expected files were written by the code before the optimisations with
``python tests/test_reference_outputs.py --write`` and must not be regenerated to make a change pass. They were
written again once, by the unoptimised code at 08c3907 (the FHIR rules and code lists changed what it says on
purpose: new vocabulary names in error messages, new rules), and the optimised code matched them byte for byte.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner

from ivig_safety import Finding, InvalidPlanError, check, check_many, get_checker
from ivig_safety.batch import MAX_LINE_BYTES, BatchResult, InputRow, Summary, process_row
from ivig_safety.knowledge.yamlio import too_deep as _too_deep
from ivig_safety.cli import main
from ivig_safety.formats.render import dumps_json, render_json

DATA = Path(__file__).resolve().parent / "data" / "reference"
EXPECTED = DATA / "expected"
GOLDEN = Path(__file__).resolve().parent / "golden"


def _jsonl_input(tmp: Path) -> Path:
    """plans.jsonl plus a line longer than the reader's limit (too big to commit)."""
    path = tmp / "plans.jsonl"
    path.write_bytes((DATA / "plans.jsonl").read_bytes() + b'{"id": "LONG", "pad": "' + b"x" * MAX_LINE_BYTES
                     + b'"}\n' + b'{"id": "AFTER-LONG"}\n')
    return path


def _cli(args: list[str]) -> bytes:
    result = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}).invoke(
        main, args, catch_exceptions=False)
    return (f"exit {result.exit_code}\n".encode() + result.stdout_bytes + b"\n--- stderr\n" + result.stderr_bytes)


def _batch(source: Path, *options: str) -> bytes:
    return _cli(["batch", str(source), "--quiet", "--fail-on", "error", *options])


def _decoded_plans() -> list[tuple[int, Any]]:
    """(line number, value) for every line of plans.jsonl that is JSON at all and that batch would decode (not
    nested too deep: whether json.loads copes with that depends on the Python version)."""
    plans = []
    for number, raw in enumerate((DATA / "plans.jsonl").read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        if _too_deep(raw.decode("utf-8", "replace")):
            continue
        try:
            plans.append((number, json.loads(raw)))
        except (ValueError, RecursionError):
            continue
    return plans


def _reports() -> bytes:
    """check() on every decodable line: the whole Report as JSON, or the error list."""
    out = []
    for number, plan in _decoded_plans():
        try:
            row: dict[str, Any] = {"line": number, "report": check(plan).to_json_dict()}
        except InvalidPlanError as exc:
            row = {"line": number, "errors": [e.as_dict() for e in exc.errors]}
        out.append(dumps_json(row))
    return b"\n".join(out) + b"\n"


def _explained() -> bytes:
    """Checker.explain and the indented JSON of the report, for the golden plans."""
    checker = get_checker()
    out = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        report, why = checker.explain(yaml.safe_load(path.read_text())["plan"])
        out.append(dumps_json({"case": path.stem, "explain": why}))
        out.append(render_json(report).encode())
    return b"\n".join(out) + b"\n"


def _check_many() -> bytes:
    summary = Summary()
    out = []
    for result in check_many(plan for _, plan in _decoded_plans()):
        summary.add(result)
        out.append(dumps_json(result.to_dict()))
    out.append(dumps_json(summary.as_dict()))
    return b"\n".join(out) + b"\n"


def _check_command() -> bytes:
    """``ivig-safety check`` on each plan file, run from its folder so messages name it the same everywhere."""
    out = []
    with contextlib.chdir(DATA / "plans"):
        for name in sorted(p.name for p in Path().iterdir()):
            for fmt in ("json", "text"):
                out.append(f"=== {name} --format {fmt}\n".encode() + _cli(["check", name, "--format", fmt]))
        out.append(b"=== --explain\n" + _cli(["check", "a-dermatomyositis.yaml", "--explain"]))
    return b"\n".join(out) + b"\n"


def outputs(tmp: Path) -> dict[str, Callable[[], bytes]]:
    jsonl = _jsonl_input(tmp)
    return {
        "batch-jsonl": lambda: _batch(jsonl),
        "batch-jsonl-to-csv": lambda: _batch(jsonl, "--format", "csv"),
        "batch-csv": lambda: _batch(DATA / "plans.csv"),
        "batch-csv-to-csv": lambda: _batch(DATA / "plans.csv", "--format", "csv"),
        "batch-folder": lambda: _batch(DATA / "plans"),
        "batch-folder-to-csv": lambda: _batch(DATA / "plans", "--format", "csv"),
        "reports": _reports,
        "explain": _explained,
        "check-many": _check_many,
        "check-command": _check_command,
    }


def _expected(name: str) -> bytes:
    return gzip.decompress((EXPECTED / f"{name}.gz").read_bytes())


def _assert_same(name: str, actual: bytes, expected: bytes) -> None:
    if actual == expected:
        return
    got, want = actual.splitlines(), expected.splitlines()
    for number, (a, b) in enumerate(zip(got, want), 1):
        if a != b:
            pytest.fail(f"{name}: line {number} differs\n  now:    {a[:600]!r}\n  before: {b[:600]!r}")
    pytest.fail(f"{name}: {len(got)} lines now, {len(want)} before")


NAMES = ["batch-jsonl", "batch-jsonl-to-csv", "batch-csv", "batch-csv-to-csv", "batch-folder", "batch-folder-to-csv",
         "reports", "explain", "check-many", "check-command"]


@pytest.mark.parametrize("name", NAMES)
def test_output_is_unchanged(name: str, tmp_path: Path) -> None:
    _assert_same(name, outputs(tmp_path)[name](), _expected(name))


@pytest.mark.parametrize("name", ["batch-jsonl", "batch-csv-to-csv"])
def test_two_workers_write_the_same_bytes(name: str, tmp_path: Path) -> None:
    source = _jsonl_input(tmp_path) if name == "batch-jsonl" else DATA / "plans.csv"
    options = ["--workers", "2"] + (["--format", "csv"] if name.endswith("-to-csv") else [])
    _assert_same(name, _batch(source, *options), _expected(name))


def test_the_reference_set_covers_every_verdict_and_error_kind() -> None:
    rows = [json.loads(line) for line in _expected("batch-jsonl").split(b"\n--- stderr")[0].splitlines()[1:]]
    verdicts = {row["verdict"] for row in rows}
    assert verdicts == {"ok", "warn", "block", "error"}
    assert len(rows) > 600
    assert sum(row["verdict"] == "error" for row in rows) > 100


def test_a_batch_row_says_what_the_report_says() -> None:
    """The batch path builds its rows without the full report; each row must still be the report's (independent
    of the expected files, so it holds for any rule set)."""
    checker = get_checker()
    for number, plan in _decoded_plans():
        row = process_row(InputRow(number, "plan", plan), checker)
        try:
            report = checker.check(plan)
        except InvalidPlanError:
            assert row.verdict == "error"
            continue
        cap = report.suggested_max_rate
        assert row == BatchResult(number, report.plan.id if report.plan.id is not None else row.id, report.verdict,
                                  tuple(dict.fromkeys(f.kind for f in report.findings)), cap.mg_per_kg_min,
                                  cap.ml_per_h, tuple(f.model_dump(mode="json") for f in report.findings), ())


def test_plans_checked_together_get_what_each_gets_alone() -> None:
    """Checker.evaluate_many (batch chunks) against Checker.check one plan at a time: the same findings, or the
    same error, for every plan, whatever the others in the chunk are (an exception object as a plan included)."""
    checker = get_checker()
    plans = [plan for _, plan in _decoded_plans()] + [ValueError("not a plan"), None, 3]
    together = checker.evaluate_many(plans)
    assert len(together) == len(plans)
    for plan, outcome in zip(plans, together):
        try:
            report = checker.check(plan)
        except InvalidPlanError as exc:
            assert isinstance(outcome, InvalidPlanError) and outcome.errors == exc.errors
            continue
        assert not isinstance(outcome, Exception)
        assert [Finding(**finding) for finding in outcome[2]] == report.findings


if __name__ == "__main__":  # python tests/test_reference_outputs.py --write: only from the original code
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_reference_outputs.py --write")
    import tempfile

    EXPECTED.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for key, produce in outputs(Path(tmp)).items():
            (EXPECTED / f"{key}.gz").write_bytes(gzip.compress(produce(), mtime=0))
