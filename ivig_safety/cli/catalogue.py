"""Commands that explain the engine to the pharmacist who must trust it: products, rules, lint, fields, schema.

Why separate from the check command (check.py): these commands read the loaded rule set and print it; they
judge no plan. Each is a small click function over :class:`ivig_safety.Checker`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import click
import yaml

from ..check import Checker, default_rules_dir
from ..formats.render import console
from ..knowledge.fields import FIELDS
from ..knowledge.products import Product
from ..knowledge.yamlio import YamlError, parse_yaml
from ..model.errors import RuleFileError
from ..model.plan import Plan
from ..model.units import Quantity, Shape, format_number
from .options import EXIT_INVALID, fail, load_checker, policy_option


def _rate(product: Product, quantity: Quantity) -> str:
    """A label rate as written, with mg/kg/min beside it when the label writes another unit."""
    if quantity.shape is Shape.MASS_PER_MASS_TIME:
        return str(quantity)
    return f"{quantity} ({format_number(product.rate_mg_kg_min(quantity))} mg/kg/min)"


@click.group(invoke_without_command=True)
@click.pass_context
def products(ctx: click.Context) -> None:
    """List the product catalogue (rules/products/)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table  # imported when a table is drawn, not by every command

    checker = load_checker(None)
    table = Table(title="Products")
    for column in ("product", "name", "label revised", "concentration", "indication: initial -> max",
                   "excipients"):
        table.add_column(column)
    for product in checker.catalogue.products.values():
        lines = [f"{ind}: {_rate(product, e.initial_rate.quantity)} -> {_rate(product, e.max_rate.quantity)}"
                 for ind, e in product.indications.items()]
        excipients = (", ".join(sorted(product.excipient_names)) or "none") if product.excipients_on_file \
            else "not on file"
        table.add_row(product.id, product.name, product.label.revised, str(product.concentration.quantity),
                      "\n".join(lines), excipients)
    console().print(table)


@products.command("show")
@click.argument("product_id")
def products_show(product_id: str) -> None:
    """Show one product's figures with their citations."""
    checker = load_checker(None)
    product = checker.catalogue.resolve(product_id)
    if product is None:
        fail(f"unknown product {product_id!r}; known: {', '.join(sorted(checker.catalogue.products))}")
    path = checker.rules_dir / "products" / f"{product.id}.yaml"
    click.echo(f"# {path}")
    click.echo(path.read_text(encoding="utf-8"))


@click.group("rules")
def rules_group() -> None:
    """List, show and lint the safety rules (rules/safety/)."""


@rules_group.command("list")
@policy_option
def rules_list(policy: str | None) -> None:
    """One line per rule: id, kind, severity, cap, what it checks."""
    from rich.table import Table

    checker = load_checker(policy)
    table = Table(title=f"Rule set {checker.ruleset.version}")
    for column in ("id", "kind", "severity", "cap", "description"):
        table.add_column(column)
    for rule in checker.ruleset.rules:
        table.add_row(rule.id, rule.kind, rule.severity, str(rule.cap or "-"), rule.description or rule.message[:60])
    console().print(table)


@rules_group.command("show")
@click.argument("rule_id")
@policy_option
def rules_show(rule_id: str, policy: str | None) -> None:
    """A rule's condition, cap, message, citation and file."""
    checker = load_checker(policy)
    rule = checker.ruleset.by_id.get(rule_id)
    if rule is None:
        fail(f"unknown rule {rule_id!r}; known: {', '.join(checker.ruleset.by_id)}")
    click.echo(yaml.safe_dump({
        "id": rule.id, "kind": rule.kind, "severity": rule.severity, "description": rule.description,
        "when": rule.when, "cap": str(rule.cap) if rule.cap is not None else None, "step": rule.step,
        "message": rule.message, "citation": rule.citation, "file": rule.source,
    }, sort_keys=False, allow_unicode=True, width=110).rstrip())


@rules_group.command("fields")
def rules_fields() -> None:
    """The fields a rule condition may use."""
    for spec in FIELDS.values():
        shapes = ", ".join(s.value for s in spec.variants) if spec.variants else spec.kind
        click.echo(f"{spec.name:24} {shapes:45} {spec.description}")


def _lint_target(path: Path) -> tuple[Path, Path | None, tempfile.TemporaryDirectory | None]:
    """A rules folder to load: PATH itself, or the default folder with the single file PATH put in its place."""
    if path.is_dir():
        return path, None, None
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except (YamlError, UnicodeDecodeError) as exc:
        raise RuleFileError(str(path), None, str(exc)) from None
    scratch = tempfile.TemporaryDirectory()
    root = Path(scratch.name) / "rules"
    shutil.copytree(default_rules_dir(), root)
    if isinstance(data, dict) and "entries" in data:
        return root, path, scratch
    folder = "products" if isinstance(data, dict) and "indications" in data else "safety"
    shutil.copy(path, root / folder / path.name)
    return root, None, scratch


@rules_group.command("lint")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
def rules_lint(path: Path | None) -> None:
    """Validate a rules folder, or one rule, product or policy file, as the engine would load it."""
    target = path or default_rules_dir()
    scratch = None
    try:
        root, policy_file, scratch = _lint_target(target)
        checker = Checker(root, policy_file)
    except RuleFileError as exc:
        message = str(exc)
        if scratch is not None:  # name the file the pharmacist edited, not the scratch copy
            message = message.replace(str(Path(scratch.name) / "rules"), "rules")
        click.echo(f"error: {message}", err=True)
        sys.exit(EXIT_INVALID)
    finally:
        if scratch is not None:
            scratch.cleanup()
    click.echo(f"ok: {target}: {len(checker.ruleset.rules)} rules, {len(checker.catalogue.products)} products, "
               f"policy '{checker.policy.name}'; rule set sha256:{checker.ruleset.sha256}")


@click.command()
def schema() -> None:
    """The JSON Schema of a plan, generated from the model, with the current vocabularies."""
    checker = load_checker(None)
    document = Plan.model_json_schema()
    properties = document["properties"]
    names = sorted({n for p in checker.catalogue.products.values() for n in (p.id, p.name, *p.aliases)})
    properties["product"]["examples"] = sorted(checker.catalogue.products)
    properties["product"]["description"] = "catalogue id or display name: " + ", ".join(names)
    properties["indication"]["enum"] = list(checker.vocabulary.indications)
    patient = document["$defs"]["Patient"]["properties"]
    patient["risk_factors"]["items"] = {"enum": list(checker.vocabulary.risk_factors)}
    click.echo(json.dumps(document, indent=2))
