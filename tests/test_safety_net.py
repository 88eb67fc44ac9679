"""The clinical safety net: what holds for every IVIG product holds for every product in the catalogue.

No generated plan with a class contraindication, or a dose over the policy's absolute ceiling, may come back without
a critical finding, whatever the product, indication (labelled or not), units and rates; a product file that leaves
out a safety section is refused at load with a message naming the section.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivig_safety import Checker, RuleFileError, check, get_checker

CHECKER = get_checker()
PRODUCTS = sorted(CHECKER.catalogue.products)
INDICATIONS = sorted(CHECKER.vocabulary.indications)
CLASS_CONTRAINDICATIONS = sorted(s.risk_factor for s in CHECKER.knowledge.classwide.contraindications)
OTHER_RISKS = sorted(set(CHECKER.vocabulary.risk_factors) - set(CLASS_CONTRAINDICATIONS))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    """Any product, any indication, a plausible patient, a dose within 3 g/kg a day and rates up to 15 mg/kg/min."""
    weight = draw(st.floats(3, 150))
    days = draw(st.integers(1, 5))
    rates = sorted(draw(st.lists(st.floats(0.2, 15), min_size=1, max_size=4)))
    return {
        "product": draw(st.sampled_from(PRODUCTS)),
        "indication": draw(st.sampled_from(INDICATIONS)),
        "patient": {"weight": f"{weight!r} kg", "age": draw(st.integers(0, 95)),
                    "risk_factors": draw(st.lists(st.sampled_from(OTHER_RISKS), unique=True, max_size=3))},
        "dose": {"per_day": f"{draw(st.floats(0.1, 2.0))!r} g/kg", "days": days},
        "steps": [{"rate": f"{r!r} mg/kg/min", **({"duration": "30 min"} if i < len(rates) - 1 else {})}
                  for i, r in enumerate(rates)],
    }


def _critical_rules(report: Any) -> set[str]:
    return {rule for f in report.findings if f.severity == "critical" for rule in f.rules}


@SETTINGS
@given(plan=plans(), contraindication=st.sampled_from(CLASS_CONTRAINDICATIONS))
def test_a_class_contraindication_blocks_on_every_product(plan: dict[str, Any], contraindication: str) -> None:
    plan["patient"]["risk_factors"] = plan["patient"]["risk_factors"] + [contraindication]
    report = check(plan)
    assert report.verdict == "block"
    assert any(f.kind == "contraindication" and f.severity == "critical" for f in report.findings)


@SETTINGS
@given(plan=plans(), factor=st.floats(1.06, 20))
def test_a_daily_dose_over_the_ceiling_blocks_on_every_product(plan: dict[str, Any], factor: float) -> None:
    ceiling = CHECKER.policy["max_daily_dose"].canonical  # g/kg
    plan["dose"] = {"per_day": f"{ceiling * factor!r} g/kg", "days": 1}
    report = check(plan)
    assert report.verdict == "block"
    assert "dose-above-ceiling" in _critical_rules(report)


@SETTINGS
@given(plan=plans(), grams=st.floats(5, 50))
def test_an_absolute_dose_over_the_ceiling_blocks(plan: dict[str, Any], grams: float) -> None:
    """A dose written in grams for the patient (the tenfold slip '350 g for 70 kg')."""
    weight = float(plan["patient"]["weight"].split()[0])
    plan["dose"] = {"per_day": f"{grams * weight!r} g", "days": 1}  # grams g/kg a day, written as a mass
    report = check(plan)
    assert "dose-above-ceiling" in _critical_rules(report)


@SETTINGS
@given(plan=plans())
def test_an_unlabelled_indication_is_checked_and_warned(plan: dict[str, Any]) -> None:
    product = CHECKER.catalogue.products[plan["product"]]
    report = check(plan)
    if plan["indication"] in product.indications:
        assert not any(f.rule == "unlabeled-indication" for f in report.findings)
    else:
        assert report.verdict != "ok"
        expected = "indication-undetermined" if plan["indication"] == "undetermined" else "unlabeled-indication"
        assert any(expected in f.rules for f in report.findings)


@pytest.mark.parametrize("product_id", PRODUCTS)
def test_every_figure_names_its_label_revision(product_id: str) -> None:
    """A report never cites a file the user does not have; every label figure names the label and its revision."""
    product = CHECKER.catalogue.products[product_id]
    assert product.label.revised and product.label.title and product.label.source
    text = (CHECKER.rules_dir / "products" / f"{product_id}.yaml").read_text()
    assert ".md" not in text, "a product file cites a file the user does not have"
    for indication in product.indications:
        report = check({
            "product": product_id, "indication": indication,
            "patient": {"weight": "60 kg", "age": 40, "risk_factors": ["immune-globulin-anaphylaxis"]},
            "dose": {"per_day": "9 g/kg", "days": 1}, "steps": [{"rate": "99 mg/kg/min"}]})
        for finding in report.findings:
            assert ".md" not in finding.citation
        label_cited = [f for f in report.findings if f.kind == "max-rate-exceeded"]
        assert label_cited and product.label_name in label_cited[0].citation


def _copy_rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    shutil.copytree(CHECKER.rules_dir, root)
    return root


@pytest.mark.parametrize("section", ["sucrose", "excipients", "contraindications", "label"])
def test_a_product_file_missing_a_safety_section_is_refused(tmp_path: Path, section: str) -> None:
    root = _copy_rules(tmp_path)
    path = root / "products" / "privigen.yaml"
    data = yaml.safe_load(path.read_text())
    del data[section]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RuleFileError, match=rf"privigen\.yaml.*{section}.*missing"):
        Checker(root)


@pytest.mark.parametrize("section", ["population", "regimens"])
def test_an_indication_missing_its_population_or_regimen_is_refused(tmp_path: Path, section: str) -> None:
    root = _copy_rules(tmp_path)
    path = root / "products" / "privigen.yaml"
    data = yaml.safe_load(path.read_text())
    indication = next(iter(data["indications"]))
    del data["indications"][indication][section]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RuleFileError, match=rf"privigen\.yaml.*{indication}.*{section}.*missing"):
        Checker(root)


def test_a_class_contraindication_cannot_be_switched_off_by_a_product_file(tmp_path: Path) -> None:
    """Stating 'none' for a product's contraindications does not lift the class pair."""
    root = _copy_rules(tmp_path)
    path = root / "products" / "privigen.yaml"
    data = yaml.safe_load(path.read_text())
    data["contraindications"] = {"none": True, "citation": "4 Contraindications: none (a deliberate test)",
                                 "tag": "L"}
    data["excipients"] = {"none": True, "citation": "11 Description: none (a deliberate test)", "tag": "L"}
    path.write_text(yaml.safe_dump(data))
    checker = Checker(root)
    for risk in CLASS_CONTRAINDICATIONS:
        report = checker.check({
            "product": "privigen", "indication": "primary-immunodeficiency",
            "patient": {"weight": "60 kg", "age": 40, "risk_factors": [risk]},
            "dose": {"per_course": "0.4 g/kg", "days": 1}, "steps": [{"rate": "0.5 mg/kg/min"}]})
        assert report.verdict == "block", risk
