"""``ivig-safety batch`` and ``check_many``: every row in gives one row out, in order, whatever the row contains.

Why these tests: the failure that matters in a batch is the silent one, a row that vanishes, moves, or is judged
differently by format. Each test states a guarantee of the batch runner and checks it against the real engine;
expected verdicts are taken from ``check()`` itself, so the tests follow the rule files rather than freeze them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from ivig_safety import check, check_many, get_checker
from ivig_safety.batch import workers as batch_module
from ivig_safety.batch import (MAX_LINE_BYTES, BatchInputError, InputRow, JsonlWriter, Summary, csv_row_to_plan,
                               open_source, parse_steps, run_batch)
from ivig_safety.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ORDERS_JSONL = EXAMPLES / "orders.jsonl"
ORDERS_CSV = EXAMPLES / "orders.csv"


def example_lines() -> list[bytes]:
    return ORDERS_JSONL.read_bytes().splitlines()


def example_plans() -> list[dict[str, Any]]:
    return [json.loads(line) for line in example_lines()]


def run_cli(args: list[str], stdin: bytes | None = None) -> tuple[int, bytes, str]:
    """Run ``ivig-safety batch`` in this process; returns (exit code, stdout bytes, stderr text)."""
    runner = CliRunner()
    result = runner.invoke(main, ["batch", *args], input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout_bytes, result.stderr


def rows_of(output: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in output.splitlines()]


def expected_verdict(plan: dict[str, Any]) -> str:
    try:
        return check(plan).verdict
    except Exception:  # noqa: BLE001 - an invalid plan is an error row in a batch
        return "error"


# ------------------------------------------------------------------------------------------ row accounting


def mixed_jsonl() -> tuple[bytes, dict[int, str]]:
    """A file mixing good orders with every kind of bad line; returns the bytes and, per bad line, the error
    message fragment its row must carry."""
    good = example_lines()
    bad: list[tuple[bytes, str]] = [
        (b'{"id": "T-1", "product": "Octagam 10%", "patient": {"weight": ', "malformed JSON"),
        (b"", "empty line"),
        (b"   \t ", "empty line"),
        (b'{"id": "HUGE", "pad": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}', "longer than"),
        (good[0].replace(b"70 kg", b"70 k\xe9g"), "not UTF-8"),
        (b"[1, 2, 3]", "mapping"),
        (b'{"id": "DUP", "id": "DUP2"}', "duplicate key"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"null", "mapping"),
    ]
    lines, expected_errors = interleave([], good, bad)
    for extra, message in bad[len(good):]:
        lines.append(extra)
        expected_errors[len(lines)] = message
    lines[0] = lines[0] + b"\r"  # a CRLF line
    return b"\n".join(lines), expected_errors  # and no newline after the last line


def interleave(lines: list[bytes], good: list[bytes], bad: list[tuple[bytes, str]]
               ) -> tuple[list[bytes], dict[int, str]]:
    """Good lines with a bad one after each (while bad ones last); the bad lines' 1-based numbers and messages."""
    expected_errors: dict[int, str] = {}
    for index, line in enumerate(good):
        lines.append(line)
        if index < len(bad):
            lines.append(bad[index][0])
            expected_errors[len(lines)] = bad[index][1]
    return lines, expected_errors


def test_every_jsonl_line_gives_one_row_in_order(tmp_path: Path) -> None:
    data, expected_errors = mixed_jsonl()
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(data)
    lines_in = data.split(b"\n")

    code, out, _ = run_cli([str(source), "--quiet"])

    assert code == 0  # findings and bad rows are data, not failure
    rows = rows_of(out)
    assert len(rows) == len(lines_in)
    assert [r["line"] for r in rows] == list(range(1, len(lines_in) + 1))
    for row in rows:
        if row["line"] in expected_errors:
            assert row["verdict"] == "error", row
            text = " ".join(e["msg"] for e in row["errors"])
            assert expected_errors[row["line"]] in text, (row["line"], text)
            assert row["findings"] == [] and row["max_ml_per_h"] is None
        else:
            plan = json.loads(lines_in[row["line"] - 1])
            assert row["id"] == plan["id"]
            assert row["verdict"] == expected_verdict(plan)


