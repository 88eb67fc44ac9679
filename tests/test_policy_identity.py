"""A site policy may change any choice, but never silently: every change is listed in the report, a weakened
boxed-warning or absolute-limit check is flagged, the bundled policy's name is reserved, and a rule set from
outside the package is named as such."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivig_safety import Checker, RuleFileError
from ivig_safety.check import bundled_rules_dir
from ivig_safety.cli import main

from .conftest import BASE_PLAN

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dermatomyositis.yaml"


def _site(tmp_path: Path, name: str, **entries: object) -> Path:
    lines = [f"name: {name}", "entries:"]
    for key, value in entries.items():
        lines += [f"  {key}:", f"    value: {value}", "    provenance: St Elsewhere pharmacy committee, 2026"]
    path = tmp_path / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_changed_key_is_listed_with_default_and_value(tmp_path: Path) -> None:
    site = _site(tmp_path, "St Elsewhere", pump_rate_resolution="1 mL/h", advanced_age_over=60)
    report = Checker(policy_file=site).check(BASE_PLAN)
    changes = {c.key: c for c in report.policy.changes}
    assert set(changes) == {"pump_rate_resolution", "advanced_age_over"}
    assert (changes["advanced_age_over"].default, changes["advanced_age_over"].value) == ("65", "60")
    assert not changes["advanced_age_over"].less_strict  # 60 flags more patients: stricter
    assert not changes["pump_rate_resolution"].less_strict


@pytest.mark.parametrize(("key", "value"), [
    ("at_risk_rate_when_label_silent", "1000 mg/kg/min"),
    ("volume_load_daily", "1000000000 mL"),
    ("advanced_age_over", 120),
    ("max_daily_dose", "10 g/kg"),
    ("pump_tolerance", 0.05),
    ("at_risk_rate_when_label_silent", "0.03 mL/kg/min"),  # another unit basis: not shown to be as strict
])
def test_a_weakened_boxed_warning_check_is_flagged_in_every_report(tmp_path: Path, key: str, value: object) -> None:
    site = _site(tmp_path, "St Elsewhere", **{key: value})
    report = Checker(policy_file=site).check(BASE_PLAN)
    assert [c.key for c in report.policy.changes if c.less_strict] == [key]
    text = CliRunner().invoke(main, ["check", str(EXAMPLE), "--policy", str(site)]).stdout
    assert "LESS STRICT" in " ".join(text.split()) and key in text


def test_a_value_equal_to_the_default_is_no_change(tmp_path: Path) -> None:
    site = _site(tmp_path, "St Elsewhere", advanced_age_over=65)
    assert Checker(policy_file=site).check(BASE_PLAN).policy.changes == []


def test_the_bundled_policy_name_is_reserved(tmp_path: Path) -> None:
    site = _site(tmp_path, "IVIG-Safety Default Policy (local copy)", advanced_age_over=70)
    with pytest.raises(RuleFileError, match="bundled policy's name"):
        Checker(policy_file=site)


def test_a_rule_set_from_outside_the_package_is_named(tmp_path: Path) -> None:
    root = tmp_path / "rules"
    shutil.copytree(bundled_rules_dir(), root)
    bundled = Checker().check(BASE_PLAN).ruleset
    other = Checker(root).check(BASE_PLAN).ruleset
    assert bundled.bundled and bundled.path is None
    assert not other.bundled and other.path == str(root.resolve())


def test_the_environment_override_is_shown_in_the_text_report(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "rules"
    shutil.copytree(bundled_rules_dir(), root)
    monkeypatch.setenv("IVIG_SAFETY_RULES", str(root))
    from ivig_safety.check import get_checker
    get_checker.cache_clear()  # type: ignore[attr-defined]
    try:
        text = " ".join(CliRunner().invoke(main, ["check", str(EXAMPLE)]).stdout.split())
    finally:
        get_checker.cache_clear()  # type: ignore[attr-defined]
    assert "NOT the bundled rule set" in text and str(root.resolve())[:20] in text


def test_the_checker_cache_is_bounded_and_frees_what_it_drops(tmp_path: Path) -> None:
    """Any number of site policies: at most CHECKER_CACHE_SIZE checkers stay loaded, the dropped ones are freed
    (their engine's C memory with them), and two paths to one file's content share one checker."""
    import gc
    import importlib
    import weakref

    from ivig_safety import check as api_check

    check_module = importlib.import_module("ivig_safety.check")  # the attribute ivig_safety.check is the function

    check_module.get_checker.cache_clear()  # type: ignore[attr-defined]
    refs = []
    for index in range(check_module.CHECKER_CACHE_SIZE + 4):
        site = tmp_path / f"site-{index}.yaml"
        site.write_text(f"name: site {index}\nentries:\n  advanced_age_over:\n    value: {50 + index}\n"
                        f"    provenance: test policy {index}\n")
        api_check(BASE_PLAN, policy=site)
        refs.append(weakref.ref(check_module.get_checker(None, site)))
    assert len(check_module._CHECKERS) <= check_module.CHECKER_CACHE_SIZE
    gc.collect()
    assert sum(ref() is None for ref in refs) >= 4  # evicted and freed, not kept alive by anything
    same = tmp_path / "copy.yaml"
    same.write_text((tmp_path / f"site-{len(refs) - 1}.yaml").read_text())
    assert check_module.get_checker(None, same) is refs[-1]()
    check_module.get_checker.cache_clear()  # type: ignore[attr-defined]
