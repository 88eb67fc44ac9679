"""Two or more builds of ivig-safety timed in one run, alternately: ``python benchmarks/compare.py NAME=SPEC ...``.

The machine this project is measured on is shared, and the same code runs tens of percent slower at one hour than
at another; figures taken at different times do not compare. This script times each build in a fresh process, in
turn, several rounds, and keeps each one's best: the ratios hold even when the absolute figures drift.

A SPEC is a Python interpreter, optionally followed by ``:`` and a source tree to import ivig_safety from (put
first on PYTHONPATH; the tree needs its compiled engine beside its sources, as ``pip install .`` leaves it):

    python benchmarks/compare.py before=/tmp/venv/bin/python:/tmp/old-checkout now=.venv/bin/python

Each build is timed on the same generated plans (benchmarks/bench.py's generator, this checkout's copy): the batch
path as the one-worker command runs it (``run_batch`` over a JSON Lines file, written to /dev/null, after
``gc.freeze()`` as the command does: the garbage collector's share is part of a row's cost) and ``check()`` on the
plans that are JSON, invalid ones included. CPU time per plan, in microseconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Run in each build's own process; prints "batch_us check_us compiled".
_CHILD = r'''
import gc, os, sys, tempfile, time
sys.path.append(BENCHMARKS)
import bench
import ivig_safety
from ivig_safety import get_checker
from ivig_safety.batch import JsonlWriter, open_source, run_batch
checker = get_checker()
lines = bench.generate(ROWS, 1, checker)
plans = bench.json_plans(lines)
folder = tempfile.mkdtemp()
source = os.path.join(folder, "plans.jsonl")
with open(source, "wb") as out:
    out.write(b"\n".join(lines) + b"\n")
del lines
gc.collect()
gc.freeze()  # as the batch command does once its rules are loaded (the plans for check() are kept out too)
batch = check = float("inf")
with open(os.devnull, "wb") as sink:
    for _ in range(4):
        started = time.process_time()
        with open_source(source) as rows:
            run_batch(rows, JsonlWriter(sink), workers=1)
        batch = min(batch, (time.process_time() - started) / ROWS * 1e6)
        started = time.process_time()
        for plan in plans:
            try:
                checker.check(plan)
            except Exception:
                pass
        check = min(check, (time.process_time() - started) / len(plans) * 1e6)
os.remove(source)
os.rmdir(folder)
print(f"{batch:.2f} {check:.2f} {getattr(ivig_safety, 'compiled', False)}")
'''


def _command(spec: str) -> tuple[list[str], dict[str, str]]:
    python, _, tree = spec.partition(":")
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    env.pop("PYTHONPATH", None)
    if tree:
        env["PYTHONPATH"] = str(Path(tree).resolve())
    return [python, "-c"], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs="+", metavar="NAME=SPEC")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    builds = dict(item.split("=", 1) for item in args.builds)
    code = _CHILD.replace("BENCHMARKS", repr(str(HERE))).replace("ROWS", str(args.rows))
    best: dict[str, tuple[float, float, str]] = {}
    for round_number in range(args.rounds):
        order = list(builds) if round_number % 2 == 0 else list(reversed(builds))
        for name in order:
            command, env = _command(builds[name])
            done = subprocess.run([*command, code], capture_output=True, text=True, env=env,
                                  cwd=tempfile.gettempdir())
            if done.returncode:
                sys.exit(f"{name}: {done.stderr.strip()[-2000:]}")
            batch, check, compiled = done.stdout.split()[-3:]
            old = best.get(name)
            best[name] = (min(float(batch), old[0]) if old else float(batch),
                          min(float(check), old[1]) if old else float(check), compiled)
    first = next(iter(builds))
    print(f"CPU us per plan, best of {args.rounds} rounds, {args.rows:,} generated rows (ratios against {first}):")
    for name, (batch, check, compiled) in best.items():
        print(f"  {name:<16} batch row {batch:7.1f} ({best[first][0] / batch:4.2f}x)   check() {check:7.1f}"
              f" ({best[first][1] / check:4.2f}x)   compiled: {compiled}")


if __name__ == "__main__":
    main()
