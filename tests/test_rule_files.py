"""Rules are data: a pharmacist edits rules/ without touching Python, and every mistake is a clear error at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ivig_safety import Checker, RuleFileError

from .conftest import plan

RULES = Path(__file__).resolve().parent.parent / "rules"


@pytest.fixture()
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def _edit_rule(root: Path, file: str, rule_id: str, **changes: object) -> None:
    path = root / "safety" / file
    data = yaml.safe_load(path.read_text())
    rule = next(r for r in data["rules"] if r["id"] == rule_id)
    rule.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("changes, words", [
    ({"when": "peak_rat > max_rate"}, "unknown field 'peak_rat'"),
    ({"when": "peak_rate > 2 g/kg"}, "peak_rate is a quantity"),
    ({"when": "peak_rate > 3.3"}, "write the unit"),
    ({"when": "peak_rate > 3.3 mg/kg"}, "peak_rate is a quantity"),
    ({"when": "peak_rate >> max_rate"}, "cannot read"),
    ({"when": "peak_rate > dose_per_day"}, "cannot compare"),
    ({"when": {"risk_factor": ["bad-knees"]}}, "unknown risk factor 'bad-knees'"),
    ({"when": "dose_per_course > policy.nope"}, "unknown policy key"),
    ({"cap": "3.3"}, "cap must be a positive rate"),
    ({"cap": "2 g/kg"}, "cap must be a positive rate"),
    ({"kind": "too-fast"}, "unknown kind"),
    ({"severity": "severe"}, "severity must be"),
    ({"message": "runs at {peek_rate}"}, "unknown placeholder {peek_rate}"),
    ({"citation": ""}, "'citation' must be non-empty"),
    ({"colour": "red"}, "unknown keys"),
])
def test_bad_rule_is_named_with_its_file(rules_copy: Path, changes: dict, words: str) -> None:
    _edit_rule(rules_copy, "rates.yaml", "max-rate", **changes)
    with pytest.raises(RuleFileError) as info:
        Checker(rules_copy)
    message = str(info.value)
    assert "rates.yaml" in message and "[max-rate]" in message and words in message


def test_duplicate_rule_id_is_refused(rules_copy: Path) -> None:
    _edit_rule(rules_copy, "rates.yaml", "initial-rate", id="max-rate")
    with pytest.raises(RuleFileError, match="duplicate rule id"):
        Checker(rules_copy)


def test_malformed_yaml_names_the_file(rules_copy: Path) -> None:
    (rules_copy / "safety" / "rates.yaml").write_text("rules:\n  - id: [unclosed\n")
    with pytest.raises(RuleFileError, match="rates.yaml"):
        Checker(rules_copy)


def _edit_dm_max_rate(root: Path, key: str, value: str) -> None:
    path = root / "products" / "octagam-10.yaml"
    data = yaml.safe_load(path.read_text())
    data["indications"]["dermatomyositis"]["max_rate"][key] = value
    path.write_text(yaml.safe_dump(data))


def test_unverified_label_figure_is_refused(rules_copy: Path) -> None:
    _edit_dm_max_rate(rules_copy, "tag", "U")
    with pytest.raises(RuleFileError, match="tagged U"):
        Checker(rules_copy)


def test_product_rate_of_the_wrong_shape_is_refused(rules_copy: Path) -> None:
    _edit_dm_max_rate(rules_copy, "value", "0.04 mL/kg")
    with pytest.raises(RuleFileError, match=r"octagam-10.yaml.*max_rate.*must be"):
        Checker(rules_copy)


def test_a_pharmacist_can_add_a_rule_without_python(rules_copy: Path) -> None:
    """A site caps every IVIG pump at 150 mL/h: one YAML block, units written out."""
    (rules_copy / "safety" / "site-pump-cap.yaml").write_text(
        "rules:\n"
        "  - id: site-pump-cap\n"
        "    kind: max-rate-exceeded\n"
        "    severity: warning\n"
        "    when: peak_rate > 150 mL/h\n"
        "    cap: 150 mL/h\n"
        "    message: The plan runs faster than the ward's pump cap of {cap} at {over_cap_steps}.\n"
        "    citation: Ward policy 12.3 (institutional)\n"
    )
    checker = Checker(rules_copy)
    heavy = checker.check(plan(**{"patient.weight": "100 kg"}))  # 0.04 mL/kg/min = 240 mL/h
    finding = next(f for f in heavy.findings if f.rule == "site-pump-cap")
    assert finding.step == 3 and "150 mL/h" in finding.message
    assert heavy.suggested_max_rate.ml_per_h == pytest.approx(150)
    light = checker.check(plan(**{"patient.weight": "50 kg"}))  # 120 mL/h
    assert "site-pump-cap" not in {f.rule for f in light.findings}
    assert heavy.ruleset.sha256 != Checker(RULES).ruleset.sha256


def test_tightening_a_threshold_in_yaml_changes_the_verdict(rules_copy: Path) -> None:
    before = Checker(rules_copy).check(plan(**{"dose.per_course": "1.6 g/kg"}))
    assert "high-dose" not in {f.kind for f in before.findings}
    _edit_rule(rules_copy, "class-warnings.yaml", "high-dose", severity="warning",
               when="dose_per_course >= 1.5 g/kg")
    report = Checker(rules_copy).check(plan(**{"dose.per_course": "1.6 g/kg"}))
    assert report.verdict == "warn" and any(f.kind == "high-dose" and f.severity == "warning"
                                            for f in report.findings)


def test_policy_overlay_changes_what_it_says_and_nothing_else(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("name: St Elsewhere\nentries:\n  advanced_age_over:\n    value: 60\n"
                    "    provenance: St Elsewhere pharmacy committee, 2026\n")
    default, overlaid = Checker(RULES), Checker(RULES, site)
    sixty_two = plan(**{"patient.age": 62})
    before, after = default.check(sixty_two), overlaid.check(sixty_two)
    assert "advanced-age" not in before.plan.risk_factors
    assert after.plan.derived_risk_factors == ["advanced-age"]
    assert after.policy.name.startswith("St Elsewhere") and after.policy.sha256 != before.policy.sha256
    assert after.ruleset == before.ruleset
    fifty = plan(**{"patient.age": 50})
    assert default.check(fifty).model_dump(exclude={"policy"}) == overlaid.check(fifty).model_dump(exclude={"policy"})


@pytest.mark.parametrize("text, words", [
    ("name: x\nentries:\n  advanced_age: {value: 60, provenance: p}\n", "unknown policy key"),
    ("name: x\nentries:\n  advanced_age_over: {value: 60}\n", "provenance"),
    ("name: x\nentries:\n  at_risk_rate_when_label_silent: {value: 3.3, provenance: p}\n", "must be"),
    ("name: x\nentries:\n  pump_rate_resolution: {value: -0.1 mL/h, provenance: p}\n", "positive"),
])
def test_bad_policy_overlay_is_refused(tmp_path: Path, text: str, words: str) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    with pytest.raises(RuleFileError, match=words):
        Checker(RULES, site)
