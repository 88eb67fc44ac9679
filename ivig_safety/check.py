"""The one core every shell calls: ``check(plan) -> Report``.

Parse and validate (plan.py) -> normalise to facts (facts.py) -> evaluate rules (engine.py) -> combine caps into
suggestions (suggest.py) -> a Report (report.py). The CLI, the batch runner and the HTTP service add nothing clinical.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from .catalogue import Catalogue, load_catalogue, load_vocabulary
from .engine import Engine
from .errors import FieldError, InvalidPlanError, format_loc
from .facts import Facts, build_facts
from .findings import build_finding, explain_rule
from .plan import Plan
from .policy import Policy, load_policy
from .report import (DispenseReport, PlanSummary, PolicyIdentity, Report, RuleSetIdentity, VialCount,
                     verdict_for)
from .rules import Rule, RuleSet, load_rules
from .suggest import rate_triple, suggest


_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def default_rules_dir() -> Path:
    """Where the rule files are: $IVIG_SAFETY_RULES, the copy inside an installed wheel, or the repository's rules/."""
    if env := os.environ.get("IVIG_SAFETY_RULES"):
        return Path(env)
    packaged = Path(__file__).parent / "_rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "rules"


def validation_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors as FieldErrors that name the path (``steps[1].rate``) and the problem."""
    errors = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        errors.append(FieldError(format_loc(error["loc"]), message))
    return errors


class Checker:
    """A loaded rule set, catalogue and policy, and the engine compiled from them. Thread-safe; load once, reuse."""

    def __init__(self, rules_dir: Path | str | None = None, policy_file: Path | str | None = None):
        root = Path(rules_dir) if rules_dir is not None else default_rules_dir()
        self.rules_dir = root
        self.vocabulary = load_vocabulary(root / "vocabulary.yaml")
        self.catalogue: Catalogue = load_catalogue(root / "products", self.vocabulary)
        self.policy: Policy = load_policy(root / "policy.yaml", Path(policy_file) if policy_file else None)
        identity_files = [root / "vocabulary.yaml", *sorted((root / "products").glob("*.yaml"))]
        self.ruleset: RuleSet = load_rules(root, self.policy, self.vocabulary, set(self.vocabulary.excipients),
                                           identity_files)
        self.engine = Engine(self.ruleset)
        self._rules = self.ruleset.by_id
        self._context = {"vocabulary": self.vocabulary, "catalogue": self.catalogue}
        self._ruleset_identity = RuleSetIdentity(**self.ruleset.identity)
        self._policy_identity = PolicyIdentity(**self.policy.identity)

    def renew_engine(self) -> None:
        """Give this Checker a new engine (fresh durable_rules handles and locks): for a process forked from one
        that may have been evaluating. The loaded rule set, catalogue and policy are kept."""
        self.engine = Engine(self.ruleset)

    def parse(self, data: Any) -> Plan:
        """Validate a plan given as a dict (or a Plan); raise InvalidPlanError naming every field at fault."""
        if not isinstance(data, (Mapping, Plan)):
            raise InvalidPlanError.single("", f"a plan is a mapping of fields, not {type(data).__name__}")
        try:
            return Plan.model_validate(data, context=self._context)
        except ValidationError as exc:
            raise InvalidPlanError(validation_errors(exc)) from None

    def check(self, plan: Any) -> Report:
        """Check one plan. Invalid input raises InvalidPlanError; it never comes back as a verdict."""
        return self._run(plan)[0]

    def explain(self, plan: Any) -> tuple[Report, dict[str, list[str]]]:
        """The report, and per fired rule the facts that made it fire (for ``check --explain``)."""
        report, facts, fired = self._run(plan)
        return report, {rule.id: explain_rule(rule, facts) for rule in fired}

    def _run(self, plan: Any) -> tuple[Report, Facts, list[Rule]]:
        parsed = self.parse(plan)  # a Plan instance too: it may have been built or copied without validation
        facts = build_facts(parsed, self.catalogue.products[parsed.product], self.policy)
        fired = [self._rules[rule_id] for rule_id in self.engine.evaluate(facts.encode(self.engine.encoding))]
        findings = sorted((build_finding(rule, facts, self.policy) for rule in fired),
                          key=lambda f: _SEVERITY_ORDER[f.severity])
        suggestion = suggest(facts, fired, self.policy)
        values = facts.values
        report = Report(
            verdict=verdict_for(findings),
            plan=PlanSummary(
                id=parsed.id, product=facts.product.id, product_name=facts.product.name,
                indication=facts.indication, labelled=bool(values["labelled"]),
                weight_kg=round(values["weight"], 6), dosing_weight_kg=round(facts.weight_kg, 6),
                dosing_weight_method=facts.dosing.method,
                concentration_mg_per_ml=facts.concentration, risk_factors=sorted(facts.risk_factors),
                derived_risk_factors=sorted(facts.derived_risk_factors), days=int(values["days"]),
                dose_per_day_g=round(values["dose_per_day"] * facts.weight_kg, 3),
                dose_per_day_g_per_kg=round(values["dose_per_day"], 4),
                daily_volume_ml=round(values["daily_volume"], 3),
                plan_infusion_min=round(values["infusion_time"], 2),
            ),
            findings=findings,
            suggested_max_rate=rate_triple(facts, suggestion.max_rate, self.policy),
            suggested_steps=suggestion.steps,
            suggested_infusion_min=suggestion.total_min,
            dispense=_dispense(facts),
            ruleset=self._ruleset_identity,
            policy=self._policy_identity,
        )
        return report, facts, fired

def _dispense(facts: Facts) -> DispenseReport:
    d = facts.dispense
    return DispenseReport(
        prescribed_dose_g=round(d.dose_g, 3), dose_g=round(d.rounded_dose_g, 3), rounding=d.rounding,
        volume_ml=round(facts.values["daily_volume"], 3),
        vials=[VialCount(size=vial.label, count=count) for vial, count in d.vials], waste_g=d.waste_g,
    )


def get_checker(rules_dir: str | Path | None = None, policy_file: str | Path | None = None) -> Checker:
    """The shared Checker for a rules folder and policy file (loaded once per process)."""
    return _cached_checker(str(Path(rules_dir).resolve()) if rules_dir else None,
                           str(Path(policy_file).resolve()) if policy_file else None)


@lru_cache(maxsize=8)
def _cached_checker(rules_dir: str | None, policy_file: str | None) -> Checker:
    return Checker(rules_dir, policy_file)


def check(plan: Any, *, policy: str | Path | None = None, rules_dir: str | Path | None = None) -> Report:
    """Check one IVIG infusion plan (a dict, or a :class:`Plan`) and return the :class:`Report`.

    Raises :class:`InvalidPlanError` (with ``.errors``, one per field at fault) when the plan cannot be checked.
    """
    return get_checker(rules_dir, policy).check(plan)


get_checker.cache_clear = _cached_checker.cache_clear  # type: ignore[attr-defined]  # e.g. after fork (batch.py)
