"""Instructions per ``check()``, counted by valgrind's callgrind: ``python benchmarks/instructions.py SPEC ...``.

Why: CPU time on this shared machine drifts by tens of percent within an hour, so a change worth 1% cannot be seen in
it. An instruction count is the same on a busy machine as on an idle one (it does not see cache misses, so it is a
guide, not the final word: ``compare.py`` still decides by time). Each build runs twice under callgrind on the same
generated plans (benchmarks/bench.py's generator, this checkout's copy): once up to and including a first pass of
``check()`` over them all (the set-up, with every cache warm), once with a second pass; the difference, divided by
the number of plans, is the instructions one ``check()`` costs. Two to three minutes per build; needs
``valgrind``.

A SPEC is a Python interpreter with ivig_safety installed (as for compare.py, ``NAME=python``):

    python benchmarks/instructions.py before=/tmp/venv-before/bin/python now=.venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Run under callgrind in each build's own process; a second pass over the plans when TIMED is "1".
_CHILD = r'''
import gc, os, sys
sys.path.append(BENCHMARKS)
import bench
from ivig_safety import InvalidPlanError, get_checker
checker = get_checker()
plans = bench.json_plans(bench.generate(ROWS, 1, checker))
passes = 2 if os.environ["TIMED"] == "1" else 1
for _ in range(passes):
    for plan in plans:
        try:
            checker.check(plan)
        except InvalidPlanError:
            pass
    gc.freeze()
print(len(plans))
'''


def _instructions(python: str, rows: int, timed: bool) -> tuple[int, int]:
    """(instructions the whole run took, plans) for one run under callgrind."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        code = _CHILD.replace("BENCHMARKS", repr(str(HERE))).replace("ROWS", str(rows))
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", code],
                              capture_output=True, text=True, cwd=folder, env={**os.environ, "TIMED": str(int(timed)),
                                                                               "PYTHONSAFEPATH": "1"})
        if done.returncode != 0:
            sys.exit(f"{python} failed under callgrind:\n{done.stderr[-2000:]}")
        total = re.search(r"Collected : (\d+)", done.stderr)
        if total is None:
            sys.exit(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
        return int(total.group(1)), int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs="+", metavar="NAME=PYTHON")
    parser.add_argument("--rows", type=int, default=5000, help="generated rows (JSON plans are checked)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt install valgrind)")
    results: list[tuple[str, float]] = []
    for build in args.builds:
        name, _, python = build.partition("=")
        setup, plans = _instructions(python, args.rows, False)
        whole, _ = _instructions(python, args.rows, True)
        results.append((name, (whole - setup) / plans))
        print(f"  {name:15s} {results[-1][1]:>12,.0f} instructions per check() ({plans:,} plans)", flush=True)
    first = results[0][1]
    print("against the first: " + ", ".join(f"{name} {first / count:.2f}x" for name, count in results))


if __name__ == "__main__":
    main()
