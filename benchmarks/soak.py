"""Soak test: many checks in one process, memory watched. ``python benchmarks/soak.py --n 200000``.

Why: a leak per check is invisible in a test and fatal in a service that checks orders all night. The run mixes
valid plans with plans that fail at every stage of the pipeline, because failure paths are where resources are
dropped without being released (a cached error, a discarded engine session):

* ``valid``: a realistic plan (mixed products, units and risk factors), checked to a verdict;
* ``not-a-mapping``: rejected before validation;
* ``unit``: a quantity refused by the strict parser (a comment, a control character, a ronna prefix);
* ``field``: a pydantic field error (weight in mL, an unknown risk factor, a step without duration);
* ``product``: an unknown product (a validator with the catalogue in context);
* ``bounds``: well-formed but impossible numbers, refused after parsing (by the plan model, or later stages);
* ``engine`` (only with ``--engine-failures RATE``): an evaluation that fails inside the rule engine, injected by
  making a fraction of engine sessions raise mid-evaluation, to measure what a failed evaluation leaks.

Unique strings (ids, weights with many digits) keep the parse caches churning, as real order streams do.

RSS is read from /proc/self/statm (resource.getrusage's peak elsewhere) every ``--every`` checks. After the warm-up
(``--warmup`` checks; caches fill, the allocator settles) the RSS is the baseline; the run fails (exit 1) if the
final RSS is more than ``--max-growth-mib`` above it. Any exception other than InvalidPlanError (an internal error:
a bug) is counted by type and also fails the run, at the end, so its memory cost is measured too.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivig_safety import EngineError, InvalidPlanError, get_checker  # noqa: E402
from ivig_safety.check import Checker  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mib() -> float:
    """Resident set size now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE / (1 << 20)
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _valid(rng: random.Random, checker: Checker, n: int) -> dict[str, Any]:
    products = sorted(checker.catalogue.products)
    product = checker.catalogue.products[rng.choice(products)]
    indications = list(product.indications) or list(checker.vocabulary.indications)
    weight = round(rng.uniform(40, 130), rng.choice([0, 1, 6]))
    units = [("mg/kg/min", 1.0), ("mL/kg/min", 0.01), ("mL/kg/h", 0.6)]
    unit, factor = rng.choice(units)
    rates = sorted(rng.uniform(0.5, 8) for _ in range(rng.randint(1, 4)))
    steps: list[dict[str, Any]] = [{"rate": f"{r * factor:.4g} {unit}", "duration": f"{rng.choice([15, 30])} min"}
                                   for r in rates[:-1]]
    steps.append({"rate": f"{rates[-1] * factor:.4g} {unit}"})
    risks = rng.sample(sorted(checker.vocabulary.risk_factors), rng.randint(0, 2))
    return {"id": f"SOAK-{n}", "product": product.id, "indication": rng.choice(indications),
            "patient": {"weight": f"{weight} kg" if rng.random() < 0.7 else f"{weight * 2.2046:.5g} lb",
                        "age": rng.randint(18, 90), "risk_factors": risks},
            "dose": {rng.choice(["per_course", "per_day"]): f"{rng.choice([0.4, 1, 2])} g/kg",
                     "days": rng.randint(1, 5)},
            "steps": steps}


def _unit_failure(rng: random.Random, plan: dict[str, Any], n: int) -> dict[str, Any]:
    bad = rng.choice([f"0.04 mL/kg/min # note {n}", f"70 kg\x00{n}", f"70 \u202ekg{n}", f"{n} Rg/kg",
                      f"\u0667\u0660 kg {n}", f"{n}e400 kg", "k" * 200])
    target = rng.choice(["weight", "rate", "dose"])
    if target == "weight":
        plan["patient"]["weight"] = bad
    elif target == "rate":
        plan["steps"][-1]["rate"] = bad
    else:
        plan["dose"] = {"per_course": bad, "days": 1}
    return plan


def _field_failure(rng: random.Random, plan: dict[str, Any], n: int) -> dict[str, Any]:
    choice = rng.randrange(4)
    if choice == 0:
        plan["patient"]["weight"] = f"{n % 90 + 10} mL"
    elif choice == 1:
        plan["patient"]["risk_factors"] = [f"bad-knees-{n}"]
    elif choice == 2:
        plan["steps"] = [{"rate": "1 mg/kg/min"}, {"rate": "2 mg/kg/min"}]
    else:
        plan[f"extra_{n}"] = n
    return plan


def _bounds_failure(rng: random.Random, plan: dict[str, Any], n: int) -> dict[str, Any]:
    choice = rng.randrange(4)
    if choice == 0:
        plan["patient"]["weight"] = f"{7000 + n % 1000} kg"
    elif choice == 1:
        plan["steps"] = [{"rate": f"{1e11 + n} mL/kg/min"}]
    elif choice == 2:
        plan["steps"][0]["duration"] = f"{25 + n % 10} h" if len(plan["steps"]) > 1 else "30 min"
        plan["steps"].insert(0, {"rate": "1 mg/kg/min", "duration": f"{25 + n % 10} h"})
    else:
        plan["dose"] = {"per_day": f"{5e11 + n} g/kg", "days": 1}
    return plan


STAGES: dict[str, Callable[[random.Random, dict[str, Any], int], Any]] = {
    "valid": lambda rng, plan, n: plan,
    "not-a-mapping": lambda rng, plan, n: rng.choice([[plan], f"plan {n}", n, None]),
    "unit": _unit_failure,
    "field": _field_failure,
    "product": lambda rng, plan, n: {**plan, "product": f"octagam-{n}"},
    "bounds": _bounds_failure,
}