def test_every_csv_line_gives_one_row_in_order(tmp_path: Path) -> None:
    header, *good = ORDERS_CSV.read_bytes().splitlines()
    bad = [
        (b'X-1,"Octagam 10%,dermatomyositis,70 kg', "malformed CSV"),  # unbalanced quote stays on its line
        (b"", "empty line"),
        (b"X-3,Octagam 10%,chronic-itp", "3 cells"),
        (b"X-4," + b"y" * (MAX_LINE_BYTES + 5), "longer than"),
        (good[0].replace(b"70 kg", b"70 k\xe9g"), "not UTF-8"),
    ]
    lines, expected_errors = interleave([header], good, bad)
    source = tmp_path / "mixed.csv"
    source.write_bytes(b"\r\n".join(lines) + b"\r\n")

    code, out, _ = run_cli([str(source), "--quiet"])

    assert code == 0
    rows = rows_of(out)
    assert len(rows) == len(lines) - 1  # the header is not a row
    assert [r["line"] for r in rows] == list(range(2, len(lines) + 1))  # physical line numbers
    for row in rows:
        if row["line"] in expected_errors:
            assert row["verdict"] == "error"
            assert expected_errors[row["line"]] in " ".join(e["msg"] for e in row["errors"])
    assert rows[1]["id"] == "X-1"  # an unreadable row keeps the id it could read


# ------------------------------------------------------------------------------------------------- workers


def many_rows(count: int) -> list[dict[str, Any]]:
    """Example orders cycled with unique ids; the invalid ones (fast) and valid ones (slow) make chunks finish
    out of order in the pool, which is what the ordering must survive."""
    plans = example_plans()
    out = []
    for number in range(count):
        plan = json.loads(json.dumps(plans[number % len(plans)]))
        plan["id"] = f"{plan['id']}#{number}"
        out.append(plan)
    return out


def test_workers_keep_input_order_and_results() -> None:
    plans = many_rows(400)
    plans[7] = {"id": "not-a-plan", "product": 3}
    serial = list(check_many(plans, workers=1))
    parallel = list(check_many(iter(plans), workers=2, chunk_rows=5))
    assert len(parallel) == len(plans)
    assert [r.line for r in parallel] == list(range(1, len(plans) + 1))
    assert [r.id for r in parallel] == [p["id"] for p in plans]
    assert parallel == serial


