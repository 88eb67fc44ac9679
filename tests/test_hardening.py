"""Hardening (issue 8): each test is one trigger an adversarial test found, and the guarantee that now holds.

1. Nothing that goes wrong inside ``check`` or while rendering gets out as a traceback or as a verdict's exit code:
   exit 4, one ``error: internal error, no verdict: ...`` line, nothing on stdout.
2. A quantity is a number and a unit and nothing else (no comments, control or bidi characters, non-ASCII digits,
   absurd magnitudes), and pint's unit cache is never unpickled from a place another user could write.
3. A batch isolates every row: one row that fails anywhere is one error row; a dead worker costs no other row; a run
   that leaves a row unchecked exits 4.
4. Input and output files: a size limit for ``check``, no symlinks followed in a folder or for ``--output``, output
   created owner-only.
5. Text shown to a terminal carries no control or bidi characters from the input.
"""

from __future__ import annotations

import copy
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pint
import pytest
from click.testing import CliRunner

from ivig_safety import Checker, InvalidPlanError, check, check_many
from ivig_safety.batch import workers as batch_module
from ivig_safety.model import units
from ivig_safety.batch import InputRow
from ivig_safety.batch.writers import encode_csv, encode_jsonl
from ivig_safety.cli import main
from ivig_safety.cli.check import MAX_PLAN_BYTES
from ivig_safety.formats.render import clean_text, render_json, render_text
from ivig_safety.model.units import UnitError, parse_quantity

from .conftest import BASE_PLAN, plan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dermatomyositis.yaml"

#: Characters that must never reach a terminal from the input: C0 (but newline in our own text), ESC, DEL, C1, bidi.
FORBIDDEN = [chr(c) for c in range(0x20) if c != 0x0A] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)] + \
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]


def run(*args: str, input: str | bytes | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input)


def write_plan(tmp_path: Path, data: dict[str, Any], name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def assert_internal_error(result: Any) -> None:
    assert result.exit_code == 4, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: internal error, no verdict: "), result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ 1. the CLI's error boundary


@pytest.mark.parametrize("exc", [ZeroDivisionError("float division by zero"), OverflowError("math range error"),
                                 ValueError("math domain error"), RecursionError("maximum recursion depth"),
                                 MemoryError(), TypeError("Integer exceeds 64-bit range"), KeyError("x")])
@pytest.mark.parametrize("explain", [False, True])
def test_any_exception_inside_check_exits_4_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           exc: BaseException, explain: bool) -> None:
    def boom(self: Checker, data: Any) -> Any:
        raise exc

    monkeypatch.setattr(Checker, "check", boom)
    monkeypatch.setattr(Checker, "explain", boom)
    path = write_plan(tmp_path, BASE_PLAN)
    for fmt in ("text", "json"):
        result = run("check", str(path), "--format", fmt, *(["--explain"] if explain else []))
        assert_internal_error(result)
        assert type(exc).__name__ in result.stderr


@pytest.mark.parametrize("fmt, target", [("json", "render_json"), ("text", "render_text")])
def test_a_renderer_failure_exits_4_and_prints_no_partial_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 fmt: str, target: str) -> None:
    from ivig_safety.cli import check as cli

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(cli, target, boom)
    assert_internal_error(run("check", str(write_plan(tmp_path, BASE_PLAN)), "--format", fmt))


@pytest.mark.parametrize("big", [2 ** 64, 10 ** 20, -(2 ** 70)])
def test_json_report_with_an_integer_id_beyond_64_bits(tmp_path: Path, big: int) -> None:
    """Once broke orjson (a traceback, exit 1). The plan model may bound ids (then: exit 2 naming ``id``); either
    way the outcome is a verdict with its report or an invalid plan, never a crash."""
    result = run("check", str(write_plan(tmp_path, plan(id=big))), "--format", "json")
    assert "Traceback" not in result.stderr and result.exit_code in (0, 1, 2, 3), result.output
    try:
        expected = check(plan(id=big))
    except InvalidPlanError:
        assert result.exit_code == 2 and "id" in result.stderr and result.stdout == ""
        return
    assert result.exit_code == {"ok": 0, "warn": 1, "block": 3}[expected.verdict], result.output
    assert json.loads(result.stdout) == expected.to_json_dict()
    assert json.loads(result.stdout)["plan"]["id"] == big