def inject_engine_failures(rate: float, rng: random.Random) -> None:
    """Make ``rate`` of evaluations fail inside an engine session (as a durable_rules error would): the engine then
    discards that session (engine.py ``_discard``) and creates a new one on a later checkout."""
    from ivig_safety.pipeline import engine

    session_class = getattr(engine, "_Session", None)
    if session_class is None:
        raise SystemExit("--engine-failures: ivig_safety.pipeline.engine has no _Session class to inject into")
    real_run = session_class.run

    def run(self: Any, fact: dict[str, Any]) -> Any:
        if rng.random() < rate:
            raise EngineError("injected by benchmarks/soak.py")
        return real_run(self, fact)

    session_class.run = run


def _policy_files(count: int) -> list[str]:
    """``count`` site policy files, each with different content (so each is its own Checker)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ivig-soak-policies-"))
    files = []
    for index in range(count):
        path = folder / f"site-{index}.yaml"
        path.write_text(f"name: soak site {index}\nentries:\n  advanced_age_over:\n    value: {50 + index % 60}\n"
                        f"    provenance: soak test policy {index}\n")
        files.append(str(path))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10 ** 6, help="checks to run (default 1,000,000)")
    parser.add_argument("--every", type=int, default=None, help="print RSS every this many checks (default n/20)")
    parser.add_argument("--warmup", type=int, default=None, help="checks before the baseline (default n/10, "
                                                                 "at most 50,000)")
    parser.add_argument("--max-growth-mib", type=float, default=16.0, help="allowed RSS growth after warm-up")
    parser.add_argument("--valid-share", type=float, default=0.5, help="share of valid plans (default 0.5)")
    parser.add_argument("--engine-failures", type=float, default=0.0,
                        help="inject failures into this share of engine evaluations (default 0: none)")
    parser.add_argument("--stages", default=",".join(s for s in STAGES if s != "valid"),
                        help=f"failure stages to mix in (default all: {', '.join(s for s in STAGES if s != 'valid')})")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--policies", type=int, default=0,
                        help="cycle through this many distinct site policy files (more than the Checker cache holds "
                             "makes checkers be rebuilt and dropped: their memory must be freed)")
    parser.add_argument("--policy-every", type=int, default=2000,
                        help="checks between switching to the next policy file (default 2,000)")
    args = parser.parse_args()
    policy_files = _policy_files(args.policies)

    rng = random.Random(args.seed)
    checker = get_checker()
    if args.engine_failures:
        inject_engine_failures(args.engine_failures, random.Random(args.seed + 1))
    gc.freeze()
    every = args.every or max(args.n // 20, 1)
    warmup = args.warmup if args.warmup is not None else min(max(args.n // 10, 1), 50_000)
    failure_stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in failure_stages if s not in STAGES or s == "valid"]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}")
    if not failure_stages:
        args.valid_share = 1.0
    counts = {stage: 0 for stage in ["valid", *failure_stages]}
    outcomes: dict[str, int] = {"verdict": 0, "invalid": 0}
    baseline: float | None = None
    start_rss = rss_mib()
    started = time.monotonic()
    print(f"{'checks':>10} {'RSS MiB':>8} {'vs base':>8} {'checks/s':>9}  (start {start_rss:.1f} MiB)", flush=True)
    for n in range(1, args.n + 1):
        stage = "valid" if rng.random() < args.valid_share else rng.choice(failure_stages)
        counts[stage] += 1
        plan = STAGES[stage](rng, _valid(rng, checker, n), n)
        if policy_files and n % args.policy_every == 0:
            checker = get_checker(None, policy_files[(n // args.policy_every) % len(policy_files)])
        try:
            checker.check(plan)
            outcomes["verdict"] += 1
        except InvalidPlanError:
            outcomes["invalid"] += 1
        except EngineError as exc:
            key = "engine-error (injected)" if "injected" in str(exc) else f"internal: EngineError: {exc}"[:100]
            outcomes[key] = outcomes.get(key, 0) + 1
        except Exception as exc:  # noqa: BLE001 - a bug: counted, reported, and the run fails at the end
            key = f"internal: {type(exc).__name__}: {exc} (stage {stage})"[:120]
            outcomes[key] = outcomes.get(key, 0) + 1
        if n == warmup:
            gc.collect()
            baseline = rss_mib()
            print(f"{n:>10,} {baseline:>8.1f} {'(base)':>8} {n / (time.monotonic() - started):>9,.0f}", flush=True)
        elif n % every == 0 or n == args.n:
            now = rss_mib()
            delta = f"{now - baseline:+8.1f}" if baseline is not None else " " * 8
            print(f"{n:>10,} {now:>8.1f} {delta} {n / (time.monotonic() - started):>9,.0f}", flush=True)
    gc.collect()
    final = rss_mib()
    growth = final - (baseline if baseline is not None else start_rss)
    print(f"stages: {counts}\noutcomes: {outcomes}")
    print(f"RSS: start {start_rss:.1f} MiB, after warm-up {baseline if baseline is not None else float('nan'):.1f} "
          f"MiB, final {final:.1f} MiB, growth after warm-up {growth:+.1f} MiB (limit {args.max_growth_mib:g})")
    internal = sum(v for k, v in outcomes.items() if k.startswith("internal"))
    status = 0
    if growth > args.max_growth_mib:
        print("FAIL: memory grows after warm-up", flush=True)
        status = 1
    if internal:
        print(f"FAIL: {internal} check(s) raised something other than InvalidPlanError (see outcomes)", flush=True)
        status = 1
    if not status:
        print("ok")
    return status


if __name__ == "__main__":
    sys.exit(main())
