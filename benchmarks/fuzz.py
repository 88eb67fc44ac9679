"""Long fuzzing run: the adversarial generators of tests/test_fuzz.py with a large budget.

    python benchmarks/fuzz.py --minutes 60             # all properties, round robin, until the time is up
    python benchmarks/fuzz.py --minutes 5 --only api   # one property (cli, api, batch)

Why a separate runner: the test suite runs a few hundred examples so it stays fast; the defects of issue 8 came from
many thousands. Each round runs one property for ``--examples`` examples with a fresh random seed; a failure is
shrunk by hypothesis and printed with its minimal input (and counted once per distinct error), and the run goes on.
Exit code 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.test_fuzz import PROPERTIES  # noqa: E402


def run_round(name: str, strategies: dict[str, Any], prop: Any, examples: int, round_seed: int,
              shrink: bool) -> tuple[str, str] | None:
    """One round of one property; None, or (signature, report) for a failure."""
    phases = [Phase.generate, Phase.target] + ([Phase.shrink] if shrink else [])
    test = seed(round_seed)(settings(max_examples=examples, deadline=None, database=None, phases=phases,
                                     suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                                     print_blob=True)(given(**strategies)(prop)))
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the run goes on
        notes = "\n".join(getattr(exc, "__notes__", []))
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
        signature = f"{name}: {type(exc).__name__} at {where}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        report = (f"--- {signature}\n{notes}\n"
                  + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]))
        return signature, report
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="time budget (default 60)")
    parser.add_argument("--examples", type=int, default=500, help="examples per round (default 500)")
    parser.add_argument("--only", choices=[name for name, _, _ in PROPERTIES], action="append",
                        help="run only this property (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="first round's seed (default: from the clock)")
    parser.add_argument("--no-shrink", action="store_true", help="report failures unshrunk (faster)")
    args = parser.parse_args()

    chosen = [p for p in PROPERTIES if not args.only or p[0] in args.only]
    deadline = time.monotonic() + args.minutes * 60
    next_seed = args.seed if args.seed is not None else int(time.time()) ^ os.getpid()
    failures: dict[str, str] = {}
    examples = {name: 0 for name, _, _ in chosen}
    rounds = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        for name, strategies, prop in chosen:
            if time.monotonic() >= deadline:
                break
            outcome = run_round(name, strategies, prop, args.examples, next_seed, not args.no_shrink)
            rounds += 1
            examples[name] += args.examples
            if outcome is not None:
                signature, report = outcome
                if signature not in failures:
                    failures[signature] = report
                    print(report, flush=True)
            print(f"[{time.monotonic() - started:7.0f} s] round {rounds} ({name}, seed {next_seed}): "
                  f"{'FAIL' if outcome else 'ok'}; distinct failures so far: {len(failures)}", flush=True)
            next_seed += 1
    print(f"\n{rounds} rounds, about {sum(examples.values())} examples "
          f"({', '.join(f'{k} {v}' for k, v in examples.items())}), {len(failures)} distinct failure(s)")
    for signature in failures:
        print(f"  {signature}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
