"""Golden cases: each file in tests/golden holds a plan and what the report must say about it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivig_safety import check

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.yaml"))


def test_there_are_golden_cases() -> None:
    assert len(GOLDEN) >= 15


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    expect = case["expect"]
    report = check(case["plan"])
    fired = {rule for f in report.findings for rule in f.rules}
    actionable = {kind for f in report.findings if f.severity != "info" for kind in f.kinds}

    assert report.verdict == expect["verdict"]
    assert actionable == set(expect["kinds"])
    assert set(expect.get("rules", [])) <= fired
    assert not set(expect.get("absent_rules", [])) & fired
    if "suggested_max_rate" in expect:
        cap = report.suggested_max_rate
        mg = expect["suggested_max_rate"]
        ml_per_h = mg * report.plan.weight_kg / report.plan.concentration_mg_per_ml * 60
        assert ml_per_h - 0.1 - 1e-9 <= cap.ml_per_h <= ml_per_h + 1e-9
        assert cap.mg_per_kg_min <= mg + 1e-9
    if "step" in expect:
        finding = next(f for f in report.findings if expect["step"]["rule"] in f.rules)
        assert finding.step == expect["step"]["step"]
    for severity in ("critical", "warning", "info"):
        if severity in expect.get("count", {}):
            count = sum(f.severity == severity for f in report.findings)
            assert count == expect["count"][severity], (severity, report.findings)
    for finding in report.findings:
        assert finding.citation and "{" not in finding.citation and "{" not in finding.message