def test_render_json_output_is_the_same_with_the_fallback() -> None:
    report = check(plan(id=5))
    fast = render_json(report)
    slow = render_json(report.model_copy(update={"plan": report.plan.model_copy(update={"id": 2 ** 64})}))
    assert json.loads(slow)["plan"]["id"] == 2 ** 64
    assert json.loads(fast) == {**json.loads(slow), "plan": {**json.loads(slow)["plan"], "id": 5}}


def test_text_report_renders_non_finite_numbers() -> None:
    report = check(BASE_PLAN)
    for value in (math.inf, -math.inf, math.nan, 1e300):
        odd = report.model_copy(update={
            "suggested_infusion_min": value,
            "plan": report.plan.model_copy(update={"plan_infusion_min": value, "weight_kg": value}),
            "suggested_steps": [s.model_copy(update={"duration_min": value, "volume_ml": value})
                                for s in report.suggested_steps]})
        text = _render(odd)
        assert "Total infusion time" in text
        json.loads(render_json(odd))  # non-finite numbers are null, as orjson writes them


def _render(report: Any, explain: Any = None) -> str:
    from rich.console import Console

    console = Console(width=200, color_system=None, force_terminal=False)
    with console.capture() as captured:
        console.print(render_text(report, explain))
    return captured.get()


def test_ronna_prefixed_dose_is_invalid_input_not_a_traceback(tmp_path: Path) -> None:
    bad = plan(**{"dose.per_course": "2 Rg/kg"})
    result = run("check", str(write_plan(tmp_path, bad)), "--format", "json")
    assert result.exit_code == 2, result.output
    assert "dose.per_course" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(InvalidPlanError):
        check(bad)


# --------------------------------------------------------------------------------------- 2. strict quantities


