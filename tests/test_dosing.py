"""Dosing weight, dose rounding and vials: institutional methods chosen in the policy, shown in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivig_safety import Checker
from ivig_safety.pipeline.dosing import ideal_body_weight

from .conftest import plan

RULES = Path(__file__).resolve().parent.parent / "rules"


def _overlay(tmp_path: Path, **entries: object) -> Path:
    lines = ["name: test site", "entries:"]
    for key, value in entries.items():
        lines += [f"  {key}:", f"    value: {value}", "    provenance: test"]
    path = tmp_path / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_devine_ideal_body_weight() -> None:
    assert ideal_body_weight(152.4, "male") == pytest.approx(50.0)
    assert ideal_body_weight(152.4, "female") == pytest.approx(45.5)
    assert ideal_body_weight(177.8, "male") == pytest.approx(50 + 2.3 * 10)


def test_default_policy_doses_on_actual_weight() -> None:
    report = Checker(RULES).check(plan(**{"patient.weight": "120 kg", "patient.height": "170 cm",
                                          "patient.sex": "male"}))
    assert report.plan.dosing_weight_kg == pytest.approx(120)
    assert report.dispense.dose_g == pytest.approx(2 * 120 / 5)


def test_adjusted_weight_above_bmi_30(tmp_path: Path) -> None:
    checker = Checker(RULES, _overlay(tmp_path, dosing_weight="adjusted"))
    report = checker.check(plan(**{"patient.weight": "120 kg", "patient.height": "170 cm", "patient.sex": "male"}))
    ibw = ideal_body_weight(170, "male")
    adjusted = ibw + 0.4 * (120 - ibw)
    assert report.plan.dosing_weight_kg == pytest.approx(adjusted)
    assert "adjusted" in report.plan.dosing_weight_method
    assert report.dispense.dose_g == pytest.approx(2 * adjusted / 5, abs=1e-3)
    # the dermatomyositis maximum in mL/h is now on the adjusted weight
    assert report.suggested_max_rate.ml_per_h == pytest.approx(4 * adjusted / 100 * 60, abs=0.1)


@pytest.mark.parametrize("changes, reason", [
    ({"patient.weight": "80 kg"}, "BMI"),                         # BMI 27.7: not above 30
    ({"patient.age": 16}, "under 18"),
    ({"patient.height": "150 cm"}, "under 152 cm"),
    ({"patient.pregnant": True}, "pregnancy"),
    ({"patient.sex": None}, "needs height and sex"),
])
def test_adjusted_weight_exclusions(tmp_path: Path, changes: dict, reason: str) -> None:
    checker = Checker(RULES, _overlay(tmp_path, dosing_weight="adjusted"))
    base = {"patient.weight": "120 kg", "patient.height": "170 cm", "patient.sex": "male"}
    report = checker.check(plan(**{**base, **changes}))
    assert report.plan.dosing_weight_kg == report.plan.weight_kg
    assert reason in report.plan.dosing_weight_method


def test_vials_cover_the_dose_with_least_waste() -> None:
    report = Checker(RULES).check(plan(**{"patient.weight": "68.5 kg"}))  # 27.4 g a day
    d = report.dispense
    sizes = {v.size: v.count for v in d.vials}
    total = sum(float(size.split()[0]) * count for size, count in sizes.items())
    assert total >= d.dose_g and d.waste_g == pytest.approx(total - d.dose_g)
    assert d.waste_g < 2  # the smallest vial is 2 g
    assert d.volume_ml == pytest.approx(d.dose_g * 10)


def test_rounding_to_whole_vials_within_tolerance(tmp_path: Path) -> None:
    checker = Checker(RULES, _overlay(tmp_path, dose_rounding="nearest-vial"))
    report = checker.check(plan(**{"patient.weight": "68.5 kg"}))  # 27.4 g -> 27 g (20 + 5 + 2)
    assert report.dispense.prescribed_dose_g == pytest.approx(27.4)
    assert report.dispense.dose_g == pytest.approx(27.0)
    assert report.dispense.waste_g == 0
    assert report.plan.daily_volume_ml == pytest.approx(270)
    assert sum(s.volume_ml for s in report.suggested_steps) <= 270 + 1e-6


def test_rounding_to_5_g_only_within_tolerance(tmp_path: Path) -> None:
    checker = Checker(RULES, _overlay(tmp_path, dose_rounding="nearest-5g"))
    near = checker.check(plan(**{"patient.weight": "101 kg"}))  # 40.4 g -> 40 g (1%)
    assert near.dispense.dose_g == pytest.approx(40)
    far = checker.check(plan(**{"patient.weight": "70 kg"}))  # 28 g -> 30 g would be 7%
    assert far.dispense.dose_g == pytest.approx(28) and "not rounded" in far.dispense.rounding


def test_products_without_vial_sizes_say_so() -> None:
    report = Checker(RULES).check({**plan(), "product": "privigen", "indication": "chronic-itp",
                                   "dose": {"per_day": "1 g/kg", "days": 2},
                                   "steps": [{"rate": "0.5 mg/kg/min", "duration": "30 min"},
                                             {"rate": "4 mg/kg/min"}]})
    assert report.dispense.vials == [] and report.dispense.waste_g is None