@pytest.mark.parametrize("workers", [1, 2])
def test_check_many_streams(workers: int) -> None:
    """Results come out while input is still unread: memory is bounded by the window, not by the input."""
    plans = many_rows(12)
    consumed = 0

    def endless() -> Any:
        nonlocal consumed
        for number in range(1_000_000):
            consumed += 1
            yield plans[number % len(plans)]

    results = check_many(endless(), workers=workers, chunk_rows=16)
    first = [next(results) for _ in range(40)]
    assert [r.line for r in first] == list(range(1, 41))
    assert consumed <= 40 + workers * batch_module.CHUNKS_PER_WORKER * 16 + 16
    results.close()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cli_workers_write_the_same_output(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "many.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(p) for p in many_rows(150)) + b"\n")
    code1, out1, _ = run_cli([str(source), "--quiet", "--format", fmt, "--workers", "1"])
    code2, out2, _ = run_cli([str(source), "--quiet", "--format", fmt, "--workers", "2"])
    assert code1 == code2 == 0
    assert out1 == out2  # byte for byte: workers serialise rows exactly as the parent would
    assert len(out1.splitlines()) == 150 + (fmt == "csv")


def test_a_dead_worker_costs_rows_not_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in the C core kills the worker process; the rows in flight are re-run, the row that killed it is
    re-run alone once and, as it kills a worker again, becomes the one error row; the run goes on."""
    real = batch_module.process_rows
    parent = os.getpid()

    def crashing(rows: list[InputRow], checker: Any) -> Any:
        for row in rows:
            if os.getpid() != parent and isinstance(row.payload, dict) and row.payload.get("id") == "CRASH":
                os._exit(1)
        return real(rows, checker)

    monkeypatch.setattr(batch_module, "process_rows", crashing)  # workers are forked: they inherit the patch
    plans = many_rows(120)
    plans[30] = {**plans[30], "id": "CRASH"}
    results = list(check_many(plans, workers=2, chunk_rows=4))
    assert [r.line for r in results] == list(range(1, 121))
    assert results[30].verdict == "error" and results[30].internal
    assert "worker process died" in results[30].errors[0]["msg"]
    lost = [r for r in results if r.verdict == "error" and "worker process died" in r.errors[0]["msg"]]
    assert lost == [results[30]]  # only the row that killed it
    serial = list(check_many(plans, workers=1))
    assert results[:30] + results[31:] == serial[:30] + serial[31:]


# ----------------------------------------------------------------------------------------------- formats


def test_csv_and_jsonl_give_the_same_results() -> None:
    code_csv, out_csv, _ = run_cli([str(ORDERS_CSV), "--quiet"])
    code_jsonl, out_jsonl, _ = run_cli([str(ORDERS_JSONL), "--quiet"])
    assert code_csv == code_jsonl == 0
    csv_rows, jsonl_rows = rows_of(out_csv), rows_of(out_jsonl)
    assert len(csv_rows) == len(jsonl_rows) == len(example_lines()) >= 12

    def same(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "line"}

    assert [same(r) for r in csv_rows] == [same(r) for r in jsonl_rows]
    verdicts = [r["verdict"] for r in jsonl_rows]
    assert verdicts == [expected_verdict(p) for p in example_plans()]
    assert verdicts.count("error") == 2 and {"ok", "warn", "block"} <= set(verdicts)


def test_csv_output_has_one_row_per_result() -> None:
    code, out, _ = run_cli([str(ORDERS_JSONL), "--quiet", "--format", "csv"])
    assert code == 0
    import csv as csv_module
    import io

    table = list(csv_module.DictReader(io.StringIO(out.decode())))
    assert len(table) == len(example_lines())
    assert [row["id"] for row in table] == [p["id"] for p in example_plans()]
    bad = [row for row in table if row["verdict"] == "error"]
    assert bad and all(row["errors"] and not row["messages"] for row in bad)
    good = [row for row in table if row["verdict"] != "error"]
    assert all(float(row["max_ml_per_h"]) > 0 and row["messages"] for row in good if row["kinds"])


def test_stdin_and_folder_inputs(tmp_path: Path) -> None:
    code, out_stdin, _ = run_cli(["-", "--quiet"], stdin=ORDERS_CSV.read_bytes())
    _, out_file, _ = run_cli([str(ORDERS_CSV), "--quiet"])
    assert code == 0 and out_stdin == out_file

    code, out_stdin, _ = run_cli(["-", "--quiet"], stdin=ORDERS_JSONL.read_bytes())
    _, out_file, _ = run_cli([str(ORDERS_JSONL), "--quiet"])
    assert code == 0 and out_stdin == out_file

    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "a.yaml").write_bytes((EXAMPLES / "dermatomyositis.yaml").read_bytes())
    (folder / "b.json").write_text('{"product": "Octagam 10%", "product": "x"}')
    (folder / "c.yml").write_bytes(b"\xff\xfe")
    (folder / "notes.txt").write_text("not a plan")
    code, out, _ = run_cli([str(folder), "--quiet"])
    rows = rows_of(out)
    assert code == 0
    assert [(r["line"], r["id"]) for r in rows] == [(1, "a.yaml"), (2, "b.json"), (3, "c.yml")]
    assert rows[0]["verdict"] == check(yaml.safe_load((EXAMPLES / "dermatomyositis.yaml").read_text())).verdict
    assert "duplicate key" in rows[1]["errors"][0]["msg"]
    assert "not UTF-8" in rows[2]["errors"][0]["msg"]


def test_csv_mapping() -> None:
    assert parse_steps("0.01 mL/kg/min x 30 min; 0.02 mL/kg/min X 30 min;; 0.04 mL/kg/min;") == [
        {"rate": "0.01 mL/kg/min", "duration": "30 min"}, {"rate": "0.02 mL/kg/min", "duration": "30 min"},
        {"rate": "0.04 mL/kg/min"}]
    plan = csv_row_to_plan({"id": " A1 ", "product": "Octagam 10%", "indication": "dermatomyositis",
                            "weight": "154 lb", "height": "", "age": "58", "risk_factors": "immobility; diabetes;",
                            "dose_per_course": "2 g/kg", "dose_per_day": "", "days": "5",
                            "steps": "1 mg/kg/min x 30 min; 2 mg/kg/min"})
    assert plan == {"id": "A1", "product": "Octagam 10%", "indication": "dermatomyositis",
                    "patient": {"weight": "154 lb", "age": 58.0, "risk_factors": ["immobility", "diabetes"]},
                    "dose": {"per_course": "2 g/kg", "days": 5},
                    "steps": [{"rate": "1 mg/kg/min", "duration": "30 min"}, {"rate": "2 mg/kg/min"}]}
    assert check(plan).verdict in ("ok", "warn", "block")


# ------------------------------------------------------------------------------------------ interrupted run


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_run_leaves_a_valid_prefix(tmp_path: Path, workers: int) -> None:
    lines = [orjson.dumps(p) for p in many_rows(40_000)]
    lines[5] = b"{broken"
    source = tmp_path / "big.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    output = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "ivig_safety.cli", "batch", str(source), "--output",
                                str(output), "--workers", str(workers)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if output.exists() and output.read_bytes().count(b"\n") >= 300:
                break
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.02)
        workers_pids = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    written = output.read_bytes()
    complete = written[: written.rfind(b"\n") + 1].splitlines()
    assert 300 <= len(complete) < len(lines)
    reference = list(check_many((InputRow(n, "jsonl", line) for n, line in enumerate(lines[: len(complete)], 1))))
    assert [orjson.loads(line) for line in complete] == [r.to_dict() for r in reference]
    assert reference[5].verdict == "error"
    if workers > 1:  # the workers do not outlive a parent killed without warning
        assert workers_pids
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in workers_pids):
            assert time.monotonic() < deadline, "worker processes outlived the killed parent"
            time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


# --------------------------------------------------------------------------------------- summary, exit codes


def _summary_numbers(stderr: str) -> list[int]:
    """The rows/ok/warn/block/error figures from the summary table."""
    for line in stderr.splitlines():
        numbers = re.findall(r"\d+", line)
        if len(numbers) == 5 and re.fullmatch(r"[\s│|\d]+", line):
            return [int(n) for n in numbers]
    raise AssertionError(f"no summary row in:\n{stderr}")


def test_summary_counts_match_the_rows(tmp_path: Path) -> None:
    data, _ = mixed_jsonl()
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(data)
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as stream, open_source(source) as rows:
        summary = run_batch(rows, JsonlWriter(stream))
    written = rows_of(out.read_bytes())
    verdicts = [r["verdict"] for r in written]
    assert summary.rows == len(written) == len(data.split(b"\n"))
    counts = summary.as_dict()
    for verdict in ("ok", "warn", "block", "error"):
        assert counts[verdict] == verdicts.count(verdict)
    assert sum(counts[v] for v in ("ok", "warn", "block", "error")) == counts["rows"]
    for kind, count in counts["kinds"].items():
        assert count == sum(kind in r["kinds"] for r in written)
    for rule, count in counts["rules"].items():
        assert count == sum(any(f["rule"] == rule for f in r["findings"]) for r in written)
    assert set(counts["kinds"]) == {k for r in written for k in r["kinds"]}

    code, _, stderr = run_cli([str(source), "--output", str(tmp_path / "cli.jsonl")])
    assert code == 0
    assert _summary_numbers(stderr) == [counts[k] for k in ("rows", "ok", "warn", "block", "error")]
    for kind, count in counts["kinds"].items():
        assert re.search(rf"kind {re.escape(kind)}\s*│\s*{count}\s", stderr), kind


def test_fail_on_exit_codes(tmp_path: Path) -> None:
    lines = example_lines()
    by_verdict: dict[str, list[bytes]] = {}
    for line, plan in zip(lines, example_plans()):
        by_verdict.setdefault(expected_verdict(plan), []).append(line)
    assert {"ok", "warn", "block", "error"} <= set(by_verdict)

    def run(*verdicts: str, fail_on: str | None) -> int:
        source = tmp_path / "subset.jsonl"
        source.write_bytes(b"\n".join(by_verdict[v][0] for v in verdicts) + b"\n")
        args = [str(source), "--quiet"] + (["--fail-on", fail_on] if fail_on else [])
        return run_cli(args)[0]

    everything = ("ok", "warn", "block", "error")
    assert run(*everything, fail_on=None) == 0
    assert run("ok", fail_on="warn") == 0
    assert run("ok", "warn", fail_on="warn") == 1
    assert run("ok", "warn", fail_on="block") == 0
    assert run("ok", "warn", "block", fail_on="warn") == 3
    assert run("ok", "warn", "block", fail_on="block") == 3
    assert run("ok", "warn", "block", fail_on="error") == 0
    assert run(*everything, fail_on="error") == 2
    assert run(*everything, fail_on="warn") == 2  # an unchecked order is the worst outcome


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n  \n\n")
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("id,product,indication,wieght,days,steps,dose_per_course\n1,a,b,70 kg,5,1 mg/kg/min,2 g/kg\n")
    latin_header = tmp_path / "latin.csv"
    latin_header.write_bytes(b"id,product\xe9\n")
    no_plans = tmp_path / "nothing"
    no_plans.mkdir()
    for path, message in [(tmp_path / "missing.jsonl", "cannot read"), (empty, "empty"), (blank, "empty"),
                          (bad_header, "wieght"), (latin_header, "not UTF-8"), (no_plans, "no plan files")]:
        code, out, stderr = run_cli([str(path)])
        assert code == 2, path
        assert out == b""
        assert message in stderr, (path, stderr)
    code, out, stderr = run_cli(["-"], stdin=b"")
    assert code == 2 and out == b""


def test_check_many_turns_engine_failures_into_error_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from ivig_safety import EngineError

    checker = get_checker(None, None)  # the instance check_many uses (lru_cache keys get_checker() apart)
    real = checker.parse  # the first step of every check, batch rows included

    def flaky(plan: Any) -> Any:
        if plan.get("id") == "ENGINE":
            raise EngineError("durable_rules refused the facts (code 204)")
        if plan.get("id") == "BUG":
            raise ZeroDivisionError("division by zero")
        return real(plan)

    monkeypatch.setattr(checker, "parse", flaky)
    plans = many_rows(5)
    plans[1]["id"], plans[3]["id"] = "ENGINE", "BUG"
    results = list(check_many(plans))
    assert [r.line for r in results] == [1, 2, 3, 4, 5]
    for index in (0, 2, 4):
        assert results[index].verdict == expected_verdict(plans[index])
    assert results[1].verdict == results[3].verdict == "error"
    assert results[1].id == "ENGINE" and "internal error" in results[1].errors[0]["msg"]
    assert "ZeroDivisionError" in results[3].errors[0]["msg"]


def test_a_chunk_with_failed_rows_leaves_nothing_to_the_cyclic_gc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed plan's exception kept as its outcome must not hold its frames: through ``f_back`` they reach the
    chunk's list of outcomes, and every plan of the chunk would then wait for a garbage collection (this cost a
    tenth of a batch row). Invalid input and an internal error both."""
    import gc

    from ivig_safety.batch.rows import process_rows

    checker = get_checker(None, None)
    real = checker._fire

    def failing(facts: Any) -> Any:
        if facts.plan.id == "BUG":
            try:
                raise KeyError("the cause")
            except KeyError:
                raise ZeroDivisionError("division by zero")  # noqa: B904 - a context, as a real bug would have
        return real(facts)

    monkeypatch.setattr(checker, "_fire", failing)
    plans = many_rows(6)
    plans[1]["product"] = "Octagam 20%"  # invalid input: a ValidationError inside
    plans[2]["patient"]["weight"] = "-70 kg"
    plans[4]["id"] = "BUG"
    rows = [InputRow(number, "plan", plan) for number, plan in enumerate(plans, 1)]
    process_rows(rows, checker)  # caches filled once (label templates and the like are kept, not garbage)
    enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        results = process_rows(rows, checker)
        left = gc.collect()
    finally:
        if enabled:
            gc.enable()
    assert [r.verdict for r in results].count("error") == 3
    assert "ZeroDivisionError" in results[4].errors[0]["msg"]
    assert left == 0, f"{left} objects in reference cycles after one chunk"


def test_the_collector_is_paused_for_a_chunk_and_then_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch pauses the cyclic garbage collector while it checks a chunk (it finds nothing there) and turns it back
    on after, even when a chunk fails; a collector someone else switched off stays off."""
    import gc

    from ivig_safety.batch import rows as rows_module

    seen: list[bool] = []
    real = rows_module.process_rows

    def recording(chunk: list[InputRow], checker: Any) -> Any:
        seen.append(gc.isenabled())
        if chunk[0].payload.get("id") == "BOOM":
            raise RuntimeError("a chunk that fails")
        return real(chunk, checker)

    monkeypatch.setattr(batch_module, "process_rows", recording)
    checker = get_checker(None, None)
    plans = many_rows(3)
    rows = [InputRow(number, "plan", plan) for number, plan in enumerate(plans, 1)]
    assert gc.isenabled()
    assert [r.verdict for r in batch_module._checked(rows, checker)] == [expected_verdict(p) for p in plans]
    assert seen == [False] and gc.isenabled()
    with pytest.raises(RuntimeError):
        batch_module._checked([InputRow(1, "plan", {"id": "BOOM"})], checker)
    assert gc.isenabled()
    gc.disable()
    try:
        batch_module._checked(rows, checker)
        assert not gc.isenabled()
    finally:
        gc.enable()
    out = list(batch_module._encoded_chunks(iter(rows), checker, "jsonl", 2))
    assert len(out) == 2 and sum(counts.rows for _, counts in out) == 3
    assert seen[-2:] == [False, False] and gc.isenabled()


def test_summary_object_counts_rows() -> None:
    summary = Summary()
    for result in check_many(example_plans()):
        summary.add(result)
    assert summary.rows == len(example_plans())
    assert sum(summary.verdicts.values()) == summary.rows


def test_open_source_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError):
        open_source(tmp_path / "nope.csv")


@pytest.mark.parametrize("depth", [65, 900, 5000])
def test_a_line_nested_too_deep_is_an_error_row_on_every_python(tmp_path: Path, depth: int) -> None:
    """3.11's JSON decoder gives up near 1,000 levels and 3.13's does not: the depth bound makes the answer the
    same everywhere, and a string full of brackets is not nesting."""
    deep = '{"id": "DEEP", "product": ' + "[" * depth + "]" * depth + "}"
    brackets_in_text = json.dumps({"id": "TEXT", "product": "[" * 500})
    source = tmp_path / "plans.jsonl"
    source.write_text(deep + "\n" + brackets_in_text + "\n")
    rows = [r for r in check_many(open_source(source))]
    assert rows[0].verdict == "error" and "nested more than 64 levels" in str(rows[0].errors)
    assert rows[1].verdict == "error" and "nested" not in str(rows[1].errors)  # an unknown product, not depth
