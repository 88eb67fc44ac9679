"""The commands that explain the engine: products, rules, lint, fields, schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivig_safety import get_checker
from ivig_safety.cli import main

RULES = Path(__file__).resolve().parent.parent / "rules"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_products_table_lists_every_product() -> None:
    result = run("products")
    assert result.exit_code == 0
    flat = "".join(result.stdout.split())
    for product in get_checker().catalogue.products.values():
        assert product.id[:8] in result.stdout and product.label.revised in flat


def test_products_show_by_display_name() -> None:
    result = run("products", "show", "Octagam 10%")
    assert result.exit_code == 0 and "0.04 mL/kg/min" in result.stdout and "citation" in result.stdout
    assert run("products", "show", "nope").exit_code == 2


def test_rules_list_and_show() -> None:
    listed = run("rules", "list")
    assert listed.exit_code == 0 and "max-rate" in listed.stdout
    shown = run("rules", "show", "thrombosis-risk")
    assert shown.exit_code == 0
    assert "peak_rate > at_risk_rate" in shown.stdout and "cap: at_risk_rate" in shown.stdout
    assert "cite.warning:boxed-warning" in shown.stdout
    assert run("rules", "show", "nope").exit_code == 2


def test_rules_fields() -> None:
    result = run("rules", "fields")
    assert "peak_rate" in result.stdout and "mL/kg/min" not in result.stdout.split("peak_rate")[0]


def test_lint_the_shipped_rules() -> None:
    result = run("rules", "lint")
    assert result.exit_code == 0 and result.stdout.startswith("ok:")


def test_lint_a_single_bad_rule_file(tmp_path: Path) -> None:
    bad = tmp_path / "my-rule.yaml"
    bad.write_text("rules:\n  - id: my-rule\n    kind: max-rate-exceeded\n    severity: warning\n"
                   "    when: peak_rate > 3.3 mg/kg\n    message: m\n    citation: c\n")
    result = run("rules", "lint", str(bad))
    assert result.exit_code == 2
    assert "my-rule.yaml [my-rule]" in result.stderr and "peak_rate is a quantity" in result.stderr


def test_lint_a_good_product_file(tmp_path: Path) -> None:
    copy = tmp_path / "octagam-10.yaml"
    shutil.copy(RULES / "products" / "octagam-10.yaml", copy)
    assert run("rules", "lint", str(copy)).exit_code == 0


def test_lint_a_bad_policy_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("name: x\nentries:\n  advanced_age: {value: 60, provenance: p}\n")
    result = run("rules", "lint", str(site))
    assert result.exit_code == 2 and "unknown policy key" in result.stderr


def test_schema_is_generated_from_the_model_with_vocabularies() -> None:
    result = run("schema")
    schema = json.loads(result.stdout)
    assert "dermatomyositis" in schema["properties"]["indication"]["enum"]
    risk = schema["$defs"]["Patient"]["properties"]["risk_factors"]["items"]["enum"]
    assert "immobility" in risk and "corn-allergy" in risk
    assert set(schema["required"]) >= {"product", "indication", "patient", "dose", "steps"}


@pytest.mark.parametrize("command", [["products"], ["rules", "list"], ["risk-factors"], ["schema"]])
def test_commands_load_a_policy_free_ruleset(command: list[str]) -> None:
    assert run(*command).exit_code == 0
