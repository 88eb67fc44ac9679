"""Alert burden: findings per plan on the bundled examples and on generated orders that are within the label.

Why: an alert that fires on a safe order teaches people to click past every alert. This script counts, per plan,
the findings a prescriber would see (critical, warning, info), so a change to the rules can be measured, not argued.

    python benchmarks/alerts.py generate --n 2000 --out /tmp/within-label.jsonl   # orders within every label
    python benchmarks/alerts.py measure /tmp/within-label.jsonl examples/orders.jsonl

``measure`` uses only the public API (``ivig_safety.check``), so the same order file can be measured with an older
checkout of ivig-safety to compare before and after (run it from that checkout with ``PYTHONPATH=.``).
Generated orders: every product and labelled indication in the catalogue, a patient of 18-90 years weighed in kg or
whole pounds, a dose from a labelled regimen, the label's own titration (initial rate for its hold, its ladder, then
the maximum) programmed in whole mL/h as a pump takes it (nearest mL/h within 1% of the label figure), and at most one boxed-warning risk factor.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

LB = 0.45359237
RISKS = ["advanced-age", "immobility", "diabetes", "renal-insufficiency", "history-of-thrombosis"]


def _pump(mg_kg_min: float, kg: float, mg_per_ml: float) -> str:
    """The rate in whole mL/h as a nurse programs it: rounded to the nearest mL/h where that stays within 1% of the
    label figure (the default pump tolerance), else rounded down."""
    exact = mg_kg_min * kg / mg_per_ml * 60.0
    nearest = round(exact)
    return f"{nearest if nearest <= exact * 1.01 else math.floor(exact)} mL/h"


def generate(n: int, seed: int) -> Iterator[dict[str, Any]]:
    from ivig_safety import get_checker

    checker = get_checker()
    ceiling = checker.policy["max_daily_dose"].canonical
    entries = [(p, ind, e) for p in checker.catalogue.products.values() for ind, e in p.indications.items()]
    rng = random.Random(seed)
    for index in range(n):
        product, indication, entry = rng.choice(entries)
        pounds = rng.random() < 0.3
        kg = round(rng.uniform(45, 120), 1)
        if pounds:
            kg = round(kg / LB) * LB
        regimen = rng.choice(entry.regimens)
        dose = regimen.per_day or regimen.per_course
        assert dose is not None
        key = "per_day" if regimen.per_day is not None else "per_course"
        while True:  # within the regimen and within the policy's daily ceiling (a monthly MMN total is split)
            days = rng.randint(regimen.days.min, regimen.days.max)
            amount = round(rng.uniform(dose.min.canonical, dose.max.canonical), 3)
            if (amount if key == "per_day" else amount / days) <= ceiling:
                break
        c = product.concentration_mg_per_ml
        initial = product.rate_mg_kg_min(entry.initial_rate.quantity)
        maximum = product.rate_mg_kg_min(entry.max_rate.quantity)
        hold = entry.initial_hold.quantity.canonical if entry.initial_hold else 30.0
        interval = entry.titration.interval.canonical if entry.titration else 30.0
        ladder = [product.rate_mg_kg_min(q) for q in (entry.titration.ladder if entry.titration else None) or []]
        rungs = [r for r in ladder if initial < r < maximum] or [r for r in (initial * 2, initial * 4)
                                                                 if r < maximum]
        steps = [{"rate": _pump(initial, kg, c), "duration": f"{hold:g} min"}]
        steps += [{"rate": _pump(r, kg, c), "duration": f"{interval:g} min"} for r in rungs]
        steps.append({"rate": _pump(maximum, kg, c)})
        risk = [rng.choice(RISKS)] if rng.random() < 0.4 else []
        yield {
            "id": f"gen-{index}", "product": product.id, "indication": indication,
            "patient": {"weight": f"{round(kg / LB)} lb" if pounds else f"{kg} kg",
                        "age": rng.randint(18, 90), "risk_factors": risk},
            "dose": {key: f"{amount:.3f} g/kg", "days": days},
            "steps": steps,
        }


def measure(paths: list[str]) -> dict[str, Any]:
    from ivig_safety import InvalidPlanError, check

    per_plan: Counter[str] = Counter()
    by_rules: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    invalid = 0
    plans = 0
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            try:
                report = check(json.loads(line))
            except InvalidPlanError:
                invalid += 1
                continue
            plans += 1
            verdicts[report.verdict] += 1
            for finding in report.findings:
                per_plan[finding.severity] += 1
                rules = getattr(finding, "rules", None) or [finding.rule]  # older versions have no merged rules
                by_rules[f"{finding.severity} {'+'.join(rules)}"] += 1
    return {
        "plans": plans, "invalid": invalid, "verdicts": dict(verdicts),
        "per_plan": {s: round(per_plan[s] / max(plans, 1), 3) for s in ("critical", "warning", "info")},
        "findings": dict(by_rules.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write N within-label orders as JSON Lines")
    gen.add_argument("--n", type=int, default=2000)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--out", required=True)
    meas = sub.add_parser("measure", help="findings per plan for the orders in these JSON Lines files")
    meas.add_argument("paths", nargs="+")
    args = parser.parse_args()
    if args.command == "generate":
        with open(args.out, "w", encoding="utf-8") as out:
            for plan in generate(args.n, args.seed):
                out.write(json.dumps(plan) + "\n")
    else:
        json.dump(measure(args.paths), sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