@pytest.mark.parametrize("text, words", [
    ("0.04 mL/kg/min # =0.4 per pharmacy", "'#'"),
    ("70 kg\x00", "U+0000"),
    ("70\x00 kg", "U+0000"),
    ("70 \u202ekg", "U+202E"),
    ("70 kg\u2066", "U+2066"),
    ("70 k\u2069g", "U+2069"),
    ("70 kg\x1b[8m", "U+001B"),
    ("70 kg\x07", "U+0007"),
    ("70\nkg", "U+000A"),
    ("70\tkg", "U+0009"),
    ("70\u00a0kg", "U+00A0"),              # no-break space
    ("70 kg\u200b", "U+200B"),              # zero-width space
    ("70 kg\x85", "U+0085"),
    ("\u0667\u0660 kg", "ASCII digits"),      # Arabic-Indic 70
    ("\uff17\uff10 kg", "ASCII digits"),      # fullwidth 70
    ("7\u0660 kg", "ASCII digits"),
    ("\u06f7\u06f0 kg", "ASCII digits"),      # extended Arabic-Indic
    ("70 \uff4bg", "U+FF4B"),                 # fullwidth k
    ("70 kg" + " " * 3 + "m" * 60, "longer than"),
    ("70 kg; DROP", "';'"),
    ("70 k_g", "'_'"),
    ("1e308 g", "1e+12"),
    ("-1e13 kg", "1e+12"),
    ("2 Rg/kg", "1e+12"),
    ("2 Qg/yg", "1e+12"),
    ("1e12 Qg/kg", "1e+12"),
])
def test_a_quantity_is_a_number_and_a_unit_and_nothing_else(text: str, words: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity(text)
    message = str(info.value)
    assert words in message, message
    assert not any(c in message for c in FORBIDDEN if c != "\n"), repr(message)


@pytest.mark.parametrize("value, words", [
    ({"value": 10 ** 400, "unit": "kg"}, "1e+12"),
    ({"value": 1e300, "unit": "kg"}, "1e+12"),
    ({"value": 70, "unit": "kg # lb"}, "'#'"),
    ({"value": 70, "unit": "kg\u202e"}, "U+202E"),
    ({"value": 70, "unit": "k" * 41}, "longer than"),
    (10 ** 400, "1e+12"),
    (float("inf"), "finite"),
])
def test_structured_quantities_are_held_to_the_same_rules(value: Any, words: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity(value)
    assert words in str(info.value)


@pytest.mark.parametrize("text, canonical", [
    ("70 kg", 70.0), (" 70 kg ", 70.0), ("70kg", 70.0), ("154 lb", 154 * 0.45359237), ("70000 g", 70.0),
    ("0.04 mL/kg/min", 0.04), ("4 mg/kg/min", 4.0), ("1.5e2 mg", 1.5e-4), ("+3 mg/(kg*min)", 3.0),
    ("70000000 µg", 0.07), ("70000000 μg", 0.07), ("5 %", 0.05), ("168 mL/h", 2.8), ("2 g / kg", 2.0),
    ("1e12 mg", 1e6), (".5 h", 30.0), ("30 min", 30.0),
])
def test_ordinary_quantities_still_parse(text: str, canonical: float) -> None:
    assert parse_quantity(text).canonical == pytest.approx(canonical)


def test_a_comment_in_a_rate_is_invalid_input_and_never_reaches_a_finding() -> None:
    bad = plan(**{"steps.2": {"rate": "0.04 mL/kg/min # =0.4 per pharmacy"}})
    with pytest.raises(InvalidPlanError) as info:
        check(bad)
    assert [e.loc for e in info.value.errors] == ["steps[2].rate"]
    assert "'#'" in info.value.errors[0].msg


@pytest.mark.parametrize("path, value", [
    ("patient.weight", "70 kg\x00"), ("patient.weight", "70 \u202ekg"), ("patient.weight", "\u0667\u0660 kg"),
    ("patient.weight", "\uff17\uff10 kg"), ("patient.height", "170 cm # tall"), ("dose.per_course", "1e308 g"),
    ("steps.0.duration", "30 min\x1b[2J"), ("patient.age", "58 years\u2067"),
])
def test_odd_quantities_in_a_plan_are_invalid_input(path: str, value: str) -> None:
    with pytest.raises(InvalidPlanError) as info:
        check(plan(**{path: value}))
    assert info.value.errors


def test_very_long_quantity_strings_are_refused_before_the_cache() -> None:
    before = units._parse_text.cache_info().currsize
    with pytest.raises(UnitError, match="longer than"):
        parse_quantity("7" * 100_000 + " kg")
    assert units._parse_text.cache_info().currsize == before


def test_a_plan_field_cache_keeps_only_passing_text_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """quantity_validator's per-field cache: text that fails the unit or the field's bounds is never stored (the same
    refusal every time), text that passes gives the same quantity from the cache as without it, and a full cache is
    emptied rather than grown."""
    monkeypatch.setattr(units, "FIELD_CACHE_SIZE", 3)
    seen: list[str] = []

    def check_bounds(quantity: units.Quantity) -> units.Quantity:
        seen.append(str(quantity))
        if quantity.canonical > 100:
            raise ValueError(f"{quantity} is too heavy")
        return quantity

    validate = units.quantity_validator(units.Shape.MASS, what="a mass", check=check_bounds)
    for _ in range(2):
        with pytest.raises(ValueError) as first:
            validate("200 kg", None)
        with pytest.raises(UnitError, match="must be mass"):
            validate("70 mL", None)
    assert "too heavy" in str(first.value) and seen.count("200 kg") == 2  # checked again: nothing was stored
    for text in [f"{n} kg" for n in range(1, 11)] * 2:  # more texts than the cache holds: emptied, refilled
        assert validate(text, None) == parse_quantity(text)
    for lap in range(6):  # two texts fit: once both are in (two rounds at most), they are not checked again
        if lap == 3:
            seen.clear()
        assert [validate(text, None) for text in ("1 kg", "2 kg")] == [parse_quantity("1 kg"), parse_quantity("2 kg")]
    assert seen == []
    assert validate("2 kg", None) is validate("2 kg", None)


# ------------------------------------------------------------------------------------- 2. pint's unit cache

MARKER_PICKLE = """
import pickle, sys
class Evil:
    def __reduce__(self):
        return (open, (sys.argv[1], "w"))
sys.stdout.buffer.write(pickle.dumps(Evil()))
"""

CHECK_SCRIPT = """
import sys
import ivig_safety
from ivig_safety import check
report = check({plan!r})
print(report.verdict)
"""


def _pint_cache_names(tmp_path: Path) -> list[str]:
    """The file names pint's default (':auto:') cache uses on this machine, found by letting pint write one."""
    scratch = tmp_path / "scratch"
    env = {**os.environ, "XDG_CACHE_HOME": str(scratch), "HOME": str(tmp_path / "scratch-home")}
    subprocess.run([sys.executable, "-c", "import pint; pint.UnitRegistry(cache_folder=':auto:')"], env=env,
                   check=True)
    names = sorted(p.name for p in (scratch / "pint").glob("*.pickle"))
    assert names, "pint wrote no cache: the test could not learn the file names"
    return names


def _plant(folder: Path, names: list[str], marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    evil = subprocess.run([sys.executable, "-c", MARKER_PICKLE, str(marker)], capture_output=True,
                          check=True).stdout
    for name in names:
        (folder / name).write_bytes(evil)
        (folder / name).with_suffix(".json").write_text("{}")


def _run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHECK_SCRIPT.format(plan=BASE_PLAN)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_pickle_planted_in_pint_default_cache_is_never_loaded(tmp_path: Path) -> None:
    names = _pint_cache_names(tmp_path)
    marker = tmp_path / "PWNED"
    xdg, home = tmp_path / "xdg", tmp_path / "home"
    _plant(xdg / "pint", names, marker)                    # $XDG_CACHE_HOME/pint
    _plant(home / ".cache" / "pint", names, marker)        # ~/.cache/pint
    for env in ({**os.environ, "XDG_CACHE_HOME": str(xdg), "HOME": str(home)},
                {**{k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}, "HOME": str(home)}):
        done = _run_check(env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() in ("ok", "warn", "block")
        assert not marker.exists(), "a pickle from pint's shared cache folder was loaded"


def test_the_private_cache_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path / "home")}
    assert _run_check(env).returncode == 0
    private = xdg / "ivig-safety" / f"pint-{pint.__version__}"
    for folder in (xdg / "ivig-safety", private):
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0, oct(info.st_mode)
        assert info.st_uid == os.getuid()
    assert list(private.glob("*.pickle")), "the private cache was not written"
    assert not (xdg / "pint").exists()
    assert _run_check(env).returncode == 0  # and read back


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o755, 0o750, 0o705])
def test_a_cache_folder_others_can_reach_is_not_used(tmp_path: Path, mode: int) -> None:
    names = _pint_cache_names(tmp_path)
    marker = tmp_path / "PWNED"
    xdg = tmp_path / "xdg"
    private = xdg / "ivig-safety" / f"pint-{pint.__version__}"
    _plant(private, names, marker)
    os.chmod(xdg / "ivig-safety", 0o700)
    os.chmod(private, mode)
    done = _run_check({**os.environ, "XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    # and the same for the parent the package created
    os.chmod(private, 0o700)
    os.chmod(xdg / "ivig-safety", mode)
    done = _run_check({**os.environ, "XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path / "home")})
    assert done.returncode == 0 and not marker.exists()


def test_a_symlinked_cache_folder_is_not_used(tmp_path: Path) -> None:
    names = _pint_cache_names(tmp_path)
    marker = tmp_path / "PWNED"
    elsewhere = tmp_path / "attacker"
    _plant(elsewhere, names, marker)
    os.chmod(elsewhere, 0o700)
    xdg = tmp_path / "xdg"
    (xdg / "ivig-safety").mkdir(parents=True, mode=0o700)
    (xdg / "ivig-safety" / f"pint-{pint.__version__}").symlink_to(elsewhere, target_is_directory=True)
    done = _run_check({**os.environ, "XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    # a symlinked ivig-safety folder is refused too
    (xdg / "ivig-safety" / f"pint-{pint.__version__}").unlink()
    (xdg / "ivig-safety").rmdir()
    holder = tmp_path / "holder"
    (holder / f"pint-{pint.__version__}").mkdir(parents=True, mode=0o700)
    os.chmod(holder, 0o700)
    _plant(holder / f"pint-{pint.__version__}", names, marker)
    (xdg / "ivig-safety").symlink_to(holder, target_is_directory=True)
    done = _run_check({**os.environ, "XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path / "home")})
    assert done.returncode == 0 and not marker.exists()


def test_cache_folder_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "cache"
    base.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    folder = units.private_cache_folder()
    assert folder == base / "ivig-safety" / f"pint-{pint.__version__}"
    assert units._private_dir(folder) and units._private_dir(folder.parent)
    # owned by someone else
    real_uid = os.getuid()
    monkeypatch.setattr(units.os, "getuid", lambda: real_uid + 1)
    assert units.private_cache_folder() is None
    monkeypatch.setattr(units.os, "getuid", lambda: real_uid)
    # a file inside that is not ours to trust: a symlink, or writable by others
    (folder / "x.pickle").symlink_to(tmp_path)
    assert units.private_cache_folder() is None
    (folder / "x.pickle").unlink()
    (folder / "y.pickle").write_bytes(b"")
    os.chmod(folder / "y.pickle", 0o666)
    assert units.private_cache_folder() is None
    os.chmod(folder / "y.pickle", 0o600)
    assert units.private_cache_folder() == folder
    # a world-writable base without the sticky bit lets others swap the folder: no cache
    os.chmod(base, 0o777)
    assert units.private_cache_folder() is None
    os.chmod(base, 0o1777)
    assert units.private_cache_folder() == folder
    os.chmod(base, 0o755)
    # a relative XDG_CACHE_HOME is ignored (XDG spec): ~/.cache is used
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert units.private_cache_folder() == tmp_path / "home" / ".cache" / "ivig-safety" / f"pint-{pint.__version__}"


def test_no_cache_when_the_folder_cannot_be_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units, "private_cache_folder", lambda: None)
    registry = units._registry()
    assert registry.cache_folder is None
    assert str(registry.Quantity(1, "kg").to("g")) == "1000.0 gram"


# ----------------------------------------------------------------------------------- 3. batch isolates rows


def _good_lines(count: int) -> list[bytes]:
    lines = []
    for number in range(count):
        item = copy.deepcopy(BASE_PLAN)
        item["id"] = f"G-{number}"
        lines.append(orjson.dumps(item))
    return lines


def run_batch_cli(args: list[str], stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(main, ["batch", *args], input=stdin)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_21_digit_id_is_one_row_not_a_lost_run(tmp_path: Path, workers: str) -> None:
    """Once aborted a one-worker run (traceback, no summary) and voided a whole chunk with two workers. Now it is one
    row: a verdict, or an invalid-input error row if the plan model bounds ids; the id is echoed either way."""
    lines = _good_lines(150)
    big = copy.deepcopy(BASE_PLAN)
    big["id"] = 10 ** 20
    lines[3] = json.dumps(big).encode()
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = run_batch_cli([str(source), "--workers", workers])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.stderr and "ivig-safety batch" in result.stderr  # the summary
    rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    assert len(rows) == 150 and [r["line"] for r in rows] == list(range(1, 151))
    expected = check(BASE_PLAN).verdict
    assert [r["verdict"] for r in rows[:3] + rows[4:]] == [expected] * 149
    assert rows[3]["id"] == 10 ** 20
    if rows[3]["verdict"] == "error":
        assert all("internal" not in e["msg"] for e in rows[3]["errors"]) and rows[3]["errors"][0]["loc"] == "id"
    else:
        assert rows[3]["verdict"] == expected
    out_csv = run_batch_cli([str(source), "--workers", workers, "--format", "csv", "--quiet"])
    assert out_csv.exit_code == 0 and str(10 ** 20) in out_csv.stdout


def test_encoders_never_raise() -> None:
    result = batch_module.BatchResult(1, 2 ** 64, "ok", (), 1.0, math.inf, ({"x": math.nan, "message": "m",
                                                                          "rule": "r"},), ())
    assert json.loads(encode_jsonl(result))["id"] == 2 ** 64
    assert json.loads(encode_jsonl(result))["max_ml_per_h"] is None
    assert str(2 ** 64) in encode_csv(result).decode()


def test_a_row_whose_output_cannot_be_encoded_is_an_internal_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    real = batch_module.process_rows

    def unencodable(rows: list[InputRow], checker: Any) -> Any:
        return [result._replace(findings=({"message": object(), "rule": "r"},)) if result.id == "BAD" else result
                for result in real(rows, checker)]

    monkeypatch.setattr(batch_module, "process_rows", unencodable)
    lines = _good_lines(5)
    lines[2] = lines[2].replace(b'"G-2"', b'"BAD"')
    for workers in (1, 2):
        out = list(batch_module.encoded_batches((InputRow(n, "jsonl", line) for n, line in enumerate(lines, 1)),
                                                "jsonl", workers=workers, chunk_rows=64))
        rows = [json.loads(line) for data, _ in out for line in data.splitlines()]
        internal = sum(counts.internal for _, counts in out)
        assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
        assert rows[2]["verdict"] == "error" and rows[2]["id"] == "BAD"
        assert "internal error" in rows[2]["errors"][0]["msg"]
        assert [r["verdict"] for r in rows[:2] + rows[3:]] == [check(BASE_PLAN).verdict] * 4
        assert internal == 1


def _failing_checker(monkeypatch: pytest.MonkeyPatch, bad_id: str, exc: BaseException) -> None:
    real = Checker.parse  # the first step of every check, batch rows included

    def flaky(self: Checker, data: Any) -> Any:
        if isinstance(data, dict) and data.get("id") == bad_id:
            raise exc
        return real(self, data)

    monkeypatch.setattr(Checker, "parse", flaky)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("fail_on", [None, "warn", "block", "error"])
def test_an_unchecked_row_exits_4_whatever_fail_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: str,
                                                  fail_on: str | None) -> None:
    _failing_checker(monkeypatch, "G-7", OverflowError("int too large to convert to float"))
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(_good_lines(20)) + b"\n")
    result = run_batch_cli([str(source), "--workers", workers, *(["--fail-on", fail_on] if fail_on else [])])
    assert result.exit_code == 4, result.output
    rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    assert len(rows) == 20 and rows[7]["verdict"] == "error"
    assert "internal error" in rows[7]["errors"][0]["msg"] and "OverflowError" in rows[7]["errors"][0]["msg"]
    assert sum(r["verdict"] == "error" for r in rows) == 1
    assert "not checked" in result.stderr and "Traceback" not in result.stderr


def test_invalid_input_rows_keep_their_exit_codes(tmp_path: Path) -> None:
    lines = _good_lines(5)
    lines[1] = b'{"id": "X", "product": 3}'
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    assert run_batch_cli([str(source), "--quiet"]).exit_code == 0
    assert run_batch_cli([str(source), "--quiet", "--fail-on", "error"]).exit_code == 2


def test_batch_help_documents_the_exit_codes() -> None:
    text = run("batch", "--help").output
    for words in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
        assert words in text
    assert "internal error" in text


@pytest.mark.parametrize("once", [True, False])
def test_a_dead_worker_costs_only_the_row_that_killed_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         once: bool) -> None:
    """A row that kills its worker: the other rows of its chunk (and of the chunks in flight) are re-run and keep
    their verdicts; the row is re-run alone once, and if it kills a worker again it is an error row saying so."""
    real = batch_module.process_rows
    parent = os.getpid()
    flag = tmp_path / "killed-once"

    def crashing(rows: list[InputRow], checker: Any) -> Any:
        for row in rows:
            if os.getpid() != parent and isinstance(row.payload, dict) and row.payload.get("id") == "KILL":
                if not once or not flag.exists():
                    flag.touch()
                    os._exit(1)
        return real(rows, checker)

    monkeypatch.setattr(batch_module, "process_rows", crashing)
    plans = [{**copy.deepcopy(BASE_PLAN), "id": f"P-{n}"} for n in range(300)]
    plans[100]["id"] = "KILL"
    results = list(check_many(plans, workers=2, chunk_rows=64))
    assert [r.line for r in results] == list(range(1, 301))
    expected = check(BASE_PLAN).verdict
    others = results[:100] + results[101:]
    assert [r.verdict for r in others] == [expected] * 299
    if once:
        assert results[100].verdict == expected and not results[100].internal
    else:
        assert results[100].verdict == "error" and results[100].internal
        assert "worker process died" in results[100].errors[0]["msg"]
        assert "again" in results[100].errors[0]["msg"]


def test_a_killed_worker_in_the_cli_exits_4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = batch_module.process_rows
    parent = os.getpid()

    def crashing(rows: list[InputRow], checker: Any) -> Any:
        if os.getpid() != parent and any(b'"KILL"' in row.payload for row in rows):
            os._exit(1)
        return real(rows, checker)

    monkeypatch.setattr(batch_module, "process_rows", crashing)
    lines = _good_lines(200)
    lines[150] = lines[150].replace(b'"G-150"', b'"KILL"')
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = run_batch_cli([str(source), "--workers", "2"])
    assert result.exit_code == 4, result.output
    rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    assert [r["verdict"] == "error" for r in rows] == [n == 150 for n in range(200)]


# ---------------------------------------------------------------------------------------------- 4. files


def test_check_refuses_an_input_over_the_size_limit(tmp_path: Path) -> None:
    assert MAX_PLAN_BYTES == 1 << 20
    path = tmp_path / "big.yaml"
    body = yaml_plan = EXAMPLE.read_bytes()
    path.write_bytes(yaml_plan + b"#" + b"x" * (MAX_PLAN_BYTES - len(body)) + b"\n")
    for result in (run("check", str(path)), run("check", "-", input=path.read_bytes())):
        assert result.exit_code == 2, result.output
        assert "1 MiB" in result.stderr and result.stdout == ""
    at_limit = tmp_path / "ok.yaml"
    at_limit.write_bytes(body + b"#" * (MAX_PLAN_BYTES - len(body) - 1) + b"\n")
    assert run("check", str(at_limit)).exit_code == 1


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_check_dev_zero_is_refused_quickly() -> None:
    done = subprocess.run([sys.executable, "-m", "ivig_safety.cli", "check", "/dev/zero"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "1 MiB" in done.stderr and "Traceback" not in done.stderr


def test_check_help_names_the_limit() -> None:
    assert "1 MiB" in run("check", "--help").output


def test_folder_mode_never_follows_symlinks(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("SECRET-TOKEN: hunter2\n")
    os.chmod(secret, 0o600)
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "a.yaml").write_bytes(EXAMPLE.read_bytes())
    (folder / "b.yaml").symlink_to(secret)
    (folder / "c.yaml").symlink_to(EXAMPLE)               # even to a real plan
    (folder / "d.yaml").symlink_to(tmp_path / "missing")  # dangling
    (folder / "e.yml").symlink_to(tmp_path)               # to a folder
    result = run_batch_cli([str(folder), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    assert [(r["line"], r["id"], r["verdict"] == "error") for r in rows] == [
        (1, "a.yaml", False), (2, "b.yaml", True), (3, "c.yaml", True), (4, "d.yaml", True), (5, "e.yml", True)]
    for row in rows[1:]:
        assert "symbolic link" in row["errors"][0]["msg"]
    assert b"SECRET" not in result.stdout_bytes and b"hunter2" not in result.stdout_bytes
    assert "SECRET" not in result.stderr


def test_folder_mode_skips_fifos_without_blocking(tmp_path: Path) -> None:
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "a.yaml").write_bytes(EXAMPLE.read_bytes())
    os.mkfifo(folder / "b.yaml")
    done = subprocess.run([sys.executable, "-m", "ivig_safety.cli", "batch", str(folder), "--quiet"],
                          capture_output=True, timeout=60)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a.yaml"]


def test_output_is_created_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    old = os.umask(0o022)
    try:
        result = run_batch_cli([str(ROOT / "examples" / "orders.jsonl"), "--output", str(out), "--quiet"])
    finally:
        os.umask(old)
    assert result.exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_bytes().count(b"\n") >= 12


def test_output_never_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "results.jsonl"
    link.symlink_to(victim)
    result = run_batch_cli([str(ROOT / "examples" / "orders.jsonl"), "--output", str(link), "--quiet"])
    assert result.exit_code == 2
    assert "symbolic link" in result.stderr
    assert victim.read_text() == "precious\n"
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "created-by-link.jsonl")
    result = run_batch_cli([str(ROOT / "examples" / "orders.jsonl"), "--output", str(dangling), "--quiet"])
    assert result.exit_code == 2 and not (tmp_path / "created-by-link.jsonl").exists()


# ----------------------------------------------------------------------------------------- 5. terminal text

SPOOF = "\x1b[2K\rOK  \x1b[8m"


def test_terminal_escapes_in_an_id_do_not_reach_the_text_report(tmp_path: Path) -> None:
    bad = plan(id=SPOOF + "\u202eKCOLB\x9b31m\x07\x7f\nOK")
    result = run("check", str(write_plan(tmp_path, bad)))
    assert result.exit_code in (0, 1, 3)
    assert not any(c in result.stdout for c in FORBIDDEN if c != "\n"), repr(result.stdout)
    assert "\\x1b[2K" in result.stdout  # shown, escaped, so a reader sees what was there
    assert "\\nOK" in result.stdout      # an id cannot start a line of its own


def test_json_report_escapes_controls_and_bidi(tmp_path: Path) -> None:
    bad = plan(id=SPOOF + "\u202e\u2066\x9b\x7f")
    result = run("check", str(write_plan(tmp_path, bad)), "--format", "json")
    assert not any(c in result.stdout for c in FORBIDDEN if c != "\n"), repr(result.stdout)
    assert json.loads(result.stdout)["plan"]["id"] == bad["id"]  # escaped, not lost


def test_batch_outputs_carry_no_terminal_controls(tmp_path: Path) -> None:
    lines = _good_lines(3)
    spoofed = copy.deepcopy(BASE_PLAN)
    spoofed["id"] = SPOOF + "\u202e\x9b"
    lines[1] = orjson.dumps(spoofed)
    lines.append(b'{"id": "\\u001b[31m", "product": "\\u001b]0;owned\\u0007"}')
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    for fmt in ("jsonl", "csv"):
        result = run_batch_cli([str(source), "--format", fmt])
        assert result.exit_code == 0
        for text in (result.stdout, result.stderr):
            assert not any(c in text for c in FORBIDDEN if c not in "\n"), (fmt, repr(text))
        if fmt == "jsonl":
            rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
            assert rows[1]["id"] == spoofed["id"]


def test_error_messages_on_stderr_carry_no_terminal_controls(tmp_path: Path) -> None:
    bad = plan()
    bad["\x1b[2Jinjected"] = 1
    bad["patient"]["\u202eweight"] = "70 kg"
    result = run("check", str(write_plan(tmp_path, bad)))
    assert result.exit_code == 2
    assert not any(c in result.stderr for c in FORBIDDEN if c != "\n"), repr(result.stderr)
    assert "\\x1b[2Jinjected" in result.stderr
    for line in result.stderr.splitlines()[1:]:
        assert line.startswith("  ")


def test_clean_text() -> None:
    assert clean_text("plain text, 70 kg, µg, é, 中文") == "plain text, 70 kg, µg, é, 中文"
    assert clean_text("a\x1b[31mb") == "a\\x1b[31mb"
    assert clean_text("a\nb") == "a\\nb"
    assert clean_text("a\nb", keep_newlines=True) == "a\nb"
    assert clean_text("\u202e\u2066\x9b\x00\x7f\t") == "\\u202e\\u2066\\x9b\\x00\\x7f\\t"
    assert clean_text(12) == "12"
    assert not any(c in clean_text("".join(FORBIDDEN)) for c in FORBIDDEN)


def test_a_failure_while_loading_the_rules_exits_4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ivig_safety.cli import options as cli

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise IndexError("list index out of range")

    monkeypatch.setattr(cli, "get_checker", boom)
    assert_internal_error(run("check", str(write_plan(tmp_path, BASE_PLAN))))
