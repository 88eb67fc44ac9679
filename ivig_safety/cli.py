"""The ``ivig-safety`` command: a thin shell over :class:`ivig_safety.Checker`; nothing clinical happens here.

Exit codes: 0 ok, 1 warn, 3 block; 2 invalid input or usage (message on stderr naming the field, no verdict on
stdout); 4 internal error (the engine failed: no verdict).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .check import Checker, get_checker
from .errors import EngineError, InvalidPlanError, RuleFileError
from .render import console, render_json, render_text
from .yamlio import YamlError, parse_yaml

EXIT_OK, EXIT_WARN, EXIT_INVALID, EXIT_BLOCK, EXIT_INTERNAL = 0, 1, 2, 3, 4
VERDICT_EXIT = {"ok": EXIT_OK, "warn": EXIT_WARN, "block": EXIT_BLOCK}


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def read_document(source: str) -> Any:
    """Read a YAML or JSON document from a path or '-' (stdin); a malformed or empty file is invalid input."""
    try:
        if source == "-":
            raw = sys.stdin.buffer.read()
        else:
            raw = Path(source).read_bytes()
    except OSError as exc:
        fail(f"{source}: cannot read: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        fail(f"{source}: not UTF-8 text")
    if not text.strip():
        fail(f"{source}: the file is empty")
    try:
        return parse_yaml(text)
    except YamlError as exc:
        fail(f"{source}: malformed YAML/JSON: {exc}")


def load_checker(policy: str | None) -> Checker:
    try:
        return get_checker(None, policy)
    except RuleFileError as exc:
        fail(f"rule or policy file: {exc}")
    except OSError as exc:
        fail(f"cannot read rule or policy files: {exc}")
    raise AssertionError("unreachable")


policy_option = click.option("--policy", type=click.Path(exists=True, dir_okay=False),
                             help="Site policy file overlaid on rules/policy.yaml.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ivig-safety")
def main() -> None:
    """Check IVIG infusion plans against the package insert."""


@main.command()
@click.argument("plan", type=str)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--explain", is_flag=True, help="Show, per finding, the facts that made the rule fire.")
@policy_option
def check(plan: str, fmt: str, explain: bool, policy: str | None) -> None:
    """Check PLAN (a YAML or JSON file, or - for stdin)."""
    data = read_document(plan)
    checker = load_checker(policy)
    try:
        report, why = checker.explain(data) if explain else (checker.check(data), None)
    except InvalidPlanError as exc:
        lines = "\n".join(f"  {e}" for e in exc.errors)
        fail(f"{plan}: invalid plan, not checked:\n{lines}")
    except EngineError as exc:
        fail(f"internal error, no verdict: {exc}", EXIT_INTERNAL)
    if fmt == "json":
        click.echo(render_json(report))
    else:
        console().print(render_text(report, why))
    sys.exit(VERDICT_EXIT[report.verdict])


@main.command("risk-factors")
def risk_factors() -> None:
    """List the risk factors a plan may name."""
    checker = load_checker(None)
    for name, description in checker.vocabulary.risk_factors.items():
        click.echo(f"{name:34} {description}")


# The other commands live in their own modules and register themselves on ``main`` when imported.
from . import batch_cli, catalogue_cli  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    # Run as `python -m ivig_safety.cli`, this file is __main__, while the command modules registered their commands
    # on the imported ivig_safety.cli; run that one.
    from ivig_safety.cli import main as registered_main

    registered_main()
