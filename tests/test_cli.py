"""The command line, as a nurse or a script runs it: exit codes, stdout/stderr, and fail-closed input handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ivig_safety import check
from ivig_safety.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dermatomyositis.yaml"
GOLDEN = ROOT / "tests" / "golden"


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def test_example_plan_text_report() -> None:
    result = run("check", str(EXAMPLE))
    assert result.exit_code == 1  # warn: the seed patient is immobile and inflamed
    assert "WARN" in result.stdout and "thrombosis-risk" in result.stdout
    # Octagam 10%'s at-risk cap is 0.03 mL/kg/min (the lower of its two printed figures): 126 mL/h for 70 kg.
    assert "Suggested schedule" in result.stdout and "126" in result.stdout


def test_json_report_is_exactly_the_api_report() -> None:
    result = run("check", str(EXAMPLE), "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == check(yaml.safe_load(EXAMPLE.read_text())).to_json_dict()


@pytest.mark.parametrize("case, code", [("dm-at-maximum", 0), ("dm-seed-immobility-inflammation", 1),
                                        ("dm-just-above-maximum", 3)])
def test_exit_code_follows_verdict(tmp_path: Path, case: str, code: int) -> None:
    plan = yaml.safe_load((GOLDEN / f"{case}.yaml").read_text())["plan"]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert run("check", str(path), "--format", "json").exit_code == code


def test_plan_from_stdin() -> None:
    result = run("check", "-", "--format", "json", input=EXAMPLE.read_text())
    assert result.exit_code == 1 and json.loads(result.stdout)["verdict"] == "warn"


@pytest.mark.parametrize("content, words", [
    ("", "empty"),
    ("   \n", "empty"),
    ("product: [unclosed", "malformed"),
    ("{\"product\": ", "malformed"),
    ("a: 1\na: 2\n", "duplicate key"),
    ("- just\n- a list\n", "a plan is a mapping"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
])
def test_malformed_files_exit_2_without_a_verdict(tmp_path: Path, content: str | bytes, words: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run("check", str(path))
    assert result.exit_code == 2
    assert words in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("change, field", [
    ({"patient": {"weight": "70 mL"}}, "patient.weight"),
    ({"patient": {"weight": "-70 kg"}}, "patient.weight"),
    ({"product": "octagam-11"}, "product"),
    ({"patient": {"weight": "70 kg", "risk_factors": ["bad-knees"]}}, "patient.risk_factors"),
])
def test_invalid_plan_names_the_field_and_exits_2(tmp_path: Path, change: dict, field: str) -> None:
    plan = yaml.safe_load(EXAMPLE.read_text())
    for key, value in change.items():
        plan[key] = value if not isinstance(value, dict) else {**plan[key], **value}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    for fmt in ("text", "json"):
        result = run("check", str(path), "--format", fmt)
        assert result.exit_code == 2
        assert f"{field}:" in result.stderr
        assert result.stdout == ""


def test_unknown_risk_factor_lists_the_valid_ones(tmp_path: Path) -> None:
    plan = yaml.safe_load(EXAMPLE.read_text())
    plan["patient"]["risk_factors"] = ["bad-knees"]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    result = run("check", str(path))
    assert "immobility" in result.stderr and "hereditary-fructose-intolerance" in result.stderr


def test_missing_file_is_a_usage_error() -> None:
    result = run("check", "/nonexistent/plan.yaml")
    assert result.exit_code == 2 and result.stdout == ""


def test_explain_shows_the_facts_behind_each_finding() -> None:
    result = run("check", str(EXAMPLE), "--explain")
    flat = " ".join(result.stdout.split())
    assert "Because:" in flat
    assert "risk factor immobility: present" in flat and "peak_rate = 0.04 mL/kg/min" in flat


def test_risk_factor_vocabulary_is_listed() -> None:
    result = run("risk-factors")
    assert result.exit_code == 0
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"immobility", "active-inflammation", "iga-deficiency-with-antibodies", "corn-allergy"} <= names


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "ivig-safety"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ivig_safety.cli"]
    done = subprocess.run([*command, "check", str(EXAMPLE), "--format", "json"], capture_output=True, text=True)
    assert done.returncode == 1
    assert json.loads(done.stdout)["verdict"] == "warn"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_random_files_exit_2_with_a_message_and_no_verdict(text: str | bytes) -> None:
    result = run("check", "-", "--format", "json", input=text)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert result.stdout == ""
